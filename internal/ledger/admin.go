package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// adminPlatform is the platform recorded for entries made by operators.
const adminPlatform = "admin"

// TopUp is an operator's credit to a wallet.
type TopUp struct {
	UserID string
	Amount int64
	// Key is the operator's idempotency key: one key, one credit.
	Key  string
	Note string
}

// Credit is the result of a top-up or a reversal.
type Credit struct {
	UserID  string
	Amount  int64
	Balance int64 // the balance right after the credit
	EntryID int64
	Replay  bool // the stored result of an earlier call with the same key
	// Gift is, for the reversal of a settled gift, what was taken back from
	// its receiving side.
	Gift *GiftReversal
}

// TopUp credits t.Amount to the wallet, creating it on first use, once per
// key: a call with a used key and the same user and amount replays the first
// result; with another user or amount it returns ErrKeyReused. A balance that
// would pass the int64 range returns ErrBalanceOverflow.
func (s *Store) TopUp(ctx context.Context, t TopUp) (Credit, error) {
	defer s.observe(OpTopUp, time.Now())
	if s.partitions > 0 {
		return s.topUpPartitioned(ctx, t)
	}
	c := Credit{UserID: t.UserID, Amount: t.Amount}
	// One statement: the wallet credit and its entry commit together, and a
	// used key makes the entry's unique index refuse the whole statement.
	err := s.pool.QueryRow(ctx, `
		WITH w AS (
			INSERT INTO wallets AS w (user_id, gold) VALUES ($1, $2)
			ON CONFLICT (user_id) DO UPDATE SET gold = w.gold + excluded.gold, updated_at = now()
			RETURNING gold
		), e AS (
			INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, ref, details)
			SELECT $1, 'topup', $2, gold, $3, $4, jsonb_build_object('note', $5::text) FROM w
			RETURNING id, balance_after, created_at
		), ev AS (
			INSERT INTO events (type, created_at, data)
			SELECT 'wallet.topped_up', created_at, jsonb_build_object('user_id', $1::text, 'amount', $2::bigint,
				'balance_after', balance_after, 'entry_id', id, 'platform', $3::text, 'app_id', '',
				'key', $4::text, 'note', $5::text, 'source', 'admin')
			FROM e
		)
		SELECT id, balance_after FROM e`,
		t.UserID, t.Amount, adminPlatform, t.Key, t.Note,
	).Scan(&c.EntryID, &c.Balance)
	switch {
	case isUniqueViolation(err, "ledger_entries_key"):
		if err := s.waitDurable(ctx); err != nil {
			return Credit{}, fmt.Errorf("top-up %s: %w", t.Key, err)
		}
		var prev Credit
		err := s.pool.QueryRow(ctx, `
			SELECT user_id, amount, balance_after, id FROM ledger_entries
			WHERE kind = 'topup' AND platform = $1 AND app_id = '' AND ref = $2`,
			adminPlatform, t.Key,
		).Scan(&prev.UserID, &prev.Amount, &prev.Balance, &prev.EntryID)
		if err != nil {
			return Credit{}, fmt.Errorf("top-up %s: find earlier use of key: %w", t.Key, err)
		}
		if prev.UserID != t.UserID || prev.Amount != t.Amount {
			return Credit{}, fmt.Errorf("top-up %s: %w", t.Key, ErrKeyReused)
		}
		prev.Replay = true
		return prev, nil
	case isOverflow(err):
		return Credit{}, fmt.Errorf("top-up %s: %w", t.Key, ErrBalanceOverflow)
	case err != nil:
		return Credit{}, fmt.Errorf("top-up %s: %w", t.Key, err)
	}
	return c, nil
}

// Reversal asks to give a debit's gold back.
type Reversal struct {
	Debit DebitKey
	// UserID, if set, is the debit's sender as the caller knows it: a debit
	// of another user is ErrNotFound. Partitioned, only that user's
	// partition is asked, so the reversal needs no other partition up.
	UserID string
	// Key is the operator's idempotency key: one key, one reversal.
	Key  string
	Note string
}

// Reverse credits back the gold of the debit r.Debit, at most once per
// debit: the same key replays the first result; another key for an already
// reversed debit returns ErrAlreadyReversed; a key already used for another
// debit returns ErrKeyReused; a debit that never happened (or was answered
// 402) returns ErrNotFound.
//
// A settled gift's credits are taken back in the same transaction
// (docs/economy.md): the house's from the slot it credited, the
// receiver's from their earnings as far as the balance goes; the rest is a
// shortfall the receiver owes, recorded as an entry on their receivable.
func (s *Store) Reverse(ctx context.Context, r Reversal) (Credit, error) {
	defer s.observe(OpReversal, time.Now())
	if s.partitions > 0 {
		return s.reversePartitioned(ctx, r)
	}
	var c Credit
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		// Locks in the order every debit takes them: the wallet, then the
		// receiver's earnings, then the house slot.
		var debitEntry int64
		err := tx.QueryRow(ctx, `
			WITH d AS (
				SELECT id, user_id, -amount AS amount FROM ledger_entries
				WHERE kind = 'debit' AND platform = $1 AND app_id = $2 AND ref = $3 AND ($7 = '' OR user_id = $7)
			), w AS (
				UPDATE wallets SET gold = wallets.gold + d.amount, updated_at = now()
				FROM d WHERE wallets.user_id = d.user_id
				RETURNING wallets.user_id, wallets.gold, d.id, d.amount
			)
			INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, ref, reverses, details)
			SELECT user_id, 'reversal', amount, gold, $4, $5, id,
				jsonb_build_object('platform', $1::text, 'app_id', $2::text, 'request_id', $3::text, 'note', $6::text)
			FROM w
			RETURNING user_id, amount, balance_after, id, reverses`,
			r.Debit.Platform, r.Debit.AppID, r.Debit.RequestID, adminPlatform, r.Key, r.Note, r.UserID,
		).Scan(&c.UserID, &c.Amount, &c.Balance, &c.EntryID, &debitEntry)
		if err != nil {
			return err
		}
		if c.Gift, err = reverseGift(ctx, tx, debitEntry, r); err != nil {
			return err
		}
		return insertEvent(ctx, tx, EventDebitReversed, map[string]any{
			"platform": r.Debit.Platform, "app_id": r.Debit.AppID, "request_id": r.Debit.RequestID,
			"user_id": c.UserID, "amount": c.Amount, "balance_after": c.Balance, "entry_id": c.EntryID,
			"reverses": debitEntry, "key": r.Key, "note": r.Note, "gift": c.Gift,
		})
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Credit{}, fmt.Errorf("reverse %s: debit %w", r.Debit, ErrNotFound)
	case isUniqueViolation(err, "ledger_entries_key"), isUniqueViolation(err, "ledger_entries_reverses_key"),
		isUniqueViolation(err, "account_entries_key"):
		return s.reversed(ctx, r)
	case isOverflow(err):
		return Credit{}, fmt.Errorf("reverse %s: %w", r.Debit, ErrBalanceOverflow)
	case err != nil:
		return Credit{}, fmt.Errorf("reverse %s: %w", r.Debit, err)
	}
	return c, nil
}

// GiftReversal is what a reversal took back from a settled gift's
// receiving side.
type GiftReversal struct {
	// ReceiverID is the gift's receiver ("" when the house took it all).
	ReceiverID string `json:"receiver_id,omitempty"`
	// Earnings is what was taken back from the receiver's earnings;
	// Shortfall what they had already been paid and now owe; House what
	// was taken back from the house. Earnings + Shortfall + House is the
	// gold given back.
	Earnings  int64 `json:"earnings"`
	Shortfall int64 `json:"shortfall"`
	House     int64 `json:"house"`
	// Clawback, in partitioned mode only, is what is still to be taken back
	// from a receiver living on another partition than the sender
	// (docs/scale-out.md#reversals-and-payouts): the credit consumer takes it
	// back there. It is 0 once taken, then part of Earnings and Shortfall;
	// Earnings + Shortfall + House + Clawback is the gold given back.
	Clawback int64 `json:"clawback,omitempty"`
}

// insertEvent writes one event of type typ with data in tx: the last
// statement of a transaction of several, so that it commits with them.
func insertEvent(ctx context.Context, tx pgx.Tx, typ string, data any) error {
	_, err := tx.Exec(ctx, `INSERT INTO events (type, data) VALUES ($1, $2)`, typ, data)
	return err
}

// reverseGift takes back the receiving side of the gift settled with the
// debit entry debitEntry, if it was settled, in tx.
func reverseGift(ctx context.Context, tx pgx.Tx, debitEntry int64, r Reversal) (*GiftReversal, error) {
	var giftEntry, earnings, house int64
	var receiver *string
	var slot int16
	err := tx.QueryRow(ctx, `SELECT id, receiver_id, earnings, house, house_slot FROM gift_entries WHERE debit_entry = $1`,
		debitEntry).Scan(&giftEntry, &receiver, &earnings, &house, &slot)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil // settled with earnings off: gold only
	}
	if err != nil {
		return nil, err
	}
	g := &GiftReversal{House: house}
	var balance, owed int64
	if receiver != nil && earnings > 0 {
		g.ReceiverID = *receiver
		if err := tx.QueryRow(ctx, `SELECT balance, owed FROM earnings_accounts WHERE receiver_id = $1 FOR UPDATE`,
			*receiver).Scan(&balance, &owed); err != nil {
			return nil, fmt.Errorf("earnings of %s: %w", *receiver, err)
		}
		g.Earnings = min(balance, earnings)
		g.Shortfall = earnings - g.Earnings
		balance, owed = balance-g.Earnings, owed+g.Shortfall
		if _, err := tx.Exec(ctx, `UPDATE earnings_accounts SET balance = $2, owed = $3, updated_at = now() WHERE receiver_id = $1`,
			*receiver, balance, owed); err != nil {
			return nil, err
		}
	} else if receiver != nil {
		g.ReceiverID = *receiver
	}
	var houseAfter int64
	if house > 0 {
		if err := tx.QueryRow(ctx, `UPDATE house_slots SET balance = balance - $2, updated_at = now() WHERE slot = $1 RETURNING balance`,
			slot, house).Scan(&houseAfter); err != nil {
			return nil, fmt.Errorf("house slot %d: %w", slot, err)
		}
	}
	details := map[string]string{"platform": r.Debit.Platform, "app_id": r.Debit.AppID, "request_id": r.Debit.RequestID, "note": r.Note}
	_, err = tx.Exec(ctx, `
		INSERT INTO account_entries (account, receiver_id, house_slot, kind, amount, balance_after, gift_entry, ref, details)
		SELECT v.account, v.receiver_id, v.slot, v.kind, v.amount, v.after, $1, $2, $3
		FROM (VALUES ('earnings', $4::text, NULL::smallint, 'reversal', -$5::bigint, $6::bigint),
		             ('receivable', $4, NULL, 'shortfall', $7, $8),
		             ('house', NULL, $9::smallint, 'reversal', -$10::bigint, $11::bigint))
		     AS v (account, receiver_id, slot, kind, amount, after)
		WHERE v.amount <> 0`,
		giftEntry, r.Key, details, g.ReceiverID, g.Earnings, balance, g.Shortfall, owed, slot, house, houseAfter)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// reversed explains why a reversal hit a unique index: a replay of the same
// key and debit, the key used for another debit, or the debit reversed under
// another key.
func (s *Store) reversed(ctx context.Context, r Reversal) (Credit, error) {
	if err := s.waitDurable(ctx); err != nil {
		return Credit{}, fmt.Errorf("reverse %s: %w", r.Debit, err)
	}
	var prev Credit
	var debit DebitKey
	err := s.pool.QueryRow(ctx, `
		SELECT r.user_id, r.amount, r.balance_after, r.id, d.platform, d.app_id, d.ref
		FROM ledger_entries r JOIN ledger_entries d ON d.id = r.reverses
		WHERE r.kind = 'reversal' AND r.platform = $1 AND r.app_id = '' AND r.ref = $2`,
		adminPlatform, r.Key,
	).Scan(&prev.UserID, &prev.Amount, &prev.Balance, &prev.EntryID, &debit.Platform, &debit.AppID, &debit.RequestID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Credit{}, fmt.Errorf("reverse %s: %w", r.Debit, ErrAlreadyReversed)
	case err != nil:
		return Credit{}, fmt.Errorf("reverse %s: find earlier use of key: %w", r.Debit, err)
	case debit != r.Debit:
		return Credit{}, fmt.Errorf("reverse %s: %w", r.Debit, ErrKeyReused)
	}
	if prev.Gift, err = giftReversed(ctx, s.pool, r.Key); err != nil {
		return Credit{}, fmt.Errorf("reverse %s: %w", r.Debit, err)
	}
	prev.Replay = true
	return prev, nil
}

// giftReversed returns what the reversal under key took back from a gift's
// receiving side, or nil when the debit was not a settled gift (or the
// house took it all and there was nothing to take back from a receiver).
func giftReversed(ctx context.Context, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, key string) (*GiftReversal, error) {
	g := &GiftReversal{}
	var receiver *string
	err := db.QueryRow(ctx, `
		SELECT g.receiver_id,
			coalesce(-sum(a.amount) FILTER (WHERE a.account = 'earnings'), 0),
			coalesce(sum(a.amount) FILTER (WHERE a.account = 'receivable'), 0),
			coalesce(-sum(a.amount) FILTER (WHERE a.account = 'house'), 0)
		FROM account_entries a JOIN gift_entries g ON g.id = a.gift_entry
		WHERE a.kind IN ('reversal', 'shortfall') AND a.ref = $1
		GROUP BY g.receiver_id`, key).Scan(&receiver, &g.Earnings, &g.Shortfall, &g.House)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if receiver != nil {
		g.ReceiverID = *receiver
	}
	return g, nil
}

// Entry is one ledger entry.
type Entry struct {
	ID           int64           `json:"id"`
	UserID       string          `json:"user_id"`
	Kind         string          `json:"kind"`
	Amount       int64           `json:"amount"`
	BalanceAfter int64           `json:"balance_after"`
	Platform     string          `json:"platform"`
	AppID        string          `json:"app_id,omitempty"`
	Ref          string          `json:"ref"`
	Reverses     *int64          `json:"reverses,omitempty"`
	Details      json.RawMessage `json:"details"`
	CreatedAt    time.Time       `json:"created_at"`
}

// Entries returns up to limit entries of userID's wallet, newest first,
// starting below entry id before (0: from the newest). It returns ErrNotFound
// for a wallet that never existed.
func (s *Store) Entries(ctx context.Context, userID string, before int64, limit int) ([]Entry, error) {
	defer s.observe(OpEntries, time.Now())
	if before <= 0 {
		before = 1<<63 - 1
	}
	sql := `
		SELECT ` + entryColumns + `
		FROM ledger_entries
		WHERE user_id = $1 AND id < $2
		ORDER BY id DESC
		LIMIT $3`
	if s.partitions > 0 {
		sql = `SELECT ` + entryColumns + ` FROM giftd_entries($1, $2, $3)` // on the user's partition
	}
	rows, err := s.pool.Query(ctx, sql, userID, before, limit)
	if err != nil {
		return nil, fmt.Errorf("ledger of %s: %w", userID, s.routed(err))
	}
	entries, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Entry, error) {
		var e Entry
		err := row.Scan(&e.ID, &e.UserID, &e.Kind, &e.Amount, &e.BalanceAfter, &e.Platform, &e.AppID,
			&e.Ref, &e.Reverses, &e.Details, &e.CreatedAt)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("ledger of %s: %w", userID, s.routed(err))
	}
	if len(entries) == 0 {
		if _, err := s.Wallet(ctx, userID); err != nil {
			return nil, err
		}
	}
	return entries, nil
}

// waitDurable returns once every commit before it is as durable as a fresh
// commit would be: it commits one small WAL record (a transactional logical
// message), and a commit waits for the synchronous standbys, which confirm
// WAL in order. A replay calls it before answering from a record found
// committed, which may be on the primary alone (its commit's wait for the
// standbys was cancelled), so that what it answers survives a failover
// (docs/ha.md).
func (s *Store) waitDurable(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `SELECT pg_logical_emit_message(true, 'giftd', 'replay')`)
	return err
}
