// Command giftd-receiver prints every event giftd's webhooks deliver, once:
//
//	GIFTD_WEBHOOK_SECRET=whsec_… go run ./examples/receiver/cmd/giftd-receiver -addr :9000
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"

	"giftd/examples/receiver"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "address to listen on")
	flag.Parse()
	// Several secrets, comma-separated, during a rotation.
	r, err := receiver.New(strings.Split(os.Getenv("GIFTD_WEBHOOK_SECRET"), ","), func(e receiver.Event) error {
		fmt.Printf("%d %s %s %s\n", e.Position, e.ID, e.Type, e.Data)
		return nil
	})
	if err != nil {
		log.Fatal("GIFTD_WEBHOOK_SECRET: ", err)
	}
	log.Fatal(http.ListenAndServe(*addr, r))
}
