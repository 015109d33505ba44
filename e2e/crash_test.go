package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/pgtest"
)

// linkvClient plays LinkV: it sends one request until it gets an answer
// other than 500 (or no answer), with the same request_id and sign, as
// LinkV's SDK does.
type linkvClient struct {
	http *http.Client
}

// send returns the final status and whether any attempt got a 200.
func (c linkvClient) send(ctx context.Context, s *server, body string) (final int, got200 bool) {
	return c.sendTo(ctx, func() *server { return s }, body)
}

// sendTo is send with each attempt sent to the server pick returns (LinkV
// behind a load balancer in front of replicas).
func (c linkvClient) sendTo(ctx context.Context, pick func() *server, body string) (final int, got200 bool) {
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+pick().public()+"/linkv/debit", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.http.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body) //nolint:errcheck // only the status matters
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				got200 = true
			}
			if resp.StatusCode != http.StatusInternalServerError {
				return resp.StatusCode, got200
			}
		}
		time.Sleep(time.Duration(10+rand.IntN(40)) * time.Millisecond)
	}
	return 0, got200
}

type request struct {
	id, user, body string
	final          int
	got200         bool
}

// TestCrash_KillNineNeverLosesOrDoublesADebit kills giftd with SIGKILL at
// random moments under load while LinkV-like clients retry, then checks
// every request against the ledger. The clients keep sending new requests
// until the third restart has served some of them, so the test holds on a
// machine of any speed.
func TestCrash_KillNineNeverLosesOrDoublesADebit(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := waitCtx(t, 3*time.Minute)
	const wallets, perWallet = 20, 10 // 200 gold for debits of 1: past that, 402s
	store := seededStore(t, ctx, dbURL, wallets, perWallet)

	srv := newServer(t, dbURL)
	client := linkvClient{&http.Client{Timeout: 5 * time.Second}}
	var (
		mu        sync.Mutex
		reqs      []*request
		stop      atomic.Bool
		finals    atomic.Int64 // requests answered with a final status
		afterLast atomic.Int64 // of them, answered after the last restart
		restarted atomic.Bool
		wg        sync.WaitGroup
	)
	for c := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load() && ctx.Err() == nil; i++ {
				r := &request{id: fmt.Sprintf("crash-%02d-%05d", c, i), user: fmt.Sprint("w", rand.IntN(wallets))}
				r.body = signedForm(r.id, r.user, 1)
				mu.Lock()
				reqs = append(reqs, r)
				mu.Unlock()
				r.final, r.got200 = client.send(ctx, srv, r.body)
				finals.Add(1)
				if restarted.Load() {
					afterLast.Add(1)
				}
			}
		}()
	}
	// Crash it three times, each time after some requests were answered
	// since the last start, so every kill lands under load.
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
	checkRequests(t, ctx, store, reqs)
	checkBooks(t, ctx, store)
	auditPasses(t, dbURL)
}

// auditPasses runs `giftd audit` on the database, as an operator would.
func auditPasses(t *testing.T, dbURL string) {
	t.Helper()
	runAudit(t, "DATABASE_URL="+dbURL)
}

// runAudit runs `giftd audit` with the settings env, fails t unless it
// exits 0, and returns what it printed.
func runAudit(t *testing.T, env ...string) string {
	t.Helper()
	cmd := exec.Command(giftdBinary(t), "audit")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("giftd audit: %v\n%s", err, out)
	}
	return string(out)
}

// checkRequests holds every request's final answer against the ledger:
// debited at most once; exactly once when a 200 was ever seen; not at all
// when the final answer was 402.
func checkRequests(t *testing.T, ctx context.Context, store *ledger.Store, reqs []*request) {
	t.Helper()
	checkEntries(t, countDebits(t, ctx, store.Pool()), reqs)
}

// checkEntries is checkRequests against entries, the count of debit
// entries of each request id.
func checkEntries(t *testing.T, entries map[string]int, reqs []*request) {
	t.Helper()
	counts := map[int]int{}
	for _, r := range reqs {
		counts[r.final]++
		e := entries[r.id]
		switch {
		case e > 1:
			t.Errorf("%s debited %d times", r.id, e)
		case r.got200 && e != 1:
			t.Errorf("%s got a 200 but has %d debits", r.id, e)
		case r.final == http.StatusPaymentRequired && e != 0:
			t.Errorf("%s was finally refused (402) but has %d debits", r.id, e)
		case r.final != http.StatusOK && r.final != http.StatusPaymentRequired:
			t.Errorf("%s ended with %d, want 200 or 402", r.id, r.final)
		}
	}
	t.Logf("final answers: %v", counts)
}

// checkBooks asserts money is conserved and every account explained, on
// both sides of every gift (docs/economy.md): top-ups − debits + reversals =
// wallets; every debit settled exactly once (one gift row, never two), its
// gold = earnings + house; every wallet, earnings account, receivable and
// house slot equal to its entries and none negative; and wallets + earnings
// + house − owed = top-ups − payouts. Given the partitions of a partitioned
// giftd, each is held to the rows' rules and their sum to the totals' (a
// credit moving between partitions leaves one and enters another: wait
// until none is in flight).
func checkBooks(t *testing.T, ctx context.Context, stores ...*ledger.Store) {
	t.Helper()
	var credits, debits, balances, mismatched, negative int64
	var debitEntries, settled, twice, unbalanced, earnings, house, owed, topups, payouts, offEntries, below int64
	for _, store := range stores {
		var c, d, b, m, n int64
		err := store.Pool().QueryRow(ctx, `
		SELECT
			(SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE kind IN ('topup', 'reversal')),
			(SELECT coalesce(-sum(amount), 0) FROM ledger_entries WHERE kind = 'debit'),
			(SELECT coalesce(sum(gold), 0) FROM wallets),
			(SELECT count(*) FROM wallets w WHERE w.gold <> (SELECT coalesce(sum(amount), 0) FROM ledger_entries e WHERE e.user_id = w.user_id)),
			(SELECT count(*) FROM wallets WHERE gold < 0)`).Scan(&c, &d, &b, &m, &n)
		if err != nil {
			t.Fatal(err)
		}
		credits, debits, balances, mismatched, negative = credits+c, debits+d, balances+b, mismatched+m, negative+n

		var de, st, tw, ub, ea, ho, ow, tu, po, oe, be int64
		err = store.Pool().QueryRow(ctx, `
		SELECT
			(SELECT count(*) FROM ledger_entries WHERE kind = 'debit'),
			(SELECT count(DISTINCT debit_entry) FROM gift_entries),
			(SELECT count(*) FROM (SELECT 1 FROM gift_entries GROUP BY platform, app_id, request_id HAVING count(*) > 1) x),
			(SELECT count(*) FROM gift_entries g JOIN ledger_entries d ON d.id = g.debit_entry
			 WHERE -d.amount <> g.gold OR g.earnings + g.house <> g.gold OR d.ref <> g.request_id OR d.user_id <> g.sender_id),
			(SELECT coalesce(sum(balance), 0) FROM earnings_accounts),
			(SELECT coalesce(sum(balance), 0) FROM house_slots),
			(SELECT coalesce(sum(owed), 0) FROM earnings_accounts),
			(SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE kind = 'topup'),
			(SELECT coalesce(-sum(amount), 0) FROM account_entries WHERE kind = 'payout'),
			(SELECT count(*) FROM earnings_accounts a WHERE a.balance <>
				(SELECT coalesce(sum(earnings), 0) FROM gift_entries g WHERE g.receiver_id = a.receiver_id)
				+ (SELECT coalesce(sum(amount), 0) FROM account_entries e WHERE e.account = 'earnings' AND e.receiver_id = a.receiver_id)
			   OR a.owed <> (SELECT coalesce(sum(amount), 0) FROM account_entries e WHERE e.account = 'receivable' AND e.receiver_id = a.receiver_id))
			+ (SELECT count(*) FROM house_slots h WHERE h.balance <>
				(SELECT coalesce(sum(house), 0) FROM gift_entries g WHERE g.house_slot = h.slot)
				+ (SELECT coalesce(sum(amount), 0) FROM account_entries e WHERE e.house_slot = h.slot)),
			(SELECT count(*) FROM earnings_accounts WHERE balance < 0 OR owed < 0)
			+ (SELECT count(*) FROM house_slots WHERE balance < 0)`,
		).Scan(&de, &st, &tw, &ub, &ea, &ho, &ow, &tu, &po, &oe, &be)
		if err != nil {
			t.Fatal(err)
		}
		debitEntries, settled, twice, unbalanced = debitEntries+de, settled+st, twice+tw, unbalanced+ub
		earnings, house, owed, topups, payouts = earnings+ea, house+ho, owed+ow, topups+tu, payouts+po
		offEntries, below = offEntries+oe, below+be
	}
	if credits-debits != balances || mismatched != 0 || negative != 0 {
		t.Errorf("books: credits %d − debits %d ≠ balances %d, or %d wallets off their ledger, %d negative",
			credits, debits, balances, mismatched, negative)
	}
	switch {
	case settled != debitEntries || twice != 0:
		t.Errorf("receiving side: %d debits, %d settled, %d gifts settled more than once", debitEntries, settled, twice)
	case unbalanced != 0:
		t.Errorf("receiving side: %d gifts whose gold ≠ earnings + house or ≠ their debit", unbalanced)
	case offEntries != 0 || below != 0:
		t.Errorf("receiving side: %d accounts off their entries, %d negative", offEntries, below)
	case balances+earnings+house-owed != topups-payouts:
		t.Errorf("receiving side: wallets %d + earnings %d + house %d − owed %d ≠ top-ups %d − payouts %d",
			balances, earnings, house, owed, topups, payouts)
	}
	t.Logf("receiving side: %d gifts settled, earnings %d, house %d, owed %d", settled, earnings, house, owed)
}
