package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DebitKey is the idempotency key of a debit: the platform that sent it and
// that platform's (app_id, request_id).
type DebitKey struct {
	Platform  string
	AppID     string
	RequestID string
}

func (k DebitKey) String() string { return k.Platform + "/" + k.AppID + "/" + k.RequestID }

// Debit is one request to take gold from a wallet.
type Debit struct {
	Key    DebitKey
	UserID string
	Gold   int64
	// Fingerprint identifies the request's business fields: a copy with the
	// same key and fingerprint replays, one with another fingerprint is refused.
	Fingerprint [32]byte
	// ExpiresAt is when the request becomes void; its record is kept until then.
	ExpiresAt time.Time
	// Details are stored with the ledger entry (for a gift: gift id, receiver…).
	Details map[string]string
}

// DebitStatus is the recorded outcome of an executed debit.
type DebitStatus int

// The outcomes a debit can record. Their values are the HTTP statuses LinkV
// sees, which keeps the stored answer and the spoken one the same.
const (
	Debited      DebitStatus = 200
	Insufficient DebitStatus = 402
)

// DebitResult is the answer to a debit, first time or replayed.
type DebitResult struct {
	Status DebitStatus
	// Balance is the balance right after the debit, or the balance found when
	// gold was insufficient (0 for a wallet that does not exist).
	Balance int64
	// Replay is true when the result is the stored outcome of an earlier copy.
	Replay bool
}

// Debit executes d exactly once per key: the debit (or the finding that gold
// is insufficient) and its record commit together. A copy of an executed key
// with the same fingerprint gets the stored result with Replay set, whatever
// happened to the wallet since; with another fingerprint it gets
// ErrRequestReused. Concurrent copies wait for the first and replay it.
// Any other error means nothing was recorded and the request may be retried.
func (s *Store) Debit(ctx context.Context, d Debit) (DebitResult, error) {
	res, err := s.debit(ctx, d)
	if err != nil {
		return DebitResult{}, fmt.Errorf("debit %s: %w", d.Key, err)
	}
	return res, nil
}

func (s *Store) debit(ctx context.Context, d Debit) (DebitResult, error) {
	if d.Details == nil {
		d.Details = map[string]string{} // the column is NOT NULL
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return DebitResult{}, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit

	// Claim the key first: a concurrent copy blocks here until this
	// transaction ends, then finds the record and replays it.
	var claimed bool
	err = tx.QueryRow(ctx, `
		INSERT INTO debit_requests (platform, app_id, request_id, fingerprint, user_id, gold, status, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, 0, $7)
		ON CONFLICT DO NOTHING
		RETURNING true`,
		d.Key.Platform, d.Key.AppID, d.Key.RequestID, d.Fingerprint[:], d.UserID, d.Gold, d.ExpiresAt,
	).Scan(&claimed)
	if errors.Is(err, pgx.ErrNoRows) {
		if err := tx.Rollback(ctx); err != nil {
			return DebitResult{}, err
		}
		return s.recorded(ctx, d.Key, d.Fingerprint)
	}
	if err != nil {
		return DebitResult{}, err
	}

	res := DebitResult{Status: Debited}
	err = tx.QueryRow(ctx, `
		WITH w AS (
			UPDATE wallets SET gold = gold - $5, updated_at = now()
			WHERE user_id = $4 AND gold >= $5
			RETURNING gold
		), e AS (
			INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, app_id, ref, details)
			SELECT $4, 'debit', -$5, gold, $1, $2, $3, $6 FROM w
			RETURNING id, balance_after
		)
		UPDATE debit_requests r SET status = 200, balance = e.balance_after, entry_id = e.id
		FROM e
		WHERE r.platform = $1 AND r.app_id = $2 AND r.request_id = $3
		RETURNING r.balance`,
		d.Key.Platform, d.Key.AppID, d.Key.RequestID, d.UserID, d.Gold, d.Details,
	).Scan(&res.Balance)
	if errors.Is(err, pgx.ErrNoRows) {
		// Not enough gold, or no wallet. A fresh statement sees the latest
		// committed balance, which is the one worth reporting.
		res.Status = Insufficient
		err = tx.QueryRow(ctx, `
			UPDATE debit_requests SET status = 402,
				balance = coalesce((SELECT gold FROM wallets WHERE user_id = $4), 0)
			WHERE platform = $1 AND app_id = $2 AND request_id = $3
			RETURNING balance`,
			d.Key.Platform, d.Key.AppID, d.Key.RequestID, d.UserID,
		).Scan(&res.Balance)
	}
	if err != nil {
		return DebitResult{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return DebitResult{}, err
	}
	return res, nil
}

// Recorded returns the stored outcome of the debit key as a replay, provided
// fingerprint matches the one recorded; ErrRequestReused when it does not,
// ErrNotFound when the key was never executed (or its record was pruned).
func (s *Store) Recorded(ctx context.Context, key DebitKey, fingerprint [32]byte) (DebitResult, error) {
	res, err := s.recorded(ctx, key, fingerprint)
	if err != nil {
		return DebitResult{}, fmt.Errorf("debit %s: %w", key, err)
	}
	return res, nil
}

func (s *Store) recorded(ctx context.Context, key DebitKey, fingerprint [32]byte) (DebitResult, error) {
	var fp []byte
	res := DebitResult{Replay: true}
	err := s.pool.QueryRow(ctx, `
		SELECT fingerprint, status, balance FROM debit_requests
		WHERE platform = $1 AND app_id = $2 AND request_id = $3`,
		key.Platform, key.AppID, key.RequestID,
	).Scan(&fp, &res.Status, &res.Balance)
	if errors.Is(err, pgx.ErrNoRows) {
		return DebitResult{}, ErrNotFound
	}
	if err != nil {
		return DebitResult{}, err
	}
	if !bytes.Equal(fp, fingerprint[:]) {
		return DebitResult{}, ErrRequestReused
	}
	return res, nil
}
