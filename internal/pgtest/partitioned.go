package pgtest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/partition"
)

// Partitioned returns a partitioned giftd for tb (docs/scale-out.md): a
// PL/Proxy database and n partition databases (n a power of two), migrated
// and registered by partition.Migrate exactly as giftd migrate does it. For
// speed they are separate databases of the one test server, not separate
// servers: the proxy reaches its partitions over TCP like any other server,
// but they share one postmaster, so a partition is taken down by refusing
// connections to its database (see StopPartition), not by stopping a server.
// Every database is dropped when tb ends. Without PL/Proxy on the server
// (Debian: apt-get install postgresql-15-plproxy) tb fails under CI and is
// skipped, saying why, otherwise; the rest is as URL.
func Partitioned(tb testing.TB, n int) partition.Layout {
	tb.Helper()
	l := UnmigratedPartitioned(tb, n)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := partition.Migrate(ctx, l); err != nil {
		tb.Fatalf("pgtest: migrate the partitioned giftd: %v", err)
	}
	return l
}

// UnmigratedPartitioned is Partitioned without the migration: n + 1 empty
// databases, for tests of the migration itself.
func UnmigratedPartitioned(tb testing.TB, n int) partition.Layout {
	tb.Helper()
	shared.ready(tb)
	s := &shared
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.requireExtension(ctx, "plproxy"); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("pgtest: %v", err)
		}
		tb.Skipf("pgtest: skipped since CI is not set: %v", err)
	}
	suffix := randomHex()
	create := func(name string) string { return s.database(tb, name, s.createEmpty) }
	// Cleanups run last-in first-out: the partitions are dropped after the
	// proxy, whose backends hold connections to them.
	var l partition.Layout
	for i := range n {
		l.PartitionURLs = append(l.PartitionURLs, create(fmt.Sprintf("giftd_p%d_%s", i, suffix)))
	}
	l.ProxyURL = create("giftd_proxy_" + suffix)
	return l
}

// StopPartition makes the partition database of databaseURL refuse every
// connection, and ends those it has, as a partition whose server is down
// looks to the proxy; StartPartition undoes it. Both fail tb on error.
func StopPartition(tb testing.TB, databaseURL string) {
	tb.Helper()
	if err := shared.allowConnections(databaseURL, false); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
}

// StartPartition lets the partition database of databaseURL take
// connections again after StopPartition.
func StartPartition(tb testing.TB, databaseURL string) {
	tb.Helper()
	if err := shared.allowConnections(databaseURL, true); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
}

// requireExtension returns an error saying what to install when the server
// cannot create the extension name.
func (s *server) requireExtension(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int
	if err := s.admin.QueryRow(ctx, `SELECT count(*) FROM pg_available_extensions WHERE name = $1`, name).Scan(&n); err != nil {
		return fmt.Errorf("look for the %s extension on %s: %w", name, s.where(), err)
	}
	if n == 0 {
		return fmt.Errorf("%s has no %s extension (Debian: apt-get install postgresql-15-%s)", s.where(), name, name)
	}
	return nil
}

func (s *server) allowConnections(databaseURL string, allow bool) error {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("a partition URL that does not parse")
	}
	name := cfg.Database
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.admin.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s WITH ALLOW_CONNECTIONS %t", pgx.Identifier{name}.Sanitize(), allow)); err != nil {
		return fmt.Errorf("allow connections to %s: %t: %w", name, allow, err)
	}
	if allow {
		return nil
	}
	// pg_terminate_backend only signals: wait until every backend is gone,
	// with the timeout of ctx.
	for {
		var left int
		err := s.admin.QueryRow(ctx, `
			SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid()`, name).Scan(&left)
		if err != nil {
			return fmt.Errorf("end the connections to %s: %w", name, err)
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("end the connections to %s: %d still there: %w", name, left, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// EmptyDatabase returns the URL of a new database of the test server with
// nothing in it (a new partition for giftd reshard), dropped when tb ends.
// It fails or skips tb as URL does.
func EmptyDatabase(tb testing.TB) string {
	tb.Helper()
	shared.ready(tb)
	return shared.database(tb, "giftd_e_"+randomHex(), shared.createEmpty)
}
