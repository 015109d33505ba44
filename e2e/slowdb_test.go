package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"giftd/internal/pgtest"
)

// TestSlowDatabase_LockWaitsCutAndPoolKeepsMoving holds a wallet's row lock
// for two seconds while 40 LinkV clients hammer a giftd whose pool has 2
// connections (20× fewer than the requests in flight) and whose database
// deadline is 500 ms. Debits stuck behind the lock must be answered 500,
// nothing half-done, and everything must finish once it is released.
func TestSlowDatabase_LockWaitsCutAndPoolKeepsMoving(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := waitCtx(t, 2*time.Minute)
	const wallets = 10
	store := seededStore(t, ctx, dbURL, wallets, 1000)
	sep := "?"
	if strings.Contains(dbURL, "?") {
		sep = "&"
	}
	srv := newServer(t, dbURL+sep+"pool_max_conns=2", "GIFTD_DB_TIMEOUT=500ms")

	blocker, err := store.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blocker.Exec(ctx, `SELECT gold FROM wallets WHERE user_id = 'w0' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	released := time.AfterFunc(2*time.Second, func() { blocker.Rollback(ctx) }) //nolint:errcheck // ends the lock
	defer released.Stop()

	var mu sync.Mutex
	var reqs []*request
	fivehundreds := 0
	var wg sync.WaitGroup
	start := time.Now()
	for c := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				r := &request{id: fmt.Sprintf("slow-%02d-%02d", c, i), user: fmt.Sprint("w", rand.IntN(wallets))}
				r.body = signedForm(r.id, r.user, 1)
				for attempt := 0; ctx.Err() == nil; attempt++ {
					resp, err := http.Post("http://"+srv.public()+"/linkv/debit", "application/x-www-form-urlencoded", strings.NewReader(r.body))
					if err != nil {
						t.Errorf("no answer: %v", err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusInternalServerError {
						r.final, r.got200 = resp.StatusCode, resp.StatusCode == http.StatusOK
						break
					}
					mu.Lock()
					fivehundreds++
					mu.Unlock()
					time.Sleep(50 * time.Millisecond)
				}
				mu.Lock()
				reqs = append(reqs, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("1200 requests in %s, %d answers of 500 on the way", time.Since(start).Round(time.Millisecond), fivehundreds)
	if fivehundreds == 0 {
		t.Error("no debit was cut by the deadline while the wallet was locked")
	}
	checkRequests(t, ctx, store, reqs)
	checkBooks(t, ctx, store)
	auditPasses(t, dbURL)
}
