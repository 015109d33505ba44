package partition_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/credits"
	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// newPartitions returns n empty databases for giftd reshard, and makes sure
// that whatever a failed test leaves of its replication (subscriptions on
// them, slots for them on the old partitions) goes before the databases do.
func newPartitions(t *testing.T, l partition.Layout) []string {
	t.Helper()
	var urls []string
	for range l.PartitionURLs {
		urls = append(urls, pgtest.EmptyDatabase(t))
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, u := range urls {
			c, err := pgx.Connect(ctx, u)
			if err != nil {
				t.Error(err)
				continue
			}
			var sub bool
			_ = c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = 'giftd_reshard'
				AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()))`).Scan(&sub)
			if sub {
				for _, q := range []string{`ALTER SUBSCRIPTION giftd_reshard DISABLE`,
					`ALTER SUBSCRIPTION giftd_reshard SET (slot_name = NONE)`, `DROP SUBSCRIPTION giftd_reshard`} {
					if _, err := c.Exec(ctx, q); err != nil {
						t.Error(err)
					}
				}
			}
			c.Close(ctx)
		}
		for _, u := range l.PartitionURLs {
			c, err := pgx.Connect(ctx, u)
			if err != nil {
				t.Error(err)
				continue
			}
			// A walsender may hold the slot a moment after its
			// subscription went.
			for range 500 {
				_, err = c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
					WHERE database = current_database()`)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "55006" {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err != nil {
				t.Error(err)
			}
			c.Close(ctx)
		}
	})
	return urls
}

// requireLogical skips (fails under CI) when the test server cannot copy
// by logical replication.
func requireLogical(t *testing.T, databaseURL string) {
	t.Helper()
	var level string
	if err := connect(t, databaseURL).QueryRow(context.Background(), `SHOW wal_level`).Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != "logical" {
		t.Fatalf("the test server has wal_level %s: giftd reshard needs logical", level)
	}
}

func reshardDebit(id, user string) ledger.Debit {
	return ledger.Debit{
		Key:         ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id},
		UserID:      user,
		Gold:        1,
		Fingerprint: sha256.Sum256([]byte(user)),
		ExpiresAt:   time.Now().Add(time.Hour),
		Details:     map[string]string{"gift_id": "1"},
	}
}

// stores opens a store on each partition database directly.
func stores(t *testing.T, urls []string) []*ledger.Store {
	t.Helper()
	var out []*ledger.Store
	for _, u := range urls {
		s, err := ledger.Open(context.Background(), u, ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		out = append(out, s)
	}
	return out
}

// TestReshard_TwoToFourUnderLoadLosesAndDoublesNothing doubles a cluster of
// 2 partitions while 32 LinkV-like clients debit 16 users of all four
// partitions-to-be through one store opened over 2, retrying every failure
// with the same key: every acknowledged debit ends once, on its user's
// partition of 4, no key runs twice, no row of a user stays anywhere else,
// every partition's audit and the credits' audit are clean, and the store
// routes over 4 without a restart.
func TestReshard_TwoToFourUnderLoadLosesAndDoublesNothing(t *testing.T) {
	reshardUnderLoad(t, false)
}

// TestReshard_WaitsForALaggingCopy is the same with the copy held back at
// the fence: each new partition's ledger entries locked just before the
// first fence, while more debits of every user are acknowledged, and let go
// half a second later. The switch must wait for the copy, whatever its lag.
func TestReshard_WaitsForALaggingCopy(t *testing.T) {
	reshardUnderLoad(t, true)
}

func reshardUnderLoad(t *testing.T, lag bool) {
	l := pgtest.Partitioned(t, 2)
	requireLogical(t, l.ProxyURL)
	newURLs := newPartitions(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	b := ledger.DefaultBatching()
	b.Window = 2 * time.Millisecond
	// Safeguards on, with no limit: every debit writes its sender's spending
	// counters, which the new partitions rewrite after the switch, before
	// the check before the forget compares them.
	s, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(2, partition.For), ledger.WithBatching(b),
		ledger.WithEconomy(ledger.Economy{}), ledger.WithSafeguards(ledger.Safeguards{On: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	var users []string // 4 of each partition of 4
	for p := range 4 {
		users = append(users, usersOn(p, 4, 4)...)
	}
	for _, u := range users {
		if _, err := s.TopUp(ctx, ledger.TopUp{UserID: u, Amount: 1_000_000, Key: "seed-" + u}); err != nil {
			t.Fatal(err)
		}
	}

	type outcome struct {
		partition int // of 4
		ok        bool
		after     bool // the attempt began once Reshard had returned
	}
	var resharded atomic.Bool
	outcomes := make(chan outcome, 1<<16)
	stop := make(chan struct{})
	var mu sync.Mutex
	acked := map[string]bool{}    // request id → answered 200
	sentTo := map[string]string{} // request id → user
	failures := map[string]int{}  // what the failed attempts said
	var slowest [2]time.Duration  // the longest acknowledged attempt: of a staying user, of a moving one
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			u := users[g%len(users)]
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				d := reshardDebit(fmt.Sprintf("c%d-%d", g, k), u)
				mu.Lock()
				sentTo[d.Key.RequestID] = u
				mu.Unlock()
				for { // LinkV: every 5xx again with the same request id
					after := resharded.Load()
					dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
					began := time.Now()
					res, err := s.Debit(dctx, d)
					took := time.Since(began)
					dcancel()
					outcomes <- outcome{partition.For(u, 4), err == nil, after}
					if err == nil {
						if res.Status != ledger.Debited {
							t.Errorf("debit %s: %+v; want 200", d.Key, res)
						}
						mu.Lock()
						acked[d.Key.RequestID] = true
						i := 0
						if partition.For(u, 4) >= 2 { // moving
							i = 1
						}
						slowest[i] = max(slowest[i], took)
						mu.Unlock()
						break
					}
					code := "other"
					var pgErr *pgconn.PgError
					if errors.As(err, &pgErr) {
						code = pgErr.Code
					}
					mu.Lock()
					failures[code]++
					mu.Unlock()
					if ctx.Err() != nil {
						t.Errorf("debit %s never got an outcome: %v", d.Key, err)
						return
					}
					select {
					case <-time.After(5 * time.Millisecond):
					case <-ctx.Done():
					}
				}
			}
		})
	}
	waitFor := func(what string, want func(outcome) bool) {
		t.Helper()
		for {
			select {
			case o := <-outcomes:
				if want(o) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v", what, ctx.Err())
			}
		}
	}
	acks := func(parts []int, n int) func(outcome) bool {
		seen := map[int]int{}
		return func(o outcome) bool {
			if o.ok && (o.after || !resharded.Load()) {
				seen[o.partition]++
			}
			for _, p := range parts {
				if seen[p] < n {
					return false
				}
			}
			return true
		}
	}
	waitFor("debits of every user before", acks([]int{0, 1, 2, 3}, 100))
	// An operator's key claimed before the reshard on partition 0, which
	// its key leaves for 2 (partition migrations 13 and 14): used again
	// afterwards for a user of another partition, it must still be refused.
	claimed := ""
	for i := 0; claimed == ""; i++ {
		if k := fmt.Sprint("op-key-", i); partition.For(k, 4) == 2 {
			claimed = k
		}
	}
	keyUsers := []string{usersOn(0, 4, 5)[4], usersOn(1, 4, 5)[4]}
	if _, err := s.TopUp(ctx, ledger.TopUp{UserID: keyUsers[0], Amount: 7, Key: claimed}); err != nil {
		t.Fatal(err)
	}
	r := partition.Resharding{Layout: l, NewPartitionURLs: newURLs, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	var held sync.WaitGroup
	if lag {
		r = partition.WithOnStep(r, func(step string) {
			if step != "fence" {
				return
			}
			for _, u := range newURLs {
				c := connect(t, u)
				tx, err := c.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				// Replication's apply waits behind this lock.
				if _, err := tx.Exec(ctx, `LOCK TABLE ledger_entries IN EXCLUSIVE MODE`); err != nil {
					t.Fatal(err)
				}
				held.Go(func() {
					time.Sleep(500 * time.Millisecond)
					if err := tx.Rollback(ctx); err != nil {
						t.Error(err)
					}
				})
			}
			waitFor("debits of every user while the copy is held", acks([]int{0, 1, 2, 3}, 10))
		})
	}
	rep, err := partition.Reshard(ctx, r)
	held.Wait()
	if err != nil {
		t.Fatalf("reshard: %v", err)
	}
	// Only attempts begun after the reshard count: the outcomes queued
	// before it (a copy under load may take many seconds) would otherwise
	// satisfy this before any debit met the new routing.
	resharded.Store(true)
	waitFor("debits of every user after", acks([]int{0, 1, 2, 3}, 100))
	close(stop)
	go func() { wg.Wait(); close(outcomes) }()
	for range outcomes {
	}
	t.Logf("reshard: %+v; failed attempts by SQLSTATE: %v; the slowest acknowledged attempt of a staying user %v, of a moving one %v",
		rep, failures, slowest[0].Round(time.Millisecond), slowest[1].Round(time.Millisecond))
	if failures["GD005"] != 0 {
		t.Errorf("%d debit batches failed their wallet check (main migration 11); under the row locks none can", failures["GD005"])
	}
	for i, p := range rep.Pauses {
		t.Logf("pause of partition %d's moving users: %v", i, p)
	}

	after := append(append([]string{}, l.PartitionURLs...), newURLs...)
	if got := s.Partitions(); got != 4 {
		t.Errorf("the store routes over %d partitions; want 4, learnt without a restart", got)
	}
	// Every key once at most, on its user's partition of 4; every
	// acknowledged one exactly once there.
	keys := make([]map[string]int, 4)
	for p, u := range after {
		keys[p] = map[string]int{}
		rows, err := connect(t, u).Query(ctx, `SELECT ref, count(*) FROM ledger_entries WHERE kind = 'debit' GROUP BY ref`)
		if err != nil {
			t.Fatal(err)
		}
		m, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct {
			ref string
			n   int
		}, error) {
			var x struct {
				ref string
				n   int
			}
			return x, r.Scan(&x.ref, &x.n)
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range m {
			keys[p][x.ref] = x.n
		}
	}
	for id, u := range sentTo {
		home := partition.For(u, 4)
		for p := range 4 {
			n := keys[p][id]
			switch {
			case p != home && n > 0:
				t.Errorf("debit %s of %s: %d entries on partition %d; its user lives on %d", id, u, n, p, home)
			case p == home && n > 1:
				t.Errorf("debit %s of %s executed %d times", id, u, n)
			case p == home && acked[id] && n != 1:
				t.Errorf("debit %s of %s acknowledged but not on partition %d", id, u, home)
			}
		}
	}
	if len(acked) == 0 || len(acked) != len(sentTo) {
		t.Errorf("%d debits sent, %d acknowledged", len(sentTo), len(acked))
	}
	// No row of a user left on another partition than its own; every
	// wallet's gold is its seed less its acknowledged debits.
	perUser := map[string]int64{}
	for id, u := range sentTo {
		if acked[id] {
			perUser[u]++
		}
	}
	for p, u := range after {
		c := connect(t, u)
		var strays int
		err := c.QueryRow(ctx, `
			SELECT (SELECT count(*) FROM wallets WHERE giftd_placement(user_id) & 3 <> $1)
			     + (SELECT count(*) FROM ledger_entries WHERE giftd_placement(user_id) & 3 <> $1)
			     + (SELECT count(*) FROM debit_requests WHERE giftd_placement(user_id) & 3 <> $1)
			     + (SELECT count(*) FROM events WHERE giftd_placement(data->>'user_id') & 3 IS DISTINCT FROM $1)
			     + (SELECT count(*) FROM giftd_key_claims WHERE giftd_placement(key) & 3 <> $1)
			     + (SELECT count(*) FROM giftd_reshard_fence) + (SELECT count(*) FROM giftd_reshard_marks)`, p).Scan(&strays)
		if err != nil {
			t.Fatal(err)
		}
		if strays != 0 {
			t.Errorf("partition %d keeps %d rows of other partitions' users (or of the resharding)", p, strays)
		}
	}
	for _, u := range users {
		w, err := s.Wallet(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if want := 1_000_000 - perUser[u]; w.Gold != want {
			t.Errorf("wallet %s: %d gold; want %d (the seed less %d acknowledged debits)", u, w.Gold, want, perUser[u])
		}
	}
	if _, err := s.TopUp(ctx, ledger.TopUp{UserID: keyUsers[1], Amount: 9, Key: claimed}); !errors.Is(err, ledger.ErrKeyReused) {
		t.Errorf("a key claimed before the reshard, used again after it for a user of another partition: %v; want %v", err, ledger.ErrKeyReused)
	}
	parts := stores(t, after)
	for p, ps := range parts {
		r, err := ps.Audit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK() {
			t.Errorf("audit of partition %d: %+v", p, r)
		}
	}
	cr, err := credits.Audit(ctx, parts)
	if err != nil {
		t.Fatal(err)
	}
	if !cr.OK() {
		t.Errorf("credits audit: %+v", cr)
	}
	// Run again, it finds the work done and changes nothing.
	rep, err = partition.Reshard(ctx, partition.Resharding{Layout: l, NewPartitionURLs: newURLs})
	if err != nil || len(rep.Pauses) != 0 || rep.Forgotten[0]+rep.Forgotten[1]+rep.Forgotten[2]+rep.Forgotten[3] != 0 {
		t.Errorf("reshard again: %+v, %v; want nothing left to do", rep, err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// TestReshard_CutShortCarriesOnWhenRunAgain cuts giftd reshard short at
// each step of the pause (its context ended): before the fences, once the
// subscriptions are dropped (the fences are lifted, so the copies must be
// made anew), and once the claims have moved (the moving users stay
// refused). A debit of a moving user in between, and the run again, must
// leave every debit once on its user's partition and the books clean.
func TestReshard_CutShortCarriesOnWhenRunAgain(t *testing.T) {
	for _, step := range []string{"fence", "sequences", "switch"} {
		t.Run(step, func(t *testing.T) {
			l := pgtest.Partitioned(t, 2)
			requireLogical(t, l.ProxyURL)
			newURLs := newPartitions(t, l)
			bg := context.Background()
			s, err := ledger.Open(bg, l.ProxyURL, ledger.WithPartitions(2, partition.For),
				ledger.WithBatching(ledger.Batching{MaxBatch: 1}), ledger.WithEconomy(ledger.Economy{}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			var users []string
			for p := range 4 {
				users = append(users, usersOn(p, 4, 2)...)
			}
			debited := map[string]int64{}
			sentTo := map[string]string{}
			debitOK := func(id, u string) {
				t.Helper()
				sentTo[id] = u
				if res, err := s.Debit(bg, reshardDebit(id, u)); err != nil || res.Status != ledger.Debited {
					t.Fatalf("debit %s of %s: %+v, %v", id, u, res, err)
				}
				debited[u]++
			}
			for _, u := range users {
				if _, err := s.TopUp(bg, ledger.TopUp{UserID: u, Amount: 100, Key: "seed-" + u}); err != nil {
					t.Fatal(err)
				}
				debitOK("before-"+u, u)
			}
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(s string) {
				if s == step {
					cancel()
				}
			})
			if _, err := partition.Reshard(ctx, r); !errors.Is(err, context.Canceled) {
				t.Fatalf("reshard cut short at %s: %v; want context.Canceled", step, err)
			}
			// The fences lifted, their triggers go with them; after
			// the claims moved, both stay until the run again.
			for i, u := range l.PartitionURLs {
				want := 0
				if step == "switch" {
					want = 8
				}
				var enabled int
				err := connect(t, u).QueryRow(bg, `SELECT count(*) FROM pg_trigger
					WHERE tgname = 'giftd_reshard_fence' AND tgenabled <> 'D'`).Scan(&enabled)
				if err != nil || enabled != want {
					t.Errorf("partition %d after the run cut short: %d fence triggers enabled, %v; want %d", i, enabled, err, want)
				}
			}
			mover := usersOn(2, 4, 1)[0]
			between := "between-" + mover
			if step == "switch" {
				sentTo[between] = mover
				if _, err := s.Debit(bg, reshardDebit(between, mover)); !errors.Is(err, ledger.ErrReshardPaused) {
					t.Fatalf("debit of a moving user after the claims moved: %v; want %v until the run again", err, ledger.ErrReshardPaused)
				}
			} else {
				debitOK(between, mover) // the fences are lifted
			}
			rep, err := partition.Reshard(bg, partition.Resharding{Layout: l, NewPartitionURLs: newURLs})
			if err != nil {
				t.Fatalf("reshard again: %v", err)
			}
			t.Logf("run again: %+v", rep)
			if step == "switch" {
				debitOK(between, mover) // LinkV's retry, the same key
			}
			for _, u := range users {
				debitOK("after-"+u, u)
			}
			after := append(append([]string{}, l.PartitionURLs...), newURLs...)
			for p, u := range after {
				c := connect(t, u)
				rows, err := c.Query(bg, `SELECT ref FROM ledger_entries WHERE kind = 'debit'`)
				if err != nil {
					t.Fatal(err)
				}
				refs, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					t.Fatal(err)
				}
				seen := map[string]bool{}
				for _, ref := range refs {
					if seen[ref] || partition.For(sentTo[ref], 4) != p {
						t.Errorf("debit %s of %s on partition %d: twice, or not its user's partition", ref, sentTo[ref], p)
					}
					seen[ref] = true
				}
				for id, u := range sentTo {
					if partition.For(u, 4) == p && !seen[id] {
						t.Errorf("debit %s of %s missing from partition %d", id, u, p)
					}
				}
			}
			for _, u := range users {
				if w, err := s.Wallet(bg, u); err != nil || w.Gold != 100-debited[u] {
					t.Errorf("wallet %s: %d, %v; want %d", u, w.Gold, err, 100-debited[u])
				}
			}
			for p, ps := range stores(t, after) {
				if r, err := ps.Audit(bg); err != nil || !r.OK() {
					t.Errorf("audit of partition %d: %+v, %v", p, r, err)
				}
			}
		})
	}
}

// TestReshard_FenceWaitsForAWriteInFlight holds a moving user's top-up
// open on its old partition, past its check, as the fence comes, and
// commits it a moment later: the fence must wait for it (its lock), so that
// the copy holds it before the switch.
func TestReshard_FenceWaitsForAWriteInFlight(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	requireLogical(t, l.ProxyURL)
	newURLs := newPartitions(t, l)
	bg := context.Background()
	mover := usersOn(2, 4, 1)[0]
	proxy := connect(t, l.ProxyURL)
	if _, err := topUpThroughProxy(bg, proxy, mover, 100, "seed"); err != nil {
		t.Fatal(err)
	}
	old := connect(t, l.PartitionURLs[partition.For(mover, 2)])
	var inFlight sync.WaitGroup
	r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(step string) {
		if step != "fence" {
			return
		}
		tx, err := old.Begin(bg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := topUpThroughTx(bg, tx, mover, 5, "in-flight"); err != nil {
			t.Fatal(err)
		}
		inFlight.Go(func() {
			time.Sleep(300 * time.Millisecond) // the fence comes meanwhile
			if err := tx.Commit(bg); err != nil {
				t.Error(err)
			}
		})
	})
	_, err := partition.Reshard(bg, r)
	inFlight.Wait()
	if err != nil {
		t.Fatal(err)
	}
	var gold int64
	if err := proxy.QueryRow(bg, `SELECT gold FROM giftd_wallet($1)`, mover).Scan(&gold); err != nil || gold != 105 {
		t.Errorf("the mover's wallet after the resharding: %d, %v; want 105 (the top-up in flight at the fence kept)", gold, err)
	}
	for p, ps := range stores(t, append(append([]string{}, l.PartitionURLs...), newURLs...)) {
		if r, err := ps.Audit(bg); err != nil || !r.OK() {
			t.Errorf("audit of partition %d: %+v, %v", p, r, err)
		}
	}
}

func topUpThroughTx(ctx context.Context, tx pgx.Tx, user string, amount int64, key string) (topUpResult, error) {
	var r topUpResult
	err := tx.QueryRow(ctx, `SELECT entry_id, balance, replay FROM giftd_topup($1, $2, $3, $4)`,
		user, amount, key, "test").Scan(&r.EntryID, &r.Balance, &r.Replay)
	return r, err
}

// TestReshard_RunAgainLiftsAPauseLeftFenced leaves a pause cut short after
// the subscriptions were dropped, with the fences' lifting failed (the new
// partitions refusing connections then): the old partitions fenced, the new
// ones fenced with no copy running. The run again must not take those
// copies as complete: it lifts the fences first (the new partitions' before
// the old ones') and copies anew, so that a moving user's debit made while a
// later run is cut short before its fence reaches the new partition. (Taken
// as complete, a copy missed every write made on the old partition after a
// later run lifted only the old partitions' fences.)
func TestReshard_RunAgainLiftsAPauseLeftFenced(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	requireLogical(t, l.ProxyURL)
	newURLs := newPartitions(t, l)
	bg := context.Background()
	s, err := ledger.Open(bg, l.ProxyURL, ledger.WithPartitions(2, partition.For),
		ledger.WithBatching(ledger.Batching{MaxBatch: 1}), ledger.WithEconomy(ledger.Economy{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	mover := usersOn(2, 4, 1)[0]
	if _, err := s.TopUp(bg, ledger.TopUp{UserID: mover, Amount: 100, Key: "seed"}); err != nil {
		t.Fatal(err)
	}
	cutAt := func(step string, then func()) partition.Resharding {
		ctx, cancel := context.WithCancel(bg)
		t.Cleanup(cancel)
		r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(s string) {
			if s == step {
				then()
				cancel()
			}
		})
		_, err := partition.Reshard(ctx, r)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("reshard cut short at %s: %v; want context.Canceled", step, err)
		}
		return r
	}
	// Run 1: cut after the subscriptions were dropped; lifting the fences
	// fails on the new partitions, so it stops before the old ones'.
	cutAt("sequences", func() {
		for _, u := range newURLs {
			pgtest.StopPartition(t, u)
		}
	})
	for _, u := range newURLs {
		pgtest.StartPartition(t, u)
	}
	if _, err := s.Debit(bg, reshardDebit("fenced", mover)); !errors.Is(err, ledger.ErrReshardPaused) {
		t.Fatalf("debit of a moving user with the fences left up: %v; want %v", err, ledger.ErrReshardPaused)
	}
	// Run 2: cut before its own fences, once it has lifted those left up.
	cutAt("fence", func() {})
	if res, err := s.Debit(bg, reshardDebit("between", mover)); err != nil || res.Status != ledger.Debited {
		t.Fatalf("debit of a moving user between the runs: %+v, %v", res, err)
	}
	// Run 3, whole.
	ctx, cancel := context.WithTimeout(bg, 5*time.Minute)
	defer cancel()
	if _, err := partition.Reshard(ctx, partition.Resharding{Layout: l, NewPartitionURLs: newURLs}); err != nil {
		t.Fatalf("reshard run again: %v", err)
	}
	var refs []string
	rows, err := connect(t, newURLs[0]).Query(bg, `SELECT ref FROM ledger_entries WHERE user_id = $1 AND kind = 'debit'`, mover)
	if err == nil {
		refs, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || len(refs) != 1 || refs[0] != "between" {
		t.Errorf("the mover's debits on its new partition: %v, %v; want [between]", refs, err)
	}
	if w, err := s.Wallet(bg, mover); err != nil || w.Gold != 99 {
		t.Errorf("the mover's wallet: %+v, %v; want 99", w, err)
	}
}
