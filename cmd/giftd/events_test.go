package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"giftd/examples/receiver"
)

// webhookEnv lets giftd deliver to the tests' loopback receivers, and
// retry at once.
var webhookEnv = map[string]string{
	"GIFTD_WEBHOOK_ALLOW_PRIVATE": "true",
	"GIFTD_WEBHOOK_RETRY_BASE":    "10ms",
	"GIFTD_WEBHOOK_RETRY_MAX":     "50ms",
}

// testReceiver is the example receiver behind a loopback server that
// fails its first failFirst requests; events are what it handled, in order.
type testReceiver struct {
	URL    string
	mu     sync.Mutex
	events []receiver.Event
	got    chan struct{} // a value per event handled
	rcv    atomic.Pointer[receiver.Receiver]
}

func startReceiver(t *testing.T, failFirst int32) *testReceiver {
	t.Helper()
	r := &testReceiver{got: make(chan struct{}, 100000)}
	var fails atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if fails.Add(1) <= failFirst {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		rcv := r.rcv.Load()
		if rcv == nil {
			http.Error(w, "no secret yet", http.StatusServiceUnavailable)
			return
		}
		rcv.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// register makes an endpoint for r in giftd and gives r its secret.
func (r *testReceiver) register(t *testing.T, admin string) string {
	t.Helper()
	code, m := adminCall(t, admin, http.MethodPost, "/admin/v1/webhooks", e2eToken, `{"url":"`+r.URL+`/hook"}`)
	if code != http.StatusCreated {
		t.Fatalf("create endpoint: %d %v", code, m)
	}
	rcv, err := receiver.New([]string{m["secret"].(string)}, func(e receiver.Event) error {
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
		r.got <- struct{}{}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.rcv.Store(rcv)
	return m["id"].(string)
}

// waitFor waits until r has handled n events.
func (r *testReceiver) waitFor(t *testing.T, n int) []receiver.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		have := len(r.events)
		r.mu.Unlock()
		if have >= n {
			r.mu.Lock()
			defer r.mu.Unlock()
			return append([]receiver.Event(nil), r.events...)
		}
		select {
		case <-r.got:
		case <-timeout:
			t.Fatalf("the receiver has %d events after 30 s, want %d", have, n)
		}
	}
}

type feedEvent struct {
	Position int64           `json:"position"`
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Data     json.RawMessage `json:"data"`
}

// readFeed reads the pull feed from position 0 until it has n events.
func readFeed(t *testing.T, admin string, n int) []feedEvent {
	t.Helper()
	var all []feedEvent
	var after int64
	deadline := time.Now().Add(30 * time.Second)
	for len(all) < n && time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/admin/v1/events?after=%d&limit=7&wait=2", admin, after), nil)
		req.Header.Set("Authorization", "Bearer "+e2eToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Events    []feedEvent `json:"events"`
			NextAfter int64       `json:"next_after"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("feed: %d %v", resp.StatusCode, err)
		}
		all, after = append(all, page.Events...), page.NextAfter
	}
	if len(all) != n {
		t.Fatalf("feed has %d events, want %d", len(all), n)
	}
	return all
}

func TestServe_WebhooksDeliverEveryEventInOrderSignedAndTheFeedAgrees(t *testing.T) {
	s := startServe(t, webhookEnv)
	rcv := startReceiver(t, 3) // its first three requests fail: retries
	rcv.register(t, s.admin)
	topUpWallet(t, s.admin, "viewer", 1000)
	exp := time.Now().Add(time.Hour).Unix()
	for i := range 5 {
		if code, body := postDebit(t, s.public, debitFields(fmt.Sprint("wh-", i), "viewer", 10, exp, e2eSecret)); code != 200 {
			t.Fatalf("debit %d: %d %s", i, code, body)
		}
	}
	postDebit(t, s.public, debitFields("wh-0", "viewer", 10, exp, e2eSecret)) // a replay: no event
	code, m := adminCall(t, s.admin, http.MethodPost, "/admin/v1/debits/wh-1/reversal", e2eToken,
		`{"platform":"linkv","app_id":"app1","idempotency_key":"rev-1"}`)
	if code != http.StatusOK {
		t.Fatalf("reversal: %d %v", code, m)
	}
	const n = 7 // a top-up, five gifts, a reversal
	got := rcv.waitFor(t, n)
	feed := readFeed(t, s.admin, n)
	wantTypes := []string{"wallet.topped_up", "gift.debited", "gift.debited", "gift.debited", "gift.debited", "gift.debited", "debit.reversed"}
	for i := range n {
		if got[i].ID != feed[i].ID || got[i].Position != feed[i].Position || got[i].Type != wantTypes[i] || feed[i].Type != wantTypes[i] {
			t.Errorf("event %d: delivered %s %d %s, feed %s %d %s, want type %s", i, got[i].ID, got[i].Position, got[i].Type,
				feed[i].ID, feed[i].Position, feed[i].Type, wantTypes[i])
		}
	}
	if len(got) != n {
		t.Errorf("delivered %d events, want %d", len(got), n)
	}
	metrics := scrape(t, s.admin)
	for _, want := range []string{"giftd_webhook_delivered_total", "giftd_webhook_failures_total", "giftd_webhook_retries_total"} {
		if !strings.Contains(metrics, want+"{endpoint=\"ep_") {
			t.Errorf("metrics lack %s by endpoint", want)
		}
	}
}
