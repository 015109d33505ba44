package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// openPartitioned opens a partitioned store on a fresh proxy and n
// partitions, batching with a window so that concurrent debits batch.
func openPartitioned(t *testing.T, n int) (*ledger.Store, partition.Layout) {
	t.Helper()
	l := pgtest.Partitioned(t, n)
	b := ledger.DefaultBatching()
	b.Window = 2 * time.Millisecond
	s, err := ledger.Open(context.Background(), l.ProxyURL, ledger.WithPartitions(n, partition.For), ledger.WithBatching(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, l
}

// usersOn returns k user ids of each of n partitions: [partition][i].
func usersOn(n, k int) [][]string {
	out := make([][]string, n)
	for i := 0; ; i++ {
		u := fmt.Sprintf("user-%d", i)
		p := partition.For(u, n)
		if len(out[p]) < k {
			out[p] = append(out[p], u)
		}
		full := true
		for _, us := range out {
			full = full && len(us) == k
		}
		if full {
			return out
		}
	}
}

// partitionStore opens a store on one partition database directly, for
// its books and audit.
func partitionStore(t *testing.T, databaseURL string) *ledger.Store {
	t.Helper()
	s, err := ledger.Open(context.Background(), databaseURL, ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// auditPartitions checks the books and the audit of every partition.
func auditPartitions(t *testing.T, l partition.Layout) {
	t.Helper()
	for i, u := range l.PartitionURLs {
		ps := partitionStore(t, u)
		checkBooks(t, ps)
		r, err := ps.Audit(context.Background())
		if err != nil {
			t.Fatalf("audit of partition %d: %v", i, err)
		}
		if !r.OK() {
			t.Errorf("audit of partition %d: %+v", i, r)
		}
	}
}

// debitKeys returns, for each partition, the debit entries' count per key.
func debitKeys(t *testing.T, l partition.Layout) []map[string]int {
	t.Helper()
	var out []map[string]int
	for _, u := range l.PartitionURLs {
		conn, err := pgx.Connect(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := conn.Query(context.Background(), `SELECT ref, count(*) FROM ledger_entries WHERE kind = 'debit' GROUP BY ref`)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]int{}
		for rows.Next() {
			var ref string
			var n int
			if err := rows.Scan(&ref, &n); err != nil {
				t.Fatal(err)
			}
			m[ref] = n
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		conn.Close(context.Background())
		out = append(out, m)
	}
	return out
}

func TestPartitioned_DebitsBatchPerPartitionAndLandWherePlacementSays(t *testing.T) {
	s, l := openPartitioned(t, 2)
	ctx := context.Background()
	users := usersOn(2, 8)
	for _, us := range users {
		for _, u := range us {
			topUp(t, s, u, 1000)
		}
	}
	// 16 users × 20 debits from 64 goroutines: batches form on both
	// partitions, and none may mix them.
	type sent struct {
		d   ledger.Debit
		res ledger.DebitResult
	}
	var mu sync.Mutex
	var all []sent
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for k := range 5 {
				u := users[g%2][(g/2)%8]
				d := debit(fmt.Sprintf("g%d-%d", g, k), u, 3)
				res, err := s.Debit(ctx, d)
				if err != nil || res.Status != ledger.Debited {
					t.Errorf("debit %s of %s: %+v, %v", d.Key, u, res, err)
					return
				}
				mu.Lock()
				all = append(all, sent{d, res})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	handoffs, fallbacks := ledger.PartitionBatchers(s)
	for p := range 2 {
		if handoffs[p] == 0 {
			t.Errorf("partition %d: no debit was batched (handoffs %v): the test did not exercise batching", p, handoffs)
		}
		if fallbacks[p] != 0 {
			t.Errorf("partition %d: %d batches failed as a whole and went one by one (a batch across partitions?)", p, fallbacks[p])
		}
	}
	keys := debitKeys(t, l)
	for _, x := range all {
		p := partition.For(x.d.UserID, 2)
		if keys[p][x.d.Key.RequestID] != 1 || keys[1-p][x.d.Key.RequestID] != 0 {
			t.Errorf("debit %s of %s (partition %d): entries per partition %d, %d; want 1 on %d only",
				x.d.Key, x.d.UserID, p, keys[0][x.d.Key.RequestID], keys[1][x.d.Key.RequestID], p)
		}
		// A copy replays, through the batcher and through Recorded.
		res, err := s.Debit(ctx, x.d)
		if err != nil || !res.Replay || res.Balance != x.res.Balance {
			t.Errorf("copy of %s: %+v, %v; want a replay of balance %d", x.d.Key, res, err, x.res.Balance)
		}
		res, err = s.Recorded(ctx, x.d.Key, x.d.Fingerprint)
		if err != nil || !res.Replay || res.Balance != x.res.Balance {
			t.Errorf("Recorded %s: %+v, %v; want balance %d", x.d.Key, res, err, x.res.Balance)
		}
		res, err = s.RecordedFor(ctx, x.d.UserID, x.d.Key, x.d.Fingerprint)
		if err != nil || !res.Replay || res.Balance != x.res.Balance {
			t.Errorf("RecordedFor %s: %+v, %v; want balance %d", x.d.Key, res, err, x.res.Balance)
		}
	}
	if _, err := s.Recorded(ctx, ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: "never"}, [32]byte{}); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("Recorded of a key never sent: %v; want ErrNotFound", err)
	}
	if _, err := s.RecordedFor(ctx, users[1][0], ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: "never"}, [32]byte{}); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("RecordedFor of a key never sent: %v; want ErrNotFound", err)
	}
	// Asked on another user's partition, a record is not there.
	if x := all[0]; true {
		other := users[1-partition.For(x.d.UserID, 2)][0]
		if _, err := s.RecordedFor(ctx, other, x.d.Key, x.d.Fingerprint); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("RecordedFor %s on %s's partition: %v; want ErrNotFound", x.d.Key, other, err)
		}
	}
	for _, us := range users {
		for _, u := range us {
			w, err := s.Wallet(ctx, u)
			if err != nil || w.Gold != 1000-3*20 {
				t.Errorf("wallet %s: %+v, %v; want %d gold", u, w, err, 1000-3*20)
			}
		}
	}
	if _, err := s.Wallet(ctx, "nobody"); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("wallet of nobody: %v; want ErrNotFound", err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Errorf("Ready: %v", err)
	}
	auditPartitions(t, l)
}

func TestPartitioned_TopUpRoutesAndRefusesAReusedKey(t *testing.T) {
	s, l := openPartitioned(t, 2)
	ctx := context.Background()
	users := usersOn(2, 1)
	for p, us := range users {
		c, err := s.TopUp(ctx, ledger.TopUp{UserID: us[0], Amount: 50, Key: "k-" + us[0]})
		if err != nil || c.Balance != 50 || c.Replay {
			t.Fatalf("top-up of %s: %+v, %v", us[0], c, err)
		}
		c, err = s.TopUp(ctx, ledger.TopUp{UserID: us[0], Amount: 50, Key: "k-" + us[0]})
		if err != nil || c.Balance != 50 || !c.Replay {
			t.Errorf("top-up copy of %s: %+v, %v; want a replay", us[0], c, err)
		}
		if _, err := s.TopUp(ctx, ledger.TopUp{UserID: us[0], Amount: 51, Key: "k-" + us[0]}); !errors.Is(err, ledger.ErrKeyReused) {
			t.Errorf("top-up of another amount under a used key: %v; want ErrKeyReused", err)
		}
		ps := partitionStore(t, l.PartitionURLs[p])
		if w, err := ps.Wallet(ctx, us[0]); err != nil || w.Gold != 50 {
			t.Errorf("%s on partition %d: %+v, %v", us[0], p, w, err)
		}
	}
}

func TestPartitioned_PartitionRefusesABatchOfAnotherPartitionsUsers(t *testing.T) {
	s, l := openPartitioned(t, 2)
	users := usersOn(2, 1)
	for _, us := range users {
		topUp(t, s, us[0], 100)
	}
	// A batch routed by its first user, partition 0's, holding a user of
	// partition 1: refused whole, nothing written anywhere.
	err := ledger.Execute(s, []ledger.Debit{debit("mixed-1", users[0][0], 1), debit("mixed-2", users[1][0], 1)})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "GD001" {
		t.Fatalf("a batch across partitions: %v; want SQLSTATE GD001", err)
	}
	for p, keys := range debitKeys(t, l) {
		if len(keys) != 0 {
			t.Errorf("partition %d holds debits %v after a refused batch", p, keys)
		}
	}
	for p, u := range l.PartitionURLs {
		conn, err := pgx.Connect(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM debit_requests`).Scan(&n); err != nil || n != 0 {
			t.Errorf("partition %d: %d debit records, %v; want none", p, n, err)
		}
		conn.Close(context.Background())
	}
}

// TestPartitioned_PartitionStoppedMidBatchLosesAndDoublesNothing stops
// partition 1 while 32 LinkV-like clients debit users of both partitions,
// retrying every debit that got no confirmed outcome with the same key,
// then starts it again. Every key must be executed at most once, every
// acknowledged debit be present on its user's partition, partition 0's
// users must carry on while partition 1 is down, and both partitions'
// books and audits must be clean.
func TestPartitioned_PartitionStoppedMidBatchLosesAndDoublesNothing(t *testing.T) {
	s, l := openPartitioned(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	users := usersOn(2, 8)
	for _, us := range users {
		for _, u := range us {
			topUp(t, s, u, 1_000_000)
		}
	}
	type event struct {
		partition int
		ok        bool
	}
	events := make(chan event, 1<<16)
	stop := make(chan struct{})
	var mu sync.Mutex
	acked := map[string]ledger.DebitResult{} // request id → the answer
	sentTo := map[string]string{}            // request id → user
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			p, u := g%2, users[g%2][(g/2)%8]
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				d := debit(fmt.Sprintf("c%d-%d", g, k), u, 1)
				mu.Lock()
				sentTo[d.Key.RequestID] = u
				mu.Unlock()
				// LinkV: a 500 (no confirmed outcome) is retried with the
				// same request id until it gets one.
				for {
					dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
					res, err := s.Debit(dctx, d)
					dcancel()
					events <- event{p, err == nil}
					if err == nil {
						if res.Status != ledger.Debited {
							t.Errorf("debit %s: %+v; want 200", d.Key, res)
						}
						mu.Lock()
						acked[d.Key.RequestID] = res
						mu.Unlock()
						break
					}
					if ctx.Err() != nil {
						t.Errorf("debit %s never got an outcome: %v", d.Key, err)
						return
					}
					select { // a client's back-off between retries
					case <-time.After(5 * time.Millisecond):
					case <-ctx.Done():
					}
				}
			}
		})
	}
	// waitFor reads outcomes until want has seen enough of them.
	waitFor := func(what string, want func(e event) bool) {
		t.Helper()
		for {
			select {
			case e := <-events:
				if want(e) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v", what, ctx.Err())
			}
		}
	}
	count := func(part int, ok bool, n int) func(event) bool {
		seen := 0
		return func(e event) bool {
			if e.partition == part && e.ok == ok {
				seen++
			}
			return seen >= n
		}
	}
	waitFor("200 debits on partition 1", count(1, true, 200))
	pgtest.StopPartition(t, l.PartitionURLs[1])
	waitFor("failed debits on partition 1", count(1, false, 20))
	waitFor("partition 0 carrying on", count(0, true, 200))
	pgtest.StartPartition(t, l.PartitionURLs[1])
	waitFor("partition 1 back", count(1, true, 200))
	close(stop)
	go func() { wg.Wait(); close(events) }()
	for range events {
	}

	keys := debitKeys(t, l)
	for id, u := range sentTo {
		p := partition.For(u, 2)
		switch on, off := keys[p][id], keys[1-p][id]; {
		case on > 1 || off > 0:
			t.Errorf("debit %s of %s: %d entries on partition %d, %d on the other; want at most 1, on %d", id, u, on, p, off, p)
		case acked[id].Status == ledger.Debited && on != 1:
			t.Errorf("debit %s of %s acknowledged but not on partition %d", id, u, p)
		}
	}
	if len(acked) == 0 || len(acked) != len(sentTo) {
		t.Errorf("%d debits sent, %d acknowledged", len(sentTo), len(acked))
	}
	auditPartitions(t, l)
}

// TestPartitioned_CopiesRacingAcrossReplicasDebitOnce sends every debit to
// two stores (two replicas of giftd on one proxy) at once: each copy gets
// an answer, never an error, and each key is executed once. A copy that
// loses the race for its key meets the first's record through the proxy,
// whose error carries the SQLSTATE but not the constraint's name.
//
// The copies queue for the locks of 8 wallets, 4 per partition: a batch of
// s1 locks its partition's four, behind each of s2's single debits already
// waiting on them (up to s2's 16 connections), and runs again if one of
// them committed a copy of its keys meanwhile. On a loaded machine that
// queue outlasts DefaultBatching's 2 s timeout (load 12 on 2 cores: 192 to
// 209 of the 600 copies timed out, every run), which this test does not
// check: its batches get a minute, which only a hang outlasts.
func TestPartitioned_CopiesRacingAcrossReplicasDebitOnce(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	b := ledger.DefaultBatching()
	b.Window, b.Timeout = 2*time.Millisecond, time.Minute
	s1, err := ledger.Open(context.Background(), l.ProxyURL, ledger.WithPartitions(2, partition.For), ledger.WithBatching(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s1.Close)
	s2, err := ledger.Open(context.Background(), l.ProxyURL, ledger.WithPartitions(2, partition.For),
		ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s2.Close)
	ctx := context.Background()
	users := usersOn(2, 4)
	for _, us := range users {
		for _, u := range us {
			topUp(t, s1, u, 1000)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	executed := map[string]int{}
	for i := range 200 {
		d := debit(fmt.Sprintf("race-%d", i), users[i%2][(i/2)%4], 1)
		for _, s := range []*ledger.Store{s1, s2, s1} {
			wg.Go(func() {
				res, err := s.Debit(ctx, d)
				if err != nil || res.Status != ledger.Debited {
					t.Errorf("copy of %s: %+v, %v; want 200", d.Key, res, err)
					return
				}
				if !res.Replay {
					mu.Lock()
					executed[d.Key.RequestID]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for id, n := range executed {
		if n != 1 {
			t.Errorf("%s executed %d times", id, n)
		}
	}
	keys := debitKeys(t, l)
	if len(keys[0])+len(keys[1]) != 200 {
		t.Errorf("%d + %d keys debited; want 200", len(keys[0]), len(keys[1]))
	}
	auditPartitions(t, l)
}

func TestPartitioned_ReadyChecksTheProxyAndEveryPartition(t *testing.T) {
	s, l := openPartitioned(t, 2)
	ctx := context.Background()
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	// A partition that cannot be reached leaves giftd ready: its users get
	// retryable errors, the other partition's users carry on.
	pgtest.StopPartition(t, l.PartitionURLs[1])
	if err := s.Ready(ctx); err != nil {
		t.Errorf("Ready with partition 1 down: %v; want ready", err)
	}
	pgtest.StartPartition(t, l.PartitionURLs[1])
	// A partition behind the binary's migrations makes it unready.
	if err := ledger.MigrateDown(l.PartitionURLs[1], ledger.WithMigrationSet(ledger.PartitionMigrations())); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); !errors.Is(err, ledger.ErrNotReady) {
		t.Errorf("Ready with partition 1's partition set one step behind: %v; want ErrNotReady", err)
	}
	if err := ledger.Migrate(l.PartitionURLs[1], ledger.WithMigrationSet(ledger.PartitionMigrations())); err != nil {
		t.Fatal(err)
	}
	if err := ledger.MigrateDown(l.ProxyURL, ledger.WithMigrationSet(ledger.ProxyMigrations())); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); !errors.Is(err, ledger.ErrNotReady) {
		t.Errorf("Ready with the proxy one step behind: %v; want ErrNotReady", err)
	}
}

// machineCPU is the machine's busy CPU time so far (/proc/stat: user, nice,
// system, irq, softirq, steal), in clock ticks of 10 ms.
func machineCPU(b *testing.B) time.Duration {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Skipf("no /proc/stat: %v", err)
	}
	f := strings.Fields(strings.SplitN(string(raw), "\n", 2)[0])
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// BenchmarkDebit_PartitionedAgainstOneServer runs the same load, 64
// goroutines debiting 256 senders with earnings on, through a store on one
// database and through a partitioned store on a proxy and two partitions
// (all on the test's one server, so on this machine's cores), in turn, and
// reports debits/s and the whole machine's busy CPU per debit (giftd's
// goroutines, the proxy's backends, the partitions'; /proc/stat) for each.
// Nothing else should run on the machine meanwhile:
//
//	go test -run '^$' -bench PartitionedAgainstOneServer -benchtime 20000x -count 3 ./internal/ledger/
func BenchmarkDebit_PartitionedAgainstOneServer(b *testing.B) {
	const workers, senders = 64, 256
	one, err := ledger.Open(context.Background(), pgtest.URL(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(one.Close)
	l := pgtest.Partitioned(b, 2)
	parted, err := ledger.Open(context.Background(), l.ProxyURL, ledger.WithPartitions(2, partition.For))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(parted.Close)
	stores := []struct {
		name string
		s    *ledger.Store
		n    int
		wall time.Duration
		cpu  time.Duration
	}{{name: "one", s: one}, {name: "partitioned", s: parted}}
	for _, st := range stores {
		for u := range senders {
			if _, err := st.s.TopUp(context.Background(), ledger.TopUp{UserID: fmt.Sprint("s", u), Amount: 1 << 40, Key: fmt.Sprint("seed-", u)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	round := 0
	run := func(s *ledger.Store, n int) {
		round++
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < n; i += workers {
					d := gift(fmt.Sprintf("b%d-%d", round, i), fmt.Sprint("s", (i*7919)%senders), 10, fmt.Sprint("h", i%100), "rose", 1)
					if res, err := s.Debit(context.Background(), d); err != nil || res.Status != ledger.Debited {
						b.Errorf("debit: %+v, %v", res, err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	for i := range stores {
		run(stores[i].s, 2000) // warm up
	}
	b.ResetTimer()
	// Both stores in turns of 2000 debits, so that both meet the same load.
	for done := 0; done < b.N; done += 2000 {
		n := min(2000, b.N-done)
		for i := range stores {
			cpu0, t0 := machineCPU(b), time.Now()
			run(stores[i].s, n)
			stores[i].wall += time.Since(t0)
			stores[i].cpu += machineCPU(b) - cpu0
			stores[i].n += n
		}
	}
	b.StopTimer()
	for _, st := range stores {
		b.ReportMetric(float64(st.n)/st.wall.Seconds(), "debits/s@"+st.name)
		b.ReportMetric(float64(st.cpu.Microseconds())/float64(st.n), "machine-cpu-µs/debit@"+st.name)
	}
	b.ReportMetric(stores[1].wall.Seconds()/float64(stores[1].n)/(stores[0].wall.Seconds()/float64(stores[0].n)), "time-partitioned/one")
	b.ReportMetric(float64(stores[1].cpu)/float64(stores[1].n)/(float64(stores[0].cpu)/float64(stores[0].n)), "cpu-partitioned/one")
	b.ReportMetric(0, "ns/op")
}
