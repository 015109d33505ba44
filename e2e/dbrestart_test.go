package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/pgcluster"
)

// TestDatabaseRestart_FastAndImmediate restarts PostgreSQL twice (fast,
// then immediate: a database crash) under a LinkV-like load. During each
// outage giftd must answer 500 quickly, never hang, report not ready, and
// recover by itself; no debit may be lost or doubled.
func TestDatabaseRestart_FastAndImmediate(t *testing.T) {
	ctx := waitCtx(t, 3*time.Minute)
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
	const wallets = 10
	store := seededStore(t, ctx, cluster.URL, wallets, 1000)
	const dbTimeout = time.Second
	srv := newServer(t, cluster.URL, "GIFTD_DB_TIMEOUT="+dbTimeout.String())

	// Clients: each request retried until final; the slowest 500 is kept.
	var slowest500 atomic.Int64
	var stop atomic.Bool
	var mu sync.Mutex
	var reqs []*request
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for c := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				r := &request{id: fmt.Sprintf("restart-%02d-%05d", c, i), user: fmt.Sprint("w", rand.IntN(wallets))}
				r.body = signedForm(r.id, r.user, 1)
				for ctx.Err() == nil {
					t0 := time.Now()
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+srv.public()+"/linkv/debit", strings.NewReader(r.body))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					resp, err := client.Do(req)
					if err != nil {
						t.Errorf("giftd did not answer: %v", err)
						return
					}
					io.Copy(io.Discard, resp.Body) //nolint:errcheck // only the status matters
					resp.Body.Close()
					if resp.StatusCode == http.StatusInternalServerError {
						slowest500.Store(max(slowest500.Load(), int64(time.Since(t0))))
						time.Sleep(20 * time.Millisecond)
						continue
					}
					r.final, r.got200 = resp.StatusCode, resp.StatusCode == http.StatusOK
					break
				}
				mu.Lock()
				reqs = append(reqs, r)
				mu.Unlock()
			}
		}()
	}

	for _, mode := range []string{"fast", "immediate"} {
		time.Sleep(500 * time.Millisecond)
		restarted := make(chan error, 1)
		go func() { restarted <- cluster.Restart(ctx, mode, 1500*time.Millisecond) }()
		// Readiness must turn false during the outage…
		if !eventually(ctx, 3*time.Second, func() bool { return ready(srv) == http.StatusServiceUnavailable }) {
			t.Errorf("%s restart: /readyz never turned false", mode)
		}
		if err := <-restarted; err != nil {
			t.Fatal(err)
		}
		// …and true again once the database is back, with nobody's help.
		if !eventually(ctx, 10*time.Second, func() bool { return ready(srv) == http.StatusOK }) {
			t.Fatalf("%s restart: /readyz did not recover", mode)
		}
	}
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	// "Never hangs": a 500 comes within the deadline plus a margin for a
	// loaded machine (reconnects, -race, two cores), far below the 10 s a
	// stuck request would take to hit the client's timeout.
	if d := time.Duration(slowest500.Load()); d == 0 || d > dbTimeout+5*time.Second {
		t.Errorf("slowest 500 took %s; want some 500s, none slower than the %s deadline plus 5s", d, dbTimeout)
	}
	checkRequests(t, ctx, store, reqs)
	checkBooks(t, ctx, store)
	auditPasses(t, cluster.URL)
}

func ready(s *server) int {
	resp, err := http.Get("http://" + s.admin() + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func eventually(ctx context.Context, within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if cond() {
			return true
		}
		time.Sleep(25 * time.Millisecond)
	}
	return false
}
