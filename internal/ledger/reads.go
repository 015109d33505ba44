package ledger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Reads across partitions (docs/scale-out.md#reads-across-partitions): the
// reports and leaderboards of reports.go and the earnings account of
// economy.go on a partitioned Store. Each asks the proxy's function of the
// same name (proxy migration 5), which runs the partition's (partition
// migration 5: the single-server query on that partition's rows) on every
// partition, or on one user's, and merges the rows here, so that the answer
// is the one a single server holding every partition's rows would give.

var (
	// ErrPartitionUnreachable: a read that needs every partition (or one
	// user's) could not reach one of them. Retry later; no partial answer
	// is given.
	ErrPartitionUnreachable = errors.New("a partition is unreachable")
	// ErrTooManyToMerge: a report whose groups must be summed across
	// partitions found more than MaxMergeRows rows to sum.
	ErrTooManyToMerge = errors.New("too many groups to sum across partitions")
)

// MaxMergeRows bounds the rows the partitions together return for one read
// whose groups are not partition-local (a gift report by receiver, room or
// gift; a room's receivers): every partition's groups are summed here
// before ranking, so each partition returns all of its groups, at most this
// many in all, or the read fails with ErrTooManyToMerge rather than rank a
// part of them. A partition-local group (a sender) needs only each
// partition's first offset+limit.
const MaxMergeRows = 100_000

// mergeBound is MaxMergeRows, smaller in tests (SetMergeBound).
var mergeBound = MaxMergeRows

// readErr wraps the error of a read across partitions, naming a partition
// the proxy could not reach or lost as ErrPartitionUnreachable.
func readErr(what string, err error) error {
	if partitionUnreachable(err) {
		return fmt.Errorf("%s: %w: %w", what, ErrPartitionUnreachable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// groupKey is a gift report's group: its platform and key (nil: none).
type groupKey struct {
	platform string
	key      string
	none     bool
}

func (s *Store) giftReportPartitioned(ctx context.Context, group ReportGroup, f GiftFilter, limit, offset int) ([]GiftReportRow, error) {
	want := offset + limit
	ask := mergeBound + 1
	if group == BySender {
		// A sender's gifts are all on the sender's partition: the first
		// want of each partition hold the first want of all.
		ask = min(want, ask)
	}
	rows, _ := s.pool.Query(ctx, `
		SELECT platform, key, gifts, items, gold, earnings, house FROM giftd_report_gifts($1, $2, $3, $4, $5, $6)`,
		string(group), f.From, f.To, f.Platform, f.AppID, ask)
	parts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (GiftReportRow, error) {
		var r GiftReportRow
		err := row.Scan(&r.Platform, &r.Key, &r.Gifts, &r.Items, &r.Gold, &r.Earnings, &r.House)
		return r, err
	})
	if err != nil {
		return nil, readErr("gift report by "+string(group), err)
	}
	if len(parts) > mergeBound && ask > mergeBound {
		return nil, fmt.Errorf("gift report by %s: %w: more than %d", group, ErrTooManyToMerge, mergeBound)
	}
	sums := map[groupKey]*GiftReportRow{}
	var out []GiftReportRow
	for _, r := range parts {
		k := groupKey{platform: r.Platform, none: r.Key == nil}
		if r.Key != nil {
			k.key = *r.Key
		}
		if m := sums[k]; m != nil {
			m.Gifts, m.Items, m.Gold = m.Gifts+r.Gifts, m.Items+r.Items, m.Gold+r.Gold
			m.Earnings, m.House = m.Earnings+r.Earnings, m.House+r.House
			continue
		}
		sums[k] = &r
	}
	for _, r := range sums {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b GiftReportRow) int {
		if c := cmp.Compare(b.Gold, a.Gold); c != 0 {
			return c
		}
		if c := strings.Compare(a.Platform, b.Platform); c != 0 {
			return c
		}
		switch {
		case a.Key == nil && b.Key == nil:
			return 0
		case a.Key == nil: // no receiver last, as PostgreSQL sorts NULL
			return 1
		case b.Key == nil:
			return -1
		}
		return strings.Compare(*a.Key, *b.Key)
	})
	if offset >= len(out) {
		return nil, nil
	}
	return out[offset:min(len(out), want)], nil
}

func (s *Store) roomLeaderboardPartitioned(ctx context.Context, platform, roomID string, side BoardSide, window time.Duration, limit int) (Leaderboard, error) {
	ask := limit
	if side == Receivers {
		// A receiver's gifts are on their senders' partitions: every
		// partition's receivers of the room are summed before ranking.
		ask = mergeBound + 1
	}
	// One statement: the window is the proxy's now() less window, and the
	// board is read from it.
	rows, _ := s.pool.Query(ctx, `
		SELECT w.f, w.t, b.id, b.gifts, b.gold, b.earnings
		FROM (SELECT now() - $1::bigint * interval '1 microsecond', now()) AS w (f, t)
		LEFT JOIN LATERAL giftd_room_board($2, $3, $4, w.f, $5) AS b ON true`,
		window.Microseconds(), platform, roomID, string(side), ask)
	type part struct {
		from, to time.Time
		id       *string
		l        Leader
	}
	parts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (part, error) {
		var p part
		var gifts, gold, earnings *int64
		err := row.Scan(&p.from, &p.to, &p.id, &gifts, &gold, &earnings)
		if p.id != nil {
			p.l = Leader{ID: *p.id, Gifts: *gifts, Gold: *gold, Earnings: *earnings}
		}
		return p, err
	})
	if err != nil {
		return Leaderboard{}, readErr(fmt.Sprintf("leaderboard of %s in %s/%s", side, platform, roomID), err)
	}
	if ask > mergeBound && len(parts) > mergeBound {
		return Leaderboard{}, fmt.Errorf("leaderboard of %s in %s/%s: %w: more than %d", side, platform, roomID,
			ErrTooManyToMerge, mergeBound)
	}
	b := Leaderboard{From: parts[0].from.UTC(), To: parts[0].to.UTC()}
	sums := map[string]*Leader{}
	for _, p := range parts {
		if p.id == nil {
			continue
		}
		if m := sums[p.l.ID]; m != nil {
			m.Gifts, m.Gold, m.Earnings = m.Gifts+p.l.Gifts, m.Gold+p.l.Gold, m.Earnings+p.l.Earnings
			continue
		}
		l := p.l
		sums[l.ID] = &l
	}
	for _, l := range sums {
		b.Leaders = append(b.Leaders, *l)
	}
	slices.SortFunc(b.Leaders, func(x, y Leader) int {
		return cmp.Or(cmp.Compare(y.Gold, x.Gold), strings.Compare(x.ID, y.ID))
	})
	b.Leaders = b.Leaders[:min(len(b.Leaders), limit)]
	for i := range b.Leaders {
		b.Leaders[i].Rank = i + 1
	}
	return b, nil
}

func (s *Store) senderSpendPartitioned(ctx context.Context, senderID string) (SenderSpend, error) {
	sp := SenderSpend{SenderID: senderID}
	err := s.pool.QueryRow(ctx, `SELECT gifts, gold FROM giftd_sender_spend($1)`, senderID).Scan(&sp.Gifts, &sp.Gold)
	if err != nil {
		return SenderSpend{}, readErr("spend of "+senderID, err)
	}
	return sp, nil
}

func (s *Store) receiverPeriodPartitioned(ctx context.Context, p ReceiverPeriod) (ReceiverPeriod, error) {
	rows, _ := s.pool.Query(ctx, `
		SELECT gifts, gold, earned, taken, shortfall, recovered, paid FROM giftd_receiver_period($1, $2, $3)`,
		p.ReceiverID, p.From, p.To)
	var x ReceiverPeriod
	_, err := pgx.ForEachRow(rows, []any{&x.Gifts, &x.Gold, &x.Earned, &x.TakenBack, &x.Shortfall, &x.Recovered, &x.PaidOut},
		func() error {
			p.Gifts, p.Gold, p.Earned = p.Gifts+x.Gifts, p.Gold+x.Gold, p.Earned+x.Earned
			p.TakenBack, p.Shortfall = p.TakenBack+x.TakenBack, p.Shortfall+x.Shortfall
			p.Recovered, p.PaidOut = p.Recovered+x.Recovered, p.PaidOut+x.PaidOut
			return nil
		})
	if err != nil {
		return ReceiverPeriod{}, readErr(fmt.Sprintf("earnings of %s from %s to %s", p.ReceiverID,
			p.From.Format(time.RFC3339), p.To.Format(time.RFC3339)), err)
	}
	p.Net = p.Earned - p.TakenBack - p.Shortfall
	return p, nil
}

// earningsLedgerPartitioned merges every partition's first limit entries
// after c in the order (created_at, source, partition, id), newest first.
func (s *Store) earningsLedgerPartitioned(ctx context.Context, receiverID string, c EarningsCursor, limit int) ([]EarningsEntry, error) {
	rows, _ := s.pool.Query(ctx, `
		SELECT partition, created_at, src, id, kind, account, amount, balance_after, platform, app_id, request_id,
			sender_id, room_id, gift_id, gold, share_bp, gift_entry, ref
		FROM giftd_earnings_ledger($1, $2, $3, $4, $5, $6)`,
		receiverID, c.At, string(c.Source), c.Partition, c.ID, limit)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (EarningsEntry, error) {
		var e EarningsEntry
		var src string
		err := row.Scan(&e.Cursor.Partition, &e.CreatedAt, &src, &e.Cursor.ID, &e.Kind, &e.Account, &e.Amount,
			&e.BalanceAfter, &e.Platform, &e.AppID, &e.RequestID, &e.SenderID, &e.RoomID, &e.GiftID, &e.Gold,
			&e.ShareBP, &e.GiftEntry, &e.Ref)
		e.CreatedAt = e.CreatedAt.UTC()
		e.Cursor.At, e.Cursor.Source = e.CreatedAt, src[0]
		return e, err
	})
	if err != nil {
		return nil, readErr("earnings ledger of "+receiverID, err)
	}
	slices.SortFunc(out, func(a, b EarningsEntry) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.Cursor.Source, a.Cursor.Source),
			cmp.Compare(b.Cursor.Partition, a.Cursor.Partition), cmp.Compare(b.Cursor.ID, a.Cursor.ID))
	})
	return out[:min(len(out), limit)], nil
}

// earningsPartitioned is Earnings across partitions. A receiver's earnings
// are their account on their own partition plus what is in transit to it:
// the balance of their transit account on each other partition (gifts of
// that partition's senders, not moved yet). The API shows the sum. A
// credit being moved is counted once: every partition is read first (each
// in one snapshot: its transit balance and the credits in it, those past
// its credit cursor), then the home partition, and the credits of the
// first read that had arrived home by the second (transfer_in written,
// transfer_out not yet when read) are subtracted. Since a credit's first
// leg is written before its second, no credit can leave a transit account
// read before the home read without being found home (docs/scale-out.md).
func (s *Store) earningsPartitioned(ctx context.Context, receiverID string) (EarningsAccount, error) {
	what := "earnings of " + receiverID
	a := EarningsAccount{ReceiverID: receiverID}
	rows, _ := s.pool.Query(ctx, `
		SELECT home, balance, owed, maturing, updated_at, pending_refs, pending_amounts
		FROM giftd_earnings_parts($1, $2)`, receiverID, s.safeguards.EarningsHold)
	var home bool
	var balance, owed *int64
	var maturing int64
	var updated *time.Time
	var refs []string
	var amounts []int64
	var pending []string
	found := false
	_, err := pgx.ForEachRow(rows, []any{&home, &balance, &owed, &maturing, &updated, &refs, &amounts}, func() error {
		a.Maturing += maturing
		if home || balance == nil {
			return nil
		}
		found = true
		a.Balance, a.Owed = a.Balance+*balance, a.Owed+*owed
		if updated.After(a.UpdatedAt) {
			a.UpdatedAt = *updated
		}
		pending = append(pending, refs...)
		return nil
	})
	if err != nil {
		// A partition whose claim a reshard moved before the proxy's
		// switch refuses (GD003): the account would read wrong there.
		return EarningsAccount{}, readErr(what, reshardPaused(err))
	}
	var arrived int64
	err = s.pool.QueryRow(ctx, `SELECT balance, owed, updated_at, arrived FROM giftd_earnings_home($1, $2)`,
		receiverID, pending).Scan(&balance, &owed, &updated, &arrived)
	if err != nil {
		return EarningsAccount{}, readErr(what, err)
	}
	if balance != nil {
		found = true
		a.Balance, a.Owed = a.Balance+*balance, a.Owed+*owed
		if updated.After(a.UpdatedAt) {
			a.UpdatedAt = *updated
		}
	}
	if !found {
		return EarningsAccount{}, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	a.Balance -= arrived
	a.Maturing = min(a.Maturing, a.Balance)
	a.Payable, a.UpdatedAt = max(0, a.Balance-a.Owed-a.Maturing), a.UpdatedAt.UTC()
	a.Held = a.Balance - a.Payable
	return a, nil
}

func (s *Store) consentsPartitioned(ctx context.Context, userIDs []string) ([]string, error) {
	rows, _ := s.pool.Query(ctx, `SELECT giftd_consents($1)`, userIDs)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, readErr("consents", err)
	}
	return ids, nil
}

// IsUnreachable reports whether err is a failure to connect to a database
// or a lost connection to it (directly, or a partition through the proxy):
// worth retrying later, not a wrong request.
func IsUnreachable(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || partitionUnreachable(err)
}
