package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// CreditMove is one gift's earnings to move from the sender's partition,
// where the debit credited them, to the receiver's (docs/scale-out.md
// #cross-partition-credits): the gift.debited event at Position.
type CreditMove struct {
	Position   int64
	ReceiverID string
	Earnings   int64
	CreatedAt  time.Time
}

// LeaseCredits leases this partition's credit cursor to owner for d, and
// returns the cursor's position. ok is false when another owner holds an
// unexpired lease. Called on a Store opened on the partition itself.
func (s *Store) LeaseCredits(ctx context.Context, owner string, d time.Duration) (position int64, ok bool, err error) {
	var pos *int64 // NULL: leased to another
	if err := s.pool.QueryRow(ctx, `SELECT giftd_credit_lease($1, $2)`, owner, d.Seconds()).Scan(&pos); err != nil {
		return 0, false, fmt.Errorf("lease the credit cursor: %w", err)
	}
	if pos == nil {
		return 0, false, nil
	}
	return *pos, true, nil
}

// ReleaseCredits gives up owner's lease of this partition's credit cursor,
// if owner still holds it, so that another consumer takes the cursor at
// once; held reports whether it did.
func (s *Store) ReleaseCredits(ctx context.Context, owner string) (held bool, err error) {
	if err := s.pool.QueryRow(ctx, `SELECT giftd_credit_release($1)`, owner).Scan(&held); err != nil {
		return false, fmt.Errorf("release the credit cursor: %w", err)
	}
	return held, nil
}

// CreditEvents is what a credit consumer's step reads of a partition's
// events (see Store.CreditEvents).
type CreditEvents struct {
	// Gifts are the settled gifts with earnings, whatever their receivers'
	// placement: the credits are those whose receiver is placed on another
	// partition than Partition among Partitions.
	Gifts []CreditMove
	// Clawbacks are the reversals' claw-backs (giftd_clawbacks_after's).
	Clawbacks []Clawback
	// Partition and Partitions are the partition's identity, read with
	// them (both 0 when nothing was read).
	Partition, Partitions int
	// UpTo is the position the cursor may move to once they are applied:
	// the events' horizon, or the last one's position when limit cut the
	// read short.
	UpTo int64
}

// Full reports whether limit cut the read short: more is pending.
func (e CreditEvents) Full(limit int) bool { return len(e.Gifts)+len(e.Clawbacks) >= limit }

// CreditEvents returns, in one statement, the gifts and claw-backs of this
// partition's events after position after, at most limit of them together,
// in position order, up to the events' horizon (see EventHorizon: no event
// at or below it can still commit). Leaving the receivers' placement to the
// caller spares the partition a call of giftd_placement per event. Called on a
// Store opened on the partition itself; an error if the partition has no
// identity.
func (s *Store) CreditEvents(ctx context.Context, after int64, limit int) (CreditEvents, error) {
	ev := CreditEvents{UpTo: after}
	h, err := s.EventHorizon(ctx)
	if err != nil {
		return ev, err
	}
	if h <= after {
		return ev, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT event_position, clawback, receiver_id, amount, created_at, partition, partitions
		FROM giftd_credit_events($1, $2, $3)`, after, h, limit)
	if err != nil {
		return ev, fmt.Errorf("read credits: %w", err)
	}
	var (
		pos             int64
		clawback        bool
		receiver        string
		amount          int64
		at              time.Time
		part, partCount *int
	)
	_, err = pgx.ForEachRow(rows, []any{&pos, &clawback, &receiver, &amount, &at, &part, &partCount}, func() error {
		if part == nil || partCount == nil {
			return errors.New("the partition has no identity (giftd_partition_identity)")
		}
		ev.Partition, ev.Partitions = *part, *partCount
		if clawback {
			ev.Clawbacks = append(ev.Clawbacks, Clawback{Position: pos, ReceiverID: receiver, Amount: amount})
		} else {
			ev.Gifts = append(ev.Gifts, CreditMove{Position: pos, ReceiverID: receiver, Earnings: amount, CreatedAt: at})
		}
		ev.UpTo = pos
		return nil
	})
	if err != nil {
		return CreditEvents{UpTo: after}, fmt.Errorf("read credits: %w", err)
	}
	if !ev.Full(limit) {
		ev.UpTo = h
	}
	return ev, nil
}

// CreditsIn applies the first legs of moves, all from partition source and
// for receivers of this Store's partition (the receivers'), in one
// transaction: each move's earnings to its receiver, once per (source,
// move's Position). It returns how many were applied now, the others having
// been applied before. On error none was applied; a receiver placed on
// another partition fails it (SQLSTATE GD001).
func (s *Store) CreditsIn(ctx context.Context, source int, moves []CreditMove) (applied int, err error) {
	pos, rcv, amt := make([]int64, len(moves)), make([]string, len(moves)), make([]int64, len(moves))
	for i, m := range moves {
		pos[i], rcv[i], amt[i] = m.Position, m.ReceiverID, m.Earnings
	}
	err = s.pool.QueryRow(ctx, `SELECT giftd_credits_in($1, $2, $3, $4)`, source, pos, rcv, amt).Scan(&applied)
	if err != nil {
		return 0, fmt.Errorf("%d credits from partition %d in: %w", len(moves), source, err)
	}
	return applied, nil
}

// CreditOutRenewing applies, on this Store's partition (the source), the
// second leg of moves, read after from, and moves the cursor to upTo, in one
// transaction, provided owner still holds the lease and the cursor is still
// at from; otherwise nothing (an error with SQLSTATE GD002). It also renews
// owner's lease for lease from now, in the same transaction (0: not
// renewed), so that a consumer holding the lease need not take it again
// before its next step.
func (s *Store) CreditOutRenewing(ctx context.Context, owner string, from, upTo int64, moves []CreditMove, lease time.Duration) error {
	pos, rcv, amt := make([]int64, len(moves)), make([]string, len(moves)), make([]int64, len(moves))
	for i, m := range moves {
		pos[i], rcv[i], amt[i] = m.Position, m.ReceiverID, m.Earnings
	}
	var secs *float64
	if lease > 0 {
		secs = new(float64)
		*secs = lease.Seconds()
	}
	if _, err := s.pool.Exec(ctx, `SELECT giftd_credit_out($1, $2, $3, $4, $5, $6, $7)`, owner, from, upTo, pos, rcv, amt, secs); err != nil {
		return fmt.Errorf("credits out after %d: %w", from, err)
	}
	return nil
}

// CreditLeg is one leg of a moved credit: its key ('<source partition>:
// <position>') and amount (positive, for either leg).
type CreditLeg struct {
	Ref    string
	Amount int64
}

// CreditSource is what a partition holds of the credits it is the source
// of, read in one snapshot: its number, its cursor, its transfer_out legs,
// and its credit events (the foreign receivers' earnings of its gifts)
// still in the outbox above its floor, by position.
type CreditSource struct {
	// Partition and Partitions are the partition's claim: partition
	// Partition of Partitions.
	Partition, Partitions int
	Cursor                int64
	// Floor is the cursor when giftd reshard last split this partition's
	// economy (0: never): the events at or below it were written under an
	// earlier partition count and all moved before the split, so Events
	// holds those above it only (docs/scale-out.md#resharding-with-the-gift-economy).
	Floor  int64
	Out    []CreditLeg
	Events []CreditMove
	// ClawbacksIn are the claw-back legs of the reversals made here of
	// gifts whose receiver lives elsewhere (Ref '<partition>:<position>').
	ClawbacksIn []CreditLeg
}

// kept leaves out an account entry a (as the alias) that the partition gave
// away in a reshard and holds only until its forget (partition migration
// 20's giftd_reshard_given_away: none outside the window between the
// proxy's switch and the forget), so that the audits read each leg once,
// on the partition that owns it. NOT IN, not NOT EXISTS: a hashed subplan,
// the function's rows read once, where an anti-join could be planned as a
// nested loop reading them again for every entry.
const kept = `a.id NOT IN (SELECT x.entry FROM giftd_reshard_given_away() AS x WHERE x.entry IS NOT NULL)`

// CreditSourceBook returns the credits this Store's partition is the source
// of (see CreditSource), for the audit across partitions: the legs it owns
// (kept).
func (s *Store) CreditSourceBook(ctx context.Context) (CreditSource, error) {
	var b CreditSource
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, `SELECT i.partition, i.partitions, c.position, c.floor FROM giftd_partition_identity AS i, credit_cursor AS c`).
				Scan(&b.Partition, &b.Partitions, &b.Cursor, &b.Floor); err != nil {
				return err
			}
			rows, _ := tx.Query(ctx, `SELECT ref, -amount FROM account_entries AS a WHERE account = 'earnings' AND kind = 'transfer_out' AND `+kept)
			var err error
			if b.Out, err = pgx.CollectRows(rows, pgx.RowToStructByPos[CreditLeg]); err != nil {
				return err
			}
			rows, _ = tx.Query(ctx, `SELECT event_position, receiver_id, earnings, created_at FROM giftd_credits_after($1, 9223372036854775807, 2147483647)`, b.Floor)
			if b.Events, err = pgx.CollectRows(rows, pgx.RowToStructByPos[CreditMove]); err != nil {
				return err
			}
			rows, _ = tx.Query(ctx, `SELECT ref, amount FROM account_entries AS a WHERE account = 'earnings' AND kind = 'clawback_in' AND `+kept)
			b.ClawbacksIn, err = pgx.CollectRows(rows, pgx.RowToStructByPos[CreditLeg])
			return err
		})
	if err != nil {
		return CreditSource{}, fmt.Errorf("credits of the source partition: %w", err)
	}
	return b, nil
}

// CreditsReceived returns the transfer_in legs this Store's partition
// received and owns (kept).
func (s *Store) CreditsReceived(ctx context.Context) ([]CreditLeg, error) {
	rows, _ := s.pool.Query(ctx, `SELECT ref, amount FROM account_entries AS a WHERE account = 'earnings' AND kind = 'transfer_in' AND `+kept)
	legs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[CreditLeg])
	if err != nil {
		return nil, fmt.Errorf("credits received: %w", err)
	}
	return legs, nil
}

// ClawbacksTaken returns the claw-backs applied on this Store's partition
// (a receiver's side of reversals made on other partitions): for each, its
// key and what it took back, from the earnings and as owed together; those
// it owns (kept).
func (s *Store) ClawbacksTaken(ctx context.Context) ([]CreditLeg, error) {
	rows, _ := s.pool.Query(ctx, `SELECT ref, sum(abs(amount))::bigint FROM account_entries AS a WHERE kind = 'clawback' AND `+kept+` GROUP BY ref`)
	legs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[CreditLeg])
	if err != nil {
		return nil, fmt.Errorf("claw-backs taken: %w", err)
	}
	return legs, nil
}

// A ReshardLeg is one side of what giftd reshard moved of a receiver's
// account between the two partitions it split one into: a reshard_in (on
// the receiver's home) or a reshard_out (on the other), of the earnings or
// the receivable, with the key both sides share and a signed amount; the
// two legs of a key are opposite.
type ReshardLeg struct {
	Account, Kind, Ref string
	Amount             int64
}

// ReshardLegs returns the resharding legs this Store's partition holds and
// owns (kept).
func (s *Store) ReshardLegs(ctx context.Context) ([]ReshardLeg, error) {
	rows, _ := s.pool.Query(ctx, `SELECT account, kind, ref, amount FROM account_entries AS a WHERE kind IN ('reshard_in', 'reshard_out') AND `+kept)
	legs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ReshardLeg])
	if err != nil {
		return nil, fmt.Errorf("resharding legs: %w", err)
	}
	return legs, nil
}
