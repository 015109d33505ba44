package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DebitRecord is what giftd recorded of a debit request when it executed
// it: what was asked and what was answered. It is kept until the request's
// own expiry (then pruned); the ledger entry of a debited request stays.
type DebitRecord struct {
	UserID string `json:"user_id"`
	// Gold is the gold asked.
	Gold int64 `json:"gold"`
	// Status is the answer: 200 debited, 402 insufficient gold, 403 a
	// safeguard's refusal.
	Status DebitStatus `json:"status"`
	// For a 403: the policy (RefusedCap24h…), its limit and when it resets.
	Refusal         *string    `json:"refusal,omitempty"`
	RefusalLimit    *int64     `json:"refusal_limit,omitempty"`
	RefusalResetsAt *time.Time `json:"refusal_resets_at,omitempty"`
	// Balance is the balance answered.
	Balance   int64     `json:"balance"`
	EntryID   *int64    `json:"entry_id"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedAt time.Time `json:"created_at"`
}

// DebitView is everything known of one debit request.
type DebitView struct {
	Key DebitKey
	// Record is nil once the request record was pruned (after its expiry).
	Record *DebitRecord
	// Entry is the debit's ledger entry; nil when the request was answered
	// 402 (nothing was taken).
	Entry *Entry
	// Reversal is the entry that gave the debit's gold back, if any.
	Reversal *Entry
}

// FindDebit returns what giftd knows of the debit key: its request record,
// its ledger entry and its reversal, read in one snapshot. It returns
// ErrNotFound when there is neither a record nor an entry: the request never
// reached giftd, was refused before the ledger, or was answered 402 and its
// record has since been pruned.
func (s *Store) FindDebit(ctx context.Context, key DebitKey) (DebitView, error) {
	defer s.observe(OpFindDebit, time.Now())
	if s.partitions > 0 {
		return s.findDebitPartitioned(ctx, key)
	}
	v := DebitView{Key: key}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			var err error
			if v.Record, err = findDebitRecord(ctx, tx, key); err != nil {
				return err
			}
			if v.Entry, err = findEntry(ctx, tx, `kind = 'debit' AND platform = $1 AND app_id = $2 AND ref = $3`,
				key.Platform, key.AppID, key.RequestID); err != nil || v.Entry == nil {
				return err
			}
			v.Reversal, err = findEntry(ctx, tx, `reverses = $1`, v.Entry.ID)
			return err
		})
	switch {
	case err != nil:
		return DebitView{}, fmt.Errorf("find debit %s: %w", key, err)
	case v.Record == nil && v.Entry == nil:
		return DebitView{}, fmt.Errorf("find debit %s: %w", key, ErrNotFound)
	}
	return v, nil
}

func findDebitRecord(ctx context.Context, tx pgx.Tx, key DebitKey) (*DebitRecord, error) {
	var r DebitRecord
	err := tx.QueryRow(ctx, `
		SELECT user_id, gold, status, balance, entry_id, expires_at, created_at, refusal, refusal_limit, refusal_resets_at
		FROM debit_requests
		WHERE platform = $1 AND app_id = $2 AND request_id = $3`,
		key.Platform, key.AppID, key.RequestID,
	).Scan(&r.UserID, &r.Gold, &r.Status, &r.Balance, &r.EntryID, &r.ExpiresAt, &r.CreatedAt, &r.Refusal, &r.RefusalLimit, &r.RefusalResetsAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// findEntry returns the one ledger entry matching where (nil if none).
func findEntry(ctx context.Context, tx pgx.Tx, where string, args ...any) (*Entry, error) {
	var e Entry
	err := tx.QueryRow(ctx, `
		SELECT id, user_id, kind, amount, balance_after, platform, app_id, ref, reverses, details, created_at
		FROM ledger_entries WHERE `+where, args...,
	).Scan(&e.ID, &e.UserID, &e.Kind, &e.Amount, &e.BalanceAfter, &e.Platform, &e.AppID,
		&e.Ref, &e.Reverses, &e.Details, &e.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &e, nil
}
