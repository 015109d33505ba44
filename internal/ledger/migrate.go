package ledger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // registers pgx5://
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"

	"giftd/migrations"
)

// DefaultMigrateLockWait is how long a migration waits for the migration
// lock before giving up, unless WithLockWait says otherwise.
const DefaultMigrateLockWait = time.Minute

// DefaultMigrateLogEvery is how often a migration waiting for the lock
// says so, unless WithMigrateLog says otherwise.
const DefaultMigrateLogEvery = 5 * time.Second

// migrationLockKey is giftd's own advisory lock around a migration
// ("giftd" in ASCII). It is a transaction lock, held in a transaction kept
// open on a connection of its own, so it stays on one server connection
// even through a transaction-pooling PgBouncer, and ends with that
// transaction or connection, never left behind.
const migrationLockKey int64 = 0x6769667464

// MigrateOption configures Migrate, MigrateDown and MigrationVersion.
type MigrateOption func(*migrateConfig)

type migrateConfig struct {
	lockWait time.Duration
	logEvery time.Duration
	log      *slog.Logger
	set      MigrationSet
}

// A MigrationSet is one of giftd's embedded sets of migrations, each with a
// version table of its own, so that two sets can share a database.
type MigrationSet struct {
	name  string
	fs    fs.FS
	dir   string
	table string
}

// String is the set's name, for messages.
func (s MigrationSet) String() string { return s.name }

// MainMigrations is giftd's schema (migrations.FS, version table
// schema_migrations): giftd's database, or each partition's in partitioned
// mode. Migrate applies it unless WithMigrationSet says otherwise.
func MainMigrations() MigrationSet {
	return MigrationSet{name: "main", fs: migrations.FS, dir: ".", table: "schema_migrations"}
}

// ProxyMigrations is the PL/Proxy database's schema in partitioned mode
// (migrations.ProxyFS, version table giftd_proxy_migrations;
// docs/scale-out.md).
func ProxyMigrations() MigrationSet {
	return MigrationSet{name: "proxy", fs: migrations.ProxyFS, dir: "proxy", table: "giftd_proxy_migrations"}
}

// PartitionMigrations is what each partition adds to MainMigrations in
// partitioned mode, applied after it (migrations.PartitionFS, version table
// giftd_partition_migrations).
func PartitionMigrations() MigrationSet {
	return MigrationSet{name: "partition", fs: migrations.PartitionFS, dir: "partition", table: "giftd_partition_migrations"}
}

// WithMigrationSet makes Migrate, MigrateDown and MigrationVersion work on
// set instead of MainMigrations.
func WithMigrationSet(set MigrationSet) MigrateOption {
	return func(c *migrateConfig) { c.set = set }
}

// WithLockWait bounds the wait for the migration lock (d > 0).
func WithLockWait(d time.Duration) MigrateOption {
	return func(c *migrateConfig) { c.lockWait = d }
}

// WithMigrateLog makes a migration that waits for the lock log what it
// waits for, every every (DefaultMigrateLogEvery when 0).
func WithMigrateLog(log *slog.Logger, every time.Duration) MigrateOption {
	return func(c *migrateConfig) {
		c.log = log
		if every > 0 {
			c.logEvery = every
		}
	}
}

// migrationURL checks databaseURL and returns it for pgx (postgres://) and
// for golang-migrate (pgx5://).
func migrationURL(databaseURL string) (pgxURL, migrateURL string, err error) {
	u, err := url.Parse(databaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", "", errors.New("migration database URL: not a postgres:// URL")
	}
	if err := CheckURL(databaseURL); err != nil {
		return "", "", fmt.Errorf("migration database URL: %w", err)
	}
	// The server refuses pgxpool's own settings.
	q := u.Query()
	for k := range q {
		if strings.HasPrefix(k, "pool_") {
			q.Del(k)
		}
	}
	// pgx's default mode names prepared statements, which collide through a
	// transaction-pooling PgBouncer (as for the pool: see DefaultQueryExecMode).
	if !q.Has("default_query_exec_mode") {
		q.Set("default_query_exec_mode", "cache_describe")
	}
	u.RawQuery = q.Encode()
	pgxURL = u.String()
	// golang-migrate's pgx/v5 driver registers only the pgx5:// scheme.
	u.Scheme = "pgx5"
	return pgxURL, u.String(), nil
}

// withMigrate takes the migration lock (see lockMigrations), opens
// golang-migrate on the embedded migrations for databaseURL and runs step
// on it, watching that golang-migrate does not wait for its own lock
// longer than the bound (see watch).
func withMigrate(databaseURL string, opts []MigrateOption, step func(*migrate.Migrate) error) error {
	cfg := migrateConfig{lockWait: DefaultMigrateLockWait, logEvery: DefaultMigrateLogEvery, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		set: MainMigrations()}
	for _, o := range opts {
		o(&cfg)
	}
	pgxURL, migrateURL, err := migrationURL(databaseURL)
	if err != nil {
		return err
	}
	lock, err := lockMigrations(pgxURL, cfg)
	if err != nil {
		return err
	}
	defer lock.release()
	src, err := iofs.New(cfg.set.fs, cfg.set.dir)
	if err != nil {
		return fmt.Errorf("open embedded %s migrations: %w", cfg.set, err)
	}
	// golang-migrate's connections carry a name of their own, so that watch
	// can tell them from anyone else's.
	u, _ := url.Parse(migrateURL) // built by migrationURL
	q := u.Query()
	q.Set("application_name", lock.appName)
	q.Set("x-migrations-table", cfg.set.table)
	u.RawQuery = q.Encode()
	done := make(chan error, 1)
	go func() {
		m, err := migrate.NewWithSourceInstance("iofs", src, u.String())
		if err != nil {
			done <- fmt.Errorf("open migrations on database: %w", err)
			return
		}
		err = step(m)
		m.Close()
		done <- err
	}()
	return lock.watch(done, cfg)
}

// A migrationLock is giftd's migration lock, held in a transaction open on
// a connection of its own.
type migrationLock struct {
	conn             *pgx.Conn
	golangMigrateKey int64
	appName          string // of golang-migrate's connections
	release          func()
}

// lockMigrations waits, at most cfg.lockWait and logging every
// cfg.logEvery, until this process holds giftd's migration lock and
// golang-migrate's own advisory lock is free.
//
// golang-migrate takes a session advisory lock with pg_advisory_lock, which
// waits without end or word. Through a transaction-pooling PgBouncer its
// lock and unlock can land on different server connections, leaving the
// lock held by an idle server connection for good; a later start would then
// hang silently. giftd's own lock serialises giftd's migrations safely
// through any pooler; waiting for golang-migrate's lock to be free before
// calling it turns a stale lock into a logged wait and a clear error.
func lockMigrations(pgxURL string, cfg migrateConfig) (_ *migrationLock, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.lockWait+30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgxURL)
	if err != nil {
		return nil, fmt.Errorf("migration lock: connect: %w", err)
	}
	l := &migrationLock{conn: conn, appName: "giftd-migrate-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	// Closing ends the transaction, and with it the lock.
	l.release = func() { conn.Close(context.Background()) } //nolint:errcheck // nothing to do about it
	defer func() {
		if err != nil {
			l.release()
		}
	}()
	var schema string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	// The key golang-migrate's pgx/v5 driver derives from the URL's path
	// (with its slash), the schema and its table.
	u, _ := url.Parse(pgxURL) // parsed already by migrationURL
	id, err := database.GenerateAdvisoryLockId(u.Path, schema, cfg.set.table)
	if err != nil {
		return nil, err
	}
	if l.golangMigrateKey, err = strconv.ParseInt(id, 10, 64); err != nil {
		return nil, fmt.Errorf("migration lock: golang-migrate's lock id %q: %w", id, err)
	}

	start, lastLog := time.Now(), time.Now()
	for {
		waitingFor, err := tryMigrationLock(ctx, conn, l.golangMigrateKey)
		if err != nil {
			return nil, fmt.Errorf("migration lock: %w", err)
		}
		if waitingFor == "" {
			return l, nil
		}
		waited := time.Since(start)
		if waited >= cfg.lockWait {
			return nil, giveUp(cfg, waitingFor)
		}
		if time.Since(lastLog) >= cfg.logEvery {
			cfg.log.Warn("waiting for the migration lock", "waiting_for", waitingFor,
				"waited", waited.Round(time.Second).String(), "gives_up_after", cfg.lockWait.String())
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("migration lock: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func giveUp(cfg migrateConfig, waitingFor string) error {
	return fmt.Errorf("migration lock: gave up after %s (GIFTD_MIGRATE_LOCK_WAIT) waiting for %s; "+
		"if that session is stuck, end it with SELECT pg_terminate_backend(pid), and migrate over a direct "+
		"or session-pooled connection (GIFTD_MIGRATE_DATABASE_URL), never a transaction pool",
		cfg.lockWait, waitingFor)
}

// watch waits for golang-migrate's work to send its result on done. Should
// golang-migrate's connection wait for golang-migrate's lock (which another
// session took since lockMigrations found it free, or which a transaction
// pool left behind in the middle of this very migration), it logs what it
// waits for every cfg.logEvery and, after cfg.lockWait, cancels that wait
// and returns an error saying who held the lock. A migration that runs
// long without waiting for that lock is never cut short.
func (l *migrationLock) watch(done <-chan error, cfg migrateConfig) error {
	var blockedSince, lastLog time.Time
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		waiter, holder, err := l.blocked(ctx)
		cancel()
		if err != nil || waiter == 0 {
			blockedSince = time.Time{}
			continue
		}
		now := time.Now()
		if blockedSince.IsZero() {
			blockedSince, lastLog = now, now
		}
		waitingFor := "golang-migrate's advisory lock, held by " + holder
		if now.Sub(blockedSince) >= cfg.lockWait {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := l.conn.Exec(ctx, `SELECT pg_cancel_backend($1)`, waiter)
			cancel()
			if err != nil {
				return fmt.Errorf("migration lock: cancel golang-migrate's wait: %w", err)
			}
			return errors.Join(giveUp(cfg, waitingFor), <-done)
		}
		if now.Sub(lastLog) >= cfg.logEvery {
			cfg.log.Warn("waiting for the migration lock", "waiting_for", waitingFor,
				"waited", now.Sub(blockedSince).Round(time.Second).String(), "gives_up_after", cfg.lockWait.String())
			lastLog = now
		}
	}
}

// blocked returns the backend of golang-migrate's connection when it waits
// for golang-migrate's lock, and who holds that lock; waiter is 0 when it
// does not wait.
func (l *migrationLock) blocked(ctx context.Context) (waiter int32, holder string, err error) {
	err = l.conn.QueryRow(ctx, `
		SELECT l.pid FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)
		WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = $2
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid AND l.objsubid = 1
		LIMIT 1`, l.golangMigrateKey, l.appName).Scan(&waiter)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", err
	}
	holder, err = lockHolder(ctx, l.conn, l.golangMigrateKey)
	return waiter, holder, err
}

// tryMigrationLock tries once to take giftd's migration lock, in a
// transaction left open on conn when it succeeds and golang-migrate's lock
// is free; then it returns "". Otherwise it rolls back and says what holds
// the lock it waits for.
func tryMigrationLock(ctx context.Context, conn *pgx.Conn, golangMigrateKey int64) (waitingFor string, err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return "", err
	}
	var got bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, migrationLockKey).Scan(&got); err != nil {
		tx.Rollback(ctx) //nolint:errcheck // the query's error says more
		return "", err
	}
	key, what := migrationLockKey, "another giftd's migration"
	if got {
		key, what = golangMigrateKey, "golang-migrate's advisory lock"
	}
	holder, err := lockHolder(ctx, tx, key)
	if err != nil {
		tx.Rollback(ctx) //nolint:errcheck // the query's error says more
		return "", err
	}
	if got && holder == "" {
		return "", nil // the transaction stays open: the lock is ours until conn closes
	}
	if err := tx.Rollback(ctx); err != nil {
		return "", err
	}
	if holder == "" {
		holder = "a session that just let go"
	}
	return what + ", held by " + holder, nil
}

// lockHolder describes the other session holding the advisory lock key in
// this database, or returns "" when none does.
func lockHolder(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, key int64) (string, error) {
	var pid int
	var state, app, client string
	var idleSecs int64
	err := q.QueryRow(ctx, `
		SELECT a.pid, coalesce(a.state, ''), coalesce(a.application_name, ''),
		       coalesce(host(a.client_addr), 'local'),
		       coalesce(extract(epoch FROM now() - a.state_change)::bigint, 0)
		FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)
		WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid AND l.objsubid = 1
		LIMIT 1`, key).Scan(&pid, &state, &app, &client, &idleSecs)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("backend pid %d (%s for %ds, application_name %q, client %s)", pid, state, idleSecs, app, client), nil
}

// Migrate applies every pending migration to the database at databaseURL.
// Concurrent callers, in this process or others, are serialised by giftd's
// migration lock, waited for at most DefaultMigrateLockWait (or
// WithLockWait); on giving up it returns an error naming the session that
// holds the lock. databaseURL should reach PostgreSQL directly or through a
// session pool: see lockMigrations.
func Migrate(databaseURL string, opts ...MigrateOption) error {
	return withMigrate(databaseURL, opts, func(m *migrate.Migrate) error {
		if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return fmt.Errorf("migrate up: %w", err)
		}
		return nil
	})
}

// MigrateDown reverts the newest applied migration, under the same lock as
// Migrate. It returns an error when no migration is applied.
func MigrateDown(databaseURL string, opts ...MigrateOption) error {
	return withMigrate(databaseURL, opts, func(m *migrate.Migrate) error {
		if err := m.Steps(-1); err != nil {
			return fmt.Errorf("migrate down: %w", err)
		}
		return nil
	})
}

// MigrationVersion reports the applied schema version and whether a failed
// migration left it dirty; version 0 means no migration is applied. It
// takes the lock too, since golang-migrate locks to read the version.
func MigrationVersion(databaseURL string, opts ...MigrateOption) (version uint, dirty bool, err error) {
	err = withMigrate(databaseURL, opts, func(m *migrate.Migrate) error {
		var err error
		version, dirty, err = m.Version()
		if errors.Is(err, migrate.ErrNilVersion) {
			version, dirty = 0, false
			return nil
		}
		if err != nil {
			return fmt.Errorf("migration version: %w", err)
		}
		return nil
	})
	return version, dirty, err
}
