package ledger_test

import (
	"context"
	"fmt"
	"testing"

	"giftd/internal/ledger"
)

// BenchmarkDebit_PostgresWorkPerDebit measures what PostgreSQL spends per
// debit, with earnings on, at migration 8's schema and at the latest, each
// on a database of its own on one server: one op is one batch of 64 gifts
// of 64 senders (of 1024) to 64 receivers (of 256), executed as one
// statement. It reports the server's CPU time (its backends' utime + stime
// from /proc) and the WAL written (pg_current_wal_lsn) per debit, which
// hold still when other work shares the machine; run nothing else on the
// test's server meanwhile (docs/benchmarks.md):
//
//	go test -run '^$' -bench PostgresWorkPerDebit -benchtime 400x -count 3 ./internal/ledger/
func BenchmarkDebit_PostgresWorkPerDebit(b *testing.B) {
	for _, version := range []uint{8, 0} {
		name := "schema=latest"
		if version > 0 {
			name = fmt.Sprint("schema=", version)
		}
		b.Run(name, func(b *testing.B) {
			url := emptyDatabase(b)
			var err error
			if version > 0 {
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
			defer s.Close()
			const senders, receivers, batch = 1024, 256, 64
			for u := range senders {
				if _, err := s.TopUp(context.Background(), ledger.TopUp{UserID: fmt.Sprint("s", u), Amount: 1 << 40, Key: fmt.Sprint("seed", u)}); err != nil {
					b.Fatal(err)
				}
			}
			n := 0
			run := func(rounds int) {
				for range rounds {
					debits := make([]ledger.Debit, batch)
					for i := range debits {
						n++
						debits[i] = gift(fmt.Sprintf("bench-%08d", n), fmt.Sprint("s", n%senders), 10,
							fmt.Sprint("h", (n*7)%receivers), "rose", 1)
					}
					if err := ledger.Execute(s, debits); err != nil {
						b.Fatal(err)
					}
				}
			}
			run(20) // warm the caches and the connection
			lsn := func() (v int64, at string) {
				if err := s.Pool().QueryRow(context.Background(), `SELECT pg_current_wal_lsn() - '0/0', pg_current_wal_lsn()::text`).Scan(&v, &at); err != nil {
					b.Fatal(err)
				}
				return v, at
			}
			wal0, from := lsn()
			cpu0 := serverCPU(b, s)
			b.ResetTimer()
			run(b.N)
			b.StopTimer()
			wal1, to := lsn()
			wal, cpu := wal1-wal0, serverCPU(b, s)-cpu0
			// pg_waldump --stats=record -s from -e to breaks the WAL down.
			b.Logf("WAL from %s to %s", from, to)
			debits := float64(b.N * batch)
			b.ReportMetric(float64(wal)/debits, "wal-B/debit")
			b.ReportMetric(float64(cpu.Microseconds())/debits, "server-cpu-µs/debit")
			b.ReportMetric(0, "ns/op")
		})
	}
}
