package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/pgtest"
)

// postLinkV sends one LinkV debit, retrying on 500 or no answer as LinkV's SDK
// does, and returns the final status and body.
func postLinkV(ctx context.Context, c *http.Client, s *server, body string) (int, string) {
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.public()+"/linkv/debit", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusInternalServerError {
				return resp.StatusCode, string(b)
			}
		}
		time.Sleep(time.Duration(10+rand.IntN(40)) * time.Millisecond)
	}
	return 0, ""
}

// debitedBy returns each sender's total debited gold.
func debitedBy(t *testing.T, ctx context.Context, store *ledger.Store) map[string]int64 {
	t.Helper()
	rows, err := store.Pool().Query(ctx, `SELECT user_id, -sum(amount)::bigint FROM ledger_entries WHERE kind = 'debit' GROUP BY user_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var u string
		var g int64
		if err := rows.Scan(&u, &g); err != nil {
			t.Fatal(err)
		}
		out[u] = g
	}
	return out
}

// TestSafeguards_LoadAtTheCapNeverExceedsIt is the concurrency
// test: 64 connections send 10,000 gifts of a few senders against a 24 h
// cap. No sender is ever debited above the cap, every refused gift is
// answered 403 naming the cap, every replay is identical, and the audit
// passes.
func TestSafeguards_LoadAtTheCapNeverExceedsIt(t *testing.T) {
	const senders, capGold, gifts, conns = 4, 5000, 10_000, 64
	dbURL := pgtest.URL(t)
	ctx := waitCtx(t, 4*time.Minute)
	store := seededStore(t, ctx, dbURL, senders, 1_000_000)
	srv := newServer(t, dbURL, "GIFTD_SAFEGUARDS=on", fmt.Sprint("GIFTD_CAP_24H=", capGold))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns}}
	type sent struct {
		body, answer string
		gold         int64
		code         int
	}
	all := make([]sent, gifts)
	for i := range all {
		g := int64(1 + rand.IntN(9))
		all[i] = sent{body: signedForm(fmt.Sprintf("cap-%05d", i), fmt.Sprint("w", i%senders), g), gold: g}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < gifts; i = next.Add(1) - 1 {
				all[i].code, all[i].answer = postLinkV(ctx, client, srv, all[i].body)
			}
		}()
	}
	wg.Wait()
	var ok, refused int
	for i, s := range all {
		switch {
		case s.code == 200:
			ok++
		case s.code == 403 && strings.Contains(s.answer, "refused by policy cap_24h: over the limit of 5000 gold per 24 hours; resets at "):
			refused++
		default:
			t.Fatalf("gift %d: %d %s, want 200 or 403 naming the cap", i, s.code, s.answer)
		}
	}
	for u, g := range debitedBy(t, ctx, store) {
		if g > capGold || g < capGold-9 {
			t.Errorf("%s debited %d, want at most the cap %d (and within a gift of it)", u, g, capGold)
		}
	}
	t.Logf("%d gifts: %d debited, %d refused by the cap", gifts, ok, refused)
	// Replays of every seventh gift, in parallel too: each the first
	// answer, byte for byte.
	next.Store(0)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := next.Add(1) - 1; j*7 < gifts; j = next.Add(1) - 1 {
				i := j * 7
				if code, answer := postLinkV(ctx, client, srv, all[i].body); code != all[i].code || answer != all[i].answer {
					t.Errorf("gift %d replayed %d %s, first %d %s", i, code, answer, all[i].code, all[i].answer)
				}
			}
		}()
	}
	wg.Wait()
	checkBooks(t, ctx, store)
	auditPasses(t, dbURL)
}

// TestCrash_KillNineUnderLoadWithCapsInForce kills giftd with SIGKILL three
// times under load against a 24 h cap while LinkV-like clients retry: no
// sender is ever debited above the cap, a request answered 200 is debited
// exactly once, one finally refused (403 or 402) not at all.
func TestCrash_KillNineUnderLoadWithCapsInForce(t *testing.T) {
	const wallets, capGold = 8, 100
	dbURL := pgtest.URL(t)
	ctx := waitCtx(t, 3*time.Minute)
	store := seededStore(t, ctx, dbURL, wallets, 1_000_000)
	srv := newServer(t, dbURL, "GIFTD_SAFEGUARDS=on", fmt.Sprint("GIFTD_CAP_24H=", capGold))
	client := &http.Client{Timeout: 5 * time.Second}
	type req struct {
		id     string
		final  int
		answer string
	}
	var (
		mu        sync.Mutex
		reqs      []*req
		stop      atomic.Bool
		finals    atomic.Int64
		afterLast atomic.Int64
		restarted atomic.Bool
		wg        sync.WaitGroup
	)
	for c := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load() && ctx.Err() == nil; i++ {
				r := &req{id: fmt.Sprintf("capcrash-%02d-%05d", c, i)}
				body := signedForm(r.id, fmt.Sprint("w", rand.IntN(wallets)), int64(1+rand.IntN(5)))
				mu.Lock()
				reqs = append(reqs, r)
				mu.Unlock()
				r.final, r.answer = postLinkV(ctx, client, srv, body)
				finals.Add(1)
				if restarted.Load() {
					afterLast.Add(1)
				}
			}
		}()
	}
	for kill := range 3 {
		since, want := finals.Load(), int64(50+rand.IntN(150))
		if !eventually(ctx, time.Minute, func() bool { return finals.Load() >= since+want }) {
			t.Fatalf("crash %d: clients answered %d requests in a minute, want %d", kill+1, finals.Load()-since, want)
		}
		srv.kill()
		srv.start()
	}
	restarted.Store(true)
	if !eventually(ctx, time.Minute, func() bool { return afterLast.Load() >= 100 }) {
		t.Errorf("only %d requests answered after the last restart", afterLast.Load())
	}
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	entries := map[string]int{}
	rows, err := store.Pool().Query(ctx, `SELECT ref, count(*) FROM ledger_entries WHERE kind = 'debit' GROUP BY ref`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var ref string
		var n int
		if err := rows.Scan(&ref, &n); err != nil {
			t.Fatal(err)
		}
		entries[ref] = n
	}
	rows.Close()
	counts := map[int]int{}
	for _, r := range reqs {
		counts[r.final]++
		switch e := entries[r.id]; {
		case e > 1:
			t.Errorf("%s debited %d times", r.id, e)
		case r.final == 200 && e != 1:
			t.Errorf("%s answered 200 with %d debits", r.id, e)
		case r.final == 403 && (e != 0 || !strings.Contains(r.answer, "cap_24h")):
			t.Errorf("%s refused (%s) with %d debits", r.id, r.answer, e)
		case r.final != 200 && r.final != 403:
			t.Errorf("%s ended with %d %s, want 200 or 403", r.id, r.final, r.answer)
		}
	}
	t.Logf("final answers: %v", counts)
	for u, g := range debitedBy(t, ctx, store) {
		if g > capGold {
			t.Errorf("%s debited %d, above the cap %d", u, g, capGold)
		}
	}
	checkBooks(t, ctx, store)
	auditPasses(t, dbURL)
}
