// Package ledger owns giftd's money: wallets, the append-only ledger, the
// recorded outcome of every debit request, top-ups and reversals. Every SQL
// statement giftd runs lives in this package.
package ledger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"giftd/migrations"
)

// Sentinel errors; callers map them to their protocol's answers.
var (
	// ErrRequestReused: a debit key was already executed with other parameters.
	ErrRequestReused = errors.New("request id reused with different parameters")
	// ErrKeyReused: an operator idempotency key was already used for something else.
	ErrKeyReused = errors.New("idempotency key reused with different parameters")
	// ErrNotFound: the debit record, wallet or debit asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyReversed: the debit was already reversed under another key.
	ErrAlreadyReversed = errors.New("debit already reversed")
	// ErrBalanceOverflow: a credit would take a balance past what int64 holds.
	ErrBalanceOverflow = errors.New("balance would overflow")
	// ErrNotReady: the database is reachable but its schema is not the one this binary expects.
	ErrNotReady = errors.New("schema not migrated")
	// ErrReadOnly: the database answers but cannot take a debit: it is a
	// standby (in recovery), or its transactions are read-only.
	ErrReadOnly = errors.New("database is read-only (a standby, or transaction_read_only is on)")
)

// DefaultMaxConns is the pool size when the database URL sets no pool_max_conns.
const DefaultMaxConns = 16

// DefaultQueryExecMode is how the pool sends queries when the database URL
// sets no default_query_exec_mode. pgx's own default, cache_statement, names
// a prepared statement per query on each server connection, which collides
// when a transaction-pooling PgBouncer shares server connections between
// clients ("prepared statement stmtcache_… already exists"). cache_describe
// caches only the statement's description in the client and sends every
// query as an unnamed statement in one round trip, so it works the same on a
// direct connection and through any pooler. On a direct connection it costs
// the server a parse and plan per statement: about 8-12 µs of CPU per debit
// with group commit on, within the run-to-run spread of debits/s (see
// BenchmarkDebit_QueryExecModes). A URL may still choose cache_statement.
const DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe

// sqlStateReadOnly is PostgreSQL's read_only_sql_transaction: a write on a
// standby or in a read-only transaction.
const sqlStateReadOnly = "25006"

// Store is giftd's wallet store on PostgreSQL. Each exported method is one
// transaction (or one statement, which PostgreSQL runs as one).
type Store struct {
	pool          *pgxpool.Pool
	latestVersion uint
	batching      Batching
	batcher       *batcher // nil when batching is off or partitioned
	// Partitioned mode (WithPartitions): the pool is the proxy's. partitions
	// is the count given to Open (0: one database); route holds the count
	// giftd routes by now, which grows when the proxy's does (giftd
	// reshard), and one batcher per partition (none when batching is off).
	partitions int
	place      func(userID string, partitions int) int
	route      atomic.Pointer[routing]
	routeMu    sync.Mutex // one growth of route at a time
	// parts are direct Stores of each partition (WithPartitionStores):
	// configuration, events, webhooks and pruning partitioned; the first
	// partsInUse of them are in use (partition_stores.go).
	parts      []*Store
	partsInUse atomic.Int32
	partsMu    sync.Mutex // one GrowPartitionStores at a time
	// reshard is each partition's ReshardState as Ready last read it.
	reshard   []ReshardState
	reshardMu sync.Mutex
	// switchWait is where debits refused by a reshard's pause wait for the
	// proxy's switch (pausewait.go).
	switchWait switchWait
	configLog  *slog.Logger
	economy    Economy
	safeguards Safeguards
	now        func() time.Time // nil: the database's clock
	timer      atomic.Pointer[Timer]
	horizon    horizon
	maxConns   int32 // WithMaxConns
	latest     latestSets
}

// Open connects a pool to databaseURL, with DefaultBatching unless an option
// says otherwise. It does not wait for the database to be reachable; Ready
// tells whether it is. It refuses a URL that CheckURL refuses.
//
// Unless the URL says otherwise, the pool sends queries in
// DefaultQueryExecMode. Whatever the URL says, a connection that answers
// "read-only transaction" (SQLSTATE 25006) is closed at once and never
// reused: after a failover it is a connection to a standby, and a new one,
// with target_session_attrs=read-write, goes to the primary.
func Open(ctx context.Context, databaseURL string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// pgx's parse errors can quote the URL, password included.
		return nil, errors.New("DATABASE_URL: not a valid PostgreSQL connection string")
	}
	if err := checkHosts(&cfg.ConnConfig.Config); err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if !strings.Contains(databaseURL, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	for _, opt := range opts {
		if o, ok := maxConnsOf(opt); ok {
			cfg.MaxConns = o
		}
	}
	if !strings.Contains(databaseURL, "default_query_exec_mode") {
		cfg.ConnConfig.DefaultQueryExecMode = DefaultQueryExecMode
	}
	cfg.ConnConfig.OnPgError = dropReadOnly(cfg.ConnConfig.OnPgError)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	latest, err := latestVersion()
	if err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, latestVersion: latest, batching: DefaultBatching(), economy: DefaultEconomy()}
	for _, opt := range opts {
		opt(s)
	}
	if err := s.economy.Check(); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.safeguards.Check(); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.checkPartitions(); err != nil {
		pool.Close()
		return nil, err
	}
	if s.latest.proxy, err = latestOf(ProxyMigrations()); err != nil {
		pool.Close()
		return nil, err
	}
	if s.latest.partition, err = latestOf(PartitionMigrations()); err != nil {
		pool.Close()
		return nil, err
	}
	if s.batching.MaxBatch > 1 {
		s.batching.Workers = max(1, s.batching.Workers)
		s.batching.Timeout = cmp.Or(s.batching.Timeout, DefaultBatching().Timeout)
		if s.partitions == 0 {
			s.batcher = startBatcher(s, s.batching)
		}
	}
	if s.partitions > 0 {
		s.route.Store(s.routing(nil, s.partitions))
		// The first as many as the proxy routes over, unchecked as before:
		// Ready checks their claims through the proxy.
		s.partsInUse.Store(int32(min(len(s.parts), s.partitions)))
	}
	return s, nil
}

// Close stops batching after the batches in flight, then closes the pool,
// waiting for connections in use to be released.
func (s *Store) Close() {
	if s.batcher != nil {
		s.batcher.close()
	}
	if r := s.route.Load(); r != nil {
		for _, b := range r.batchers {
			b.close()
		}
	}
	s.pool.Close()
}

// Pool returns the connection pool, for its statistics.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// dropReadOnly wraps pgx's error handler (next, which closes the connection
// on FATAL errors) so that a connection answering SQLSTATE 25006 is closed
// too: the pool then destroys it when it is released, whichever query or
// transaction met the error, instead of keeping it for its whole lifetime.
func dropReadOnly(next pgconn.PgErrorHandler) pgconn.PgErrorHandler {
	return func(c *pgconn.PgConn, pgErr *pgconn.PgError) bool {
		if pgErr.Code == sqlStateReadOnly {
			return false
		}
		return next == nil || next(c, pgErr)
	}
}

// Ready returns nil when giftd can debit: the database answers, accepts
// writes, and carries every migration this binary embeds. It returns
// ErrReadOnly on a standby or a read-only connection (and drops that
// connection, so that the next check gets a new one), and ErrNotReady when
// the schema is behind or dirty.
func (s *Store) Ready(ctx context.Context) error {
	if s.partitions > 0 {
		return s.readyPartitioned(ctx)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	var writable bool
	var version *int64
	var dirty *bool
	err = conn.QueryRow(ctx, `
		SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off', m.version, m.dirty
		FROM (SELECT) AS one LEFT JOIN schema_migrations AS m ON true`).Scan(&writable, &version, &dirty)
	if err == nil && !writable {
		// Hijacked, the connection leaves the pool for good.
		_ = conn.Hijack().Close(ctx) // it is dropped either way
		return ErrReadOnly
	}
	conn.Release()
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01", err == nil && version == nil:
		return fmt.Errorf("%w: no migration applied", ErrNotReady)
	case err != nil:
		return fmt.Errorf("database: %w", err)
	case *dirty || uint(*version) < s.latestVersion:
		return fmt.Errorf("%w: at version %d (dirty %t), want %d", ErrNotReady, *version, *dirty, s.latestVersion)
	}
	return nil
}

// latestVersion is the highest migration version embedded in the binary.
func latestVersion() (uint, error) {
	names, err := fs.Glob(migrations.FS, "*.up.sql")
	if err != nil {
		return 0, err
	}
	var latest uint
	for _, name := range names {
		n, err := strconv.ParseUint(strings.SplitN(name, "_", 2)[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("migration %s: name does not start with a version", name)
		}
		latest = max(latest, uint(n))
	}
	return latest, nil
}

// Wallet is a user's balance.
type Wallet struct {
	UserID    string
	Gold      int64
	UpdatedAt time.Time
}

// Wallet returns the wallet of userID, or ErrNotFound if it never existed.
func (s *Store) Wallet(ctx context.Context, userID string) (Wallet, error) {
	defer s.observe(OpWallet, time.Now())
	if s.partitions > 0 {
		return s.walletPartitioned(ctx, userID)
	}
	w := Wallet{UserID: userID}
	err := s.pool.QueryRow(ctx, `SELECT gold, updated_at FROM wallets WHERE user_id = $1`, userID).
		Scan(&w.Gold, &w.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Wallet{}, fmt.Errorf("wallet %s: %w", userID, ErrNotFound)
	}
	if err != nil {
		return Wallet{}, fmt.Errorf("wallet %s: %w", userID, err)
	}
	return w, nil
}

// isUniqueViolation reports whether err is a unique violation of the named
// constraint or index.
func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint
}

// isOverflow reports whether err is PostgreSQL's numeric overflow.
func isOverflow(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "22003"
}

// CheckURL returns nil when giftd may use databaseURL, else what is wrong
// with it and what to change. It never quotes the URL, which may hold a
// password. A URL that lists several hosts must say
// target_session_attrs=read-write (or primary): otherwise pgx connects to
// the first host that answers, which after a failover or restart may be a
// standby, where every debit fails while reads still work.
func CheckURL(databaseURL string) error {
	cfg, err := pgconn.ParseConfig(databaseURL)
	if err != nil {
		return errors.New("not a valid PostgreSQL connection string")
	}
	return checkHosts(cfg)
}

func checkHosts(cfg *pgconn.Config) error {
	hosts := map[string]bool{net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))): true}
	for _, f := range cfg.Fallbacks {
		hosts[net.JoinHostPort(f.Host, strconv.Itoa(int(f.Port)))] = true
	}
	if len(hosts) < 2 {
		return nil
	}
	// pgx keeps target_session_attrs only as the check it runs on each new
	// connection; a top-level function's code pointer identifies it.
	validate := reflect.ValueOf(cfg.ValidateConnect).Pointer()
	for _, ok := range []pgconn.ValidateConnectFunc{
		pgconn.ValidateConnectTargetSessionAttrsReadWrite,
		pgconn.ValidateConnectTargetSessionAttrsPrimary,
	} {
		if cfg.ValidateConnect != nil && validate == reflect.ValueOf(ok).Pointer() {
			return nil
		}
	}
	return fmt.Errorf("lists %d hosts without target_session_attrs=read-write, so giftd could connect to a "+
		"standby and fail every debit; add target_session_attrs=read-write (or primary), as in "+
		"postgres://USER:PASSWORD@HOST1:5432,HOST2:5432/DB?target_session_attrs=read-write "+
		"or host=HOST1,HOST2 ... target_session_attrs=read-write", len(hosts))
}
