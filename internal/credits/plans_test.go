package credits

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestLegs_LookUpsStayOnTheIndexAsTheTablesGrow runs a few steps' legs on
// one connection per partition of a new cluster, while account_entries and
// earnings_accounts hold a few rows (the legs' plans are made then, once
// per connection), lets the tables grow by 20,000 rows each with no ANALYZE
// (autovacuum off for them, as in the minute before its first one), and
// counts, in the transaction of one more step's legs, the rows each read:
// the first legs' look-ups of the legs applied before read account_entries
// by each credit's exact key, the second legs' transit accounts by their
// receivers (partition migration 15). Before, the first legs read every
// transfer_in leg by the key's prefix, twice, and the second legs every
// earnings account.
func TestLegs_LookUpsStayOnTheIndexAsTheTablesGrow(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	connect := func(u string) *pgx.Conn {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	// Partition 0 is the source, 1 the receivers'.
	src, dst := connect(c.layout.PartitionURLs[0]), connect(c.layout.PartitionURLs[1])
	const batch = 8
	receivers := usersOn("plans", batch)[1]
	for _, conn := range []*pgx.Conn{src, dst} {
		if _, err := conn.Exec(ctx, `ALTER TABLE account_entries SET (autovacuum_enabled = false);
			ALTER TABLE earnings_accounts SET (autovacuum_enabled = false)`); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.Exec(ctx, `INSERT INTO earnings_accounts (receiver_id, balance) SELECT unnest($1::text[]), 1000000`, receivers); err != nil {
		t.Fatal(err)
	}
	from, ok, err := c.parts[0].LeaseCredits(ctx, "plans", time.Hour)
	if err != nil || !ok {
		t.Fatalf("lease: %v, %v", ok, err)
	}
	// reads returns what the transaction of tx read so far of the table the
	// leg reads (the backend's counts not yet reported, which may include
	// earlier transactions': callers take differences).
	reads := func(tx pgx.Tx, leg string) (seq, seqRead, idxRead int64) {
		t.Helper()
		table, index := "account_entries", "account_entries_key"
		if leg == "second" {
			table, index = "earnings_accounts", "earnings_accounts_pkey"
		}
		if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT seq_scan, seq_tup_read, pg_stat_get_xact_tuples_returned('%s'::regclass)
			FROM pg_stat_xact_user_tables WHERE relname = '%s'`, index, table)).Scan(&seq, &seqRead, &idxRead); err != nil {
			t.Fatal(err)
		}
		return seq, seqRead, idxRead
	}
	// step applies the legs of the next batch of credits, each leg in a
	// transaction, calling check in each with what the leg read.
	step := func(check func(leg string, seq, seqRead, idxRead int64)) {
		t.Helper()
		pos, amt := make([]int64, batch), make([]int64, batch)
		for i := range batch {
			pos[i], amt[i] = from+int64(i)+1, 5
		}
		upTo := from + batch
		for _, leg := range []struct {
			name string
			conn *pgx.Conn
			sql  string
			args []any
		}{
			{"first", dst, `SELECT giftd_credits_in(0, $1, $2, $3)`, []any{pos, receivers, amt}},
			{"second", src, `SELECT giftd_credit_out('plans', $1, $2, $3, $4, $5)`, []any{from, upTo, pos, receivers, amt}},
		} {
			err := pgx.BeginFunc(ctx, leg.conn, func(tx pgx.Tx) error {
				seq0, seqRead0, idxRead0 := reads(tx, leg.name)
				if _, err := tx.Exec(ctx, leg.sql, leg.args...); err != nil {
					return err
				}
				if check != nil {
					seq, seqRead, idxRead := reads(tx, leg.name)
					check(leg.name, seq-seq0, seqRead-seqRead0, idxRead-idxRead0)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%s legs after %d: %v", leg.name, from, err)
			}
		}
		from = upTo
	}
	for range 3 {
		step(nil)
	}
	// 20,000 more transfer_in legs (from another source) on the receivers'
	// partition, and 20,000 more transit accounts on the source.
	if _, err := connect(c.layout.PartitionURLs[1]).Exec(ctx, `INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref)
		SELECT 'earnings', 'nobody', 'transfer_in', 1, 1, '9:' || i FROM generate_series(1, 20000) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(c.layout.PartitionURLs[0]).Exec(ctx, `INSERT INTO earnings_accounts (receiver_id, balance)
		SELECT 'transit-' || i, 0 FROM generate_series(1, 20000) AS i`); err != nil {
		t.Fatal(err)
	}
	step(func(leg string, seq, seqRead, idxRead int64) {
		table, index := "account_entries", "account_entries_key"
		if leg == "second" {
			table, index = "earnings_accounts", "earnings_accounts_pkey"
		}
		t.Logf("%s legs of %d credits: %s read %d times sequentially (%d rows), %d entries of %s", leg, batch, table, seq, seqRead, idxRead, index)
		if seq != 0 || idxRead > 2*batch {
			t.Errorf("the %s legs of %d credits read %s %d times sequentially (%d rows) and %d entries of %s (20,000 more rows, not analysed); want each by its key",
				leg, batch, table, seq, seqRead, idxRead, index)
		}
	})
}
