package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Economy configures the receiving side of gift debits (docs/economy.md).
type Economy struct {
	// Earnings settles every gift debit in its own transaction: the
	// receiver's share to their earnings account, the rest to the house.
	// Off, debits take gold and nothing else (as before the economy), and
	// the audit counts them as unsettled.
	Earnings bool
	// PriceCheck refuses a gift that is not in the catalogue, is inactive,
	// or whose gold is not the catalogue price × count (Refused).
	PriceCheck bool
	// DefaultShareBP is the receiver's share, in basis points, of a gift
	// that is not in the catalogue, and of a new catalogue gift that names none.
	DefaultShareBP int
}

// DefaultEconomy is earnings on, price check off, a default share of 0
// (all to the house until the merchant sets shares).
func DefaultEconomy() Economy { return Economy{Earnings: true} }

// WithEconomy sets the economy; it must pass Economy.Check.
func WithEconomy(e Economy) Option {
	return func(s *Store) { s.economy = e }
}

// Economy returns the store's economy settings.
func (s *Store) Economy() Economy { return s.economy }

// MaxShareBP is a share of everything, in basis points.
const MaxShareBP = 10000

// Check returns an error when the default share is outside 0–MaxShareBP.
func (e Economy) Check() error {
	if e.DefaultShareBP < 0 || e.DefaultShareBP > MaxShareBP {
		return fmt.Errorf("default share %d: must be 0-%d basis points", e.DefaultShareBP, MaxShareBP)
	}
	return nil
}

// Economy's sentinel errors.
var (
	// ErrGiftExists: a catalogue gift with this platform and id already exists.
	ErrGiftExists = errors.New("gift already in the catalogue")
	// ErrInsufficientEarnings: a payout larger than the receiver's payable earnings.
	ErrInsufficientEarnings = errors.New("amount exceeds the payable earnings")
)

// CatalogueGift is one gift of the catalogue, at one version.
type CatalogueGift struct {
	Platform string `json:"platform"`
	// GiftID is LinkV's gift_id or Polyv's goodName.
	GiftID  string `json:"gift_id"`
	Version int    `json:"version"`
	Name    string `json:"name"`
	// Price is in coins per item.
	Price int64 `json:"price"`
	// ShareBP is the receiver's share in basis points.
	ShareBP   int       `json:"share_bp"`
	Active    bool      `json:"active"`
	UpdatedAt time.Time `json:"updated_at"`
}

const catalogueColumns = `platform, gift_id, version, name, price, share_bp, active, updated_at`

func scanGift(row pgx.CollectableRow) (CatalogueGift, error) {
	var g CatalogueGift
	err := row.Scan(&g.Platform, &g.GiftID, &g.Version, &g.Name, &g.Price, &g.ShareBP, &g.Active, &g.UpdatedAt)
	g.UpdatedAt = g.UpdatedAt.UTC()
	return g, err
}

// CreateGift adds g to the catalogue at version 1 (g.Version and
// g.UpdatedAt are ignored). It returns ErrGiftExists when the platform
// already has a gift with g.GiftID.
func (s *Store) CreateGift(ctx context.Context, g CatalogueGift) (CatalogueGift, error) {
	defer s.observe(OpCatalogue, time.Now())
	if s.partitions > 0 {
		return homeThenSpread(ctx, s, func(home *Store) (CatalogueGift, error) {
			created, err := home.CreateGift(ctx, g)
			if errors.Is(err, ErrGiftExists) {
				// A retry of a creation that reached the home only: the
				// same gift at version 1 is this request's, made.
				if had, herr := home.gift(ctx, g.Platform, g.GiftID); herr == nil && had.Version == 1 &&
					had.Name == g.Name && had.Price == g.Price && had.ShareBP == g.ShareBP && had.Active == g.Active {
					return had, nil
				}
			}
			return created, err
		}, func() error { return s.spreadGift(ctx, g.Platform, g.GiftID) })
	}
	rows, _ := s.pool.Query(ctx, `
		INSERT INTO gift_catalogue (platform, gift_id, name, price, share_bp, active)
		VALUES ($1, $2, $3, $4, $5, $6)
		RETURNING `+catalogueColumns,
		g.Platform, g.GiftID, g.Name, g.Price, g.ShareBP, g.Active)
	created, err := pgx.CollectExactlyOneRow(rows, scanGift)
	switch {
	case isUniqueViolation(err, "gift_catalogue_pkey"):
		return CatalogueGift{}, fmt.Errorf("gift %s/%s: %w", g.Platform, g.GiftID, ErrGiftExists)
	case err != nil:
		return CatalogueGift{}, fmt.Errorf("gift %s/%s: %w", g.Platform, g.GiftID, err)
	}
	return created, nil
}

// gift returns the catalogue's gift platform/giftID as it is now.
func (s *Store) gift(ctx context.Context, platform, giftID string) (CatalogueGift, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+catalogueColumns+` FROM gift_catalogue WHERE platform = $1 AND gift_id = $2`,
		platform, giftID)
	return pgx.CollectExactlyOneRow(rows, scanGift)
}

// GiftChange is an update of a catalogue gift: nil fields stay as they are.
type GiftChange struct {
	Name    *string
	Price   *int64
	ShareBP *int
	Active  *bool
}

// UpdateGift applies c to a catalogue gift as a new version (kept in its
// history), unless it changes nothing; it returns the gift as it is then,
// or ErrNotFound.
func (s *Store) UpdateGift(ctx context.Context, platform, giftID string, c GiftChange) (CatalogueGift, error) {
	defer s.observe(OpCatalogue, time.Now())
	if s.partitions > 0 {
		// A retry changes nothing on the home (the same values) and copies.
		return homeThenSpread(ctx, s, func(home *Store) (CatalogueGift, error) { return home.UpdateGift(ctx, platform, giftID, c) },
			func() error { return s.spreadGift(ctx, platform, giftID) })
	}
	rows, _ := s.pool.Query(ctx, `
		WITH u AS (
			UPDATE gift_catalogue SET name = coalesce($3, name), price = coalesce($4, price),
				share_bp = coalesce($5, share_bp), active = coalesce($6, active)
			WHERE platform = $1 AND gift_id = $2
			  AND (coalesce($3, name), coalesce($4, price), coalesce($5, share_bp), coalesce($6, active))
			      IS DISTINCT FROM (name, price, share_bp, active)
			RETURNING `+catalogueColumns+`
		)
		SELECT * FROM u
		UNION ALL
		SELECT `+catalogueColumns+` FROM gift_catalogue
		WHERE platform = $1 AND gift_id = $2 AND NOT EXISTS (SELECT 1 FROM u)`,
		platform, giftID, c.Name, c.Price, c.ShareBP, c.Active)
	g, err := pgx.CollectExactlyOneRow(rows, scanGift)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return CatalogueGift{}, fmt.Errorf("gift %s/%s: %w", platform, giftID, ErrNotFound)
	case err != nil:
		return CatalogueGift{}, fmt.Errorf("gift %s/%s: %w", platform, giftID, err)
	}
	return g, nil
}

// Gifts lists the catalogue's gifts of platform ("" for every platform),
// by platform and id.
func (s *Store) Gifts(ctx context.Context, platform string) ([]CatalogueGift, error) {
	defer s.observe(OpCatalogue, time.Now())
	if s.partitions > 0 {
		home, err := s.home()
		if err != nil {
			return nil, err
		}
		return home.Gifts(ctx, platform)
	}
	rows, _ := s.pool.Query(ctx, `
		SELECT `+catalogueColumns+` FROM gift_catalogue
		WHERE $1 = '' OR platform = $1 ORDER BY platform, gift_id`, platform)
	gifts, err := pgx.CollectRows(rows, scanGift)
	if err != nil {
		return nil, fmt.Errorf("catalogue: %w", err)
	}
	return gifts, nil
}

// GiftHistory returns every version of a catalogue gift, newest first, or
// ErrNotFound.
func (s *Store) GiftHistory(ctx context.Context, platform, giftID string) ([]CatalogueGift, error) {
	defer s.observe(OpCatalogue, time.Now())
	if s.partitions > 0 {
		home, err := s.home()
		if err != nil {
			return nil, err
		}
		return home.GiftHistory(ctx, platform, giftID)
	}
	rows, _ := s.pool.Query(ctx, `
		SELECT platform, gift_id, version, name, price, share_bp, active, changed_at FROM gift_catalogue_history
		WHERE platform = $1 AND gift_id = $2 ORDER BY version DESC`, platform, giftID)
	versions, err := pgx.CollectRows(rows, scanGift)
	if err == nil && len(versions) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("gift %s/%s: %w", platform, giftID, err)
	}
	return versions, nil
}

// RoomReceiver maps a room (a Polyv channel) to the receiver of its gifts.
type RoomReceiver struct {
	Platform   string    `json:"platform"`
	RoomID     string    `json:"room_id"`
	ReceiverID string    `json:"receiver_id"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// SetRoomReceiver maps a room of platform to receiverID from now on; gifts
// already settled keep their receiver. Every change is kept in history.
func (s *Store) SetRoomReceiver(ctx context.Context, platform, roomID, receiverID string) (RoomReceiver, error) {
	defer s.observe(OpCatalogue, time.Now())
	if s.partitions > 0 {
		return homeThenSpread(ctx, s, func(home *Store) (RoomReceiver, error) {
			return home.SetRoomReceiver(ctx, platform, roomID, receiverID)
		},
			func() error { return s.spreadRoom(ctx, platform, roomID) })
	}
	rows, _ := s.pool.Query(ctx, `
		INSERT INTO room_receivers AS r (platform, room_id, receiver_id) VALUES ($1, $2, $3)
		ON CONFLICT (platform, room_id) DO UPDATE SET receiver_id = excluded.receiver_id, updated_at = now()
		RETURNING platform, room_id, receiver_id, updated_at`, platform, roomID, receiverID)
	m, err := pgx.CollectExactlyOneRow(rows, scanRoom)
	if err != nil {
		return RoomReceiver{}, fmt.Errorf("room %s/%s: %w", platform, roomID, err)
	}
	return m, nil
}

// RemoveRoomReceiver unmaps a room: its gifts go all to the house from now
// on. It returns ErrNotFound when the room was not mapped.
func (s *Store) RemoveRoomReceiver(ctx context.Context, platform, roomID string) error {
	defer s.observe(OpCatalogue, time.Now())
	if s.partitions > 0 {
		// A retry finds the room unmapped on the home (ErrNotFound) and
		// still copies that.
		_, err := homeThenSpread(ctx, s, func(home *Store) (struct{}, error) { return struct{}{}, home.RemoveRoomReceiver(ctx, platform, roomID) },
			func() error { return s.spreadRoom(ctx, platform, roomID) })
		return err
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM room_receivers WHERE platform = $1 AND room_id = $2`, platform, roomID)
	if err == nil && tag.RowsAffected() == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("room %s/%s: %w", platform, roomID, err)
	}
	return nil
}

// RoomReceivers lists the rooms of platform mapped to a receiver.
func (s *Store) RoomReceivers(ctx context.Context, platform string) ([]RoomReceiver, error) {
	defer s.observe(OpCatalogue, time.Now())
	if s.partitions > 0 {
		home, err := s.home()
		if err != nil {
			return nil, err
		}
		return home.RoomReceivers(ctx, platform)
	}
	rows, _ := s.pool.Query(ctx, `
		SELECT platform, room_id, receiver_id, updated_at FROM room_receivers
		WHERE platform = $1 ORDER BY room_id`, platform)
	rooms, err := pgx.CollectRows(rows, scanRoom)
	if err != nil {
		return nil, fmt.Errorf("rooms of %s: %w", platform, err)
	}
	return rooms, nil
}

func scanRoom(row pgx.CollectableRow) (RoomReceiver, error) {
	var m RoomReceiver
	err := row.Scan(&m.Platform, &m.RoomID, &m.ReceiverID, &m.UpdatedAt)
	m.UpdatedAt = m.UpdatedAt.UTC()
	return m, err
}

// EarningsAccount is a receiver's earnings.
type EarningsAccount struct {
	ReceiverID string `json:"receiver_id"`
	// Balance is what the merchant owes the receiver; Owed what the
	// receiver owes back (reversal shortfalls); Maturing the part of
	// Balance credited by gifts younger than the earnings hold
	// (Safeguards.EarningsHold); Payable = Balance − Owed − Maturing, at
	// least 0: what a payout may take; Held = Balance − Payable: everything
	// not payable now (what is owed, and what is maturing).
	Balance   int64     `json:"balance"`
	Owed      int64     `json:"owed"`
	Maturing  int64     `json:"maturing"`
	Payable   int64     `json:"payable"`
	Held      int64     `json:"held"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Earnings returns the earnings account of receiverID, or ErrNotFound when
// it was never credited. Partitioned, it returns ErrReshardPaused between a
// reshard's move of the claims and the proxy's switch (partition migration
// 25): retry.
func (s *Store) Earnings(ctx context.Context, receiverID string) (EarningsAccount, error) {
	defer s.observe(OpEarnings, time.Now())
	if s.partitions > 0 {
		return s.earningsPartitioned(ctx, receiverID)
	}
	a := EarningsAccount{ReceiverID: receiverID}
	err := s.pool.QueryRow(ctx, `SELECT balance, owed, `+heldSQL+`, updated_at FROM earnings_accounts WHERE receiver_id = $1`,
		receiverID, s.safeguards.EarningsHold).Scan(&a.Balance, &a.Owed, &a.Maturing, &a.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return EarningsAccount{}, fmt.Errorf("earnings of %s: %w", receiverID, ErrNotFound)
	}
	if err != nil {
		return EarningsAccount{}, fmt.Errorf("earnings of %s: %w", receiverID, err)
	}
	a.Payable, a.UpdatedAt = max(0, a.Balance-a.Owed-a.Maturing), a.UpdatedAt.UTC()
	a.Held = a.Balance - a.Payable
	return a, nil
}

// heldSQL is the maturing part of the balance of the earnings account of $1,
// with $2 the hold (an interval): the earnings of its gifts younger than
// the hold, at most the balance. It reads the receiver's gifts of the hold
// period by the index gift_entries_receiver.
const heldSQL = `least(balance, (SELECT coalesce(sum(g.earnings), 0) FROM gift_entries g
	WHERE g.receiver_id = $1 AND $2::interval > '0' AND g.created_at > now() - $2::interval))::bigint`

// Payout is an operator's payment of a receiver's earnings.
type Payout struct {
	ReceiverID string
	Amount     int64
	// Key is the operator's idempotency key: one key, one payout.
	Key  string
	Note string
}

// PayoutResult is the result of a payout.
type PayoutResult struct {
	ReceiverID string `json:"receiver_id"`
	Amount     int64  `json:"amount"`
	// Recovered is what the payout settled of what the receiver owed
	// first (docs/economy.md); Balance the earnings left after both.
	Recovered int64 `json:"recovered"`
	Balance   int64 `json:"balance"`
	EntryID   int64 `json:"entry_id"`
	Replay    bool  `json:"-"`
}

// Payout pays p.Amount out of the receiver's earnings, once per key: the
// same key with the same receiver and amount replays the first result;
// with another receiver or amount it returns ErrKeyReused. The amount must
// be at most the payable earnings (balance − owed), else
// ErrInsufficientEarnings; a payout first settles what the receiver owes.
// A receiver never credited is ErrNotFound.
func (s *Store) Payout(ctx context.Context, p Payout) (PayoutResult, error) {
	defer s.observe(OpPayout, time.Now())
	if s.partitions > 0 {
		return s.payoutPartitioned(ctx, p)
	}
	var res PayoutResult
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		var balance, owed, held int64
		// The account's lock first: copies of one key for this receiver
		// serialise here, and the second then finds the first's entry.
		err := tx.QueryRow(ctx, `SELECT balance, owed, `+heldSQL+` FROM earnings_accounts WHERE receiver_id = $1 FOR UPDATE`,
			p.ReceiverID, s.safeguards.EarningsHold).Scan(&balance, &owed, &held)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("earnings of %s: %w", p.ReceiverID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if prev, err := payoutOfKey(ctx, tx, p.Key); err == nil {
			// A replay: the payout found may have committed on the primary
			// alone; this transaction's commit waits for the synchronous
			// standbys once it has written WAL (see waitDurable).
			res = prev
			_, err := tx.Exec(ctx, `SELECT pg_logical_emit_message(true, 'giftd', 'replay')`)
			return err
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if payable := max(0, balance-owed-held); p.Amount > payable {
			return fmt.Errorf("%w (payable %d)", ErrInsufficientEarnings, payable)
		}
		res = PayoutResult{ReceiverID: p.ReceiverID, Amount: p.Amount, Recovered: owed, Balance: balance - owed - p.Amount}
		if _, err := tx.Exec(ctx, `UPDATE earnings_accounts SET balance = $2, owed = 0, updated_at = now() WHERE receiver_id = $1`,
			p.ReceiverID, res.Balance); err != nil {
			return err
		}
		details := map[string]string{"note": p.Note}
		err = tx.QueryRow(ctx, `
			WITH recovery AS (
				INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
				SELECT a, $1, 'recovery', -$3::bigint, b, $5, $6 FROM (VALUES ('earnings', $7::bigint), ('receivable', 0)) AS v (a, b)
				WHERE $3 > 0
			)
			INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
			VALUES ('earnings', $1, 'payout', -$2::bigint, $4, $5, $6)
			RETURNING id`,
			p.ReceiverID, p.Amount, owed, res.Balance, p.Key, details, balance-owed).Scan(&res.EntryID)
		if err != nil {
			return err
		}
		return insertEvent(ctx, tx, EventEarningsPaidOut, map[string]any{
			"receiver_id": p.ReceiverID, "amount": p.Amount, "recovered": res.Recovered,
			"balance_after": res.Balance, "entry_id": res.EntryID, "key": p.Key, "note": p.Note,
		})
	})
	switch {
	case isUniqueViolation(err, "account_entries_key"):
		// The key was used for another receiver meanwhile.
		return PayoutResult{}, fmt.Errorf("payout %s: %w", p.Key, ErrKeyReused)
	case err != nil:
		return PayoutResult{}, fmt.Errorf("payout %s: %w", p.Key, err)
	case res.Replay && (res.ReceiverID != p.ReceiverID || res.Amount != p.Amount):
		return PayoutResult{}, fmt.Errorf("payout %s: %w", p.Key, ErrKeyReused)
	}
	return res, nil
}

// payoutOfKey returns the payout made under key, as a replay, or pgx.ErrNoRows.
func payoutOfKey(ctx context.Context, tx pgx.Tx, key string) (PayoutResult, error) {
	res := PayoutResult{Replay: true}
	err := tx.QueryRow(ctx, `
		SELECT p.receiver_id, -p.amount, p.balance_after, p.id,
			coalesce((SELECT -r.amount FROM account_entries r WHERE r.account = 'receivable' AND r.kind = 'recovery' AND r.ref = $1), 0)
		FROM account_entries p WHERE p.account = 'earnings' AND p.kind = 'payout' AND p.ref = $1`, key,
	).Scan(&res.ReceiverID, &res.Amount, &res.Balance, &res.EntryID, &res.Recovered)
	return res, err
}

// EarningsRow is one receiver's line of an earnings export.
type EarningsRow struct {
	ReceiverID string
	// In the period: gifts received, earnings credited, taken back by
	// reversals, shortfalls recorded, recovered and paid out.
	Gifts, Earned, TakenBack, Shortfall, Recovered, PaidOut int64
	// At the period's end: the earnings balance, what the receiver owed,
	// what was maturing (credited by gifts younger than the earnings hold)
	// and what was payable (balance − owed − maturing, at least 0).
	Balance, Owed, Payable, Maturing int64
}

// EarningsPeriod returns, for every receiver with earnings entries in
// [from, to) or a balance at to, what happened in the period and what was
// payable at its end, by receiver id, from one snapshot. It reads every
// earnings entry before to: a finance export, not a request path.
func (s *Store) EarningsPeriod(ctx context.Context, from, to time.Time) ([]EarningsRow, error) {
	defer s.observe(OpEarnings, time.Now())
	var out []EarningsRow
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `
			WITH legs AS (
				SELECT receiver_id, 'earnings' AS account, 'gift' AS kind, earnings AS amount, created_at
				FROM gift_entries WHERE receiver_id IS NOT NULL AND created_at < $2
				UNION ALL
				SELECT receiver_id, account, kind, amount, created_at
				FROM account_entries WHERE receiver_id IS NOT NULL AND created_at < $2
			), t AS (
				SELECT receiver_id,
					count(*) FILTER (WHERE kind = 'gift' AND created_at >= $1) AS gifts,
					coalesce(sum(amount) FILTER (WHERE kind = 'gift' AND created_at >= $1), 0) AS earned,
					coalesce(-sum(amount) FILTER (WHERE account = 'earnings' AND kind = 'reversal' AND created_at >= $1), 0) AS taken,
					coalesce(sum(amount) FILTER (WHERE kind = 'shortfall' AND created_at >= $1), 0) AS shortfall,
					coalesce(-sum(amount) FILTER (WHERE account = 'earnings' AND kind = 'recovery' AND created_at >= $1), 0) AS recovered,
					coalesce(-sum(amount) FILTER (WHERE kind = 'payout' AND created_at >= $1), 0) AS paid,
					coalesce(sum(amount) FILTER (WHERE account = 'earnings'), 0) AS balance,
					coalesce(sum(amount) FILTER (WHERE account = 'receivable'), 0) AS owed,
					count(*) FILTER (WHERE created_at >= $1) AS moves,
					coalesce(sum(amount) FILTER (WHERE kind = 'gift' AND $3::interval > '0' AND created_at > $2 - $3::interval), 0) AS held
				FROM legs GROUP BY receiver_id
			)
			SELECT receiver_id, gifts, earned::bigint, taken::bigint, shortfall::bigint, recovered::bigint, paid::bigint,
				balance::bigint, owed::bigint, greatest(balance - owed - least(held, balance), 0)::bigint, least(held, balance)::bigint
			FROM t WHERE moves > 0 OR balance <> 0 OR owed <> 0
			ORDER BY receiver_id`, from, to, s.safeguards.EarningsHold)
		var err error
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (EarningsRow, error) {
			var r EarningsRow
			err := row.Scan(&r.ReceiverID, &r.Gifts, &r.Earned, &r.TakenBack, &r.Shortfall, &r.Recovered, &r.PaidOut,
				&r.Balance, &r.Owed, &r.Payable, &r.Maturing)
			return r, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("earnings from %s to %s: %w", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), err)
	}
	return out, nil
}
