package partition_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/pgtest"
	"giftd/migrations"
)

// TestReshardReads_CostOutsideTheWindow measures what partition migration 22
// costs the reads run on every partition outside a reshard's window (its
// figures are in docs/scale-out.md): a partition seeded with
// GIFTD_MEASURE_READS gifts of two days (5,000 senders, 200 receivers with 20
// account entries each, 500 rooms of which one takes a quarter), each read
// called as PL/Proxy calls it, timed on the client, with migration 22's
// functions and with those before it (its down migration's, in a schema of
// their own) in turns; then, with -v, the plans auto_explain logs for each
// (the queries inside the PL/pgSQL functions with their values), and the
// cost inside the window
// (the partition made to look split, fenced and switched at its own count,
// every gift under the cut). A measurement, not a check: it runs only when
// asked, as
//
//	GIFTD_MEASURE_READS=200000 go test -count=1 -v -run TestReshardReads_CostOutsideTheWindow ./internal/partition/
func TestReshardReads_CostOutsideTheWindow(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("GIFTD_MEASURE_READS"))
	if n <= 0 {
		t.Skip("a measurement: set GIFTD_MEASURE_READS to a number of gifts to run it")
	}
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	var plans []string
	cfg, err := pgx.ParseConfig(l.PartitionURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { plans = append(plans, n.Message) }
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	start := time.Now()
	if _, err := c.Exec(ctx, `
		CREATE TEMP TABLE g AS
		SELECT i, 'fan-' || (i % 5000) AS sender, 'host-' || (i * 7 % 200) AS receiver,
			'room-' || CASE WHEN i % 4 = 0 THEN 0 ELSE i % 500 END AS room, 'gift-' || (i % 50) AS gift,
			10 * (1 + i % 13)::bigint AS gold, now() - (i % 172800) * interval '1 second' - i * interval '1 microsecond' AS at
		FROM generate_series(1, `+strconv.Itoa(n)+`) AS i;
		INSERT INTO wallets (user_id, gold) SELECT DISTINCT sender, 1000000 FROM g;
		INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, app_id, ref, created_at)
		SELECT sender, 'debit', -gold, 0, 'linkv', 'app', 'b' || i, at FROM g;
		INSERT INTO gift_entries (debit_entry, platform, app_id, request_id, sender_id, receiver_id, room_id, gift_id,
			count, gold, share_bp, earnings, house, house_slot, created_at)
		SELECT l.id, 'linkv', 'app', 'b' || g.i, g.sender, g.receiver, g.room, g.gift, 1, g.gold, 5000, g.gold / 2,
			g.gold - g.gold / 2, 0, g.at
		FROM g JOIN ledger_entries l ON l.platform = 'linkv' AND l.app_id = 'app' AND l.ref = 'b' || g.i AND l.kind = 'debit';
		INSERT INTO earnings_accounts (receiver_id, balance) SELECT receiver_id, sum(earnings) FROM gift_entries GROUP BY 1;
		INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, created_at)
		SELECT 'earnings', 'host-' || r, 'payout', -1, 0, 'pay-' || r || '-' || k, now() - k * interval '2 hours'
		FROM generate_series(0, 199) AS r, generate_series(1, 20) AS k;
		DROP TABLE g;
		ANALYZE`); err != nil {
		t.Fatalf("seed: %v", err)
	}
	t.Logf("seeded %d gifts in %s", n, time.Since(start).Round(time.Second))

	// As PL/Proxy calls them: the function with its arguments as
	// parameters of an unnamed statement, planned at each call.
	dayAgo := time.Now().Add(-24 * time.Hour)
	far := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	type call struct {
		name, sql string
		args      []any
	}
	board := `SELECT * FROM giftd_room_board($1::text, $2::text, $3::text, $4::timestamptz, $5::int)`
	report := `SELECT * FROM giftd_report_gifts($1::text, $2::timestamptz, $3::timestamptz, $4::text, $5::text, $6::int)`
	reads := []call{
		{"hot room, senders 24h", board, []any{"linkv", "room-0", "senders", dayAgo, 20}},
		{"hot room, receivers 24h", board, []any{"linkv", "room-0", "receivers", dayAgo, 100001}},
		{"typical room, senders 24h", board, []any{"linkv", "room-7", "senders", dayAgo, 20}},
		{"receiver period 24h", `SELECT * FROM giftd_receiver_period($1::text, $2::timestamptz, $3::timestamptz)`,
			[]any{"host-3", dayAgo, time.Now()}},
		{"receiver ledger, 50", `SELECT * FROM giftd_earnings_ledger($1::text, $2::timestamptz, $3::text, $4::int, $5::bigint, $6::int)`,
			[]any{"host-3", far, "h", 0, int64(1<<63 - 1), 50}},
		{"earnings parts, hold 1h", `SELECT * FROM giftd_earnings_parts($1::text, $2::interval)`, []any{"host-3", time.Hour}},
		{"gifts by receiver, a day", report, []any{"receiver", dayAgo, time.Now(), "", "", 100001}},
		{"gifts by sender, a day, 100", report, []any{"sender", dayAgo, time.Now(), "", "", 100}},
		{"wallet totals", `SELECT count(*) AS wallets, coalesce(sum(w.gold), 0) AS gold FROM wallets AS w`, nil},
	}
	totals := `SELECT * FROM giftd_wallet_totals()`
	read := func(r call) time.Duration {
		t0 := time.Now()
		rows, err := c.Query(ctx, r.sql, r.args...)
		if err == nil {
			for rows.Next() {
			}
			rows.Close()
			err = rows.Err()
		}
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		return time.Since(t0)
	}
	// The functions before migration 22 (its down migration's) beside
	// its own, in a schema of their own, called in turns: both under the
	// same load.
	down, err := migrations.PartitionFS.ReadFile("partition/000022_reshard_reads.down.sql")
	if err != nil {
		t.Fatal(err)
	}
	var creates []string
	for _, line := range strings.Split(string(down), "\n") {
		if !strings.HasPrefix(line, "DROP ") {
			creates = append(creates, line)
		}
	}
	if _, err := c.Exec(ctx, `CREATE SCHEMA before; SET search_path = before, public; `+strings.Join(creates, "\n")+
		`; SET search_path = public`); err != nil {
		t.Fatalf("the functions before migration 22: %v", err)
	}
	of := func(r call, set string) call {
		switch {
		case set == "after" && r.name == "wallet totals":
			r.sql = totals
		case set == "before" && r.name != "wallet totals":
			r.sql = strings.Replace(r.sql, "FROM giftd_", "FROM before.giftd_", 1)
		}
		return r
	}
	const runs = 31
	took := map[string][]time.Duration{}
	for _, r := range reads {
		read(of(r, "before")) // the first call of a session compiles the function
		read(of(r, "after"))
	}
	for i := range runs {
		for _, r := range reads {
			for k := range 2 {
				set := []string{"before", "after"}[(i+k)%2] // each first in turn
				took[set+r.name] = append(took[set+r.name], read(of(r, set)))
			}
		}
	}
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds()) / 1000
	}
	var out strings.Builder
	fmt.Fprintf(&out, "%d gifts, median of %d calls each in turns, ms: before  after  migration 22\n", n, runs)
	for _, r := range reads {
		fmt.Fprintf(&out, "%-30s %8.2f %6.2f\n", r.name, median(took["before"+r.name]), median(took["after"+r.name]))
	}

	// The plans, as auto_explain logs them with the values of the call.
	if _, err := c.Exec(ctx, `LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;
		SET auto_explain.log_nested_statements = on; SET auto_explain.log_analyze = on;
		SET auto_explain.log_timing = off; SET client_min_messages = log`); err != nil {
		t.Fatal(err)
	}
	for _, r := range reads {
		for _, set := range []string{"before", "after"} {
			plans = plans[:0]
			read(of(r, set))
			t.Logf("%s, %s:\n%s", set, r.name, strings.Join(plans, "\n"))
		}
	}
	if _, err := c.Exec(ctx, `SET client_min_messages = notice; SET auto_explain.log_min_duration = -1`); err != nil {
		t.Fatal(err)
	}

	// Inside the window: this partition made to look split at its own
	// count, fenced, switched, every gift and entry under the cut (the
	// gifts of senders placed on partition 1, about half, left out).
	if _, err := c.Exec(ctx, `
		INSERT INTO giftd_reshard_split (partitions, floor) VALUES (2, 0);
		INSERT INTO giftd_reshard_fence (partitions) VALUES (2);
		INSERT INTO giftd_reshard_switched (partitions) VALUES (2);
		INSERT INTO giftd_reshard_presplit (partitions, gift_cut, entry_cut, rows)
		SELECT 2, (SELECT max(id) FROM gift_entries), (SELECT max(id) FROM account_entries), 0`); err != nil {
		t.Fatalf("the window: %v", err)
	}
	fmt.Fprintf(&out, "inside the window (every row under the cut), median of %d calls, ms:\n", runs/2)
	for _, r := range reads {
		if r.name == "wallet totals" {
			r.sql = totals
		}
		read(r)
		var d []time.Duration
		for range runs / 2 {
			d = append(d, read(r))
		}
		fmt.Fprintf(&out, "%-30s %8.2f\n", r.name, median(d))
	}
	t.Log("\n" + out.String())
}
