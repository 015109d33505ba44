package ledger

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The admin API's per-user operations in partitioned mode
// (docs/scale-out.md#the-admin-api-on-a-users-partition): each goes through
// the proxy to the partition that owns its user, where one function (partition
// migration 6) does what the Go of the single-server path does in one
// transaction.

// ErrCreditInTransit: a reversal of a gift whose earnings the credit
// consumer has not yet moved to the receiver's partition. Nothing was
// written; retry once they have moved (usually within a second).
var ErrCreditInTransit = errors.New("the gift's earnings are still moving to the receiver's partition")

// ErrDebitAmbiguous: a debit key found on more than one partition (a
// request id reused for users of two partitions, which one server would
// have refused): giftd cannot tell which one is meant.
var ErrDebitAmbiguous = errors.New("debit key found on more than one partition")

// reverseWait bounds how long a reversal waits for its gift's earnings to
// move to the receiver's partition before it answers ErrCreditInTransit.
const reverseWait = 3 * time.Second

// routed marks err, on a partitioned Store, as ErrPartitionUnreachable
// (reads.go) when it is the proxy's report of a partition it could not
// reach or lost. Retryable: a write either committed there or not, and its
// idempotency key makes the retry exact.
func (s *Store) routed(err error) error {
	if err != nil && s.partitions > 0 && partitionUnreachable(err) {
		return fmt.Errorf("%w: %w", ErrPartitionUnreachable, err)
	}
	return err
}

const entryColumns = `id, user_id, kind, amount, balance_after, platform, app_id, ref, reverses, details, created_at`

// findDebitPartitioned is FindDebit asking every partition; one that is
// down makes it ErrPartitionUnreachable, never a wrong ErrNotFound.
func (s *Store) findDebitPartitioned(ctx context.Context, key DebitKey) (DebitView, error) {
	rows, _ := s.pool.Query(ctx, `SELECT record, entry, reversal FROM giftd_find_debit($1, $2, $3)`,
		key.Platform, key.AppID, key.RequestID)
	views, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DebitView, error) {
		v := DebitView{Key: key}
		var rec, ent, rev []byte
		if err := row.Scan(&rec, &ent, &rev); err != nil {
			return v, err
		}
		for _, x := range []struct {
			raw []byte
			to  any
		}{{rec, &v.Record}, {ent, &v.Entry}, {rev, &v.Reversal}} {
			if x.raw != nil {
				if err := json.Unmarshal(x.raw, x.to); err != nil {
					return v, err
				}
			}
		}
		localTimes(&v)
		return v, nil
	})
	switch {
	case err != nil:
		return DebitView{}, fmt.Errorf("find debit %s: %w", key, s.routed(err))
	case len(views) == 0:
		return DebitView{}, fmt.Errorf("find debit %s: %w", key, ErrNotFound)
	}
	v, ok := oneDebit(views)
	if !ok {
		return DebitView{}, fmt.Errorf("find debit %s: %w", key, ErrDebitAmbiguous)
	}
	return v, nil
}

// oneDebit returns the one debit that views (each read on a partition)
// show, or false when they show debits of two users (a request id reused
// for users of two partitions). A key has one user, on one partition,
// which holds it once (its record and entry are unique there): two views
// of the same user are copies of one debit, on the old and the new
// partition of a reshard between its copy and its forget. The answer takes
// from any of them what it holds: the reversal of a moved user's debit
// made after the switch is on the new partition only.
func oneDebit(views []DebitView) (DebitView, bool) {
	user := func(v DebitView) string {
		if v.Record != nil {
			return v.Record.UserID
		}
		return v.Entry.UserID // a view holds its record, its entry, or both
	}
	one := views[0]
	for _, v := range views[1:] {
		if user(v) != user(one) {
			return DebitView{}, false
		}
		one.Record = cmp.Or(one.Record, v.Record)
		one.Entry = cmp.Or(one.Entry, v.Entry)
		one.Reversal = cmp.Or(one.Reversal, v.Reversal)
	}
	return one, true
}

// localTimes puts v's times in time.Local, as pgx scans them on one server.
func localTimes(v *DebitView) {
	if r := v.Record; r != nil {
		r.ExpiresAt, r.CreatedAt = r.ExpiresAt.Local(), r.CreatedAt.Local()
		if r.RefusalResetsAt != nil {
			t := r.RefusalResetsAt.Local()
			r.RefusalResetsAt = &t
		}
	}
	for _, e := range []*Entry{v.Entry, v.Reversal} {
		if e != nil {
			e.CreatedAt = e.CreatedAt.Local()
		}
	}
}

// reversePartitioned is Reverse on the sender's partition: r.UserID's, or
// found by asking every partition for the debit. A gift whose receiver lives on another
// partition is taken back there by a claw-back, once: tried at once through
// the proxy, and applied by the credit consumer otherwise. Until the gift's
// own credit has moved there, the reversal waits (up to reverseWait), then
// answers ErrCreditInTransit.
func (s *Store) reversePartitioned(ctx context.Context, r Reversal) (Credit, error) {
	// One key, one debit, whatever partition holds it (claimKey).
	settle, err := s.claimKey(ctx, keyReversal, r.Key,
		map[string]any{"platform": r.Debit.Platform, "app_id": r.Debit.AppID, "request_id": r.Debit.RequestID})
	if err != nil {
		return Credit{}, fmt.Errorf("reverse %s: %w", r.Debit, err)
	}
	c, err := s.reverseOnPartition(ctx, r)
	settle(err)
	return c, err
}

// reverseOnPartition runs a claimed reversal on the sender's partition.
func (s *Store) reverseOnPartition(ctx context.Context, r Reversal) (Credit, error) {
	user := r.UserID
	if user == "" {
		v, err := s.findDebitPartitioned(ctx, r.Debit)
		if err != nil {
			return Credit{}, fmt.Errorf("reverse: %w", err)
		}
		if v.Entry == nil {
			return Credit{}, fmt.Errorf("reverse %s: debit %w", r.Debit, ErrNotFound)
		}
		user = v.Entry.UserID
	}
	var c Credit
	var status string
	var gift []byte
	var at *int64
	deadline := time.Now().Add(reverseWait)
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		err := s.pool.QueryRow(ctx, `
			SELECT status, user_id, amount, balance, entry_id, gift, clawback_position
			FROM giftd_reverse($1, $2, $3, $4, $5, $6)`,
			user, r.Debit.Platform, r.Debit.AppID, r.Debit.RequestID, r.Key, r.Note,
		).Scan(&status, &c.UserID, &c.Amount, &c.Balance, &c.EntryID, &gift, &at)
		switch {
		case isOverflow(err):
			return Credit{}, fmt.Errorf("reverse %s: %w", r.Debit, ErrBalanceOverflow)
		case err != nil:
			return Credit{}, fmt.Errorf("reverse %s: %w", r.Debit, s.userWriteErr(ctx, user, err))
		}
		if status != "in_transit" {
			break
		}
		if time.Now().Add(wait).After(deadline) {
			return Credit{}, fmt.Errorf("reverse %s: %w", r.Debit, ErrCreditInTransit)
		}
		select {
		case <-ctx.Done():
			return Credit{}, fmt.Errorf("reverse %s: %w", r.Debit, ctx.Err())
		case <-time.After(wait):
		}
	}
	switch status {
	case "not_found":
		return Credit{}, fmt.Errorf("reverse %s: debit %w", r.Debit, ErrNotFound)
	case "already_reversed":
		return Credit{}, fmt.Errorf("reverse %s: %w", r.Debit, ErrAlreadyReversed)
	case "key_reused":
		return Credit{}, fmt.Errorf("reverse %s: %w", r.Debit, ErrKeyReused)
	case "replay":
		c.Replay = true
	}
	if gift != nil {
		if err := json.Unmarshal(gift, &c.Gift); err != nil {
			return Credit{}, fmt.Errorf("reverse %s: %w", r.Debit, err)
		}
	}
	if g := c.Gift; g != nil && g.Clawback > 0 && at != nil {
		// The reversal has committed; the receiver's side follows. If their
		// partition is down now, the credit consumer applies it later and
		// the answer says what is still pending.
		earnings, shortfall, _, err := s.ApplyClawback(ctx, s.partitionOf(user),
			Clawback{Position: *at, ReceiverID: g.ReceiverID, Amount: g.Clawback})
		if err == nil {
			g.Earnings, g.Shortfall, g.Clawback = g.Earnings+earnings, g.Shortfall+shortfall, 0
		}
	}
	return c, nil
}

// payoutPartitioned is Payout on the receiver's partition, by its
// giftd_payout: from the receiver's own account there, never from the
// transit account another partition keeps for them. Its key is claimed
// first (claimKey), so a key used for a receiver of another partition is
// ErrKeyReused too.
func (s *Store) payoutPartitioned(ctx context.Context, p Payout) (PayoutResult, error) {
	settle, err := s.claimKey(ctx, keyPayout, p.Key, map[string]any{"receiver_id": p.ReceiverID, "amount": p.Amount})
	if err != nil {
		return PayoutResult{}, fmt.Errorf("payout %s: %w", p.Key, err)
	}
	res, err := s.payoutOnPartition(ctx, p)
	settle(err)
	return res, err
}

// payoutOnPartition runs a claimed payout on the receiver's partition.
func (s *Store) payoutOnPartition(ctx context.Context, p Payout) (PayoutResult, error) {
	var res PayoutResult
	var status string
	var payable int64
	err := s.pool.QueryRow(ctx, `
		SELECT status, receiver_id, amount, recovered, balance, entry_id, payable
		FROM giftd_payout($1, $2, $3, $4, $5)`, p.ReceiverID, p.Amount, p.Key, p.Note, s.safeguards.EarningsHold,
	).Scan(&status, &res.ReceiverID, &res.Amount, &res.Recovered, &res.Balance, &res.EntryID, &payable)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "23505":
		return PayoutResult{}, fmt.Errorf("payout %s: %w", p.Key, ErrKeyReused)
	case err != nil:
		return PayoutResult{}, fmt.Errorf("payout %s: %w", p.Key, s.userWriteErr(ctx, p.ReceiverID, err))
	}
	switch status {
	case "not_found":
		return PayoutResult{}, fmt.Errorf("payout %s: earnings of %s: %w", p.Key, p.ReceiverID, ErrNotFound)
	case "insufficient":
		return PayoutResult{}, fmt.Errorf("payout %s: %w (payable %d)", p.Key, ErrInsufficientEarnings, payable)
	case "replay":
		res.Replay = true
		if res.ReceiverID != p.ReceiverID || res.Amount != p.Amount {
			return PayoutResult{}, fmt.Errorf("payout %s: %w", p.Key, ErrKeyReused)
		}
	}
	return res, nil
}

// Clawback is the receiver's side of the reversal of a gift whose receiver
// lives on another partition than its sender: Amount to take back from
// ReceiverID's earnings on their partition, once per (source partition,
// Position of the debit.reversed event).
type Clawback struct {
	Position   int64
	ReceiverID string
	Amount     int64
}

// ApplyClawback applies c, from source partition source, on the receiver's
// partition: through the proxy on a partitioned Store, or on the partition
// itself on a Store opened there (the credit consumer). It returns what was
// taken from the receiver's earnings and what they owe now for the rest;
// applied is false when it was applied before (the first split then). A
// claw-back applied before for another receiver or amount is ErrKeyReused.
func (s *Store) ApplyClawback(ctx context.Context, source int, c Clawback) (earnings, shortfall int64, applied bool, err error) {
	err = s.pool.QueryRow(ctx, `SELECT earnings, shortfall, applied FROM giftd_clawback($1, $2, $3, $4)`,
		source, c.Position, c.ReceiverID, c.Amount).Scan(&earnings, &shortfall, &applied)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "23505":
		return 0, 0, false, fmt.Errorf("claw-back %d:%d: %w", source, c.Position, ErrKeyReused)
	case err != nil:
		return 0, 0, false, fmt.Errorf("claw-back %d:%d: %w", source, c.Position, s.routed(err))
	}
	return earnings, shortfall, applied, nil
}
