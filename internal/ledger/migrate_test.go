package ledger_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-migrate/migrate/v4/database"
	"github.com/jackc/pgx/v5"

	"giftd/internal/ledger"
	"giftd/internal/pgtest"
)

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func connect(t testing.TB, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestMigrate_StaleGolangMigrateLockIsALoggedBoundedWait holds
// golang-migrate's advisory lock from an idle session, as a
// transaction-pooling PgBouncer leaves it: Migrate used to wait for it
// forever without a word; it must log what it waits for and give up.
func TestMigrate_StaleGolangMigrateLockIsALoggedBoundedWait(t *testing.T) {
	dbURL := pgtest.URL(t)
	u, _ := url.Parse(dbURL)
	id, err := database.GenerateAdvisoryLockId(u.Path, "public", "schema_migrations")
	if err != nil {
		t.Fatal(err)
	}
	holder := connect(t, dbURL)
	var pid int
	if err := holder.QueryRow(context.Background(), `SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock($1::bigint)) AS l`, id).Scan(&pid); err != nil {
		t.Fatal(err)
	}

	var log syncBuffer
	errc := make(chan error, 1)
	t0 := time.Now()
	go func() {
		errc <- ledger.Migrate(dbURL, ledger.WithLockWait(1500*time.Millisecond),
			ledger.WithMigrateLog(slog.New(slog.NewTextHandler(&log, nil)), 300*time.Millisecond))
	}()
	select {
	case err = <-errc:
	case <-time.After(20 * time.Second):
		t.Fatal("Migrate still waiting after 20 s for a lock nobody will release")
	}
	if err == nil || !strings.Contains(err.Error(), "gave up after 1.5s") || !strings.Contains(err.Error(), fmt.Sprint("backend pid ", pid)) {
		t.Errorf("Migrate = %v, want it to give up naming backend pid %d", err, pid)
	}
	if d := time.Since(t0); d < 1500*time.Millisecond || d > 10*time.Second {
		t.Errorf("Migrate gave up after %s, want about 1.5s", d)
	}
	if got := log.String(); strings.Count(got, "waiting for the migration lock") < 2 || !strings.Contains(got, "golang-migrate's advisory lock") {
		t.Errorf("log does not say, every 300ms, what Migrate waits for:\n%s", got)
	}
}

// TestMigrate_WaitsForAnotherGiftdsMigration holds giftd's migration lock
// for a second: Migrate waits, then goes on.
func TestMigrate_WaitsForAnotherGiftdsMigration(t *testing.T) {
	dbURL := pgtest.URL(t)
	holder := connect(t, dbURL)
	ctx := context.Background()
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(x'6769667464'::bigint)`); err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(time.Second)
		tx.Rollback(ctx) //nolint:errcheck // the test checks Migrate
	}()
	// The holder's connection is closed when the test ends: not before the
	// rollback is done with it.
	t.Cleanup(func() { <-released })
	var log syncBuffer
	t0 := time.Now()
	err = ledger.Migrate(dbURL, ledger.WithLockWait(30*time.Second), ledger.WithMigrateLog(slog.New(slog.NewTextHandler(&log, nil)), 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < time.Second {
		t.Errorf("Migrate returned after %s, while the lock was held for 1s", d)
	}
	if !strings.Contains(log.String(), "another giftd's migration") {
		t.Errorf("log does not say Migrate waited for another migration:\n%s", log.String())
	}
}

// TestMigrate_ConcurrentOnAnEmptyDatabase runs eight migrations of an empty
// database at once: each succeeds, and the schema ends at the latest
// version, clean.
func TestMigrate_ConcurrentOnAnEmptyDatabase(t *testing.T) {
	dbURL := emptyDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = ledger.Migrate(dbURL) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migration %d: %v", i, err)
		}
	}
	v, dirty, err := ledger.MigrationVersion(dbURL)
	if err != nil || dirty || v < 2 {
		t.Errorf("MigrationVersion = %d, dirty %t, %v; want the latest, clean", v, dirty, err)
	}
}

// emptyDatabase returns the URL of a new database with no migration
// applied, on pgtest's server; it is dropped when the test ends.
func emptyDatabase(t testing.TB) string {
	t.Helper()
	base := pgtest.URL(t)
	admin := connect(t, base)
	name := fmt.Sprintf("giftd_empty_%d", time.Now().UnixNano())
	if _, err := admin.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") //nolint:errcheck // best effort
	})
	u, _ := url.Parse(base)
	u.Path = "/" + name
	return u.String()
}

// TestMigrate_GolangMigrateWaitingForItsLockIsCancelledAfterTheBound plays
// golang-migrate blocked in pg_advisory_lock after Migrate found the lock
// free (another session took it meanwhile, or a transaction pool left it
// behind mid-migration): the watch must log what it waits for, cancel that
// wait after the bound and name the holder.
func TestMigrate_GolangMigrateWaitingForItsLockIsCancelledAfterTheBound(t *testing.T) {
	dbURL := pgtest.URL(t)
	const key, app = 424242, "giftd-migrate-test"
	holder := connect(t, dbURL)
	var pid int
	if err := holder.QueryRow(context.Background(), `SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock($1::bigint)) AS l`, key).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	waiter := connect(t, dbURL+"&application_name="+app)
	done := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(context.Background(), `SELECT pg_advisory_lock($1::bigint)`, key)
		done <- err
	}()
	var log syncBuffer
	t0 := time.Now()
	err := ledger.WatchMigration(dbURL, key, app, done, 1500*time.Millisecond, slog.New(slog.NewTextHandler(&log, nil)))
	if err == nil || !strings.Contains(err.Error(), "gave up after 1.5s") || !strings.Contains(err.Error(), fmt.Sprint("backend pid ", pid)) ||
		!strings.Contains(err.Error(), "canceling statement due to user request") {
		t.Errorf("watch = %v, want it to give up naming backend pid %d and cancel the wait", err, pid)
	}
	if d := time.Since(t0); d < 1500*time.Millisecond || d > 10*time.Second {
		t.Errorf("watch gave up after %s, want about 1.5s", d)
	}
	if got := log.String(); strings.Count(got, "waiting for the migration lock") < 2 {
		t.Errorf("log does not say, every 300ms, what golang-migrate waits for:\n%s", got)
	}
}

// TestMigrate_WatchLeavesALongMigrationAlone: a golang-migrate that runs
// long without waiting for its lock is never cut short.
func TestMigrate_WatchLeavesALongMigrationAlone(t *testing.T) {
	dbURL := pgtest.URL(t)
	const app = "giftd-migrate-test"
	worker := connect(t, dbURL+"&application_name="+app)
	done := make(chan error, 1)
	go func() {
		_, err := worker.Exec(context.Background(), `SELECT pg_sleep(2)`)
		done <- err
	}()
	if err := ledger.WatchMigration(dbURL, 424243, app, done, 500*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Errorf("watch = %v, want the long migration's own nil", err)
	}
}
