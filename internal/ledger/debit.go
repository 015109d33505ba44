package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	// Gift is what the debit buys, from signed data only: it decides the
	// receiving side (docs/economy.md) and the price check.
	Gift Gift
}

// Gift is the receiving side of a debit, as the platform signed it.
type Gift struct {
	// ReceiverID is who earns from the gift; "" when the platform names
	// none: then the receiver mapped to RoomID (SetRoomReceiver), else the
	// house.
	ReceiverID string
	// RoomID is the room (LinkV's resource_id, Polyv's channelId).
	RoomID string
	// GiftID is the catalogue id (LinkV's gift_id, Polyv's goodName).
	GiftID string
	// Count is how many items (LinkV's send_num, Polyv's goodNum).
	Count int64
	// UnitPrice is the price per item, in coins, the caller was shown
	// (Polyv's goodPrice); 0 when the platform sends none.
	UnitPrice int64
}

// DebitStatus is the recorded outcome of an executed debit.
type DebitStatus int

// The outcomes a debit can record. Their values are the HTTP statuses LinkV
// sees, which keeps the stored answer and the spoken one the same.
const (
	Debited      DebitStatus = 200
	Insufficient DebitStatus = 402
	// Refused: the price check refused the gift (see Refusal). Nothing was
	// debited or recorded; a retry is judged afresh.
	Refused DebitStatus = 422
	// PolicyRefused: a safeguard refused the debit (see Refusal, Limit and
	// ResetsAt; docs/safeguards.md). Nothing was debited; the refusal is
	// recorded and replayed like Insufficient.
	PolicyRefused DebitStatus = 403
)

// Why the price check refused a debit (DebitResult.Refusal).
const (
	RefusedUnknownGift  = "gift_unknown"
	RefusedInactiveGift = "gift_inactive"
	RefusedPrice        = "price"
)

// DebitResult is the answer to a debit, first time or replayed.
type DebitResult struct {
	Status DebitStatus
	// Balance is the balance right after the debit, or the balance found when
	// gold was insufficient (0 for a wallet that does not exist).
	Balance int64
	// Replay is true when the result is the stored outcome of an earlier copy.
	Replay bool
	// Refusal says why a Refused debit was refused: RefusedUnknownGift,
	// RefusedInactiveGift or RefusedPrice.
	Refusal string
	// Price is the catalogue's price per item of the gift, for a refusal's
	// message (0 when the gift is not in the catalogue).
	Price int64
	// For a PolicyRefused debit, Refusal is the policy (RefusedMinor…),
	// Limit its limit (0 for a flag) and ResetsAt when it lets this debit
	// through again (zero: not by itself, as for a flag or a debit larger
	// than the cap).
	Limit    int64
	ResetsAt time.Time
	// Reminded: this debit crossed its sender's daily reminder threshold
	// and wrote the day's reminder (docs/safeguards.md).
	Reminded bool
}

// Debit executes d exactly once per key: the debit (or the finding that gold
// is insufficient) and its record commit together. A copy of an executed key
// with the same fingerprint gets the stored result with Replay set, whatever
// happened to the wallet since; with another fingerprint it gets
// ErrRequestReused. Concurrent copies wait for the first and replay it.
// A replay is answered only once the record it repeats is as durable as a
// fresh debit's commit: with synchronous standbys, once they have it.
// Any other error means the outcome was not recorded (or, if the connection
// died during commit, or ctx's deadline cut short the commit's wait for the
// synchronous standbys, may have been, perhaps on the primary alone): a retry
// with the same key is always safe and gets the true outcome once it is
// durable.
//
// With batching on, concurrent debits are executed together, several per
// transaction, each keeping exactly these semantics.
//
// Partitioned, a debit giftd reshard's pause refused (its user moving; with
// earnings on, any gift on an old partition until its economy is split)
// waits for the proxy's switch and runs again where the new count places
// its user (debitAfterSwitch).
func (s *Store) Debit(ctx context.Context, d Debit) (DebitResult, error) {
	defer s.observe(OpDebit, time.Now())
	from := s.Partitions()
	res, err := s.debit(ctx, d)
	if err != nil && s.partitions > 0 {
		res, err = s.debitAfterSwitch(ctx, d, from, err)
	}
	if err != nil {
		return DebitResult{}, fmt.Errorf("debit %s: %w", d.Key, err)
	}
	return res, nil
}

// debit runs d once: in a batch when batching is on (on one partition's
// batcher, partitioned), else alone.
func (s *Store) debit(ctx context.Context, d Debit) (DebitResult, error) {
	switch {
	case s.partitions > 0 && s.batching.MaxBatch > 1:
		r := s.route.Load()
		return r.batchers[s.place(d.UserID, r.n)].debit(ctx, d)
	case s.batcher != nil:
		return s.batcher.debit(ctx, d)
	}
	return s.debitOne(ctx, d)
}

// debitOne executes one debit in a transaction of its own.
func (s *Store) debitOne(ctx context.Context, d Debit) (DebitResult, error) {
	res, errs, err := s.execute(ctx, []Debit{d})
	if err != nil {
		return DebitResult{}, err
	}
	return res[0], errs[0]
}

// execute runs debits, whose keys must be distinct, in one statement (one
// round trip, one transaction, one commit) through giftd_debit_gifts, with
// the store's economy settings. A non-nil err means none of them was
// applied; otherwise each has its result or ErrRequestReused. A statement
// that lost the race for a key to a concurrent copy (another batch, another
// replica) is run again, and replays that copy's record.
func (s *Store) execute(ctx context.Context, debits []Debit) ([]DebitResult, []error, error) {
	n := len(debits)
	platforms, apps, ids, users := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	fps, golds, expires, details := make([][]byte, n), make([]int64, n), make([]time.Time, n), make([]string, n)
	receivers, rooms, gifts := make([]*string, n), make([]string, n), make([]string, n)
	counts, unitPrices := make([]int64, n), make([]*int64, n)
	for i, d := range debits {
		platforms[i], apps[i], ids[i], users[i] = d.Key.Platform, d.Key.AppID, d.Key.RequestID, d.UserID
		fps[i], golds[i], expires[i] = d.Fingerprint[:], d.Gold, d.ExpiresAt
		det, err := json.Marshal(d.Details)
		if err != nil {
			return nil, nil, err
		}
		if d.Details == nil {
			det = []byte("{}")
		}
		details[i] = string(det)
		if d.Gift.ReceiverID != "" {
			receivers[i] = &d.Gift.ReceiverID
		}
		rooms[i], gifts[i], counts[i] = d.Gift.RoomID, d.Gift.GiftID, d.Gift.Count
		if d.Gift.UnitPrice > 0 {
			unitPrices[i] = &d.Gift.UnitPrice
		}
	}
	e := s.economy
	policy, now := s.safeguards.arguments(s.now)
	args := []any{platforms, apps, ids, fps, users, golds, expires, details,
		receivers, rooms, gifts, counts, unitPrices, e.Earnings, e.PriceCheck, e.DefaultShareBP, policy, now}
	query := debitSQL
	if s.partitions > 0 {
		// The batch's users share one partition (one batcher per
		// partition); the partition refuses the batch if they do not.
		query, args = debitOnSQL, append([]any{s.partitionOf(debits[0].UserID)}, args...)
	}
	for attempt, recounted := 1, false; ; attempt++ {
		results, errs, err := s.executeOnce(ctx, n, query, args)
		// A copy of one of these keys committed by another transaction
		// after this statement's snapshot (giftd_debit_gifts, step 1):
		// nothing was applied, and run again, the statement replays it.
		if err != nil && isKeyRace(err) && attempt < maxKeyRaces && ctx.Err() == nil {
			continue
		}
		// The partition refused users it does not own (nothing ran): after
		// giftd reshard the proxy routes over more partitions than this
		// store knew. Once recounted, a batch whose users now share one
		// partition goes there; one that spans two fails, and the batcher
		// runs its debits one at a time.
		if s.partitions > 0 && isNotPlacedHere(err) && !recounted && ctx.Err() == nil {
			recounted = true
			if grew, rerr := s.recount(ctx); rerr == nil && grew {
				if p, ok := s.onePartition(debits); ok {
					args[0] = p
					continue
				}
			}
		}
		return results, errs, err
	}
}

// maxKeyRaces bounds how many times execute runs a statement that lost a
// race for a key. Each loss means another transaction committed one of the
// statement's keys, which the next run replays; a key still refused after
// that many runs is not a race (a debit entry whose record was pruned, for
// one: refused, as it must be).
const maxKeyRaces = 8

// isKeyRace reports whether err is the unique violation of a debit key by
// a concurrent copy: of the request records' primary key, or, for a copy
// debited, of the ledger's key.
func isKeyRace(err error) bool {
	return isUniqueViolation(err, "debit_requests_pkey") || isUniqueViolation(err, "ledger_entries_key") ||
		isRemoteUniqueViolation(err, "debit_requests_pkey") || isRemoteUniqueViolation(err, "ledger_entries_key")
}

// isRemoteUniqueViolation reports whether err is a partition's unique
// violation of the named constraint passed on by PL/Proxy (partitioned
// mode), which keeps the SQLSTATE and the message but not the constraint's
// name: the message is PostgreSQL's, naming it in quotes.
func isRemoteUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.Routine == "plproxy_remote_error" &&
		strings.Contains(pgErr.Message, `unique constraint "`+constraint+`"`)
}

// debitSQL runs a batch on giftd's one database.
const debitSQL = `
		SELECT status, balance, replay, reused, refusal, price, refusal_limit, resets_at, reminded
		FROM giftd_debit_gifts($1, $2, $3, $4, $5, $6, $7, $8::jsonb[], $9, $10, $11, $12, $13, $14, $15, $16,
			$17::jsonb, $18::timestamptz)`

// debitOnSQL runs a batch, through the proxy, on the partition $1 names
// (proxy migration 4): the same arguments and answer as debitSQL.
const debitOnSQL = `
		SELECT status, balance, replay, reused, refusal, price, refusal_limit, resets_at, reminded
		FROM giftd_debit_gifts_on($1::int, $2, $3, $4, $5, $6, $7, $8, $9::jsonb[], $10, $11, $12, $13, $14, $15,
			$16, $17, $18::jsonb, $19::timestamptz)`

// executeOnce runs query (debitSQL or debitOnSQL) once with args, for n debits.
func (s *Store) executeOnce(ctx context.Context, n int, query string, args []any) ([]DebitResult, []error, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, nil, err
	}
	results, errs := make([]DebitResult, 0, n), make([]error, 0, n)
	for rows.Next() {
		var r DebitResult
		var reused bool
		var refusal *string
		var price, limit *int64
		var resets *time.Time
		if err := rows.Scan(&r.Status, &r.Balance, &r.Replay, &reused, &refusal, &price, &limit, &resets, &r.Reminded); err != nil {
			rows.Close()
			return nil, nil, err
		}
		if refusal != nil {
			r.Refusal = *refusal
		}
		if r.Status == Refused {
			r.Balance = 0
			if price != nil {
				r.Price = *price
			}
		}
		if limit != nil {
			r.Limit = *limit
		}
		if resets != nil {
			r.ResetsAt = resets.UTC()
		}
		var e error
		if reused {
			r, e = DebitResult{}, ErrRequestReused
		}
		results, errs = append(results, r), append(errs, e)
	}
	// rows.Err reports a failed statement or commit: then nothing was applied.
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if len(results) != n {
		return nil, nil, fmt.Errorf("giftd_debit_gifts answered %d rows for %d debits", len(results), n)
	}
	return results, errs, nil
}

// RecordedFor is Recorded for a request of userID: on one database the
// same; partitioned, it asks userID's partition only, where every copy of
// the request (same fingerprint, so same user) was executed, so that it
// does not fail while another partition is down. A key a partner reused
// for a user of another partition is then ErrNotFound, not
// ErrRequestReused (docs/scale-out.md#not-partition-aware-yet).
func (s *Store) RecordedFor(ctx context.Context, userID string, key DebitKey, fingerprint [32]byte) (DebitResult, error) {
	if s.partitions == 0 {
		return s.Recorded(ctx, key, fingerprint)
	}
	return s.recorded(ctx, userID, key, fingerprint)
}

// Recorded returns the stored outcome of the debit key as a replay, provided
// fingerprint matches the one recorded; ErrRequestReused when it does not,
// ErrNotFound when the key was never executed (or its record was pruned).
// Like a replay by Debit, it answers only once the record is as durable as
// a debit's commit: with synchronous standbys, once they have it. Until
// then (a standby cut off past ctx's deadline) it returns an error.
func (s *Store) Recorded(ctx context.Context, key DebitKey, fingerprint [32]byte) (DebitResult, error) {
	return s.recorded(ctx, "", key, fingerprint)
}

// recorded is Recorded; partitioned, on userID's partition, or on every
// partition when userID is "".
func (s *Store) recorded(ctx context.Context, userID string, key DebitKey, fingerprint [32]byte) (DebitResult, error) {
	var fp []byte
	var refusal *string
	var limit *int64
	var resets *time.Time
	res := DebitResult{Replay: true}
	// The record may have committed on this server alone (see giftd_debit in
	// migrations/000003): a found row writes one WAL record, a transactional
	// logical message, so that this statement's commit waits for the
	// synchronous standbys, which confirm WAL in order, the record included.
	var err error
	if s.partitions > 0 {
		err = s.recordedOnPartitions(ctx, userID, key, fingerprint, &fp, &res, &refusal, &limit, &resets)
	} else {
		err = s.pool.QueryRow(ctx, `
		SELECT fingerprint, status, balance, refusal, refusal_limit, refusal_resets_at,
			pg_logical_emit_message(true, 'giftd', 'replay')
		FROM debit_requests
		WHERE platform = $1 AND app_id = $2 AND request_id = $3`,
			key.Platform, key.AppID, key.RequestID,
		).Scan(&fp, &res.Status, &res.Balance, &refusal, &limit, &resets, nil)
	}
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return DebitResult{}, fmt.Errorf("debit %s: %w", key, ErrNotFound)
	case err != nil:
		return DebitResult{}, fmt.Errorf("debit %s: %w", key, err)
	case !bytes.Equal(fp, fingerprint[:]):
		return DebitResult{}, fmt.Errorf("debit %s: %w", key, ErrRequestReused)
	}
	if refusal != nil {
		res.Refusal = *refusal
	}
	if limit != nil {
		res.Limit = *limit
	}
	if resets != nil {
		res.ResetsAt = resets.UTC()
	}
	return res, nil
}

// recordedOnPartitions is Recorded's look-up in partitioned mode: on
// userID's partition (giftd_debit_record_of), or, when userID is "", on
// every partition, since a key does not name its user (giftd_debit_record,
// which fails while any partition is down). A key a
// partner reused for users of two partitions has a record on each: the one
// with fingerprint is the request's, as on one server; with none, the first
// found answers ErrRequestReused.
func (s *Store) recordedOnPartitions(ctx context.Context, userID string, key DebitKey, fingerprint [32]byte,
	fp *[]byte, res *DebitResult, refusal **string, limit **int64, resets **time.Time) error {
	query, args := `
		SELECT fingerprint, status, balance, refusal, refusal_limit, refusal_resets_at
		FROM giftd_debit_record($1, $2, $3)`, []any{key.Platform, key.AppID, key.RequestID}
	if userID != "" {
		query = `
		SELECT fingerprint, status, balance, refusal, refusal_limit, refusal_resets_at
		FROM giftd_debit_record_of($1, $2, $3, $4)`
		args = append([]any{userID}, args...)
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	found := false
	for rows.Next() {
		var f []byte
		var r DebitResult
		var why *string
		var lim *int64
		var at *time.Time
		if err := rows.Scan(&f, &r.Status, &r.Balance, &why, &lim, &at); err != nil {
			return err
		}
		if !found || bytes.Equal(f, fingerprint[:]) {
			*fp, res.Status, res.Balance, *refusal, *limit, *resets = f, r.Status, r.Balance, why, lim, at
		}
		found = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if !found {
		return pgx.ErrNoRows
	}
	return nil
}
