package ledger_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"giftd/internal/ledger"
)

// BenchmarkDebit_PostgresWorkPerDebit measures what PostgreSQL spends per
// debit, with earnings on, at a baseline schema (migration 8's, or
// GIFTD_BENCH_BASE_SCHEMA) and at the latest: two databases on one server,
// each with a store of one connection, taking batches in turn so that both
// see the same load on the machine. One op is one batch of 64 gifts of 64
// senders (of 100 000) to 64 receivers (of 1000) on each, executed as one
// statement; batch=1 takes lone debits instead. Per schema it reports the
// server's CPU time (the backend's utime + stime, from /proc) and the WAL
// written (pg_current_wal_lsn around each batch) per debit, which hold still
// when other work shares the machine; nothing else should use the test's
// server meanwhile (docs/benchmarks.md):
//
//	go test -run '^$' -bench PostgresWorkPerDebit/batch=64 -benchtime 600x -count 3 ./internal/ledger/
//	GIFTD_BENCH_BASE_SCHEMA=11 go test -run '^$' -bench PostgresWorkPerDebit/batch=1 -benchtime 4000x -count 3 ./internal/ledger/
func BenchmarkDebit_PostgresWorkPerDebit(b *testing.B) {
	base := uint(8)
	if v := os.Getenv("GIFTD_BENCH_BASE_SCHEMA"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			b.Fatalf("GIFTD_BENCH_BASE_SCHEMA: %v", err)
		}
		base = uint(n)
	}
	for _, batch := range []int{64, 1} {
		b.Run(fmt.Sprint("batch=", batch), func(b *testing.B) { postgresWorkPerDebit(b, base, batch) })
	}
}

func postgresWorkPerDebit(b *testing.B, base uint, batch int) {
	const senders, receivers = 100_000, 1000
	type schema struct {
		name  string
		s     *ledger.Store
		wal   int64
		cpu   time.Duration
		debit int
	}
	var schemas []*schema
	for _, version := range []uint{base, 0} {
		url := emptyDatabase(b)
		name := "latest"
		var err error
		if version > 0 {
			name = fmt.Sprint(version)
			err = ledger.MigrateTo(url, version)
		} else {
			err = ledger.Migrate(url)
		}
		if err != nil {
			b.Fatal(err)
		}
		s, err := ledger.Open(context.Background(), url+"&pool_max_conns=1",
			ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000}),
			ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(s.Close)
		// The senders' wallets and their top-ups, in two statements.
		if _, err := s.Pool().Exec(context.Background(), `
			WITH w AS (
				INSERT INTO wallets (user_id, gold) SELECT 's' || u, 1::bigint << 40 FROM generate_series(0, $1 - 1) AS u
				RETURNING user_id, gold
			)
			INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, ref)
			SELECT user_id, 'topup', gold, gold, 'admin', 'seed-' || user_id FROM w`, senders); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Pool().Exec(context.Background(), `VACUUM ANALYZE`); err != nil {
			b.Fatal(err)
		}
		schemas = append(schemas, &schema{name: name, s: s})
	}
	lsn := func(s *ledger.Store) (v int64) {
		if err := s.Pool().QueryRow(context.Background(), `SELECT pg_current_wal_lsn() - '0/0'`).Scan(&v); err != nil {
			b.Fatal(err)
		}
		return v
	}
	run := func(sc *schema) {
		debits := make([]ledger.Debit, batch)
		for i := range debits {
			sc.debit++
			n := sc.debit
			debits[i] = gift(fmt.Sprintf("bench-%08d", n), fmt.Sprint("s", (n*7919)%senders), 10,
				fmt.Sprint("h", (n*7)%receivers), "rose", 1)
		}
		wal0 := lsn(sc.s)
		if err := ledger.Execute(sc.s, debits); err != nil {
			b.Fatal(err)
		}
		sc.wal += lsn(sc.s) - wal0
	}
	for range 20 { // warm the caches and the connections
		for _, sc := range schemas {
			run(sc)
		}
	}
	for _, sc := range schemas {
		sc.wal, sc.cpu = 0, -serverCPU(b, sc.s)
	}
	b.ResetTimer()
	for range b.N {
		for _, sc := range schemas {
			run(sc)
		}
	}
	b.StopTimer()
	for _, sc := range schemas {
		sc.cpu += serverCPU(b, sc.s)
		debits := float64(b.N * batch)
		b.ReportMetric(float64(sc.wal)/debits, "wal-B/debit@"+sc.name)
		b.ReportMetric(float64(sc.cpu.Microseconds())/debits, "server-cpu-µs/debit@"+sc.name)
	}
	b.ReportMetric(float64(schemas[1].cpu)/float64(schemas[0].cpu), "cpu-latest/base")
	b.ReportMetric(0, "ns/op")
}
