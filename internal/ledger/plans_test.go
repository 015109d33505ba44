package ledger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/ledger"
)

// TestDebit_KeyLookUpStaysOnTheIndexAsTheTableGrows calls giftd_debit_gifts
// on one connection while debit_requests holds a few rows (PL/pgSQL keeps a
// generic plan from the sixth call on), then lets the table grow to 20,000
// records with no ANALYZE (autovacuum off for it, as in the minute before
// its first one), and counts, in the transaction of one more batch, the
// sequential scans of debit_requests: none (main migration 11 runs the
// function with enable_seqscan off). Before, the look-up of step 2 stayed
// the sequential scans it was planned as (80 in that batch).
func TestDebit_KeyLookUpStaysOnTheIndexAsTheTableGrows(t *testing.T) {
	ctx := context.Background()
	url := emptyDatabase(t)
	if err := ledger.Migrate(url); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, `ALTER TABLE debit_requests SET (autovacuum_enabled = false);
		INSERT INTO wallets (user_id, gold) SELECT 'u' || i, 1000000 FROM generate_series(0, 7) AS i;
		INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, ref)
		SELECT user_id, 'topup', gold, gold, 'admin', 'seed-' || user_id FROM wallets;
		ANALYZE`); err != nil {
		t.Fatal(err)
	}
	n := 0
	batch := func(tx pgx.Tx) {
		t.Helper()
		const size = 8
		var platforms, apps, ids, users, details, rooms, gifts []string
		var fps [][]byte
		var golds, counts []int64
		var expires []time.Time
		var receivers []*string
		var prices []*int64
		for i := range size {
			n++
			platforms, apps, ids = append(platforms, "linkv"), append(apps, "app"), append(ids, fmt.Sprint("r", n))
			users, details = append(users, fmt.Sprint("u", i)), append(details, "{}")
			fps, golds, expires = append(fps, []byte{byte(n)}), append(golds, 1), append(expires, time.Now().Add(time.Hour))
			receivers, rooms, gifts = append(receivers, nil), append(rooms, ""), append(gifts, "")
			counts, prices = append(counts, 1), append(prices, nil)
		}
		rows, err := tx.Query(ctx, `SELECT status FROM giftd_debit_gifts($1, $2, $3, $4, $5, $6, $7, $8::jsonb[], $9, $10,
			$11, $12, $13, false, false, 0, NULL, NULL)`,
			platforms, apps, ids, fps, users, golds, expires, details, receivers, rooms, gifts, counts, prices)
		if err != nil {
			t.Fatal(err)
		}
		statuses, err := pgx.CollectRows(rows, pgx.RowTo[int16])
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range statuses {
			if st != 200 {
				t.Fatalf("a debit answered %d; want 200", st)
			}
		}
	}
	for range 10 {
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { batch(tx); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	other := connect(t, url)
	if _, err := other.Exec(ctx, `INSERT INTO debit_requests (platform, app_id, request_id, fingerprint, user_id, gold,
		status, balance, expires_at) SELECT 'linkv', 'other', 'x' || i, '\x00', 'nobody', 1, 402, 0, now() + interval '1 hour'
		FROM generate_series(1, 20000) AS i`); err != nil {
		t.Fatal(err)
	}
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		batch(tx)
		var seq int64
		if err := tx.QueryRow(ctx, `SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'debit_requests'`).Scan(&seq); err != nil {
			return err
		}
		if seq != 0 {
			t.Errorf("a batch of 8 scanned debit_requests (20,000 records) %d times sequentially; want it by its key", seq)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
