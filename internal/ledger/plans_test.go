package ledger_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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
	batch := func(tx pgx.Tx) { debitOneEach(t, tx, &n, "u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7") }
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

// TestDebit_LoneDebitsKeepTheirPlans calls giftd_debit_gifts with one debit
// at a time on one connection, auto_explain sending the plan of each of its
// statements back as a notice, and reads, in the eighth call, the plans of
// the two statements on wallets (step 4's lock, step 6's checked write):
// generic, their conditions naming the statement's parameters, not the
// call's user (main migration 12). Before, PL/pgSQL estimated a custom plan
// cheaper for one debit and planned both afresh on every lone debit, the
// user's id written into each plan.
func TestDebit_LoneDebitsKeepTheirPlans(t *testing.T) {
	ctx := context.Background()
	url := emptyDatabase(t)
	if err := ledger.Migrate(url); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var plans []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		plans = append(plans, n.Message)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	const user = "lone-debit-user"
	if _, err := conn.Exec(ctx, `INSERT INTO wallets (user_id, gold) VALUES ('`+user+`', 1000000);
		INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, ref)
		VALUES ('`+user+`', 'topup', 1000000, 1000000, 'admin', 'seed');
		LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;
		SET auto_explain.log_verbose = on; SET auto_explain.log_level = notice`); err != nil {
		t.Fatal(err)
	}
	n := 0
	for range 7 {
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { debitOneEach(t, tx, &n, user); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	plans = nil
	mu.Unlock()
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { debitOneEach(t, tx, &n, user); return nil }); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	onWallets := 0
	for _, p := range plans {
		if !strings.Contains(p, "FROM wallets") && !strings.Contains(p, "UPDATE wallets") {
			continue
		}
		onWallets++
		if strings.Contains(p, user) {
			t.Errorf("the eighth lone debit planned a statement on wallets for its user (a custom plan):\n%s", p)
		}
	}
	if onWallets < 2 {
		t.Fatalf("saw %d plans of statements on wallets in a lone debit; want step 4's and step 6's (%d plans in all)", onWallets, len(plans))
	}
}

// debitOneEach runs giftd_debit_gifts in tx with one debit of 1 gold for
// each of users (new request ids from *n), and fails t unless each is 200.
func debitOneEach(t *testing.T, tx pgx.Tx, n *int, users ...string) {
	t.Helper()
	ctx := context.Background()
	var platforms, apps, ids, details, rooms, gifts []string
	var fps [][]byte
	var golds, counts []int64
	var expires []time.Time
	var receivers []*string
	var prices []*int64
	for range users {
		*n++
		platforms, apps, ids = append(platforms, "linkv"), append(apps, "app"), append(ids, fmt.Sprint("r", *n))
		details = append(details, "{}")
		fps, golds, expires = append(fps, []byte{byte(*n)}), append(golds, 1), append(expires, time.Now().Add(time.Hour))
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
