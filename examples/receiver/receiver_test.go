package receiver_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
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
	deliver := func(id string, ts int64, secrets []string, body string) int {
		sig, err := webhook.Signature(secrets, id, ts, []byte(body))
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
	body := `{"id":"e1","type":"gift.debited","position":1,"timestamp":"2026-11-30T00:00:00Z","data":{}}`
	for _, c := range []struct {
		name    string
		id      string
		ts      int64
		secrets []string
		body    string
		want    int
	}{
		{"signed during a rotation (old and new)", "e1", now, []string{old, cur}, body, 200},
		{"a copy", "e1", now, []string{cur}, body, 200},
		{"signed with another secret", "e1", now, []string{old}, body, 401},
		{"too old", "e1", now - 3600, []string{cur}, body, 401},
		{"body changed after signing", "e2", now, []string{cur}, `{"id":"e2"}`, 200},
	} {
		code := deliver(c.id, c.ts, c.secrets, c.body)
		if c.name == "body changed after signing" {
			sig, _ := webhook.Signature([]string{cur}, "e2", now, []byte(`{"id":"e2","x":1}`))
			req := httptest.NewRequest(http.MethodPost, "/", bytes.NewBufferString(`{"id":"e2","x":2}`))
			req.Header.Set("webhook-id", "e2")
			req.Header.Set("webhook-timestamp", strconv.FormatInt(now, 10))
			req.Header.Set("webhook-signature", sig)
			w := httptest.NewRecorder()
			r.ServeHTTP(w, req)
			code, c.want = w.Code, 401
		}
		if code != c.want {
			t.Errorf("%s: %d, want %d", c.name, code, c.want)
		}
	}
	if len(got) != 2 || got[0] != "e1" || got[1] != "e2" {
		t.Errorf("handled %v, want [e1 e2]: each once", got)
	}
}
