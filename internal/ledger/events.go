package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The types of events (docs/events.md): one per thing the ledger settles.
const (
	EventGiftDebited     = "gift.debited"
	EventGiftRefused     = "gift.refused"
	EventWalletToppedUp  = "wallet.topped_up"
	EventDebitReversed   = "debit.reversed"
	EventEarningsPaidOut = "earnings.paid_out"
)

// EventTypes returns every event type.
func EventTypes() []string {
	return []string{EventGiftDebited, EventGiftRefused, EventWalletToppedUp, EventDebitReversed, EventEarningsPaidOut}
}

// Event is one row of the outbox: written in the same transaction as the
// ledger entries it describes.
type Event struct {
	// Position orders every event; a reader resumes after the last one it
	// processed (see Events for the guarantee).
	Position int64 `json:"position"`
	// ID is stable: the webhook-id of every delivery of the event.
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`
	// Partition is the partition whose outbox holds the event, in
	// partitioned mode (its Position is that partition's); nil otherwise.
	Partition *int `json:"partition,omitempty"`
}

// horizon tracks how far positions are final: no transaction can still
// commit an event at or below safe. A mark is the sequence's last value
// read, then a transaction id taken after it (a fence): a writer holds a
// transaction id before it takes a position (migration 8's statement
// trigger), and ids are handed out in increasing order, so every writer
// that took a position up to the mark has an id below the fence. Once no
// transaction with an id below the fence is running (the oldest running
// one, pg_snapshot_xmin, is at or past it), no position up to the mark can
// appear any more.
//
// (A snapshot's list of running transactions is not enough: it lists only
// ids below its xmax, the newest completed id + 1, so a writer that got its
// id after the last completion is running yet absent from the list.)
//
// Marks hold only within one run of the server: a crash can lose the WAL
// of transaction ids and sequence values not yet flushed, and the restarted
// server gives them again, so a mark's fence may be passed by a new
// transaction that holds a position at or below the mark. Each statement
// also reads pg_postmaster_start_time(); when it differs from the one the
// marks were taken under (a restart, or a failover to a standby), the marks
// and the horizon are dropped and computed afresh from that server.
type horizon struct {
	mu      sync.Mutex
	safe    int64
	marks   []horizonMark // increasing upTo and fence
	started time.Time     // pg_postmaster_start_time() the marks and safe were taken under
	checked time.Time
}

// reset forgets what was computed under another run of the server.
func (h *horizon) reset(started time.Time) {
	h.safe, h.marks, h.started = 0, h.marks[:0], started
}

type horizonMark struct {
	upTo  int64
	fence uint64
}

// errServerRestarted is EventHorizon's error when the server restarted
// between its statements; the next call starts afresh.
var errServerRestarted = errors.New("event horizon: the database server restarted during the call; try again")

// maxHorizonMarks bounds the marks a long transaction can pile up; past it
// the newest mark replaces the last one (the horizon only moves later).
const maxHorizonMarks = 256

// horizonReuse is how long a computed horizon is reused by callers of one
// process (long polls, delivery workers), sparing the database.
const horizonReuse = 10 * time.Millisecond

// EventHorizon returns the highest position up to which the events are
// final: every transaction that took a position at or below it has
// committed or rolled back, so a reader that has read up to it can never
// miss an event that commits later. It lags the newest commit by about one
// call; a long transaction that holds a transaction id (any writer, not
// only giftd's) holds it back until it ends. Each call that finds new
// positions takes one transaction id, in a statement that writes nothing
// (its commit waits for no flush). After a restart of the server (or a
// failover) it starts again from that server's state, so it may go back for
// a moment; it fails, and the next call starts afresh, when the server
// restarted between its statements.
func (s *Store) EventHorizon(ctx context.Context) (int64, error) {
	h := &s.horizon
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.checked) < horizonReuse {
		return h.safe, nil
	}
	// The sequence first, the fence after, in another statement. Each
	// statement says which run of the server answered it (the statements
	// may go over different connections, and a restart may fall between).
	var last int64
	var called bool
	var started time.Time
	err := s.pool.QueryRow(ctx, `SELECT last_value, is_called, pg_postmaster_start_time() FROM events_position_seq`).
		Scan(&last, &called, &started)
	if err != nil {
		return 0, fmt.Errorf("event horizon: %w", err)
	}
	if !started.Equal(h.started) {
		h.reset(started)
	}
	if !called {
		last = 0
	}
	if last > h.safe && (len(h.marks) == 0 || h.marks[len(h.marks)-1].upTo < last) {
		// The fence: a transaction id of its own, ended at once.
		var fence uint64
		err := s.pool.QueryRow(ctx, `SELECT pg_current_xact_id()::text::numeric::bigint, pg_postmaster_start_time()`).
			Scan(&fence, &started)
		if err != nil {
			return 0, fmt.Errorf("event horizon: %w", err)
		}
		if !started.Equal(h.started) {
			h.reset(time.Time{})
			return 0, errServerRestarted
		}
		m := horizonMark{upTo: last, fence: fence}
		if len(h.marks) >= maxHorizonMarks {
			h.marks[len(h.marks)-1] = m
		} else {
			h.marks = append(h.marks, m)
		}
	}
	// The oldest running id now, after the fence's transaction ended.
	var xmin uint64
	err = s.pool.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::numeric::bigint, pg_postmaster_start_time()`).
		Scan(&xmin, &started)
	if err != nil {
		return 0, fmt.Errorf("event horizon: %w", err)
	}
	if !started.Equal(h.started) {
		h.reset(time.Time{})
		return 0, errServerRestarted
	}
	clean := 0
	for clean < len(h.marks) && h.marks[clean].fence <= xmin {
		clean++
	}
	if clean > 0 {
		h.safe = max(h.safe, h.marks[clean-1].upTo)
		h.marks = append(h.marks[:0], h.marks[clean:]...)
	}
	h.checked = time.Now()
	return h.safe, nil
}

// Events returns up to limit events after position after, in position
// order, and the horizon it read them under. It returns only final
// positions (EventHorizon): a reader that resumes after the last position
// it processed misses nothing, across restarts of giftd and batches that
// commit out of order.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]Event, int64, error) {
	defer s.observe(OpEvents, time.Now())
	upTo, err := s.EventHorizon(ctx)
	if err != nil {
		return nil, 0, err
	}
	events, err := s.eventsBetween(ctx, after, upTo, nil, limit)
	return events, upTo, err
}

// eventsBetween returns up to limit events of types (nil: all) with
// positions in (after, upTo], in order.
func (s *Store) eventsBetween(ctx context.Context, after, upTo int64, types []string, limit int) ([]Event, error) {
	if after >= upTo {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT position, id::text, type, created_at, data FROM events
		WHERE position > $1 AND position <= $2 AND (coalesce(cardinality($3::text[]), 0) = 0 OR type = ANY ($3))
		ORDER BY position LIMIT $4`, after, upTo, types, limit)
	if err != nil {
		return nil, fmt.Errorf("events after %d: %w", after, err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		if err := rows.Scan(&e.Position, &e.ID, &e.Type, &e.CreatedAt, &e.Data); err != nil {
			return nil, fmt.Errorf("events after %d: %w", after, err)
		}
		e.CreatedAt = e.CreatedAt.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events after %d: %w", after, err)
	}
	return out, nil
}

// PruneEvents deletes events created before cutoff that every webhook
// endpoint's cursor has passed (undelivered ones stay, whatever their
// age), at most batch per statement, until none is left or ctx ends. It
// returns how many it deleted. Pull-feed readers are not known to giftd:
// they must read within the retention.
func (s *Store) PruneEvents(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
	defer s.observe(OpPrune, time.Now())
	if s.partitions > 0 {
		// Each partition's own events, behind its own webhook cursors.
		return s.prunePartitioned(ctx, func(p *Store) (int64, error) { return p.PruneEvents(ctx, cutoff, batch) })
	}
	if batch < 1 {
		batch = DefaultPruneBatch
	}
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `
			DELETE FROM events WHERE position IN (
				SELECT position FROM events
				WHERE created_at < $1
				  AND position <= coalesce((SELECT min(cursor) FROM webhook_endpoints), 9223372036854775807)
				ORDER BY position LIMIT $2
				FOR UPDATE SKIP LOCKED)`, cutoff, batch)
		if err != nil {
			return total, fmt.Errorf("prune events before %s: %w", cutoff.UTC().Format(time.RFC3339), err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}
