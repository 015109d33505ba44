package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Safeguards are the spending safeguards' settings (docs/safeguards.md):
// whether giftd_debit_gifts enforces policies at all, and the defaults of
// every policy that an app's or a user's own policy does not set. An amount
// of 0 is no limit.
type Safeguards struct {
	// On enforces policies (the defaults below and every app's and user's)
	// in the debit's transaction. Off, debits run as before the safeguards:
	// policies can be set but are not enforced, and no counter is kept.
	On bool
	// MaxDebit is the most gold of one debit.
	MaxDebit int64
	// Cap24h and CapMonth are the most gold one sender may spend in a
	// rolling 24 h (hour buckets: a debit counts for 24 to 25 hours) and in
	// a calendar month of TimeZone.
	Cap24h, CapMonth int64
	// RemindDay is the gold a sender's spending in one calendar day crosses
	// to write that day's reminder; crossing it also starts CoolingOff.
	RemindDay int64
	// CoolingOff is how long a sender's gifts are refused after crossing
	// RemindDay.
	CoolingOff time.Duration
	// TimeZone is the IANA name of the zone of calendar days and months
	// (a user's policy may name another).
	TimeZone string
	// EarningsHold is how long a receiver's earnings from a gift are held
	// before they are payable (applies whether On or not).
	EarningsHold time.Duration
	// DisplayHideAmounts: reports meant for display (leaderboards) show no
	// amounts, only ranks (docs/safeguards.md#consent).
	DisplayHideAmounts bool
}

// MaxCoolingOff bounds a cooling-off (and so a policy's): 30 days.
const MaxCoolingOff = 30 * 24 * time.Hour

// MaxEarningsHold bounds the earnings hold: 365 days.
const MaxEarningsHold = 365 * 24 * time.Hour

// WithSafeguards sets the safeguards; they must pass Safeguards.Check.
func WithSafeguards(g Safeguards) Option {
	return func(s *Store) { s.safeguards = g }
}

// WithClock makes the store's debits judge policies at now() instead of the
// database's clock: for tests of windows, days and months.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// Safeguards returns the store's safeguards settings.
func (s *Store) Safeguards() Safeguards { return s.safeguards }

// Check returns an error naming the first setting out of range.
func (g Safeguards) Check() error {
	for _, a := range []struct {
		name string
		v    int64
	}{{"max debit", g.MaxDebit}, {"24 h cap", g.Cap24h}, {"month cap", g.CapMonth}, {"reminder threshold", g.RemindDay}} {
		if a.v < 0 || a.v > MaxAmount {
			return fmt.Errorf("%s %d: must be 0 (none) to %d", a.name, a.v, int64(MaxAmount))
		}
	}
	if g.CoolingOff < 0 || g.CoolingOff > MaxCoolingOff {
		return fmt.Errorf("cooling-off %s: must be 0 (none) to %s", g.CoolingOff, MaxCoolingOff)
	}
	if g.EarningsHold < 0 || g.EarningsHold > MaxEarningsHold {
		return fmt.Errorf("earnings hold %s: must be 0 (none) to %s", g.EarningsHold, MaxEarningsHold)
	}
	if _, err := time.LoadLocation(g.zone()); err != nil {
		return fmt.Errorf("time zone %q: not an IANA time zone name", g.TimeZone)
	}
	return nil
}

func (g Safeguards) zone() string {
	if g.TimeZone == "" {
		return "UTC"
	}
	return g.TimeZone
}

// arguments are giftd_debit_gifts' p_policy and p_now: nil, nil when off.
func (g Safeguards) arguments(now func() time.Time) (policy *string, at *time.Time) {
	if !g.On {
		return nil, nil
	}
	b, _ := json.Marshal(map[string]any{ // a map of numbers and a string always marshals
		"max_debit": g.MaxDebit, "cap_24h": g.Cap24h, "cap_month": g.CapMonth, "remind_day": g.RemindDay,
		"cooling_off_s": int64(g.CoolingOff / time.Second), "time_zone": g.zone(),
	})
	p := string(b)
	if now != nil {
		t := now()
		at = &t
	}
	return &p, at
}

// Why a safeguard refused a debit (DebitResult.Refusal of a PolicyRefused).
const (
	RefusedMinor      = "minor"
	RefusedBlocked    = "blocked"
	RefusedMaxDebit   = "max_debit"
	RefusedCap24h     = "cap_24h"
	RefusedCapMonth   = "cap_month"
	RefusedCoolingOff = "cooling_off"
)

// Policy scopes.
const (
	ScopeApp  = "app"
	ScopeUser = "user"
)

// ErrBadPolicy: a policy the store refuses; the error names the field.
var ErrBadPolicy = errors.New("invalid policy")

// PolicyKey names a policy: an app's (Subject "platform/app_id") or a user's.
type PolicyKey struct {
	Scope   string
	Subject string
}

func (k PolicyKey) String() string { return k.Scope + " " + k.Subject }

// Policy is an app's or a user's policy. A nil field inherits (a user's
// from the app of each debit, an app's from the settings); an amount of 0
// is no limit. TimeZone, the flags and SuspendedUntil are a user's only.
type Policy struct {
	MaxDebit    *int64  `json:"max_debit"`
	Cap24h      *int64  `json:"cap_24h"`
	CapMonth    *int64  `json:"cap_month"`
	RemindDay   *int64  `json:"remind_day"`
	CoolingOffS *int64  `json:"cooling_off_s"`
	TimeZone    *string `json:"time_zone"`
	Minor       *bool   `json:"minor"`
	Blocked     *bool   `json:"blocked"`
	Consent     *bool   `json:"consent"`
	// SuspendedUntil: as a receiver, gifts until then credit the house.
	SuspendedUntil *time.Time `json:"suspended_until"`
}

// PolicyRecord is a stored policy.
type PolicyRecord struct {
	Scope     string    `json:"scope"`
	Subject   string    `json:"subject"`
	Policy    Policy    `json:"policy"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

// PolicyChange is one kept change of a policy; Old or New is nil when the
// policy did not exist before or was cleared.
type PolicyChange struct {
	ID        int64     `json:"id"`
	ChangedBy string    `json:"changed_by"`
	ChangedAt time.Time `json:"changed_at"`
	Old       *Policy   `json:"old"`
	New       *Policy   `json:"new"`
}

// check returns ErrBadPolicy naming the first field out of range.
func (p Policy) check(scope string) error {
	bad := func(field, why string) error { return fmt.Errorf("%w: %s: %s", ErrBadPolicy, field, why) }
	for _, a := range []struct {
		name string
		v    *int64
	}{{"max_debit", p.MaxDebit}, {"cap_24h", p.Cap24h}, {"cap_month", p.CapMonth}, {"remind_day", p.RemindDay}} {
		if a.v != nil && (*a.v < 0 || *a.v > MaxAmount) {
			return bad(a.name, fmt.Sprintf("must be 0 (no limit) to %d, got %d", int64(MaxAmount), *a.v))
		}
	}
	if p.CoolingOffS != nil && (*p.CoolingOffS < 0 || *p.CoolingOffS > int64(MaxCoolingOff/time.Second)) {
		return bad("cooling_off_s", fmt.Sprintf("must be 0 (none) to %d seconds, got %d", int64(MaxCoolingOff/time.Second), *p.CoolingOffS))
	}
	if scope == ScopeApp {
		switch {
		case p.TimeZone != nil:
			return bad("time_zone", "a user's only (an app's debits count in each sender's zone)")
		case p.Minor != nil, p.Blocked != nil, p.Consent != nil:
			return bad("minor, blocked, consent", "a user's only")
		case p.SuspendedUntil != nil:
			return bad("suspended_until", "a user's only")
		}
	}
	if p.TimeZone != nil {
		if _, err := time.LoadLocation(*p.TimeZone); err != nil || *p.TimeZone == "" || strings.EqualFold(*p.TimeZone, "local") {
			return bad("time_zone", fmt.Sprintf("%q is not an IANA time zone name such as Asia/Shanghai", *p.TimeZone))
		}
	}
	if p.SuspendedUntil != nil && p.SuspendedUntil.Year() > 9999 {
		return bad("suspended_until", "after year 9999")
	}
	return nil
}

func checkKey(k PolicyKey) error {
	switch k.Scope {
	case ScopeUser:
		// A sender's id is a wallet's (ValidUserID); a receiver's may be any
		// receiver id a callback or a channel mapping carries.
		if k.Subject == "" || len(k.Subject) > 128 || !utf8.ValidString(k.Subject) || strings.ContainsFunc(k.Subject, unicode.IsControl) {
			return fmt.Errorf("%w: user_id: must be 1-128 bytes of UTF-8 without control characters", ErrBadPolicy)
		}
	case ScopeApp:
		platform, app, ok := strings.Cut(k.Subject, "/")
		if !ok || (platform != "linkv" && platform != "polyv") || app == "" || len(app) > 128 {
			return fmt.Errorf("%w: app: must be linkv/APP_ID or polyv/APP_ID", ErrBadPolicy)
		}
	default:
		return fmt.Errorf("%w: scope: must be app or user", ErrBadPolicy)
	}
	return nil
}

const policyColumns = `max_debit, cap_24h, cap_month, remind_day, cooling_off_s, time_zone, minor, blocked, consent, suspended_until`

func (p *Policy) targets() []any {
	return []any{&p.MaxDebit, &p.Cap24h, &p.CapMonth, &p.RemindDay, &p.CoolingOffS, &p.TimeZone,
		&p.Minor, &p.Blocked, &p.Consent, &p.SuspendedUntil}
}

func (p Policy) values() []any {
	return []any{p.MaxDebit, p.Cap24h, p.CapMonth, p.RemindDay, p.CoolingOffS, p.TimeZone,
		p.Minor, p.Blocked, p.Consent, p.SuspendedUntil}
}

// ErrUnknownUser: a user policy for a user giftd does not know (no wallet,
// no earnings account, no room mapped to them).
var ErrUnknownUser = errors.New("unknown user: no wallet, earnings account or room")

// PutPolicy replaces the policy of k with p (nil fields inherit), keeping
// the change (operator, time, old, new) in the policy's history, in one
// transaction. It returns ErrBadPolicy naming a field out of range or a
// malformed key, and ErrUnknownUser for a user giftd does not know.
func (s *Store) PutPolicy(ctx context.Context, k PolicyKey, p Policy, operator string) (PolicyRecord, error) {
	defer s.observe(OpPolicy, time.Now())
	if s.partitions > 0 && k.Scope == ScopeApp {
		return homeThenSpread(ctx, s, func(home *Store) (PolicyRecord, error) { return home.PutPolicy(ctx, k, p, operator) },
			func() error { return s.spreadAppPolicy(ctx, k.Subject) })
	}
	if err := checkKey(k); err != nil {
		return PolicyRecord{}, err
	}
	if err := p.check(k.Scope); err != nil {
		return PolicyRecord{}, err
	}
	rec := PolicyRecord{Scope: k.Scope, Subject: k.Subject, Policy: p, UpdatedBy: operator}
	if s.partitions > 0 {
		return s.putPolicyPartitioned(ctx, k, rec)
	}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if k.Scope == ScopeUser {
			var known bool
			if err := tx.QueryRow(ctx, `
				SELECT EXISTS (SELECT 1 FROM wallets WHERE user_id = $1)
				    OR EXISTS (SELECT 1 FROM earnings_accounts WHERE receiver_id = $1)
				    OR EXISTS (SELECT 1 FROM room_receivers WHERE receiver_id = $1)
				    OR EXISTS (SELECT 1 FROM spend_policies WHERE scope = 'user' AND subject = $1)`, k.Subject).Scan(&known); err != nil {
				return err
			}
			if !known {
				return ErrUnknownUser
			}
		}
		if p.TimeZone != nil {
			// PostgreSQL must know the zone too: the debit computes days in it.
			if _, err := tx.Exec(ctx, `SELECT now() AT TIME ZONE $1`, *p.TimeZone); err != nil {
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) && pgErr.Code == "22023" {
					return fmt.Errorf("%w: time_zone: %q is not known to PostgreSQL", ErrBadPolicy, *p.TimeZone)
				}
				return err
			}
		}
		old, err := policyOf(ctx, tx, k, true)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		args := append([]any{k.Scope, k.Subject, operator}, p.values()...)
		if err := tx.QueryRow(ctx, `
			INSERT INTO spend_policies AS x (scope, subject, updated_by, `+policyColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			ON CONFLICT (scope, subject) DO UPDATE SET updated_by = excluded.updated_by, updated_at = now(),
				max_debit = excluded.max_debit, cap_24h = excluded.cap_24h, cap_month = excluded.cap_month,
				remind_day = excluded.remind_day, cooling_off_s = excluded.cooling_off_s, time_zone = excluded.time_zone,
				minor = excluded.minor, blocked = excluded.blocked, consent = excluded.consent,
				suspended_until = excluded.suspended_until
			RETURNING updated_at`, args...).Scan(&rec.UpdatedAt); err != nil {
			return err
		}
		var oldp *Policy
		if err == nil && old != nil {
			oldp = &old.Policy
		}
		return keepChange(ctx, tx, k, operator, oldp, &p)
	})
	if err != nil {
		return PolicyRecord{}, fmt.Errorf("policy %s: %w", k, err)
	}
	rec.UpdatedAt = rec.UpdatedAt.UTC()
	return rec, nil
}

// ClearPolicy deletes the policy of k (everything inherits again), keeping
// the change; ErrNotFound when there is none.
func (s *Store) ClearPolicy(ctx context.Context, k PolicyKey, operator string) error {
	defer s.observe(OpPolicy, time.Now())
	if s.partitions > 0 && k.Scope == ScopeApp {
		_, err := homeThenSpread(ctx, s, func(home *Store) (struct{}, error) { return struct{}{}, home.ClearPolicy(ctx, k, operator) },
			func() error { return s.spreadAppPolicy(ctx, k.Subject) })
		return err
	}
	if err := checkKey(k); err != nil {
		return err
	}
	if s.partitions > 0 {
		return s.clearPolicyPartitioned(ctx, k, operator)
	}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		old, err := policyOf(ctx, tx, k, true)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM spend_policies WHERE scope = $1 AND subject = $2`, k.Scope, k.Subject); err != nil {
			return err
		}
		return keepChange(ctx, tx, k, operator, &old.Policy, nil)
	})
	if err != nil {
		return fmt.Errorf("policy %s: %w", k, err)
	}
	return nil
}

// GetPolicy returns the policy of k, or ErrNotFound when it has none.
func (s *Store) GetPolicy(ctx context.Context, k PolicyKey) (PolicyRecord, error) {
	defer s.observe(OpPolicy, time.Now())
	if s.partitions > 0 && k.Scope == ScopeApp {
		home, err := s.home()
		if err != nil {
			return PolicyRecord{}, err
		}
		return home.GetPolicy(ctx, k)
	}
	if err := checkKey(k); err != nil {
		return PolicyRecord{}, err
	}
	var rec *PolicyRecord
	var err error
	if s.partitions > 0 {
		rec, err = scanPolicy(s.pool.QueryRow(ctx, `SELECT updated_at, updated_by, `+policyColumns+` FROM giftd_policy($1, $2)`,
			k.Scope, k.Subject), k)
	} else {
		rec, err = policyOf(ctx, s.pool, k, false)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return PolicyRecord{}, fmt.Errorf("policy %s: %w", k, s.routed(err))
	}
	return *rec, nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func policyOf(ctx context.Context, q querier, k PolicyKey, lock bool) (*PolicyRecord, error) {
	sql := `SELECT updated_at, updated_by, ` + policyColumns + ` FROM spend_policies WHERE scope = $1 AND subject = $2`
	if lock {
		sql += ` FOR UPDATE`
	}
	return scanPolicy(q.QueryRow(ctx, sql, k.Scope, k.Subject), k)
}

// scanPolicy scans a policy row of k: updated_at, updated_by, then
// policyColumns.
func scanPolicy(row pgx.Row, k PolicyKey) (*PolicyRecord, error) {
	rec := PolicyRecord{Scope: k.Scope, Subject: k.Subject}
	err := row.Scan(append([]any{&rec.UpdatedAt, &rec.UpdatedBy}, rec.Policy.targets()...)...)
	if err != nil {
		return nil, err
	}
	rec.UpdatedAt = rec.UpdatedAt.UTC()
	if rec.Policy.SuspendedUntil != nil {
		t := rec.Policy.SuspendedUntil.UTC()
		rec.Policy.SuspendedUntil = &t
	}
	return &rec, nil
}

func keepChange(ctx context.Context, tx pgx.Tx, k PolicyKey, operator string, old, new *Policy) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO spend_policy_history (scope, subject, changed_by, old, new) VALUES ($1, $2, $3, $4, $5)`,
		k.Scope, k.Subject, operator, old, new)
	return err
}

// PolicyHistory returns every kept change of k's policy, newest first (at
// most limit), or ErrNotFound when it never had one.
func (s *Store) PolicyHistory(ctx context.Context, k PolicyKey, limit int) ([]PolicyChange, error) {
	defer s.observe(OpPolicy, time.Now())
	if s.partitions > 0 && k.Scope == ScopeApp {
		home, err := s.home()
		if err != nil {
			return nil, err
		}
		return home.PolicyHistory(ctx, k, limit)
	}
	if err := checkKey(k); err != nil {
		return nil, err
	}
	sql := `
		SELECT id, changed_by, changed_at, old, new FROM spend_policy_history
		WHERE scope = $1 AND subject = $2 ORDER BY id DESC LIMIT $3`
	if s.partitions > 0 {
		sql = `SELECT id, changed_by, changed_at, old, new FROM giftd_policy_history($1, $2, $3)` // the subject's partition
	}
	rows, _ := s.pool.Query(ctx, sql, k.Scope, k.Subject, limit)
	changes, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (PolicyChange, error) {
		var c PolicyChange
		err := row.Scan(&c.ID, &c.ChangedBy, &c.ChangedAt, &c.Old, &c.New)
		c.ChangedAt = c.ChangedAt.UTC()
		return c, err
	})
	if err == nil && len(changes) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("policy history %s: %w", k, s.routed(err))
	}
	return changes, nil
}

// Reminder is the record of a user's spending crossing the daily reminder
// threshold: at most one per user and calendar day (in the user's zone).
type Reminder struct {
	UserID    string    `json:"user_id"`
	Day       string    `json:"day"`
	Threshold int64     `json:"threshold"`
	DayGold   int64     `json:"day_gold"`
	Platform  string    `json:"platform"`
	AppID     string    `json:"app_id"`
	RequestID string    `json:"request_id"`
	CreatedAt time.Time `json:"created_at"`
}

// Reminders returns the reminders written at or after since, oldest first,
// at most limit, of userID ("" for every user).
func (s *Store) Reminders(ctx context.Context, userID string, since time.Time, limit int) ([]Reminder, error) {
	defer s.observe(OpPolicy, time.Now())
	if s.partitions > 0 {
		return s.remindersPartitioned(ctx, userID, since, limit)
	}
	rows, _ := s.pool.Query(ctx, `
		SELECT user_id, day::text, threshold, day_gold, platform, app_id, request_id, created_at FROM spend_reminders
		WHERE ($1 = '' OR user_id = $1) AND created_at >= $2
		ORDER BY created_at, user_id LIMIT $3`, userID, since, limit)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Reminder, error) {
		var r Reminder
		err := row.Scan(&r.UserID, &r.Day, &r.Threshold, &r.DayGold, &r.Platform, &r.AppID, &r.RequestID, &r.CreatedAt)
		r.CreatedAt = r.CreatedAt.UTC()
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("reminders: %w", err)
	}
	return out, nil
}

// SpendWindow is a sender's counters as the debit last left them (the
// rolling 24 h as of now).
type SpendWindow struct {
	UserID  string `json:"user_id"`
	Last24h int64  `json:"last_24h"`
	// Day and Month are the dates the counters last counted ("" when
	// nothing was counted yet).
	Day       string     `json:"day"`
	DayGold   int64      `json:"day_gold"`
	Month     string     `json:"month"`
	MonthGold int64      `json:"month_gold"`
	CoolUntil *time.Time `json:"cool_until"`
	UpdatedAt *time.Time `json:"updated_at"`
}

// SpendWindowOf returns userID's counters, or ErrNotFound when the user
// never spent with the safeguards on.
func (s *Store) SpendWindowOf(ctx context.Context, userID string) (SpendWindow, error) {
	defer s.observe(OpPolicy, time.Now())
	w := SpendWindow{UserID: userID}
	at := time.Now()
	if s.now != nil {
		at = s.now()
	}
	sql := `
		SELECT (SELECT coalesce(sum(hours[(h % 25)::int + 1]), 0)
		        FROM generate_series(greatest(hour_last - 24, floor(extract(epoch FROM $2::timestamptz) / 3600)::bigint - 24),
		                             hour_last) AS h)::bigint,
		       day::text, day_gold, month::text, month_gold, cool_until, updated_at
		FROM spend_windows WHERE user_id = $1`
	if s.partitions > 0 {
		sql = `SELECT * FROM giftd_spend_window($1, $2)` // the same, on the user's partition
	}
	err := s.pool.QueryRow(ctx, sql, userID, at).
		Scan(&w.Last24h, &w.Day, &w.DayGold, &w.Month, &w.MonthGold, &w.CoolUntil, &w.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return SpendWindow{}, fmt.Errorf("spending of %s: %w", userID, ErrNotFound)
	}
	if err != nil {
		return SpendWindow{}, fmt.Errorf("spending of %s: %w", userID, s.routed(err))
	}
	if w.UpdatedAt != nil {
		t := w.UpdatedAt.UTC()
		w.UpdatedAt = &t
	}
	return w, nil
}

// Consents returns, for each of userIDs, whether the user consented to
// showing their spending in public: the data of the display rule of
// leaderboards (docs/safeguards.md#consent). A user without a policy, or
// whose policy leaves consent unset, has not consented.
func (s *Store) Consents(ctx context.Context, userIDs []string) (map[string]bool, error) {
	defer s.observe(OpPolicy, time.Now())
	out := make(map[string]bool, len(userIDs))
	for _, id := range userIDs {
		out[id] = false
	}
	var ids []string
	var err error
	if s.partitions > 0 {
		ids, err = s.consentsPartitioned(ctx, userIDs)
	} else {
		rows, _ := s.pool.Query(ctx, `
			SELECT subject FROM spend_policies WHERE scope = 'user' AND subject = ANY ($1) AND consent`, userIDs)
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			err = fmt.Errorf("consents: %w", err)
		}
	}
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// DisplaySender is the rule of every display (public) report: a sender who
// consented is shown by id; one who did not is shown as "anonymous #rank",
// rank being the line's place in the report, so that nothing about the user
// can be derived from it. Finance reports show ids and never call this.
func DisplaySender(userID string, consented bool, rank int) string {
	if consented {
		return userID
	}
	return fmt.Sprintf("anonymous #%d", rank)
}

// putPolicyPartitioned is PutPolicy on every partition (each reads its
// senders' policies and its receivers' suspensions in its debits), by the
// partitions' giftd_put_policy: one transaction on each, not one across
// them. With a partition down it fails (ErrPartitionUnreachable), maybe
// having written others (one lost mid-call); during a reshard's pause the
// partitions refuse it (ErrReshardPaused, partition migration 23), maybe
// after some wrote it (the fences go up one partition at a time); the same
// call again makes every partition alike.
func (s *Store) putPolicyPartitioned(ctx context.Context, k PolicyKey, rec PolicyRecord) (PolicyRecord, error) {
	if k.Scope == ScopeUser {
		rows, _ := s.pool.Query(ctx, `SELECT known FROM giftd_user_known($1) AS known`, k.Subject)
		known, err := pgx.CollectRows(rows, pgx.RowTo[bool])
		if err != nil {
			return PolicyRecord{}, fmt.Errorf("policy %s: %w", k, s.routed(err))
		}
		if !slices.Contains(known, true) {
			return PolicyRecord{}, fmt.Errorf("policy %s: %w", k, ErrUnknownUser)
		}
	}
	p := rec.Policy
	args := append([]any{k.Scope, k.Subject, rec.UpdatedBy, &p}, p.values()...)
	rows, _ := s.pool.Query(ctx, `SELECT at FROM giftd_put_policy($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) AS at`, args...)
	ats, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "22023" && p.TimeZone != nil:
		return PolicyRecord{}, fmt.Errorf("policy %s: %w: time_zone: %q is not known to PostgreSQL", k, ErrBadPolicy, *p.TimeZone)
	case err != nil:
		return PolicyRecord{}, fmt.Errorf("policy %s: %w", k, reshardPaused(s.routed(err)))
	}
	for _, at := range ats {
		if at.After(rec.UpdatedAt) {
			rec.UpdatedAt = at
		}
	}
	rec.UpdatedAt = rec.UpdatedAt.UTC()
	return rec, nil
}

// clearPolicyPartitioned is ClearPolicy on every partition, as
// putPolicyPartitioned writes; ErrNotFound when no partition had it.
func (s *Store) clearPolicyPartitioned(ctx context.Context, k PolicyKey, operator string) error {
	rows, _ := s.pool.Query(ctx, `SELECT cleared FROM giftd_clear_policy($1, $2, $3) AS cleared`, k.Scope, k.Subject, operator)
	cleared, err := pgx.CollectRows(rows, pgx.RowTo[bool])
	switch {
	case err != nil:
		return fmt.Errorf("policy %s: %w", k, reshardPaused(s.routed(err)))
	case !slices.Contains(cleared, true):
		return fmt.Errorf("policy %s: %w", k, ErrNotFound)
	}
	return nil
}
