package ledger

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// WithPartitions makes the Store partitioned (docs/scale-out.md): the URL
// given to Open is the PL/Proxy database's, in front of partitions
// partitions (a power of two), and place(userID, partitions) is the
// partition that owns userID (internal/partition.For; ledger cannot import
// it, since partition migrates through ledger). Group commit then keeps one
// batcher, with Batching's workers, per partition, so that a batch holds
// debits of one partition's users only and commits or fails as one; every
// batch runs there through the proxy's giftd_debit_gifts_on. Wallet and
// TopUp go to the user's partition through the proxy's giftd_wallet and
// giftd_topup; Recorded asks every partition; Ready checks the proxy and
// every partition; the reports, leaderboards and earnings read every
// partition, or the user's, and merge (reads.go). Open refuses a count that
// is not a power of two.
func WithPartitions(partitions int, place func(userID string, partitions int) int) Option {
	return func(s *Store) { s.partitions, s.place = partitions, place }
}

// Partitions is the number of partitions a partitioned Store routes over
// now (it grows when giftd reshard doubles the cluster), 0 for a Store on
// one database.
func (s *Store) Partitions() int {
	if r := s.route.Load(); r != nil {
		return r.n
	}
	return 0
}

// partitionOf is the partition that owns userID.
func (s *Store) partitionOf(userID string) int { return s.place(userID, s.route.Load().n) }

// routing is the partition count a partitioned Store routes by, with one
// batcher per partition when batching is on.
type routing struct {
	n        int
	batchers []*batcher
}

// routing returns the routing over n partitions, reusing the batchers of
// from (nil at Open).
func (s *Store) routing(from *routing, n int) *routing {
	r := &routing{n: n}
	if s.batching.MaxBatch > 1 {
		if from != nil {
			r.batchers = append(r.batchers, from.batchers...)
		}
		for len(r.batchers) < n {
			r.batchers = append(r.batchers, startBatcher(s, s.batching))
		}
	}
	return r
}

// recount reads the number of partitions the proxy routes over
// (giftd_partition_count, proxy migration 8) and, when it has grown (giftd
// reshard), routes by it from now on. It reports whether it grew. A count
// that is not a power of two, or smaller, is ignored: a resharding only
// doubles.
func (s *Store) recount(ctx context.Context) (bool, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT giftd_partition_count()`).Scan(&n); err != nil {
		return false, fmt.Errorf("read the proxy's partition count: %w", err)
	}
	s.routeMu.Lock()
	defer s.routeMu.Unlock()
	r := s.route.Load()
	if n <= r.n || n&(n-1) != 0 {
		return false, nil
	}
	s.route.Store(s.routing(r, n))
	return true, nil
}

// onePartition is the partition of debits' users under the current count,
// if they share one.
func (s *Store) onePartition(debits []Debit) (int, bool) {
	p := s.partitionOf(debits[0].UserID)
	for _, d := range debits[1:] {
		if s.partitionOf(d.UserID) != p {
			return 0, false
		}
	}
	return p, true
}

// isNotPlacedHere reports whether err is a partition's refusal of users it
// does not own (SQLSTATE GD001, partition migrations 3 and 8).
func isNotPlacedHere(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "GD001"
}

// checkPartitions refuses a partitioned Store that cannot route.
func (s *Store) checkPartitions() error {
	switch {
	case s.partitions == 0:
		return nil
	case s.partitions < 0 || s.partitions&(s.partitions-1) != 0:
		return fmt.Errorf("partitions: %d: want a power of two", s.partitions)
	case s.place == nil:
		return errors.New("partitions: no placement function")
	}
	return nil
}

// readyPartitioned is Ready in partitioned mode: the proxy answers, accepts
// writes and carries the proxy set; each partition, asked through the
// proxy, carries both of its sets and is claimed as the partition the
// proxy reaches it as. A partition that cannot be reached does not make
// giftd unready (every replica would leave the load balancer together, and
// the other partitions' users with them): its users' debits fail with a
// retryable 500 until it is back. One that answers but is behind, dirty or
// another partition does.
func (s *Store) readyPartitioned(ctx context.Context) error {
	var writable bool
	var version *int64
	var dirty *bool
	err := s.pool.QueryRow(ctx, `
		SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off', m.version, m.dirty
		FROM (SELECT) AS one LEFT JOIN giftd_proxy_migrations AS m ON true`).Scan(&writable, &version, &dirty)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01", err == nil && version == nil:
		return fmt.Errorf("%w: proxy: no proxy migration applied", ErrNotReady)
	case err != nil:
		return fmt.Errorf("proxy database: %w", err)
	case !writable:
		return fmt.Errorf("proxy: %w", ErrReadOnly)
	case *dirty || uint(*version) < s.latest.proxy:
		return fmt.Errorf("%w: proxy at version %d (dirty %t), want %d", ErrNotReady, *version, *dirty, s.latest.proxy)
	}
	// A replica that has not debited since giftd reshard doubled the
	// cluster learns the new count here.
	if _, err := s.recount(ctx); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	n := s.Partitions()
	for p := range n {
		var mainV, partV, claimed, of *int64
		var mainDirty, partDirty *bool
		var reshard ReshardState
		err := s.pool.QueryRow(ctx, `
			SELECT main_version, main_dirty, partition_version, partition_dirty, partition, partitions,
			       reshard_fenced, reshard_unforgotten
			FROM giftd_partition_readiness($1)`, p).Scan(&mainV, &mainDirty, &partV, &partDirty, &claimed, &of,
			&reshard.Fenced, &reshard.Unforgotten)
		switch {
		case partitionUnreachable(err):
			continue
		case err != nil:
			return fmt.Errorf("%w: partition %d: %w", ErrNotReady, p, err)
		}
		// Claimed as p of 2n, the proxy not switched: paused too.
		reshard.Fenced = reshard.Fenced || (of != nil && *of == int64(2*n))
		s.setReshardState(p, reshard)
		switch {
		case mainV == nil || partV == nil || *mainDirty || *partDirty ||
			uint(*mainV) < s.latestVersion || uint(*partV) < s.latest.partition:
			return fmt.Errorf("%w: partition %d at main version %s, partition version %s; want %d and %d",
				ErrNotReady, p, versionText(mainV, mainDirty), versionText(partV, partDirty), s.latestVersion, s.latest.partition)
		// Claimed as p of 2n: giftd reshard is between moving the claims
		// and switching the proxy, a moment of its pause.
		case claimed == nil || *claimed != int64(p) || (*of != int64(n) && *of != int64(2*n)):
			return fmt.Errorf("%w: the proxy reaches partition %d at a database claimed as another", ErrNotReady, p)
		}
	}
	return nil
}

// ReshardState is what a giftd reshard left on one partition, as the last
// readiness check read it (docs/scale-out.md#resharding-n--2n).
type ReshardState struct {
	// Fenced: a fence of a count above the partition's claim, or its claim
	// above the proxy's count (the claims moved, the proxy not switched): a
	// run stopped inside the pause, the moving users' writes refused (GD003,
	// GD001) until giftd reshard runs again (or the fence is lifted).
	Fenced bool
	// Unforgotten: the claim moved and the economy split, the forget (step
	// 4) not run: the partition holds rows it gave away.
	Unforgotten bool
}

// ReshardStates returns each partition's ReshardState as Ready last read it,
// partition i at index i: a partition not read yet (unreachable, or after
// one that made Ready fail) keeps the last state read, none at first.
func (s *Store) ReshardStates() []ReshardState {
	s.reshardMu.Lock()
	defer s.reshardMu.Unlock()
	return append([]ReshardState(nil), s.reshard...)
}

func (s *Store) setReshardState(p int, st ReshardState) {
	s.reshardMu.Lock()
	defer s.reshardMu.Unlock()
	for len(s.reshard) <= p {
		s.reshard = append(s.reshard, ReshardState{})
	}
	s.reshard[p] = st
}

// A Querier is one database's connection or pool (*pgx.Conn,
// *pgxpool.Pool): a partition's, as giftd reshard and a Store hold it.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// RecordReshardSwitch records on the partition db that the proxy routes
// over partitions partitions (giftd_reshard_switched, partition migration
// 22), if db is claimed as one of them (giftd_partition_identity): from
// then until the forget of a reshard to that count, the reads the proxy
// runs on every partition (RUN ON ALL: the period reports, room boards,
// earnings, wallet totals) leave out there the rows it gave away
// (docs/scale-out.md#the-audit-between-the-switch-and-the-forget). It
// reports whether it wrote the row now: not on a partition claimed as one
// of another count, or without migration 22 (which has no such reads), or
// where the row is already. The same row giftd reshard writes after its
// switch and giftd serve when a run stopped before it: one insert, nothing
// if it is there (ON CONFLICT DO NOTHING).
//
// Give it only a count read from the proxy (giftd_partition_count, or the
// count a reshard has just registered): the proxy's count only grows, and
// only at a reshard's switch, so the row is then a fact, whoever writes it
// and whenever (before, with or after giftd reshard's own; from any number
// of giftd serve replicas); and a partition claimed as one of that count
// is one the proxy routes over (the switch checks every claim through the
// proxy). Before the switch the partitions a reshard adds and those whose
// claims moved are claimed as one of the next count, which the proxy does
// not route over yet: nothing is written there. Its errors are the
// database's, as they are.
func RecordReshardSwitch(ctx context.Context, db Querier, partitions int) (written bool, err error) {
	var has bool
	if err := db.QueryRow(ctx, `SELECT to_regclass('giftd_reshard_switched') IS NOT NULL`).Scan(&has); err != nil || !has {
		return false, err
	}
	err = db.QueryRow(ctx, `
		WITH ins AS (INSERT INTO giftd_reshard_switched (partitions)
		             SELECT i.partitions FROM giftd_partition_identity AS i WHERE i.partitions = $1
		             ON CONFLICT (partitions) DO NOTHING RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM ins)`, partitions).Scan(&written)
	return written, err
}

// RecordReshardSwitches records the proxy's switch, where a giftd reshard
// did not, on each partition this Store uses directly (PartitionStores)
// whose last readiness check (Ready, ReshardStates) found a reshard not
// forgotten: RecordReshardSwitch at the count the Store routes over
// (Partitions, read from the proxy). A run stopped between the proxy's
// switch and its own record of it left the reads the proxy runs on every
// partition counting the rows it gave away a second time until its run
// again, and configuration changes refused (partition migration 26 lets
// them through once the switch is recorded); giftd serve calls this every
// second (two short queries a
// partition while it is not forgotten). It returns the partitions it wrote
// on, and the errors of those it could not write on (tried again at the
// next call).
func (s *Store) RecordReshardSwitches(ctx context.Context) ([]int, error) {
	n, parts := s.Partitions(), s.PartitionStores()
	var wrote []int
	var errs []error
	for p, st := range s.ReshardStates() {
		if p >= len(parts) || !st.Unforgotten {
			continue
		}
		written, err := RecordReshardSwitch(ctx, parts[p].pool, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("partition %d: record the switch to %d partitions: %w", p, n, err))
		}
		if written {
			wrote = append(wrote, p)
		}
	}
	return wrote, errors.Join(errs...)
}

func versionText(v *int64, dirty *bool) string {
	if v == nil {
		return "none"
	}
	if *dirty {
		return strconv.FormatInt(*v, 10) + " (dirty)"
	}
	return strconv.FormatInt(*v, 10)
}

// partitionUnreachable reports whether err is the proxy's report that it
// could not reach a partition, or lost its connection to it: PL/Proxy's
// connection errors (which name libpq's PQconnectPoll, or SQLSTATE class
// 08) and a partition ending the connection (57P01 and its kin).
func partitionUnreachable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P") ||
		strings.Contains(pgErr.Message, "PQconnectPoll")
}

// latestSets are the highest versions of the proxy and partition sets this
// binary embeds.
type latestSets struct{ proxy, partition uint }

func latestOf(set MigrationSet) (uint, error) {
	names, err := fs.Glob(set.fs, path.Join(set.dir, "*.up.sql"))
	if err != nil {
		return 0, err
	}
	var latest uint
	for _, name := range names {
		n, err := strconv.ParseUint(strings.SplitN(path.Base(name), "_", 2)[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("migration %s: name does not start with a version", name)
		}
		latest = max(latest, uint(n))
	}
	return latest, nil
}

// walletPartitioned is Wallet on the user's partition.
func (s *Store) walletPartitioned(ctx context.Context, userID string) (Wallet, error) {
	w := Wallet{UserID: userID}
	err := s.pool.QueryRow(ctx, `SELECT gold, updated_at FROM giftd_wallet($1)`, userID).Scan(&w.Gold, &w.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Wallet{}, fmt.Errorf("wallet %s: %w", userID, ErrNotFound)
	}
	if err != nil {
		return Wallet{}, fmt.Errorf("wallet %s: %w", userID, s.routed(err))
	}
	return w, nil
}

// Kinds of operators' idempotency keys, each claimed across partitions
// (claimKey).
const (
	keyTopUp    = "topup"
	keyReversal = "reversal"
	keyPayout   = "payout"
)

// claimKey claims an operator's idempotency key of kind for a call with
// content (what one server compares when the key is used again), through
// the proxy, on the partition the key's own placement names: every use of
// the key, for whatever user, meets the one claim, which commits before the
// operation runs on its user's partition. ErrKeyReused when the key is held
// by other content: used by it, or a call of it still in flight or ended
// unknown. The same content goes through (a retry, after a crash between
// the claim and the operation too: the operation is once per key on its
// partition). The caller passes the operation's error to settle, which
// tells the claim how the call ended when that is known, so that a key
// whose calls were all refused before writing is free for other content,
// as on one server. docs/scale-out.md#keys-across-partitions.
func (s *Store) claimKey(ctx context.Context, kind, key string, content map[string]any) (settle func(error), err error) {
	var mine bool
	if err := s.pool.QueryRow(ctx, `SELECT giftd_claim_key($1, $2, $3)`, kind, key, content).Scan(&mine); err != nil {
		return nil, fmt.Errorf("claim of the key: %w", s.userWriteErr(ctx, key, err))
	}
	if !mine {
		return nil, ErrKeyReused
	}
	return func(opErr error) {
		used := opErr == nil || errors.Is(opErr, ErrKeyReused)
		refused := false
		for _, e := range []error{ErrNotFound, ErrAlreadyReversed, ErrInsufficientEarnings, ErrBalanceOverflow,
			ErrCreditInTransit, ErrDebitAmbiguous, ErrReshardPaused} {
			refused = refused || errors.Is(opErr, e)
		}
		if !used && !refused {
			return // unknown: the claim keeps the call in flight for good
		}
		// Whatever becomes of the caller's context; if this fails, the claim
		// stays in flight, which only ever refuses more.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = s.pool.Exec(sctx, `SELECT giftd_key_settled($1, $2, $3, $4)`, kind, key, content, used)
	}, nil
}

// topUpPartitioned is TopUp on the user's partition, by its giftd_topup
// (partition migration 1): the same rows as TopUp on one database, once per
// key; a key used for another user or amount is ErrKeyReused, on this
// user's partition or another's (claimKey).
func (s *Store) topUpPartitioned(ctx context.Context, t TopUp) (Credit, error) {
	settle, err := s.claimKey(ctx, keyTopUp, t.Key, map[string]any{"user_id": t.UserID, "amount": t.Amount})
	if err != nil {
		return Credit{}, fmt.Errorf("top-up %s: %w", t.Key, err)
	}
	c, err := s.topUpOnPartition(ctx, t)
	settle(err)
	return c, err
}

// topUpOnPartition runs a claimed top-up on its user's partition.
func (s *Store) topUpOnPartition(ctx context.Context, t TopUp) (Credit, error) {
	c := Credit{UserID: t.UserID, Amount: t.Amount}
	err := s.pool.QueryRow(ctx, `SELECT entry_id, balance, replay FROM giftd_topup($1, $2, $3, $4)`,
		t.UserID, t.Amount, t.Key, t.Note).Scan(&c.EntryID, &c.Balance, &c.Replay)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "23505":
		// The partition's giftd_topup raises it for a key used for another
		// user or amount (PL/Proxy passes on the SQLSTATE, not always the
		// constraint's name).
		return Credit{}, fmt.Errorf("top-up %s: %w", t.Key, ErrKeyReused)
	case isOverflow(err):
		return Credit{}, fmt.Errorf("top-up %s: %w", t.Key, ErrBalanceOverflow)
	case err != nil:
		return Credit{}, fmt.Errorf("top-up %s: %w", t.Key, s.userWriteErr(ctx, t.UserID, err))
	}
	return c, nil
}
