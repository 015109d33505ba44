package receiver_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"giftd/examples/receiver"
	"giftd/internal/webhook"
)

// TestReceiver_VerifiesGiftdsSignatureAndDropsCopies signs deliveries as
// giftd does and checks what the example receiver makes of them.
func TestReceiver_VerifiesGiftdsSignatureAndDropsCopies(t *testing.T) {
	old, cur := webhook.NewSecret(), webhook.NewSecret()
	var got []string
	r, err := receiver.New([]string{cur}, func(e receiver.Event) error { got = append(got, e.ID); return nil })
	if err != nil {
		t.Fatal(err)
	}
	// deliver signs signed as giftd does and sends body (a tampered one
	// when they differ).
	deliver := func(id string, ts int64, secrets []string, signed, body string) int {
		sig, err := webhook.Signature(secrets, id, ts, []byte(signed))
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewBufferString(body))
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
		req.Header.Set("webhook-signature", sig)
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		return w.Code
	}
	now := time.Now().Unix()
	e1 := `{"id":"e1","type":"gift.debited","position":1,"timestamp":"2026-11-30T00:00:00Z","data":{}}`
	e2 := `{"id":"e2","type":"gift.debited","position":2,"timestamp":"2026-11-30T00:00:00Z","data":{"gold":10}}`
	for _, c := range []struct {
		name         string
		id           string
		ts           int64
		secrets      []string
		signed, body string
		want         int
	}{
		{"signed during a rotation (old and new)", "e1", now, []string{old, cur}, e1, e1, 200},
		{"a copy", "e1", now, []string{cur}, e1, e1, 200},
		{"signed with another secret", "e1", now, []string{old}, e1, e1, 401},
		{"too old", "e1", now - 3600, []string{cur}, e1, e1, 401},
		{"body changed after signing", "e2", now, []string{cur}, e2, strings.Replace(e2, "10", "1000", 1), 401},
		{"the next event", "e2", now, []string{cur}, e2, e2, 200},
	} {
		if code := deliver(c.id, c.ts, c.secrets, c.signed, c.body); code != c.want {
			t.Errorf("%s: %d, want %d", c.name, code, c.want)
		}
	}
	if len(got) != 2 || got[0] != "e1" || got[1] != "e2" {
		t.Errorf("handled %v, want [e1 e2]: each once", got)
	}
}
