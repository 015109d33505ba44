package pgtest_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"giftd/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestURL_GivesSeparateMigratedDatabases(t *testing.T) {
	ctx := context.Background()
	urlA, urlB := pgtest.URL(t), pgtest.URL(t)
	if urlA == urlB {
		t.Fatalf("two URL calls gave the same URL %q", urlA)
	}
	a, b := connect(t, urlA), connect(t, urlB)
	if dbA, dbB := currentDatabase(t, a), currentDatabase(t, b); dbA == dbB {
		t.Fatalf("both URLs lead to database %q", dbA)
	}

	for name, conn := range map[string]*pgx.Conn{"a": a, "b": b} {
		for _, table := range []string{"wallets", "ledger_entries", "debit_requests"} {
			var n int
			err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables
				WHERE table_schema = 'public' AND table_name = $1`, table).Scan(&n)
			if err != nil {
				t.Fatalf("database %s: look up table %s: %v", name, table, err)
			}
			if n != 1 {
				t.Errorf("database %s: table %s missing", name, table)
			}
		}
	}

	if _, err := a.Exec(ctx, "INSERT INTO wallets (user_id, gold) VALUES ('u1', 7)"); err != nil {
		t.Fatalf("insert into a: %v", err)
	}
	if got := countWallets(t, a); got != 1 {
		t.Errorf("database a has %d wallets; want 1", got)
	}
	if got := countWallets(t, b); got != 0 {
		t.Errorf("database b has %d wallets after writing to a; want 0", got)
	}
}

func TestURL_DropsDatabaseWhenTestEnds(t *testing.T) {
	var inner string
	t.Run("inner", func(t *testing.T) { inner = pgtest.URL(t) })
	u, err := url.Parse(inner)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")

	conn := connect(t, pgtest.URL(t))
	var n int
	if err := conn.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestURL_ParallelCallsEachGetADatabase(t *testing.T) {
	for i := range 4 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			conn := connect(t, pgtest.URL(t))
			if got := countWallets(t, conn); got != 0 {
				t.Errorf("fresh database has %d wallets; want 0", got)
			}
		})
	}
}

func connect(t *testing.T, databaseURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func currentDatabase(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var name string
	if err := conn.QueryRow(context.Background(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

func countWallets(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM wallets").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
