package webhook_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/ledger"
	"giftd/internal/pgtest"
	"giftd/internal/webhook"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(t *testing.T, url string, opts ...ledger.Option) *ledger.Store {
	t.Helper()
	s, err := ledger.Open(context.Background(), url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func topUp(t *testing.T, s *ledger.Store, key string) {
	t.Helper()
	if _, err := s.TopUp(context.Background(), ledger.TopUp{UserID: "u", Amount: 1, Key: key}); err != nil {
		t.Fatal(err)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestDeliver_DeadLetterThenRedeliverKeepsOrder: an endpoint that fails
// past the dead-letter time stops; redeliver resumes from its cursor and
// nothing is skipped.
func TestDeliver_DeadLetterThenRedeliverKeepsOrder(t *testing.T) {
	url := pgtest.URL(t)
	store := open(t, url)
	ctx := context.Background()
	var mu sync.Mutex
	up := false
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if !up {
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("\x00garbage")) //nolint:errcheck // garbage on purpose
			return
		}
		got = append(got, r.Header.Get("webhook-id"))
	}))
	defer srv.Close()
	ep, err := store.CreateEndpoint(ctx, ledger.Endpoint{ID: "ep_t", URL: srv.URL, EventTypes: []string{}, Enabled: true,
		Secrets: []string{webhook.NewSecret()}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		topUp(t, store, fmt.Sprint("k", i))
	}
	cfg := webhook.DefaultConfig()
	cfg.AllowPrivate, cfg.RetryBase, cfg.RetryMax, cfg.DeadAfter = true, time.Millisecond, time.Millisecond, time.Millisecond
	d := webhook.New(store, cfg, prometheus.NewRegistry(), quiet())
	// Fail until the endpoint is dead; each Once is one attempt.
	for {
		if _, err := d.Once(ctx); err != nil {
			t.Fatal(err)
		}
		e, err := store.Endpoint(ctx, ep.ID)
		if err != nil {
			t.Fatal(err)
		}
		if e.State == "dead" {
			if e.Cursor != ep.Cursor || e.LastError != "answered 502" {
				t.Fatalf("dead endpoint %+v: want its cursor unmoved and the last error", e)
			}
			break
		}
	}
	// Dead: nothing is claimed.
	mu.Lock()
	up = true
	mu.Unlock()
	if busy, err := d.Once(ctx); busy || err != nil {
		t.Fatalf("a dead endpoint was delivered to (%v, %v)", busy, err)
	}
	if _, err := store.Redeliver(ctx, ep.ID, 0); err != nil {
		t.Fatal(err)
	}
	for busy := true; busy; {
		if busy, err = d.Once(ctx); err != nil {
			t.Fatal(err)
		}
	}
	evs, _, err := store.Events(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || len(evs) != 3 {
		t.Fatalf("delivered %v of events %v", got, evs)
	}
	for i := range evs {
		if got[i] != evs[i].ID {
			t.Errorf("delivery %d: %s, want %s", i, got[i], evs[i].ID)
		}
	}
}

// TestDeliver_StuckEndpointsNeverBlockDebits: every delivery worker is
// stuck in endpoints that never answer, and one URL points nowhere; debits
// and their events go on, on the debits' own pool.
func TestDeliver_StuckEndpointsNeverBlockDebits(t *testing.T) {
	url := pgtest.URL(t)
	store := open(t, url, pgtest.StoreOptions()...)
	delivery := open(t, url, ledger.WithBatching(ledger.Batching{MaxBatch: 1}), ledger.WithMaxConns(3))
	ctx := context.Background()
	release := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer stuck.Close()
	for i, u := range []string{stuck.URL + "/a", stuck.URL + "/b", "http://127.0.0.1:1/nowhere"} {
		if _, err := store.CreateEndpoint(ctx, ledger.Endpoint{ID: fmt.Sprint("ep_", i), URL: u, EventTypes: []string{},
			Enabled: true, Secrets: []string{webhook.NewSecret()}}); err != nil {
			t.Fatal(err)
		}
	}
	topUp(t, store, "seed")
	cfg := webhook.DefaultConfig()
	cfg.Workers, cfg.AllowPrivate, cfg.Timeout = 2, true, time.Minute
	dctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { webhook.New(delivery, cfg, prometheus.NewRegistry(), quiet()).Run(dctx); close(done) }()
	defer func() { stop(); close(release); <-done }()
	if _, err := store.TopUp(ctx, ledger.TopUp{UserID: "viewer", Amount: 1000, Key: "v"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			res, err := store.Debit(dctx, ledger.Debit{Key: ledger.DebitKey{Platform: "linkv", AppID: "a", RequestID: fmt.Sprint(i)},
				UserID: "viewer", Gold: 1, ExpiresAt: time.Now().Add(time.Hour)})
			if err != nil || res.Status != ledger.Debited {
				t.Errorf("debit %d: %+v %v", i, res, err)
			}
		})
	}
	wg.Wait()
	// Every debit's event is in the feed (which lags a call behind).
	for deadline := time.Now().Add(10 * time.Second); ; {
		evs, _, err := store.Events(ctx, 0, 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 102 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events in the feed, want 102", len(evs))
		}
	}
}

// TestBackoff_DoublesToTheMaxJitteredAndNeverOverflows: an endpoint down
// for hours fails thousands of times; the wait stays within [max/2, max]
// (a shift of RetryBase overflowed into a negative wait after ~38 failures
// at 50 ms, and rand.N panicked: giftd crashed).
func TestBackoff_DoublesToTheMaxJitteredAndNeverOverflows(t *testing.T) {
	cfg := webhook.DefaultConfig()
	cfg.RetryBase, cfg.RetryMax = 50*time.Millisecond, 500*time.Millisecond
	d := webhook.New(nil, cfg, prometheus.NewRegistry(), quiet())
	for attempts := 1; attempts <= 5000; attempts++ {
		want := min(cfg.RetryMax, cfg.RetryBase<<min(attempts-1, 4))
		if b := webhook.Backoff(d, attempts); b < want/2 || b > want {
			t.Fatalf("attempt %d: waits %s, want %s to %s", attempts, b, want/2, want)
		}
	}
}
