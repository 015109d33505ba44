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

// TestSoak runs only when GIFTD_SOAK is a duration (bench/soak sets 10m):
// LinkV-like load on three replicas sharing one PostgreSQL, with a fault
// every minute in turn — a replica killed with SIGKILL and restarted,
// PostgreSQL restarted fast, a replica lost for 20 s, PostgreSQL restarted
// immediate — then every request is checked against the ledger.
func TestSoak(t *testing.T) {
	total, err := time.ParseDuration(os.Getenv("GIFTD_SOAK"))
	if err != nil {
		t.Skip("set GIFTD_SOAK=10m (bench/soak) to run the soak")
	}
	ctx := waitCtx(t, total+5*time.Minute)
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Stop() }) //nolint:errcheck // best effort
	if err := ledger.Migrate(cluster.URL); err != nil {
		t.Fatal(err)
	}
	store, err := ledger.Open(ctx, cluster.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	const wallets = 50
	for w := range wallets {
		amount := int64(1_000_000)
		if w%10 == 0 {
			amount = 500 // a few poor wallets keep 402s in the mix
		}
		if _, err := store.TopUp(ctx, ledger.TopUp{UserID: fmt.Sprint("w", w), Amount: amount, Key: fmt.Sprint("seed", w)}); err != nil {
			t.Fatal(err)
		}
	}
	replicas := []*server{newServer(t, cluster.URL), newServer(t, cluster.URL), newServer(t, cluster.URL)}
	var down [3]atomic.Bool

	var attempts, fivehundreds, unanswered atomic.Int64
	var mu sync.Mutex
	var reqs []*request
	var stop atomic.Bool
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for c := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				r := &request{id: fmt.Sprintf("soak-%02d-%07d", c, i), user: fmt.Sprint("w", rand.IntN(wallets))}
				r.body = signedForm(r.id, r.user, 1)
				for ctx.Err() == nil {
					s := replicas[rand.IntN(len(replicas))]
					attempts.Add(1)
					resp, err := client.Post("http://"+s.public()+"/linkv/debit", "application/x-www-form-urlencoded", strings.NewReader(r.body))
					if err != nil {
						unanswered.Add(1)
						time.Sleep(20 * time.Millisecond)
						continue
					}
					io.Copy(io.Discard, resp.Body) //nolint:errcheck // only the status matters
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						r.got200 = true
					}
					if resp.StatusCode == http.StatusInternalServerError {
						fivehundreds.Add(1)
						time.Sleep(20 * time.Millisecond)
						continue
					}
					r.final = resp.StatusCode
					break
				}
				mu.Lock()
				reqs = append(reqs, r)
				mu.Unlock()
			}
		}()
	}

	faults := []struct {
		name string
		do   func() error
	}{
		{"replica 0 killed (SIGKILL) and restarted", func() error { replicas[0].kill(); replicas[0].start(); return nil }},
		{"PostgreSQL restarted (fast, 2s down)", func() error { return cluster.Restart(ctx, "fast", 2*time.Second) }},
		{"replica 1 lost for 20s", func() error {
			down[1].Store(true)
			replicas[1].kill()
			time.Sleep(20 * time.Second)
			replicas[1].start()
			down[1].Store(false)
			return nil
		}},
		{"PostgreSQL crashed (immediate, 2s down)", func() error { return cluster.Restart(ctx, "immediate", 2*time.Second) }},
	}
	start := time.Now()
	report := func(what string) {
		mu.Lock()
		n := len(reqs)
		mu.Unlock()
		t.Logf("%6s  %-42s requests %7d  attempts %7d  500s %5d  no answer %5d",
			time.Since(start).Round(time.Second), what, n, attempts.Load(), fivehundreds.Load(), unanswered.Load())
	}
	for minute := 0; time.Since(start) < total; minute++ {
		time.Sleep(min(time.Minute, total-time.Since(start)))
		if time.Since(start) >= total {
			break
		}
		f := faults[minute%len(faults)]
		if err := f.do(); err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		report(f.name)
	}
	stop.Store(true)
	wg.Wait()
	report("end")
	t.Logf("requests %d, attempts %d (retries %d), 500s %d, unanswered attempts %d",
		len(reqs), attempts.Load(), attempts.Load()-int64(len(reqs)), fivehundreds.Load(), unanswered.Load())
	checkRequests(t, context.Background(), store, reqs)
	checkBooks(t, context.Background(), store)
	if !t.Failed() {
		t.Log("invariant holds: every request debited at most once, every 200 exactly once, money conserved")
	}
}
