package ledger

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Reports and leaderboards (docs/economy.md#reports-and-leaderboards).
//
// Two rules, one per kind of report:
//
//   - Gift reports (GiftReport, RoomLeaderboard, SenderSpend) describe gifts:
//     a reversed gift is left out entirely (its count, gold, earnings and
//     house), whenever it was reversed, as if it had never been sent. So a
//     past period's figures drop when one of its gifts is reversed later.
//   - Earnings reports (EarningsLedger, ReceiverPeriod, and EarningsPeriod's
//     export) are accounting: every movement at its own time. A reversal is a
//     takeback (and perhaps a shortfall) dated when it was made; a past
//     period never changes.

// reversalLag bounds how much earlier than a gift its reversal can be dated.
// Both are dated by their transaction's start; a reversal's transaction
// reads the committed debit in its first statement, so it starts at most a
// round trip before the gift's commit, never an hour. The gifts reversed
// among those of a period are therefore among the reversals dated from the
// period's start less this lag (ledger_entries_reversal_at, migration 6).
const reversalLag = "1 hour"

// notReversed is the condition that leaves out the reversed gifts of a
// period starting at the parameter from (a timestamptz expression): an
// anti-join against the few reversals made since, which the planner runs
// as a hash anti join (or, if reversals were many, a merge or index one;
// never a per-row rescan, as NOT IN could become past work_mem).
func notReversed(alias, from string) string {
	return `NOT EXISTS (SELECT 1 FROM ledger_entries r WHERE r.reverses = ` + alias + `.debit_entry
		AND r.kind = 'reversal' AND r.created_at >= ` + from + ` - interval '` + reversalLag + `')`
}

// ReportGroup is what a gift report groups gifts by.
type ReportGroup string

// The groups of a gift report.
const (
	ByReceiver ReportGroup = "receiver"
	BySender   ReportGroup = "sender"
	ByRoom     ReportGroup = "room"
	ByGift     ReportGroup = "gift"
)

// ReportGroups lists every group, in the order documentation names them.
func ReportGroups() []ReportGroup { return []ReportGroup{ByReceiver, BySender, ByRoom, ByGift} }

// groupColumns are the columns of gift_entries a group's rows are keyed by:
// rooms and gifts are per platform, senders and receivers are not.
var groupColumns = map[ReportGroup]struct {
	platform bool
	key      string
}{
	ByReceiver: {false, "receiver_id"},
	BySender:   {false, "sender_id"},
	ByRoom:     {true, "room_id"},
	ByGift:     {true, "gift_id"},
}

// GiftFilter selects the gifts of a report: created in [From, To), of
// Platform and AppID when they are not empty.
type GiftFilter struct {
	From, To        time.Time
	Platform, AppID string
}

// GiftTotals are the totals of a set of gifts, reversed gifts left out.
type GiftTotals struct {
	// Gifts is how many gifts (callbacks), Items how many items they
	// carried (LinkV's send_num, Polyv's goodNum).
	Gifts int64 `json:"gifts"`
	Items int64 `json:"items"`
	// Gold is what the senders paid; Earnings the receivers' share of it,
	// House the rest.
	Gold     int64 `json:"gold"`
	Earnings int64 `json:"earnings"`
	House    int64 `json:"house"`
}

// GiftReportRow is one group of a gift report.
type GiftReportRow struct {
	// Platform is the group's platform (rooms and gifts only, else "").
	Platform string
	// Key is the group's receiver, sender, room or gift id; nil for the
	// gifts without a receiver (a Polyv channel with none mapped).
	Key *string
	GiftTotals
}

// GiftReport returns the totals of the gifts selected by f grouped by
// group, ordered by gold (most first) and then by key (platform first for
// rooms and gifts; no receiver last), the limit rows from offset on.
// Reversed gifts are left out (see above). Every call aggregates the whole
// period: f's period must be bounded by the caller.
func (s *Store) GiftReport(ctx context.Context, group ReportGroup, f GiftFilter, limit, offset int) ([]GiftReportRow, error) {
	defer s.observe(OpReport, time.Now())
	cols, ok := groupColumns[group]
	if !ok {
		return nil, fmt.Errorf("gift report: unknown group %q", group)
	}
	if s.partitions > 0 {
		return s.giftReportPartitioned(ctx, group, f, limit, offset)
	}
	key := "g." + cols.key
	platform := "''::text"
	if cols.platform {
		platform = "g.platform"
	}
	rows, _ := s.pool.Query(ctx, `
		SELECT `+platform+`, `+key+`, count(*), coalesce(sum(g.count), 0)::bigint, coalesce(sum(g.gold), 0)::bigint,
			coalesce(sum(g.earnings), 0)::bigint, coalesce(sum(g.house), 0)::bigint
		FROM gift_entries g
		WHERE g.created_at >= $1 AND g.created_at < $2
		  AND ($3 = '' OR g.platform = $3) AND ($4 = '' OR g.app_id = $4)
		  AND `+notReversed("g", "$1::timestamptz")+`
		GROUP BY 1, 2
		ORDER BY 5 DESC, 1, 2
		LIMIT $5 OFFSET $6`,
		f.From, f.To, f.Platform, f.AppID, limit, offset)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (GiftReportRow, error) {
		var r GiftReportRow
		err := row.Scan(&r.Platform, &r.Key, &r.Gifts, &r.Items, &r.Gold, &r.Earnings, &r.House)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("gift report by %s: %w", group, err)
	}
	return out, nil
}

// BoardSide is a room leaderboard's side: who gave, or who received.
type BoardSide string

// The two leaderboards of a room.
const (
	Senders   BoardSide = "senders"
	Receivers BoardSide = "receivers"
)

// Leader is one line of a room's leaderboard.
type Leader struct {
	// Rank is 1 for the most gold; ties are ranked by id.
	Rank int `json:"rank"`
	// ID is the sender's or the receiver's id.
	ID    string `json:"id"`
	Gifts int64  `json:"gifts"`
	Gold  int64  `json:"gold"`
	// Earnings is the receivers' share of Gold.
	Earnings int64 `json:"earnings"`
}

// Leaderboard is a room's leaderboard over [From, To).
type Leaderboard struct {
	From, To time.Time
	Leaders  []Leader
}

// RoomLeaderboard returns the top limit senders (or receivers) of a room of
// platform by gold over the window that ends now (the database's now),
// reversed gifts left out. The room's gifts in the window are read from
// gift_entries_room_board alone (migration 6): the cost is one index entry
// per gift in the window, so the caller bounds window.
func (s *Store) RoomLeaderboard(ctx context.Context, platform, roomID string, side BoardSide, window time.Duration, limit int) (Leaderboard, error) {
	defer s.observe(OpReport, time.Now())
	var who, only string
	switch side {
	case Senders:
		who = "g.sender_id"
	case Receivers:
		who, only = "g.receiver_id", "AND g.receiver_id IS NOT NULL"
	default:
		return Leaderboard{}, fmt.Errorf("leaderboard: unknown side %q", side)
	}
	if s.partitions > 0 {
		return s.roomLeaderboardPartitioned(ctx, platform, roomID, side, window, limit)
	}
	var b Leaderboard
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		// One transaction, so that the window reported is the one read:
		// now() is the transaction's start.
		if err := tx.QueryRow(ctx, `SELECT now() - $1::bigint * interval '1 microsecond', now()`,
			window.Microseconds()).Scan(&b.From, &b.To); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `
			SELECT `+who+`, count(*), sum(g.gold)::bigint, sum(g.earnings)::bigint
			FROM gift_entries g
			WHERE g.platform = $1 AND g.room_id = $2 AND g.created_at >= $3 `+only+`
			  AND `+notReversed("g", "$3::timestamptz")+`
			GROUP BY 1
			ORDER BY 3 DESC, 1
			LIMIT $4`,
			platform, roomID, b.From, limit)
		var err error
		b.Leaders, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Leader, error) {
			var l Leader
			err := row.Scan(&l.ID, &l.Gifts, &l.Gold, &l.Earnings)
			return l, err
		})
		return err
	})
	if err != nil {
		return Leaderboard{}, fmt.Errorf("leaderboard of %s in %s/%s: %w", side, platform, roomID, err)
	}
	for i := range b.Leaders {
		b.Leaders[i].Rank = i + 1
	}
	b.From, b.To = b.From.UTC(), b.To.UTC()
	return b, nil
}

// SenderSpend is what a sender has given, over their whole history.
type SenderSpend struct {
	SenderID string `json:"sender_id"`
	// Gifts and Gold count every settled gift of the sender, reversed
	// gifts left out.
	Gifts int64 `json:"gifts"`
	Gold  int64 `json:"gold"`
}

// SenderSpend returns a sender's lifetime spend on gifts (gifter levels):
// every gift settled (gift_entries) less those reversed. It reads the
// sender's gifts from gift_entries_sender_spend alone and their reversals
// from ledger_entries_reversal_user (migration 6), so it costs one index
// entry per gift of the sender and no heap read. A sender never seen spent 0.
func (s *Store) SenderSpend(ctx context.Context, senderID string) (SenderSpend, error) {
	defer s.observe(OpReport, time.Now())
	if s.partitions > 0 {
		return s.senderSpendPartitioned(ctx, senderID)
	}
	sp := SenderSpend{SenderID: senderID}
	err := s.pool.QueryRow(ctx, `
		SELECT a.n - r.n, a.gold - r.gold FROM
			(SELECT count(*) AS n, coalesce(sum(gold), 0)::bigint AS gold FROM gift_entries WHERE sender_id = $1) AS a,
			(SELECT count(*) AS n, coalesce(sum(g.gold), 0)::bigint AS gold
			 FROM ledger_entries l JOIN gift_entries g ON g.debit_entry = l.reverses
			 WHERE l.kind = 'reversal' AND l.user_id = $1 AND g.sender_id = $1) AS r`, senderID).
		Scan(&sp.Gifts, &sp.Gold)
	if err != nil {
		return SenderSpend{}, fmt.Errorf("spend of %s: %w", senderID, err)
	}
	return sp, nil
}

// ReceiverPeriod is what happened to a receiver's earnings in [From, To),
// as accounting: every movement dated when it was made.
type ReceiverPeriod struct {
	ReceiverID string    `json:"receiver_id"`
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	// Gifts received in the period (reversed or not), their Gold, and the
	// Earned credited for them.
	Gifts  int64 `json:"gifts"`
	Gold   int64 `json:"gold"`
	Earned int64 `json:"earned"`
	// By reversals made in the period: TakenBack from the earnings, and
	// Shortfall recorded as owed (earnings already paid out).
	TakenBack int64 `json:"taken_back"`
	Shortfall int64 `json:"shortfall"`
	// Net is Earned − TakenBack − Shortfall: what gifts earned, net of
	// the reversals made in the period.
	Net int64 `json:"net"`
	// Recovered (owed settled from earnings) and PaidOut by payouts made
	// in the period.
	Recovered int64 `json:"recovered"`
	PaidOut   int64 `json:"paid_out"`
}

// ReceiverPeriod returns a receiver's earnings movements in [from, to),
// from one snapshot; all zero for a receiver with none. It reads the
// receiver's gifts in the period from gift_entries_receiver_report alone
// (migration 6) and their account entries through account_entries_receiver
// (migration 4).
func (s *Store) ReceiverPeriod(ctx context.Context, receiverID string, from, to time.Time) (ReceiverPeriod, error) {
	defer s.observe(OpReport, time.Now())
	p := ReceiverPeriod{ReceiverID: receiverID, From: from.UTC(), To: to.UTC()}
	if s.partitions > 0 {
		return s.receiverPeriodPartitioned(ctx, p)
	}
	err := s.pool.QueryRow(ctx, `
		SELECT g.n, g.gold, g.earned, a.taken, a.shortfall, a.recovered, a.paid FROM
			(SELECT count(*) AS n, coalesce(sum(gold), 0)::bigint AS gold, coalesce(sum(earnings), 0)::bigint AS earned
			 FROM gift_entries WHERE receiver_id = $1 AND created_at >= $2 AND created_at < $3) AS g,
			(SELECT coalesce(-sum(amount) FILTER (WHERE account = 'earnings' AND kind = 'reversal'), 0)::bigint AS taken,
				coalesce(sum(amount) FILTER (WHERE kind = 'shortfall'), 0)::bigint AS shortfall,
				coalesce(-sum(amount) FILTER (WHERE account = 'earnings' AND kind = 'recovery'), 0)::bigint AS recovered,
				coalesce(-sum(amount) FILTER (WHERE kind = 'payout'), 0)::bigint AS paid
			 FROM account_entries WHERE receiver_id = $1 AND created_at >= $2 AND created_at < $3) AS a`,
		receiverID, from, to).Scan(&p.Gifts, &p.Gold, &p.Earned, &p.TakenBack, &p.Shortfall, &p.Recovered, &p.PaidOut)
	if err != nil {
		return ReceiverPeriod{}, fmt.Errorf("earnings of %s from %s to %s: %w", receiverID,
			from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), err)
	}
	p.Net = p.Earned - p.TakenBack - p.Shortfall
	return p, nil
}

// EarningsEntry is one line of a receiver's earnings ledger: a gift's
// credit (from gift_entries) or another movement of their earnings or
// receivable (from account_entries).
type EarningsEntry struct {
	// Cursor names the entry's place in the ledger, for paging.
	Cursor EarningsCursor `json:"-"`
	// Kind is gift, reversal, shortfall, payout or recovery; Account is
	// earnings or receivable (only shortfalls and recoveries move it).
	Kind    string `json:"kind"`
	Account string `json:"account"`
	// Amount is signed: what the entry added to the account.
	Amount int64 `json:"amount"`
	// BalanceAfter is the account's balance after a non-gift entry; gift
	// credits are summed per batch, so theirs is not recorded (nil).
	BalanceAfter *int64    `json:"balance_after"`
	CreatedAt    time.Time `json:"created_at"`
	// For a gift: its platform, app, request, sender, room, gift id, gold
	// and share; for a reversal or shortfall, GiftEntry is the gift's row.
	Platform  string `json:"platform,omitempty"`
	AppID     string `json:"app_id,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	SenderID  string `json:"sender_id,omitempty"`
	RoomID    string `json:"room_id,omitempty"`
	GiftID    string `json:"gift_id,omitempty"`
	Gold      int64  `json:"gold,omitempty"`
	ShareBP   *int   `json:"share_bp,omitempty"`
	// GiftEntry is the id of the gift's gift_entries row.
	GiftEntry *int64 `json:"gift_entry,omitempty"`
	// Ref is the operator's idempotency key of a reversal or payout.
	Ref string `json:"ref,omitempty"`
}

// EarningsCursor is a place in a receiver's earnings ledger, which is
// ordered newest first by time, then table, then (partitioned) partition,
// then id. Its text form is "<unix microseconds>-<g|a>-<id>" (g: a gift,
// a: another entry), followed by "-<partition>" for an entry of a
// partition other than 0 (docs/scale-out.md#reads-across-partitions).
type EarningsCursor struct {
	At        time.Time
	Source    byte
	Partition int
	ID        int64
}

// String is the cursor's text form.
func (c EarningsCursor) String() string {
	s := strconv.FormatInt(c.At.UnixMicro(), 10) + "-" + string(c.Source) + "-" + strconv.FormatInt(c.ID, 10)
	if c.Partition > 0 {
		s += "-" + strconv.Itoa(c.Partition)
	}
	return s
}

// ErrBadCursor: a paging cursor that is not one giftd gave.
var ErrBadCursor = errors.New("not a cursor from a previous page")

// ParseEarningsCursor parses an EarningsCursor's text form, or returns
// ErrBadCursor.
func ParseEarningsCursor(s string) (EarningsCursor, error) {
	f := strings.Split(s, "-")
	if len(f) != 3 && len(f) != 4 {
		return EarningsCursor{}, ErrBadCursor
	}
	micros, err1 := strconv.ParseInt(f[0], 10, 64)
	n, err2 := strconv.ParseInt(f[2], 10, 64)
	p, err3 := 0, error(nil)
	if len(f) == 4 {
		p, err3 = strconv.Atoi(f[3])
		if p < 1 {
			err3 = ErrBadCursor
		}
	}
	if err1 != nil || err2 != nil || err3 != nil || (f[1] != "g" && f[1] != "a") || n < 1 || micros < 0 {
		return EarningsCursor{}, ErrBadCursor
	}
	return EarningsCursor{At: time.UnixMicro(micros).UTC(), Source: f[1][0], Partition: p, ID: n}, nil
}

// EarningsLedger returns up to limit entries of a receiver's earnings
// ledger, newest first, after before (nil: from the newest). Gift credits
// and the other entries are merged from gift_entries_receiver_report
// (migration 6) and account_entries_receiver (migration 4), each read only
// as far as the page needs. A receiver with no entries has an empty ledger.
func (s *Store) EarningsLedger(ctx context.Context, receiverID string, before *EarningsCursor, limit int) ([]EarningsEntry, error) {
	defer s.observe(OpReport, time.Now())
	c := EarningsCursor{At: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), Source: 'h', ID: math.MaxInt64}
	if before != nil {
		c = *before
	}
	if s.partitions > 0 {
		return s.earningsLedgerPartitioned(ctx, receiverID, c, limit)
	}
	rows, _ := s.pool.Query(ctx, `
		SELECT * FROM (
			(SELECT created_at, 'g' AS src, id, 'gift' AS kind, 'earnings' AS account, earnings AS amount,
				NULL::bigint AS balance_after, platform, app_id, request_id, sender_id, room_id, gift_id, gold,
				share_bp, id AS gift_entry, ''::text AS ref
			 FROM gift_entries
			 WHERE receiver_id = $1 AND created_at <= $2 AND (created_at, 'g'::text, id) < ($2, $3::text, $4)
			 ORDER BY created_at DESC, id DESC LIMIT $5)
			UNION ALL
			(SELECT created_at, 'a', id, kind, account, amount, balance_after, '', '', '', '', '', '', 0,
				NULL::int, gift_entry, ref
			 FROM account_entries
			 WHERE receiver_id = $1 AND created_at <= $2 AND (created_at, 'a'::text, id) < ($2, $3::text, $4)
			 ORDER BY created_at DESC, id DESC LIMIT $5)
		) AS e
		ORDER BY created_at DESC, src DESC, id DESC
		LIMIT $5`,
		receiverID, c.At, string(c.Source), c.ID, limit)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (EarningsEntry, error) {
		var e EarningsEntry
		var src string
		err := row.Scan(&e.CreatedAt, &src, &e.Cursor.ID, &e.Kind, &e.Account, &e.Amount, &e.BalanceAfter,
			&e.Platform, &e.AppID, &e.RequestID, &e.SenderID, &e.RoomID, &e.GiftID, &e.Gold, &e.ShareBP, &e.GiftEntry, &e.Ref)
		e.CreatedAt = e.CreatedAt.UTC()
		e.Cursor.At, e.Cursor.Source = e.CreatedAt, src[0]
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("earnings ledger of %s: %w", receiverID, err)
	}
	return out, nil
}
