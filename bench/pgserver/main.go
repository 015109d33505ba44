// Command pgserver starts one throwaway PostgreSQL server, as giftd dev
// does (internal/pgcluster, the same settings), for the benchmark kit
// (bench/run): its partitioned rows give the proxy and each partition a
// server of its own. It prints "url <URL>" (the superuser postgres, database
// postgres) and runs until SIGINT or SIGTERM, then stops the server and
// removes its folder. It is a benchmark tool, not part of the server.
//
//	pgserver [name=value …]   # extra server settings, as -c name=value
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"giftd/internal/pgcluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := pgcluster.Start(ctx, pgcluster.Options{Settings: os.Args[1:]})
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgserver:", err)
		os.Exit(1)
	}
	fmt.Println("url", c.URL)
	<-ctx.Done()
	if err := c.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "pgserver:", err)
		os.Exit(1)
	}
}
