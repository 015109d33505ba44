package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Configuration on every partition (docs/scale-out.md#configuration-on-every-partition).
//
// The debit function reads the gift catalogue, the rooms' receivers and the
// apps' policies on the sender's partition, and each partition delivers its
// own events to the webhook endpoints: all of them must be on every
// partition. PostgreSQL gives no transaction across partitions, so a change
// is made on the home (partition 0) by the single-server code, in its one
// transaction, and the state it leaves is then copied to the others by the
// partition set's giftd_copy_* functions (partition migration 7), each
// carrying the home's order number of the change so that a copy applies
// once and never over a newer one. A copy that fails leaves the change on
// the home and the partitions it reached: the call returns ErrPartlyApplied
// naming them, and the same request again, or SyncConfig, copies it again
// and converges. Reads are the home's; ConfigDrift compares the partitions.

// ErrPartlyApplied: a configuration change was made on the home partition
// but not copied to every other one (one was unreachable). Retry the same
// request, or SyncConfig: either copies the home's state again.
var ErrPartlyApplied = errors.New("configuration change applied on some partitions only")

// ErrReshardPaused: giftd reshard is in its pause (from its fence to the
// proxy's switch) and the partitions refused the write: a configuration or
// policy change (SQLSTATE GD003, partition migration 23), or a write of a
// user the reshard is moving to a new partition (a LinkV account saved, a
// wallet move's step: GD003 behind the fence, GD001 from the partition the
// user is leaving once its claim moved; see userWriteErr). Retry: once the
// proxy has switched, the same request lands on every partition, or on the
// user's new one. A change made through the proxy on every partition (a
// user's policy) may have been applied on some before the others were
// fenced; the retry makes them alike. Earnings returns it too, at the
// pause's end, between the claims' move and the switch (partition
// migration 25), where an earnings account would read wrong.
var ErrReshardPaused = errors.New("giftd reshard is in its pause: configuration changes and the writes of the users it moves are refused until the proxy switches; retry")

// reshardPaused marks err as ErrReshardPaused when it is a partition's
// refusal during a reshard's pause (GD003).
func reshardPaused(err error) error {
	if isFenced(err) && !errors.Is(err, ErrReshardPaused) {
		return fmt.Errorf("%w: %w", ErrReshardPaused, err)
	}
	return err
}

// userWriteErr is the error of a write of userID's own rows through the
// proxy (a LinkV account saved, a wallet move's step, a top-up, a
// reversal, a payout; or the claim of an operator's key, placed as a user
// is, passed as userID): routed's, and marked ErrReshardPaused when giftd
// reshard's pause refused it, so that the caller stops cleanly and runs
// again after the switch. Two refusals are the pause's: the fence's (GD003,
// partition migrations 8, 11 and 13: the user or key is moving, its writes
// are refused until the switch; with earnings on, every payout and gift
// reversal on an old partition until its economy is split); and, once the
// reshard has moved the old partitions' claims (giftd_reshard_claim, from
// i of n to i of 2n) and before the proxy switches, the refusal by the
// partition the user is leaving of a user it no longer owns (GD001 from
// giftd_check_placed_here, partition migration 6). GD001 also means a
// database not claimed as a partition, or the proxy reaching one claimed
// as another (its partition URLs out of order): those are not the pause,
// and stay as they are. pausedClaim tells them apart by reading the claim
// of the partition the proxy routes userID to.
func (s *Store) userWriteErr(ctx context.Context, userID string, err error) error {
	err = reshardPaused(s.routed(err))
	if s.partitions > 0 && isNotPlacedHere(err) && !errors.Is(err, ErrReshardPaused) && s.pausedClaim(ctx, userID) {
		return fmt.Errorf("%w: %w", ErrReshardPaused, err)
	}
	return err
}

// pausedClaim reports whether the partition the proxy routes userID to now
// is claimed as that partition of twice the proxy's count (a reshard's
// pause between the claims' move and the switch, the partition userID is
// leaving refusing it), or of the proxy's count, so owning userID (the
// switch came between the refusal and this read: the same write now goes
// through). A partition not claimed, claimed as another, or a read that
// fails is not the pause.
func (s *Store) pausedClaim(ctx context.Context, userID string) bool {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT giftd_partition_count()`).Scan(&n); err != nil || n < 1 || n&(n-1) != 0 {
		return false
	}
	p := s.place(userID, n)
	var partition, partitions int
	err := s.pool.QueryRow(ctx, `SELECT partition, partitions FROM giftd_partition_identity($1)`, p).Scan(&partition, &partitions)
	if err != nil || partition != p {
		return false
	}
	return partitions == 2*n || partitions == n
}

// isFenced reports whether err is a partition's refusal behind a reshard's
// fence (SQLSTATE GD003, partition migrations 8, 11, 12 and 23).
func isFenced(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "GD003"
}

// ErrNoPartitionStores: a partitioned Store was opened without
// WithPartitionStores, so it cannot reach the partitions' configuration.
var ErrNoPartitionStores = errors.New("partitioned store without direct partition connections")

// WithPartitionStores gives a partitioned Store a Store on each partition's
// own database, in partition order, through which it reads and writes the
// configuration every partition holds (the catalogue, rooms' receivers,
// apps' policies, webhook endpoints), the events and webhook deliveries of
// each partition, and prunes them. There may be more than the partitions
// the proxy routes over: only those are used, and the next ones once the
// proxy routes over them (GrowPartitionStores). The caller owns and closes
// them.
func WithPartitionStores(parts []*Store) Option {
	return func(s *Store) { s.parts = parts }
}

// SetConfigLog makes a partitioned Store log each partition a configuration
// copy failed on (the error, which names no secret, stays out of answers).
func (s *Store) SetConfigLog(log *slog.Logger) { s.configLog = log }

// home is the partition every configuration change is made on first.
func (s *Store) home() (*Store, error) {
	parts := s.PartitionStores()
	if len(parts) == 0 {
		return nil, ErrNoPartitionStores
	}
	return parts[0], nil
}

// copyStatement is one copy of a key's state, run on every other partition:
// args, given the partition's Store, are the statement's arguments there.
type copyStatement struct {
	sql  string
	args func(ctx context.Context, p *Store) ([]any, error)
}

// recountedPartitionStores is RoutedPartitionStores once the proxy's
// partition count is read again (recount): a giftd that has not yet
// learned that giftd reshard doubled the cluster (it learns at a debit the
// old partition refuses, GD001, at its readiness probe, or at serve's
// growth tick) would otherwise copy a change to the old partitions only. Configuration changes are rare:
// a query more each costs nothing.
func (s *Store) recountedPartitionStores(ctx context.Context) ([]*Store, error) {
	if _, err := s.recount(ctx); err != nil {
		return nil, err
	}
	return s.RoutedPartitionStores()
}

// spread copies the home's state of one key (read by read, nil statement:
// nothing to copy) to every other partition, each on its own. It returns
// ErrPartlyApplied naming the partitions it failed on; copying nothing,
// ErrPartlyApplied wrapping ErrPartitionsNotConnected when this Store does
// not use every partition the proxy routes over, or wrapping the proxy's
// error when its count cannot be read.
//
// It reads the proxy's count again (the change's caller read it before
// changing the home): if giftd reshard switched the proxy to 2n partitions
// since, its own copy of the configuration, made after the switch, may
// have read the home before this change, so this copy must reach the new
// partitions; if the switch comes after this read, it came after the
// change was made on the home, and the reshard's copy takes it there.
func (s *Store) spread(ctx context.Context, what string, read func(ctx context.Context, home *Store) (*copyStatement, error)) error {
	parts, err := s.recountedPartitionStores(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w: copied from partition 0 to no other: %w", what, ErrPartlyApplied, err)
	}
	home := parts[0]
	st, err := read(ctx, home)
	if err != nil {
		return fmt.Errorf("%s: read partition 0: %w", what, err)
	}
	if st == nil {
		return nil
	}
	var failed []int
	paused := false
	for i, p := range parts[1:] {
		args, err := st.args(ctx, p)
		if err == nil {
			_, err = p.pool.Exec(ctx, st.sql, args...)
		}
		if err != nil {
			failed = append(failed, i+1)
			paused = paused || isFenced(err)
			if s.configLog != nil {
				s.configLog.Warn("configuration copy failed", "what", what, "partition", i+1, "err", err.Error())
			}
		}
	}
	if failed != nil {
		applied := []int{0}
		for i := 1; i < len(parts); i++ {
			if !slices.Contains(failed, i) {
				applied = append(applied, i)
			}
		}
		err := fmt.Errorf("%s: %w: applied on partitions %v, not on %v; retry the same request or POST /admin/v1/config/sync",
			what, ErrPartlyApplied, applied, failed)
		if paused {
			// A change made on partition 0 before its fence, copied after
			// it: the retry after the switch copies it to every partition.
			err = fmt.Errorf("%w (%w)", err, ErrReshardPaused)
		}
		return err
	}
	return nil
}

func sameArgs(a ...any) func(context.Context, *Store) ([]any, error) {
	return func(context.Context, *Store) ([]any, error) { return a, nil }
}

// spreadGift copies the home's gift platform/giftID to every partition.
func (s *Store) spreadGift(ctx context.Context, platform, giftID string) error {
	return s.spread(ctx, "gift "+platform+"/"+giftID, func(ctx context.Context, home *Store) (*copyStatement, error) {
		a := make([]any, 9)
		var created, updated time.Time
		var version int
		var name string
		var price int64
		var share int
		var active bool
		err := home.pool.QueryRow(ctx, `
			SELECT version, name, price, share_bp, active, created_at, updated_at FROM gift_catalogue
			WHERE platform = $1 AND gift_id = $2`, platform, giftID).
			Scan(&version, &name, &price, &share, &active, &created, &updated)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8] = platform, giftID, version, name, price, share, active, created, updated
		return &copyStatement{sql: `SELECT giftd_copy_gift($1, $2, $3, $4, $5, $6, $7, $8, $9)`, args: sameArgs(a...)}, nil
	})
}

// spreadRoom copies the home's receiver of a room (or its absence) to every
// partition; its order is the home's newest history row of the room.
func (s *Store) spreadRoom(ctx context.Context, platform, roomID string) error {
	return s.spread(ctx, "room "+platform+"/"+roomID, func(ctx context.Context, home *Store) (*copyStatement, error) {
		var receiver *string
		var seq *int64
		if err := home.pool.QueryRow(ctx, `
			SELECT (SELECT receiver_id FROM room_receivers WHERE platform = $1 AND room_id = $2),
			       (SELECT max(id) FROM room_receivers_history WHERE platform = $1 AND room_id = $2)`,
			platform, roomID).Scan(&receiver, &seq); err != nil {
			return nil, err
		}
		if seq == nil {
			return nil, nil
		}
		return &copyStatement{sql: `SELECT giftd_copy_room($1, $2, $3, $4)`, args: sameArgs(platform, roomID, receiver, *seq)}, nil
	})
}

// spreadAppPolicy copies the home's policy of the app subject (or its
// absence) to every partition; its order is the home's newest history row.
func (s *Store) spreadAppPolicy(ctx context.Context, subject string) error {
	return s.spread(ctx, "policy app "+subject, func(ctx context.Context, home *Store) (*copyStatement, error) {
		var seq *int64
		var policy []byte
		var at *time.Time
		var by *string
		if err := home.pool.QueryRow(ctx, `
			SELECT (SELECT max(id) FROM spend_policy_history WHERE scope = 'app' AND subject = $1),
			       p.pol, p.updated_at, p.updated_by
			FROM (SELECT) AS one
			LEFT JOIN (SELECT jsonb_build_object('max_debit', max_debit, 'cap_24h', cap_24h, 'cap_month', cap_month,
			                  'remind_day', remind_day, 'cooling_off_s', cooling_off_s) AS pol, updated_at, updated_by
			           FROM spend_policies WHERE scope = 'app' AND subject = $1) AS p ON true`,
			subject).Scan(&seq, &policy, &at, &by); err != nil {
			return nil, err
		}
		if seq == nil {
			return nil, nil
		}
		return &copyStatement{sql: `SELECT giftd_copy_app_policy($1, $2, $3, $4, $5)`,
			args: sameArgs(subject, *seq, policy, at, by)}, nil
	})
}

// spreadEndpoint copies the home's configuration of a webhook endpoint (or
// its absence) to every partition, where a new one starts at that
// partition's event horizon. Its order is a number of the home's
// giftd_config_seq taken in the statement that reads the endpoint under a
// share lock, so a change committed after the read waits for it and is read
// with a greater number (updated_at, a transaction's start, would not
// order two changes the way their locks did).
func (s *Store) spreadEndpoint(ctx context.Context, id string) error {
	return s.spread(ctx, "webhook endpoint "+id, func(ctx context.Context, home *Store) (*copyStatement, error) {
		var seq int64
		var url, desc *string
		var types, secrets []string
		var enabled *bool
		err := home.pool.QueryRow(ctx, `
			SELECT nextval('giftd_config_seq'), url, description, event_types, secrets, enabled
			FROM webhook_endpoints WHERE id = $1 FOR SHARE`, id).Scan(&seq, &url, &desc, &types, &secrets, &enabled)
		if errors.Is(err, pgx.ErrNoRows) {
			// Deleted (an id is never made again): any number after the
			// deletion orders it after every copy read before.
			err = home.pool.QueryRow(ctx, `SELECT nextval('giftd_config_seq')`).Scan(&seq)
		}
		if err != nil {
			return nil, err
		}
		return &copyStatement{sql: `SELECT giftd_copy_webhook($1, $2, $3, $4, $5, $6, $7, $8)`,
			args: func(ctx context.Context, p *Store) ([]any, error) {
				upTo := int64(0)
				if url != nil {
					var err error
					if upTo, err = p.EventHorizon(ctx); err != nil {
						return nil, err
					}
				}
				return []any{id, seq, url, desc, types, secrets, enabled, upTo}, nil
			}}, nil
	})
}

// Kinds of configuration every partition holds.
const (
	ConfigGifts       = "gifts"
	ConfigRooms       = "rooms"
	ConfigAppPolicies = "app_policies"
	ConfigWebhooks    = "webhooks"
	// ConfigUserPolicies are the users' spending policies: written through
	// the proxy on every partition (RUN ON ALL), not copied from partition
	// 0, so compared (ConfigDrift) but never copied (SyncConfig): a
	// partition that differs gets the policy again by the same PUT or
	// DELETE of it.
	ConfigUserPolicies = "user_policies"
)

// configDigests are the queries of one digest of each kind's configuration
// on a partition: equal digests, equal configuration.
var configDigests = map[string]string{
	ConfigGifts: `SELECT md5(coalesce(string_agg(json_build_array(platform, gift_id, version, name, price, share_bp, active)::text,
		',' ORDER BY platform, gift_id), '')) FROM gift_catalogue`,
	ConfigRooms: `SELECT md5(coalesce(string_agg(json_build_array(platform, room_id, receiver_id)::text,
		',' ORDER BY platform, room_id), '')) FROM room_receivers`,
	ConfigAppPolicies: `SELECT md5(coalesce(string_agg(json_build_array(subject, max_debit, cap_24h, cap_month, remind_day, cooling_off_s)::text,
		',' ORDER BY subject), '')) FROM spend_policies WHERE scope = 'app'`,
	ConfigWebhooks: `SELECT md5(coalesce(string_agg(json_build_array(id, url, description, event_types, secrets, enabled)::text,
		',' ORDER BY id), '')) FROM webhook_endpoints`,
	// What a debit reads of each user's policy; not when or by whom it was
	// written (each partition's own clock), and the time as a number, not
	// as text in the session's time zone.
	ConfigUserPolicies: `SELECT md5(coalesce(string_agg(json_build_array(subject, max_debit, cap_24h, cap_month, remind_day,
		cooling_off_s, time_zone, minor, blocked, consent, extract(epoch FROM suspended_until))::text,
		',' ORDER BY subject), '')) FROM spend_policies WHERE scope = 'user'`,
}

// ConfigKinds returns the kinds of configuration every partition holds:
// those copied from partition 0 (CopiedConfigKinds), then the users'
// policies.
func ConfigKinds() []string {
	return append(CopiedConfigKinds(), ConfigUserPolicies)
}

// CopiedConfigKinds returns the kinds SyncConfig copies from partition 0.
func CopiedConfigKinds() []string {
	return []string{ConfigGifts, ConfigRooms, ConfigAppPolicies, ConfigWebhooks}
}

// Drift is one partition whose configuration of one kind is not the home's.
type Drift struct {
	Kind      string `json:"kind"`
	Partition int    `json:"partition"`
	// Reason is "differs" (from partition 0), "unreachable" when the
	// partition (or the home) could not be read, or "not connected" when
	// this giftd does not use it (ConfigDrift).
	Reason string `json:"reason"`
}

// ConfigDrift compares each kind's configuration (all kinds when none is
// given) on every partition with the home's, and returns every partition
// that differs or could not be read; none: they all agree. It returns
// ErrNoPartitionStores on a Store not partitioned with WithPartitionStores.
// A change being copied at that moment shows as drift until it is. A
// partition the proxy routes over and this Store does not use (yet) is
// one of Reason "not connected", of every kind.
func (s *Store) ConfigDrift(ctx context.Context, kinds ...string) ([]Drift, error) {
	parts := s.PartitionStores()
	out, err := ConfigDriftOf(ctx, parts, s.configLog, kinds...)
	if err != nil {
		return nil, err
	}
	if len(kinds) == 0 {
		kinds = ConfigKinds()
	}
	for _, k := range kinds {
		for i := len(parts); i < s.Partitions(); i++ {
			out = append(out, Drift{Kind: k, Partition: i, Reason: "not connected"})
		}
	}
	return out, nil
}

// ConfigDriftOf is ConfigDrift of the partitions' own Stores parts, in
// partition order (giftd audit's); log, if not nil, is told why a
// partition could not be read.
func ConfigDriftOf(ctx context.Context, parts []*Store, log *slog.Logger, kinds ...string) ([]Drift, error) {
	if len(parts) == 0 {
		return nil, ErrNoPartitionStores
	}
	if len(kinds) == 0 {
		kinds = ConfigKinds()
	}
	var out []Drift
	for _, k := range kinds {
		q, ok := configDigests[k]
		if !ok {
			return nil, fmt.Errorf("config drift: no kind %q", k)
		}
		digests := make([]string, len(parts))
		for i, p := range parts {
			if err := p.pool.QueryRow(ctx, q).Scan(&digests[i]); err != nil {
				if ctx.Err() != nil {
					return nil, fmt.Errorf("config drift: %w", ctx.Err())
				}
				digests[i] = ""
				if log != nil {
					log.Warn("configuration digest failed", "kind", k, "partition", i, "err", err.Error())
				}
			}
		}
		for i := 1; i < len(digests); i++ {
			switch {
			case digests[0] == "" || digests[i] == "":
				out = append(out, Drift{Kind: k, Partition: i, Reason: "unreachable"})
			case digests[i] != digests[0]:
				out = append(out, Drift{Kind: k, Partition: i, Reason: "differs"})
			}
		}
	}
	return out, nil
}

// DriftText is drift as one line: "gifts: partition 1 differs; …".
func DriftText(drift []Drift) string {
	parts := make([]string, len(drift))
	for i, d := range drift {
		parts[i] = fmt.Sprintf("%s: partition %d %s", d.Kind, d.Partition, d.Reason)
	}
	return strings.Join(parts, "; ")
}

// SyncReport is what SyncConfig copied.
type SyncReport struct {
	// Keys is how many keys (gifts, rooms, app policies, endpoints) it copied.
	Keys int `json:"keys"`
	// Failed names the keys whose copy failed somewhere, with the partitions.
	Failed []string `json:"failed"`
}

// SyncConfig copies the home's state of every configuration key to every
// other partition (each copy skipped where it is applied already): after a
// change that returned ErrPartlyApplied, it makes the partitions agree.
// Endpoints a partition has and the home does not are deleted there. It
// reads the proxy's partition count first and returns
// ErrPartitionsNotConnected, copying nothing, when this Store does not use
// every partition the proxy routes over; otherwise an error only when the
// home cannot be read: copies that fail are in the report.
func (s *Store) SyncConfig(ctx context.Context) (SyncReport, error) {
	parts, err := s.recountedPartitionStores(ctx)
	if err != nil {
		return SyncReport{}, fmt.Errorf("config sync: %w", err)
	}
	home := parts[0]
	type key struct{ kind, a, b string }
	var keys []key
	collect := func(kind, sql string) error {
		rows, _ := home.pool.Query(ctx, sql)
		ks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (key, error) {
			k := key{kind: kind}
			return k, row.Scan(&k.a, &k.b)
		})
		keys = append(keys, ks...)
		return err
	}
	for _, q := range []struct{ kind, sql string }{
		{ConfigGifts, `SELECT platform, gift_id FROM gift_catalogue ORDER BY 1, 2`},
		{ConfigRooms, `SELECT DISTINCT platform, room_id FROM room_receivers_history ORDER BY 1, 2`},
		{ConfigAppPolicies, `SELECT DISTINCT subject, '' FROM spend_policy_history WHERE scope = 'app' ORDER BY 1`},
		{ConfigWebhooks, `SELECT id, '' FROM webhook_endpoints ORDER BY 1`},
	} {
		if err := collect(q.kind, q.sql); err != nil {
			return SyncReport{}, fmt.Errorf("config sync: read partition 0: %w", err)
		}
	}
	// Endpoints only another partition has: deleted on the home, the
	// deletion's copy lost.
	seen := map[string]bool{}
	for _, k := range keys {
		if k.kind == ConfigWebhooks {
			seen[k.a] = true
		}
	}
	for _, p := range parts[1:] {
		rows, _ := p.pool.Query(ctx, `SELECT id FROM webhook_endpoints`)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			continue // unreachable: its copies below fail and say so
		}
		for _, id := range ids {
			if !seen[id] {
				seen[id] = true
				keys = append(keys, key{kind: ConfigWebhooks, a: id})
			}
		}
	}
	var rep SyncReport
	for _, k := range keys {
		var err error
		switch k.kind {
		case ConfigGifts:
			err = s.spreadGift(ctx, k.a, k.b)
		case ConfigRooms:
			err = s.spreadRoom(ctx, k.a, k.b)
		case ConfigAppPolicies:
			err = s.spreadAppPolicy(ctx, k.a)
		case ConfigWebhooks:
			err = s.spreadEndpoint(ctx, k.a)
		}
		rep.Keys++
		if err != nil {
			if ctx.Err() != nil {
				return rep, fmt.Errorf("config sync: %w", ctx.Err())
			}
			rep.Failed = append(rep.Failed, err.Error())
		}
	}
	if rep.Failed == nil {
		rep.Failed = []string{}
	}
	return rep, nil
}

// homeThenSpread is a configuration change on a partitioned Store: change
// on the home, then spread its key, also when change failed (a retry of a
// change that reached the home but not every partition finds it made and
// must still copy it). It returns change's error first. It reads the
// proxy's partition count first, and changes nothing while this Store does
// not use every partition the proxy routes over
// (ErrPartitionsNotConnected): the change would miss some. Partition 0
// refusing the change in a reshard's pause is ErrReshardPaused, nothing
// written; a copy refused there is ErrPartlyApplied wrapping it too.
func homeThenSpread[T any](ctx context.Context, s *Store, change func(home *Store) (T, error), spread func() error) (T, error) {
	parts, err := s.recountedPartitionStores(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	home := parts[0]
	v, err := change(home)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return v, err
	}
	serr := spread()
	if err != nil {
		// Refused on partition 0 during a reshard's pause: nothing written.
		return v, reshardPaused(err)
	}
	return v, serr
}

// A PolicyDivergence is a user whose spending policy is not partition 0's
// on some partitions: a write through the proxy (RUN ON ALL) that reached
// some partitions only. Differs lists them (a policy there and none on
// partition 0 counts, and none there when partition 0 has one).
type PolicyDivergence struct {
	Subject string `json:"subject"`
	Differs []int  `json:"differs"`
}

// userPolicyRows are a partition's users' policies, each as what a debit
// reads of it (ConfigUserPolicies' digest, row by row), in byte order.
const userPolicyRows = `SELECT subject, md5(json_build_array(max_debit, cap_24h, cap_month, remind_day, cooling_off_s,
		time_zone, minor, blocked, consent, extract(epoch FROM suspended_until))::text)
	FROM spend_policies WHERE scope = 'user' ORDER BY subject COLLATE "C"`

// UserPolicyDivergences reads every user's policy on parts (a Store on each
// partition, in order) and returns the users whose policy differs from
// partition 0's on some partition: the first limit of them, and how many
// there are. It reads every policy of every partition at once (one
// connection each): an operator's audit, not something to call per
// request. Errors are the databases'.
func UserPolicyDivergences(ctx context.Context, parts []*Store, limit int) ([]PolicyDivergence, int, error) {
	type policy struct{ subject, digest string }
	scan := func(rows pgx.Rows) (p policy, err error) {
		err = rows.Scan(&p.subject, &p.digest)
		return p, err
	}
	bySubject := func(a, b policy) int { return strings.Compare(a.subject, b.subject) }
	var out []PolicyDivergence
	total := 0
	err := mergePartitions(ctx, parts, "users' policies", userPolicyRows, scan, bySubject, func(held []*policy) {
		digest := func(p int) string {
			if held[p] == nil {
				return "" // no policy there
			}
			return held[p].digest
		}
		var differs []int
		var subject string
		for p, h := range held {
			if h != nil {
				subject = h.subject
			}
			if p > 0 && digest(p) != digest(0) {
				differs = append(differs, p)
			}
		}
		if differs != nil {
			total++
			if len(out) < limit {
				out = append(out, PolicyDivergence{Subject: subject, Differs: differs})
			}
		}
	})
	if err != nil {
		return nil, 0, err
	}
	return out, total, nil
}
