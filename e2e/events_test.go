package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"giftd/examples/receiver"
	"giftd/internal/ledger"
	"giftd/internal/pgcluster"
)

// hookReceiver is the example receiver behind a loopback server that can
// be down (answering 503), records every delivery that passed the
// signature (copies too) and the most requests it ever had in flight.
type hookReceiver struct {
	down      atomic.Bool
	inFlight  atomic.Int32
	maxFlight atomic.Int32
	busy      chan struct{} // a value whenever a request is in flight
	mu        sync.Mutex
	arrivals  []receiver.Event // every verified delivery, copies included
	rcv       atomic.Pointer[receiver.Receiver]
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := h.inFlight.Add(1)
	defer h.inFlight.Add(-1)
	for m := h.maxFlight.Load(); n > m && !h.maxFlight.CompareAndSwap(m, n); m = h.maxFlight.Load() {
	}
	select {
	case h.busy <- struct{}{}:
	default:
	}
	if h.down.Load() || h.rcv.Load() == nil {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	time.Sleep(time.Millisecond) // a little work, so that kills land mid-delivery
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	rec := &statusRecorder{ResponseWriter: w}
	h.rcv.Load().ServeHTTP(rec, r)
	if rec.status == http.StatusOK {
		var e receiver.Event
		json.Unmarshal(body, &e) //nolint:errcheck // the receiver decoded it already
		h.mu.Lock()
		h.arrivals = append(h.arrivals, e)
		h.mu.Unlock()
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

// TestEvents_EveryCommittedEventDeliveredInOrderThroughFaults is the
// issue's fault test: under debit load with two delivering replicas, the
// receiver is down (GIFTD_E2E_RECEIVER_DOWN, default 10s; the issue's
// figure, 2m, builds a backlog of ~160k events here: run it with
// go test -timeout 40m), then back; a giftd is killed with -9 mid-delivery twice;
// PostgreSQL restarts. Then every committed event has reached the
// receiver, in position order, copies only with the same webhook-id and
// body; no two requests to the endpoint were ever in flight at once; and
// the pull feed from position 0 equals the ledger, event for event.
func TestEvents_EveryCommittedEventDeliveredInOrderThroughFaults(t *testing.T) {
	downFor := 10 * time.Second
	if v := os.Getenv("GIFTD_E2E_RECEIVER_DOWN"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal("GIFTD_E2E_RECEIVER_DOWN:", err)
		}
		downFor = d
	}
	// Delivery after the outage goes at one request at a time (in order):
	// the backlog of a long outage takes a while to drain.
	ctx := waitCtx(t, 8*time.Minute+8*downFor)
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{Settings: []string{"fsync=off"}})
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Stop() }) //nolint:errcheck // best effort
	if err := ledger.Migrate(cluster.URL); err != nil {
		t.Fatal(err)
	}
	const wallets = 20
	store := seededStore(t, ctx, cluster.URL, wallets, 1_000_000)

	hook := &hookReceiver{busy: make(chan struct{}, 1)}
	hooks := httptest.NewServer(hook)
	t.Cleanup(hooks.Close)
	env := []string{"GIFTD_WEBHOOK_ALLOW_PRIVATE=true", "GIFTD_WEBHOOK_RETRY_BASE=50ms", "GIFTD_WEBHOOK_RETRY_MAX=500ms",
		"GIFTD_WEBHOOK_TIMEOUT=2s", "GIFTD_DB_TIMEOUT=1s"}
	servers := []*server{newServer(t, cluster.URL, env...), newServer(t, cluster.URL, env...)}

	code, body := adminJSON(t, servers[0], http.MethodPost, "/admin/v1/webhooks", `{"url":"`+hooks.URL+`/giftd"}`)
	if code != http.StatusCreated {
		t.Fatalf("create endpoint: %d %s", code, body)
	}
	var ep struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
		Cursor int64  `json:"cursor"`
	}
	if err := json.Unmarshal(body, &ep); err != nil {
		t.Fatal(err)
	}
	rcv, err := receiver.New([]string{ep.Secret}, func(receiver.Event) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	hook.rcv.Store(rcv)

	// Debit load through both replicas, each request retried (on either)
	// until it has a final answer.
	var stop atomic.Bool
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	var debited atomic.Int64
	for c := range 8 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("ev-%02d-%05d", c, i)
				form := signedForm(id, fmt.Sprint("w", rand.IntN(wallets)), 1)
				for try := 0; ctx.Err() == nil; try++ {
					resp, err := client.Post("http://"+servers[(c+try)%2].public()+"/linkv/debit", "application/x-www-form-urlencoded", strings.NewReader(form))
					if err == nil {
						io.Copy(io.Discard, resp.Body) //nolint:errcheck // the status says it
						resp.Body.Close()
						if resp.StatusCode == http.StatusOK {
							debited.Add(1)
							break
						}
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	waitDebits := func(n int64) {
		t.Helper()
		for start := debited.Load(); debited.Load() < start+n; {
			if ctx.Err() != nil {
				t.Fatal("debits stopped")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitDebits(50)

	// 1. The receiver is down, then back.
	hook.down.Store(true)
	t.Logf("receiver down for %s", downFor)
	time.Sleep(downFor)
	hook.down.Store(false)
	waitDebits(50)

	// 2. kill -9 mid-delivery, twice (one replica, then the other), each
	// started again.
	for i := range 2 {
		select {
		case <-hook.busy: // stale
		default:
		}
		select {
		case <-hook.busy:
		case <-ctx.Done():
			t.Fatal("no delivery in flight")
		}
		servers[i].kill()
		t.Logf("killed replica %d mid-delivery", i)
		waitDebits(30)
		servers[i].start()
	}

	// 3. PostgreSQL restarts.
	if err := cluster.Restart(ctx, "fast", 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitDebits(50)
	stop.Store(true)
	wg.Wait()

	// Every committed event of the endpoint reaches the receiver.
	var want []receiver.Event
	rows, err := store.Pool().Query(ctx, `SELECT id::text, position, type FROM events WHERE position > $1 ORDER BY position`, ep.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var e receiver.Event
		if err := rows.Scan(&e.ID, &e.Position, &e.Type); err != nil {
			t.Fatal(err)
		}
		want = append(want, e)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	t.Logf("%d debits; %d events for the endpoint", debited.Load(), len(want))
	// Wait while delivery makes progress: under -race on a loaded machine
	// it can be slow, but it must never stop short.
	var firsts []receiver.Event
	progressed, last := time.Now(), 0
	for {
		hook.mu.Lock()
		seen := map[string]bool{}
		firsts = firsts[:0]
		for _, a := range hook.arrivals {
			if !seen[a.ID] {
				seen[a.ID] = true
				firsts = append(firsts, a)
			}
		}
		copies := len(hook.arrivals) - len(firsts)
		hook.mu.Unlock()
		if len(firsts) > last {
			progressed, last = time.Now(), len(firsts)
		}
		if len(firsts) >= len(want) || time.Since(progressed) > 30*time.Second || ctx.Err() != nil {
			t.Logf("%d deliveries, %d of them copies", len(firsts)+copies, copies)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(firsts) != len(want) {
		got := map[string]bool{}
		for _, f := range firsts {
			got[f.ID] = true
		}
		for _, w := range want {
			if !got[w.ID] {
				t.Errorf("never delivered: position %d (%s)", w.Position, w.Type)
			}
		}
		for _, s := range servers {
			code, body := adminJSON(t, s, http.MethodGet, "/admin/v1/webhooks/"+ep.ID, "")
			t.Logf("endpoint as %s sees it: %d %s", s.admin(), code, body)
			code, body = adminJSON(t, s, http.MethodGet, fmt.Sprintf("/admin/v1/events?after=%d&limit=1", want[len(want)-1].Position), "")
			t.Logf("feed's horizon at %s: %d %s", s.admin(), code, body)
		}
		var snap string
		store.Pool().QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&snap) //nolint:errcheck // diagnostics
		t.Logf("snapshot now %s", snap)
		t.Fatalf("the receiver has %d distinct events, want %d", len(firsts), len(want))
	}
	for i := range want {
		if firsts[i].ID != want[i].ID || firsts[i].Position != want[i].Position || firsts[i].Type != want[i].Type {
			t.Fatalf("delivery %d: %s at %d (%s), want %s at %d (%s): out of order or not the ledger's",
				i, firsts[i].ID, firsts[i].Position, firsts[i].Type, want[i].ID, want[i].Position, want[i].Type)
		}
	}
	// Copies only with the same webhook-id: one id per position, one
	// position and body per id.
	hook.mu.Lock()
	byID := map[string]receiver.Event{}
	for _, a := range hook.arrivals {
		if b, ok := byID[a.ID]; ok && (b.Position != a.Position || string(b.Data) != string(a.Data)) {
			t.Errorf("webhook-id %s delivered as position %d and as %d, or with another body", a.ID, b.Position, a.Position)
		}
		byID[a.ID] = a
	}
	hook.mu.Unlock()
	if m := hook.maxFlight.Load(); m > 1 {
		t.Errorf("%d requests to the one endpoint were in flight at once; want one at a time", m)
	}
	feedEqualsLedger(t, ctx, store, servers[0])
	checkBooks(t, ctx, store)
}

// adminJSON sends an admin request to s and returns the status and body.
func adminJSON(t *testing.T, s *server, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+s.admin()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// feedEqualsLedger reads the feed from position 0 and holds it to the
// ledger: one event per ledger entry and payout, of its type, and nothing
// else.
func feedEqualsLedger(t *testing.T, ctx context.Context, store *ledger.Store, s *server) {
	t.Helper()
	type key struct {
		typ   string
		entry int64
	}
	want := map[key]bool{}
	rows, err := store.Pool().Query(ctx, `
		SELECT CASE kind WHEN 'debit' THEN 'gift.debited' WHEN 'topup' THEN 'wallet.topped_up' ELSE 'debit.reversed' END, id
		FROM ledger_entries
		UNION ALL SELECT 'earnings.paid_out', id FROM account_entries WHERE kind = 'payout'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.typ, &k.entry); err != nil {
			t.Fatal(err)
		}
		want[k] = true
	}
	// Read up to the last position written. An empty page is not the end:
	// the feed holds back events while an older transaction is still open
	// (docs/events.md), so an empty page long-polls again.
	var last int64
	if err := store.Pool().QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM events`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	var after int64
	got := 0
	for after < last {
		if ctx.Err() != nil {
			t.Fatalf("feed: stuck after position %d of %d", after, last)
		}
		code, body := adminJSON(t, s, http.MethodGet, fmt.Sprintf("/admin/v1/events?after=%d&limit=500&wait=5", after), "")
		var page struct {
			Events []struct {
				Position int64  `json:"position"`
				Type     string `json:"type"`
				Data     struct {
					EntryID int64 `json:"entry_id"`
				} `json:"data"`
			} `json:"events"`
			NextAfter int64 `json:"next_after"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &page) != nil {
			t.Fatalf("feed: %d %s", code, body)
		}
		for _, e := range page.Events {
			k := key{e.Type, e.Data.EntryID}
			if !want[k] {
				t.Errorf("feed position %d: %s of entry %d is not in the ledger, or a second event of it", e.Position, k.typ, k.entry)
			}
			delete(want, k)
			got++
		}
		after = max(after, page.NextAfter)
	}
	if len(want) > 0 {
		t.Errorf("%d ledger entries have no event in the feed (of %d events)", len(want), got)
	}
}
