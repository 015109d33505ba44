package partition_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/pgtest"
)

// TestPartitionStatus_NotJITCompiled holds giftd_partition_status, which
// every replica's readiness probe calls on every partition, to a plan that
// PostgreSQL does not JIT-compile. Its tables hold one row each and are
// never analysed (autovacuum waits for 50 changes), so the planner guessed
// thousands of rows each, costed their cross join at tens of millions and
// compiled it: 0.3–1 s per call under load, past readiness's 1 s for the
// proxy and two partitions, so loaded replicas turned not ready.
func TestPartitionStatus_NotJITCompiled(t *testing.T) {
	l := pgtest.Partitioned(t, 1)
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(l.PartitionURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	var plans []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { plans = append(plans, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var jit string
	if err := conn.QueryRow(ctx, `SELECT current_setting('jit')`).Scan(&jit); err != nil {
		t.Fatal(err)
	}
	if jit != "on" {
		t.Skipf("jit is %s on the test server: nothing to hold", jit)
	}
	// auto_explain sends the plan of every statement, the function's own
	// included, to this session as a notice.
	for _, q := range []string{`LOAD 'auto_explain'`, `SET auto_explain.log_min_duration = 0`,
		`SET auto_explain.log_nested_statements = on`, `SET client_min_messages = log`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// And giftd_partition_reshard_state (partition migration 21), read with
	// it in the same call through the proxy: its own tables are as small.
	for _, c := range []struct{ name, query, table string }{
		{"giftd_partition_status", `SELECT main_version::text FROM giftd_partition_status()`, "giftd_partition_identity"},
		{"giftd_partition_reshard_state", `SELECT fenced::text FROM giftd_partition_reshard_state()`, "giftd_reshard_fence"},
	} {
		plans = nil
		var v string
		if err := conn.QueryRow(ctx, c.query).Scan(&v); err != nil {
			t.Fatal(err)
		}
		inner := false
		for _, p := range plans {
			if strings.Contains(p, c.table) {
				inner = true
				if strings.Contains(p, "JIT") {
					t.Errorf("%s's statement is JIT-compiled:\n%s", c.name, p)
				}
			}
		}
		if !inner {
			t.Fatalf("auto_explain showed no plan of %s's statement: %q", c.name, plans)
		}
	}
}
