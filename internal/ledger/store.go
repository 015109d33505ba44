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
	"strconv"
	"strings"
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
)

// DefaultMaxConns is the pool size when the database URL sets no pool_max_conns.
const DefaultMaxConns = 16

// Store is giftd's wallet store on PostgreSQL. Each exported method is one
// transaction (or one statement, which PostgreSQL runs as one).
type Store struct {
	pool          *pgxpool.Pool
	latestVersion uint
	batching      Batching
	batcher       *batcher // nil when batching is off
	economy       Economy
	observer      atomic.Pointer[Observer]
}

// Open connects a pool to databaseURL, with DefaultBatching unless an option
// says otherwise. It does not wait for the database to be reachable; Ready
// tells whether it is.
func Open(ctx context.Context, databaseURL string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// pgx's parse errors can quote the URL, password included.
		return nil, errors.New("DATABASE_URL: not a valid PostgreSQL connection string")
	}
	if !strings.Contains(databaseURL, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
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
	if s.batching.MaxBatch > 1 {
		s.batching.Workers = max(1, s.batching.Workers)
		s.batching.Timeout = cmp.Or(s.batching.Timeout, DefaultBatching().Timeout)
		s.batcher = startBatcher(s, s.batching)
	}
	return s, nil
}

// Close stops batching after the batches in flight, then closes the pool,
// waiting for connections in use to be released.
func (s *Store) Close() {
	if s.batcher != nil {
		s.batcher.close()
	}
	s.pool.Close()
}

// Pool returns the connection pool, for its statistics.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ready returns nil when the database answers and carries every migration
// this binary embeds; ErrNotReady when the schema is behind or dirty.
func (s *Store) Ready(ctx context.Context) error {
	var version int64
	var dirty bool
	err := s.pool.QueryRow(ctx, `SELECT version, dirty FROM schema_migrations`).Scan(&version, &dirty)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01", errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: no migration applied", ErrNotReady)
	case err != nil:
		return fmt.Errorf("database: %w", err)
	case dirty || uint(version) < s.latestVersion:
		return fmt.Errorf("%w: at version %d (dirty %t), want %d", ErrNotReady, version, dirty, s.latestVersion)
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
