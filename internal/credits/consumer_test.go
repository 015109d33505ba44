package credits

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// cluster is a partitioned giftd with earnings on: a store through the
// proxy, and one on each partition for the consumers.
type cluster struct {
	layout partition.Layout
	proxy  *ledger.Store
	parts  []*ledger.Store
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	l := pgtest.Partitioned(t, 2)
	ctx := context.Background()
	c := &cluster{layout: l}
	var err error
	// The batches get a minute, not DefaultBatching's 2 s, a timeout these
	// tests do not check: on a loaded machine (a CI run beside other test
	// runs, 2026-12-02) gifts racing the consumer, reversals and payouts on
	// the same wallets outlasted 2 s, and the gift failed the test.
	batching := ledger.DefaultBatching()
	batching.Timeout = time.Minute
	c.proxy, err = ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(2, partition.For), ledger.WithBatching(batching),
		ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.proxy.Close)
	for _, u := range l.PartitionURLs {
		s, err := ledger.Open(ctx, u, ledger.WithBatching(ledger.Batching{MaxBatch: 1}), ledger.WithMaxConns(4))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		c.parts = append(c.parts, s)
	}
	return c
}

// usersOn returns k user ids with prefix on each partition: [partition][i].
func usersOn(prefix string, k int) [][]string {
	out := make([][]string, 2)
	for i := 0; len(out[0]) < k || len(out[1]) < k; i++ {
		u := fmt.Sprintf("%s-%d", prefix, i)
		if p := partition.For(u, 2); len(out[p]) < k {
			out[p] = append(out[p], u)
		}
	}
	return out
}

// gifts sends n gifts of 10 gold (5 earned) from every sender to every
// receiver, concurrently.
func (c *cluster) gifts(t *testing.T, round string, senders, receivers []string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Go(func() {
			for i := range n {
				for _, r := range receivers {
					id := fmt.Sprintf("%s-%s-%s-%d", round, s, r, i)
					res, err := c.proxy.Debit(context.Background(), ledger.Debit{
						Key: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id}, UserID: s, Gold: 10,
						Fingerprint: sha256.Sum256([]byte(id)), ExpiresAt: time.Now().Add(time.Hour),
						Gift: ledger.Gift{ReceiverID: r, RoomID: "room", GiftID: "rose", Count: 1},
					})
					if err != nil || res.Status != ledger.Debited {
						t.Errorf("gift %s: %+v, %v", id, res, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// drain runs steps of a fresh consumer, once every gift has committed,
// until each partition's cursor is past its last event (waiting out the
// rivals' leases and the horizon's reuse, both a few milliseconds).
func (c *cluster) drain(t *testing.T, owner string) {
	t.Helper()
	ctx := context.Background()
	d := New(c.parts, DefaultConfig(owner), nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for p, s := range c.parts {
		var last int64
		if err := s.Pool().QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM events`).Scan(&last); err != nil {
			t.Fatal(err)
		}
		for {
			var cursor int64
			if err := s.Pool().QueryRow(ctx, `SELECT position FROM credit_cursor`).Scan(&cursor); err != nil {
				t.Fatal(err)
			}
			if cursor >= last {
				break
			}
			if _, err := d.Step(ctx, p); err != nil {
				t.Fatalf("drain partition %d: %v", p, err)
			}
		}
	}
}

// check holds the books across partitions: every receiver's earnings are
// on its partition, all of them; no transit balance is left; each credit
// moved once each way; each partition's audit is clean.
func (c *cluster) check(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	earned := map[string]int64{}  // receiver → earnings of its gifts, every partition
	balance := map[string]int64{} // receiver → balance on its own partition
	in, out := map[string]int{}, map[string]int{}
	for p, u := range c.layout.PartitionURLs {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		rows, _ := conn.Query(ctx, `SELECT receiver_id, sum(earnings)::bigint FROM gift_entries WHERE receiver_id IS NOT NULL GROUP BY 1`)
		for rows.Next() {
			var r string
			var e int64
			if err := rows.Scan(&r, &e); err != nil {
				t.Fatal(err)
			}
			earned[r] += e
		}
		rows.Close()
		rows, _ = conn.Query(ctx, `SELECT receiver_id, balance FROM earnings_accounts`)
		for rows.Next() {
			var r string
			var b int64
			if err := rows.Scan(&r, &b); err != nil {
				t.Fatal(err)
			}
			if partition.For(r, 2) == p {
				balance[r] = b
			} else if b != 0 {
				t.Errorf("partition %d still holds %d of %s's earnings in transit", p, b, r)
			}
		}
		rows.Close()
		rows, _ = conn.Query(ctx, `SELECT kind, ref FROM account_entries WHERE kind IN ('transfer_in', 'transfer_out')`)
		for rows.Next() {
			var kind, ref string
			if err := rows.Scan(&kind, &ref); err != nil {
				t.Fatal(err)
			}
			if kind == "transfer_in" {
				in[ref]++
			} else {
				out[ref]++
			}
		}
		rows.Close()
		conn.Close(ctx)
		r, err := c.parts[p].Audit(ctx)
		if err != nil || !r.OK() {
			t.Errorf("audit of partition %d: %+v, %v", p, r, err)
		}
	}
	for r, e := range earned {
		if balance[r] != e {
			t.Errorf("receiver %s (partition %d): %d on its partition, %d earned", r, partition.For(r, 2), balance[r], e)
		}
	}
	for ref, n := range in {
		if n != 1 || out[ref] != 1 {
			t.Errorf("credit %s: %d in, %d out; want 1 and 1", ref, n, out[ref])
		}
	}
	if len(in) != len(out) || len(in) == 0 {
		t.Errorf("%d credits in, %d out", len(in), len(out))
	}
}

func TestConsumer_MovesEveryCreditOnceAcrossACrashAndRivals(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	senders, receivers := usersOn("sender", 3), usersOn("host", 2)
	for _, ss := range senders {
		for _, s := range ss {
			if _, err := c.proxy.TopUp(ctx, ledger.TopUp{UserID: s, Amount: 1_000_000, Key: "seed-" + s}); err != nil {
				t.Fatal(err)
			}
		}
	}
	all := func(x [][]string) []string { return append(append([]string{}, x[0]...), x[1]...) }
	c.gifts(t, "r1", all(senders), all(receivers), 5)

	// A first leg sent to a partition the receiver is not placed on is
	// refused.
	wrong := c.parts[1-partition.For(receivers[0][0], 2)]
	if _, err := wrong.CreditsIn(ctx, 0, []ledger.CreditMove{{Position: 1, ReceiverID: receivers[0][0], Earnings: 5}}); err == nil ||
		!strings.Contains(err.Error(), "GD001") {
		t.Errorf("a credit in on the wrong partition: %v; want SQLSTATE GD001", err)
	}
	// Pruning a partition's events keeps those not moved yet: a trigger
	// skips them.
	for p, s := range c.parts {
		var left int
		if err := s.Pool().QueryRow(ctx, `WITH d AS (DELETE FROM events RETURNING 1) SELECT (SELECT count(*) FROM events) - count(*) FROM d`).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			t.Errorf("partition %d: deleting every event left none, though no credit has moved", p)
		}
	}
	// A consumer that crashes between the legs of its first batch on each
	// partition: the first legs applied, not the second, its lease left to
	// expire (1 ms).
	crashed := New(c.parts, Config{Owner: "crashed", Lease: time.Millisecond, Batch: 7, Idle: time.Millisecond},
		nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	crashed.beforeOut = func(int) bool { return false }
	for p := range c.parts {
		if _, err := crashed.Step(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// A step reads at most 7 gifts: the first legs of the credits among
	// each partition's first 7 (giftd_credits_after's, in SQL), no second.
	var applied, want int
	for _, s := range c.parts {
		var n, k int
		if err := s.Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE kind = 'transfer_in') - 10000 * count(*) FILTER (WHERE kind = 'transfer_out')
			FROM account_entries`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if err := s.Pool().QueryRow(ctx, `WITH g AS (SELECT position FROM events WHERE type = 'gift.debited' ORDER BY position LIMIT 7)
			SELECT count(*) FROM giftd_credits_after(0, (SELECT max(position) FROM g), 7)`).Scan(&k); err != nil {
			t.Fatal(err)
		}
		applied, want = applied+n, want+k
	}
	if applied != want || want == 0 {
		t.Fatalf("after the crash: %d; want %d first legs and no second", applied, want)
	}
	// The audit across partitions counts them in flight, not as problems.
	if r, err := Audit(ctx, c.parts); err != nil || !r.OK() || r.InFlight != r.Credits || r.Moved != 0 {
		t.Errorf("audit after the crash: %+v, %v; want every credit in flight", r, err)
	}
	// Two rival consumers run while more gifts come, then a third drains.
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, owner := range []string{"a", "b"} {
		cfg := DefaultConfig(owner)
		cfg.Batch, cfg.Lease, cfg.Idle = 5, 50*time.Millisecond, time.Millisecond
		r := New(c.parts, cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		wg.Go(func() { r.Run(rctx) })
	}
	c.gifts(t, "r2", all(senders), all(receivers), 5)
	stop()
	wg.Wait()
	c.drain(t, "drain")
	c.check(t)
	r, err := Audit(ctx, c.parts)
	if err != nil || !r.OK() || r.Moved != r.Credits || r.InFlight != 0 || r.Credits != 6*4*10/2 {
		t.Errorf("audit after the drain: %+v, %v; want %d credits (half of 6 senders × 4 receivers × 10 gifts), all moved", r, err, 6*4*10/2)
	}
}

// BenchmarkConsumer_Lag runs 64 goroutines sending gifts (half of them to
// a receiver on the other partition) through a partitioned store while one
// consumer moves the credits, and reports the credits' lag: from the gift's
// event (its transaction's start) to its first leg on the receiver's
// partition (that transaction's start), p50, p99 and max, with the
// consumer's defaults (a partition with nothing to move is read again
// after 100 ms):
//
//	go test -run '^$' -bench ConsumerLag -benchtime 20000x ./internal/credits/
func BenchmarkConsumer_Lag(b *testing.B) {
	l := pgtest.Partitioned(b, 2)
	ctx := context.Background()
	proxy, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(2, partition.For),
		ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(proxy.Close)
	var parts []*ledger.Store
	for _, u := range l.PartitionURLs {
		// Named, so that its backends' CPU is told apart (cpuOf).
		s, err := ledger.Open(ctx, withAppName(b, u, "giftd-credits"), ledger.WithBatching(ledger.Batching{MaxBatch: 1}), ledger.WithMaxConns(3))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(s.Close)
		parts = append(parts, s)
	}
	senders, receivers := usersOn("s", 128), usersOn("h", 50)
	for _, ss := range senders {
		for _, s := range ss {
			if _, err := proxy.TopUp(ctx, ledger.TopUp{UserID: s, Amount: 1 << 40, Key: "seed-" + s}); err != nil {
				b.Fatal(err)
			}
		}
	}
	rctx, stop := context.WithCancel(ctx)
	var cw sync.WaitGroup
	consumer := New(parts, DefaultConfig("bench"), nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	cw.Go(func() { consumer.Run(rctx) })
	cpu0 := cpuOf(b, parts[0])
	b.ResetTimer()
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := g; i < b.N; i += 64 {
				s := senders[i%2][(i/2)%128]
				r := receivers[(i/3)%2][i%50]
				id := fmt.Sprint("lag-", i)
				if _, err := proxy.Debit(ctx, ledger.Debit{
					Key: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id}, UserID: s, Gold: 10,
					Fingerprint: sha256.Sum256([]byte(id)), ExpiresAt: time.Now().Add(time.Hour),
					Gift: ledger.Gift{ReceiverID: r, RoomID: "room", GiftID: "rose", Count: 1},
				}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	// Wait for the consumer to move everything, then stop it.
	for _, s := range parts {
		var last int64
		if err := s.Pool().QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM events`).Scan(&last); err != nil {
			b.Fatal(err)
		}
		for {
			var cursor int64
			if err := s.Pool().QueryRow(ctx, `SELECT position FROM credit_cursor`).Scan(&cursor); err != nil {
				b.Fatal(err)
			}
			if cursor >= last {
				break
			}
			<-time.After(10 * time.Millisecond)
		}
	}
	cpu1 := cpuOf(b, parts[0])
	stop()
	cw.Wait()
	created := map[string]time.Time{} // '<p>:<position>' → the event's time
	for p, s := range parts {
		rows, _ := s.Pool().Query(ctx, `SELECT position, created_at FROM events WHERE type = 'gift.debited'`)
		for rows.Next() {
			var pos int64
			var at time.Time
			if err := rows.Scan(&pos, &at); err != nil {
				b.Fatal(err)
			}
			created[fmt.Sprintf("%d:%d", p, pos)] = at
		}
		rows.Close()
	}
	var lags []time.Duration
	for _, s := range parts {
		rows, _ := s.Pool().Query(ctx, `SELECT ref, created_at FROM account_entries WHERE kind = 'transfer_in'`)
		for rows.Next() {
			var ref string
			var at time.Time
			if err := rows.Scan(&ref, &at); err != nil {
				b.Fatal(err)
			}
			lags = append(lags, at.Sub(created[ref]))
		}
		rows.Close()
	}
	if len(lags) == 0 {
		return // b.N too small for a gift to another partition
	}
	slices.Sort(lags)
	q := func(f float64) float64 { return lags[min(len(lags)-1, int(f*float64(len(lags))))].Seconds() * 1000 }
	b.ReportMetric(q(0.5), "lag-p50-ms")
	b.ReportMetric(q(0.99), "lag-p99-ms")
	b.ReportMetric(lags[len(lags)-1].Seconds()*1000, "lag-max-ms")
	b.ReportMetric(float64(len(lags)), "credits")
	// The partitions' CPU: their backends' (the consumer's, and the
	// proxy's running the debits) per credit moved.
	var consumerCPU, partsCPU time.Duration
	for pid, t := range cpu1 {
		d := t.cpu - cpu0[pid].cpu
		partsCPU += d
		if t.app == "giftd-credits" {
			consumerCPU += d
		}
	}
	b.ReportMetric(float64(consumerCPU.Microseconds())/float64(len(lags)), "consumer-cpu-us/credit")
	b.ReportMetric(float64(partsCPU.Microseconds())/float64(len(lags)), "partitions-cpu-us/credit")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "debits/s")
	b.ReportMetric(0, "ns/op")
}

// withAppName returns databaseURL with application_name set to name.
func withAppName(tb testing.TB, databaseURL, name string) string {
	u, err := url.Parse(databaseURL)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// backendCPU is one backend's application name and CPU time so far.
type backendCPU struct {
	app string
	cpu time.Duration
}

// cpuOf returns the CPU time (user and system, from /proc) of every live
// backend of the databases of the server s is on, except the template and
// postgres databases, by pid. Backends that ended in between are missed (the
// pools keep theirs), so it is a lower bound.
func cpuOf(tb testing.TB, s *ledger.Store) map[int]backendCPU {
	rows, _ := s.Pool().Query(context.Background(), `SELECT pid, coalesce(application_name, '') FROM pg_stat_activity
		WHERE datname LIKE 'giftd\_p%'`)
	out := map[int]backendCPU{}
	for rows.Next() {
		var pid int
		var app string
		if err := rows.Scan(&pid, &app); err != nil {
			tb.Fatal(err)
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // ended meanwhile
		}
		// Fields 14 and 15 (utime, stime), in clock ticks (USER_HZ: 100 on
		// Linux), after the command name in parentheses.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[pid] = backendCPU{app: app, cpu: time.Duration(ut+st) * 10 * time.Millisecond}
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}
