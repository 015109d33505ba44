package ledger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// BenchmarkDebit_PartitionWorkPerDebit measures what PostgreSQL spends per
// debit on one server and partitioned, at the same batch size, so that the
// partitioned cost is read apart from the smaller batches a partition gets
// under the same load (docs/scale-out.md#where-a-partitions-cpu-goes): one
// store of one connection on one database, and one through the proxy of a
// cluster of 2 (one connection: one proxy backend, one connection of it to
// partition 0), taking batches in turn. One op is one batch of each size
// on each: gifts with earnings on from distinct senders of partition 0 to
// receivers of which half live on partition 1 (a credit each through the
// outbox). It reports the CPU time (utime + stime from /proc) per debit of
// the single server's backend, of the proxy's backend and of partition 0's
// backend. Every database is on the test's one server; nothing else should
// use it meanwhile:
//
//	go test -run '^$' -bench PartitionWorkPerDebit -benchtime 300x -count 3 ./internal/ledger/
func BenchmarkDebit_PartitionWorkPerDebit(b *testing.B) {
	const senders, receivers = 20_000, 1000
	ctx := context.Background()
	l := pgtest.Partitioned(b, 2)
	single := emptyDatabase(b)
	if err := ledger.Migrate(single); err != nil {
		b.Fatal(err)
	}
	economy := ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000})
	one := ledger.WithBatching(ledger.Batching{MaxBatch: 1})
	open := func(url string, opts ...ledger.Option) *ledger.Store {
		s, err := ledger.Open(ctx, url, opts...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(s.Close)
		return s
	}
	var sendersOn0, receiverIDs []string
	for i := 0; len(sendersOn0) < senders; i++ {
		if u := fmt.Sprint("s", i); partition.For(u, 2) == 0 {
			sendersOn0 = append(sendersOn0, u)
		}
	}
	for i := range receivers {
		receiverIDs = append(receiverIDs, fmt.Sprint("h", i))
	}
	// The catalogue on every database, the senders' wallets where they live.
	for _, u := range append([]string{single}, l.PartitionURLs...) {
		s := open(u, one)
		if _, err := s.CreateGift(ctx, ledger.CatalogueGift{Platform: "linkv", GiftID: "rose", Name: "rose", Price: 10, ShareBP: 5000, Active: true}); err != nil {
			b.Fatal(err)
		}
		if u == l.PartitionURLs[1] {
			continue
		}
		if _, err := s.Pool().Exec(ctx, `
			WITH w AS (
				INSERT INTO wallets (user_id, gold) SELECT u, 1::bigint << 40 FROM unnest($1::text[]) AS u
				RETURNING user_id, gold
			)
			INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, ref)
			SELECT user_id, 'topup', gold, gold, 'admin', 'seed-' || user_id FROM w`, sendersOn0); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Pool().Exec(ctx, `VACUUM ANALYZE`); err != nil {
			b.Fatal(err)
		}
	}
	stores := map[string]*ledger.Store{
		"single":      open(single+"&pool_max_conns=1", economy, one),
		"partitioned": open(l.ProxyURL+"&pool_max_conns=1", economy, one, ledger.WithPartitions(2, partition.For)),
	}
	admin, err := pgx.Connect(ctx, single)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { admin.Close(ctx) })
	dbName := func(u string) string {
		c, err := pgx.ParseConfig(u)
		if err != nil {
			b.Fatal(err)
		}
		return c.Database
	}
	dbs := map[string]string{"single": dbName(single), "proxy": dbName(l.ProxyURL), "partition": dbName(l.PartitionURLs[0])}
	n := 0
	batch := func(size int) []ledger.Debit {
		ds := make([]ledger.Debit, size)
		for i := range ds {
			n++
			ds[i] = gift(fmt.Sprintf("bench-%08d", n), sendersOn0[(n*7919)%senders], 10, receiverIDs[n%receivers], "rose", 1)
		}
		return ds
	}
	for _, size := range []int{8, 16, 32, 64} {
		b.Run(fmt.Sprint("batch=", size), func(b *testing.B) {
			for range 10 { // warm the caches and the connections
				for _, name := range []string{"single", "partitioned"} {
					if err := ledger.Execute(stores[name], batch(size)); err != nil {
						b.Fatal(err)
					}
				}
			}
			cpu := map[string]time.Duration{}
			for k, db := range dbs {
				cpu[k] = -databaseCPU(b, admin, db)
			}
			b.ResetTimer()
			for range b.N {
				for _, name := range []string{"single", "partitioned"} {
					if err := ledger.Execute(stores[name], batch(size)); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			debits := float64(b.N * size)
			for k, db := range dbs {
				cpu[k] += databaseCPU(b, admin, db)
				b.ReportMetric(float64(cpu[k].Microseconds())/debits, "cpu-µs/debit@"+k)
			}
			b.ReportMetric(float64(cpu["partition"])/float64(cpu["single"]), "partition/single")
			b.ReportMetric(0, "ns/op")
		})
	}
}
