package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrLeaseLost: a webhook endpoint's lease passed to another delivery
// before this one recorded its outcome; the other one goes on from the
// cursor recorded last.
var ErrLeaseLost = errors.New("webhook endpoint lease lost")

// Endpoint is a webhook endpoint and where its delivery stands.
type Endpoint struct {
	ID          string `json:"id"`
	URL         string `json:"url"`
	Description string `json:"description"`
	// EventTypes are the types it receives; empty: every type.
	EventTypes []string `json:"event_types"`
	// Secrets sign each delivery, newest first (several during a rotation).
	// Never in a listing's JSON.
	Secrets []string `json:"-"`
	Enabled bool     `json:"enabled"`
	// Cursor is the last position delivered (or passed as a type the
	// endpoint does not receive).
	Cursor int64 `json:"cursor"`
	// State is "active", or "dead" after failing for the dead-letter time:
	// then nothing is sent until Redeliver.
	State         string     `json:"state"`
	Attempts      int        `json:"attempts"`
	FailingSince  *time.Time `json:"failing_since,omitempty"`
	NextAttemptAt time.Time  `json:"next_attempt_at"`
	LastError     string     `json:"last_error,omitempty"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	// Partitions is, in partitioned mode, each partition's delivery of its
	// own events; the fields above are then partition 0's.
	Partitions []EndpointDelivery `json:"partitions,omitempty"`
}

const endpointColumns = `id, url, description, event_types, secrets, enabled, cursor, state, attempts,
	failing_since, next_attempt_at, last_error, delivered_at, created_at, updated_at`

func scanEndpoint(row pgx.CollectableRow) (Endpoint, error) {
	var e Endpoint
	err := row.Scan(&e.ID, &e.URL, &e.Description, &e.EventTypes, &e.Secrets, &e.Enabled, &e.Cursor, &e.State,
		&e.Attempts, &e.FailingSince, &e.NextAttemptAt, &e.LastError, &e.DeliveredAt, &e.CreatedAt, &e.UpdatedAt)
	if e.EventTypes == nil {
		e.EventTypes = []string{}
	}
	return e, err
}

// CreateEndpoint adds e (its ID, URL, description, types and one secret
// given by the caller); it receives the events after the current horizon.
func (s *Store) CreateEndpoint(ctx context.Context, e Endpoint) (Endpoint, error) {
	defer s.observe(OpWebhooks, time.Now())
	if s.partitions > 0 {
		return s.createEndpointPartitioned(ctx, e)
	}
	upTo, err := s.EventHorizon(ctx)
	if err != nil {
		return Endpoint{}, err
	}
	rows, _ := s.pool.Query(ctx, `
		INSERT INTO webhook_endpoints (id, url, description, event_types, secrets, enabled, cursor)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+endpointColumns,
		e.ID, e.URL, e.Description, e.EventTypes, e.Secrets, e.Enabled, upTo)
	created, err := pgx.CollectExactlyOneRow(rows, scanEndpoint)
	if err != nil {
		return Endpoint{}, fmt.Errorf("webhook endpoint %s: %w", e.ID, err)
	}
	return created, nil
}

// Endpoints lists every webhook endpoint by id.
func (s *Store) Endpoints(ctx context.Context) ([]Endpoint, error) {
	defer s.observe(OpWebhooks, time.Now())
	if s.partitions > 0 {
		return s.endpointsPartitioned(ctx)
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints ORDER BY id`)
	eps, err := pgx.CollectRows(rows, scanEndpoint)
	if err != nil {
		return nil, fmt.Errorf("webhook endpoints: %w", err)
	}
	return eps, nil
}

// Endpoint returns the webhook endpoint id, or ErrNotFound.
func (s *Store) Endpoint(ctx context.Context, id string) (Endpoint, error) {
	defer s.observe(OpWebhooks, time.Now())
	if s.partitions > 0 {
		return s.endpointPartitioned(ctx, id)
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = $1`, id)
	return oneEndpoint(rows, id)
}

func oneEndpoint(rows pgx.Rows, id string) (Endpoint, error) {
	e, err := pgx.CollectExactlyOneRow(rows, scanEndpoint)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, fmt.Errorf("webhook endpoint %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("webhook endpoint %s: %w", id, err)
	}
	return e, nil
}

// EndpointChange changes an endpoint: nil fields stay as they are.
type EndpointChange struct {
	URL         *string
	Description *string
	EventTypes  *[]string
	Enabled     *bool
}

// UpdateEndpoint applies c to the endpoint id and returns it, or ErrNotFound.
func (s *Store) UpdateEndpoint(ctx context.Context, id string, c EndpointChange) (Endpoint, error) {
	defer s.observe(OpWebhooks, time.Now())
	if s.partitions > 0 {
		return s.changeEndpoint(ctx, id, func(home *Store) (Endpoint, error) { return home.UpdateEndpoint(ctx, id, c) })
	}
	var types []string
	if c.EventTypes != nil {
		types = *c.EventTypes
	}
	rows, _ := s.pool.Query(ctx, `
		UPDATE webhook_endpoints SET url = coalesce($2, url), description = coalesce($3, description),
			event_types = CASE WHEN $4 THEN $5::text[] ELSE event_types END,
			enabled = coalesce($6, enabled), updated_at = now()
		WHERE id = $1 RETURNING `+endpointColumns,
		id, c.URL, c.Description, c.EventTypes != nil, types, c.Enabled)
	return oneEndpoint(rows, id)
}

// DeleteEndpoint removes the endpoint id; ErrNotFound if there is none.
func (s *Store) DeleteEndpoint(ctx context.Context, id string) error {
	defer s.observe(OpWebhooks, time.Now())
	if s.partitions > 0 {
		// A retry finds it gone on the home (ErrNotFound) and still copies
		// the deletion.
		_, err := homeThenSpread(ctx, s, func(home *Store) (struct{}, error) { return struct{}{}, home.DeleteEndpoint(ctx, id) },
			func() error { return s.spreadEndpoint(ctx, id) })
		return err
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1`, id)
	if err == nil && tag.RowsAffected() == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("webhook endpoint %s: %w", id, err)
	}
	return nil
}

// AddSecret makes secret the endpoint's newest signing secret; the two
// before it keep signing too, older ones are dropped (a rotation).
func (s *Store) AddSecret(ctx context.Context, id, secret string) (Endpoint, error) {
	defer s.observe(OpWebhooks, time.Now())
	if s.partitions > 0 {
		return s.changeEndpoint(ctx, id, func(home *Store) (Endpoint, error) { return home.AddSecret(ctx, id, secret) })
	}
	rows, _ := s.pool.Query(ctx, `
		UPDATE webhook_endpoints SET secrets = ($2 || secrets)[1:3], updated_at = now()
		WHERE id = $1 RETURNING `+endpointColumns, id, secret)
	return oneEndpoint(rows, id)
}

// DropOldSecrets keeps only the endpoint's newest secret: the end of a
// rotation.
func (s *Store) DropOldSecrets(ctx context.Context, id string) (Endpoint, error) {
	defer s.observe(OpWebhooks, time.Now())
	if s.partitions > 0 {
		return s.changeEndpoint(ctx, id, func(home *Store) (Endpoint, error) { return home.DropOldSecrets(ctx, id) })
	}
	rows, _ := s.pool.Query(ctx, `
		UPDATE webhook_endpoints SET secrets = secrets[1:1], updated_at = now()
		WHERE id = $1 RETURNING `+endpointColumns, id)
	return oneEndpoint(rows, id)
}

// Redeliver makes the endpoint active again (out of the dead-letter state)
// and due now, its failures forgotten; with from > 0, it goes back (or
// forward) to deliver every event from position from on again.
func (s *Store) Redeliver(ctx context.Context, id string, from int64) (Endpoint, error) {
	return s.RedeliverOn(ctx, id, from, -1)
}

// RedeliverOn is Redeliver; in partitioned mode it revives the endpoint's
// delivery on every partition, or, with from > 0, goes back on partition
// only (ErrBadPartition when it is not one: positions are a partition's
// own). On one database partition is ignored.
func (s *Store) RedeliverOn(ctx context.Context, id string, from int64, partition int) (Endpoint, error) {
	defer s.observe(OpWebhooks, time.Now())
	if s.partitions > 0 {
		return s.redeliverPartitioned(ctx, id, from, partition)
	}
	rows, _ := s.pool.Query(ctx, `
		UPDATE webhook_endpoints SET state = 'active', attempts = 0, failing_since = NULL, last_error = '',
			next_attempt_at = now(), cursor = CASE WHEN $2 > 0 THEN $2 - 1 ELSE cursor END,
			lease_owner = NULL, lease_until = NULL, updated_at = now()
		WHERE id = $1 RETURNING `+endpointColumns, id, from)
	return oneEndpoint(rows, id)
}

// ClaimEndpoint leases, for owner until lease from now, one enabled active
// endpoint that is due, not leased by another delivery, and behind upTo;
// ok is false when none is. A lease lets one delivery at a time send to an
// endpoint, across replicas: it is a row, not a lock held during the
// requests, so no transaction stays open while giftd waits for an endpoint.
func (s *Store) ClaimEndpoint(ctx context.Context, owner string, lease time.Duration, upTo int64) (Endpoint, bool, error) {
	defer s.observe(OpWebhooks, time.Now())
	rows, _ := s.pool.Query(ctx, `
		UPDATE webhook_endpoints SET lease_owner = $1, lease_until = now() + $2 * interval '1 millisecond'
		WHERE id = (
			SELECT id FROM webhook_endpoints
			WHERE enabled AND state = 'active' AND next_attempt_at <= now() AND cursor < $3
			  AND (lease_until IS NULL OR lease_until < now())
			ORDER BY next_attempt_at LIMIT 1
			FOR UPDATE SKIP LOCKED)
		RETURNING `+endpointColumns, owner, lease.Milliseconds(), upTo)
	e, err := pgx.CollectExactlyOneRow(rows, scanEndpoint)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, false, nil
	}
	if err != nil {
		return Endpoint{}, false, fmt.Errorf("claim a webhook endpoint: %w", err)
	}
	return e, true, nil
}

// EndpointEvents returns up to limit events for e after its cursor, up to
// upTo, of the types it receives.
func (s *Store) EndpointEvents(ctx context.Context, e Endpoint, upTo int64, limit int) ([]Event, error) {
	defer s.observe(OpEvents, time.Now())
	return s.eventsBetween(ctx, e.Cursor, upTo, e.EventTypes, limit)
}

// DeliveryOutcome is what one leased delivery did.
type DeliveryOutcome struct {
	// Cursor is the last position delivered (or passed).
	Cursor int64
	// Delivered is whether at least one event was delivered.
	Delivered bool
	// Err, if not "", is the failure that stopped it at the event after
	// Cursor; then the next attempt is RetryIn from now, or the endpoint
	// turns dead when it has been failing for DeadAfter.
	Err       string
	RetryIn   time.Duration
	DeadAfter time.Duration
}

// RecordDelivery records o for the endpoint id and ends owner's lease. It
// returns the endpoint as recorded, or ErrLeaseLost when owner's lease
// ended and another delivery holds the endpoint.
func (s *Store) RecordDelivery(ctx context.Context, owner, id string, o DeliveryOutcome) (Endpoint, error) {
	defer s.observe(OpWebhooks, time.Now())
	rows, _ := s.pool.Query(ctx, `
		UPDATE webhook_endpoints SET
			cursor = greatest(cursor, $3),
			delivered_at = CASE WHEN $4 THEN now() ELSE delivered_at END,
			attempts = CASE WHEN $5 = '' THEN 0 WHEN $3 > cursor THEN 1 ELSE attempts + 1 END,
			failing_since = CASE WHEN $5 = '' THEN NULL WHEN $3 > cursor THEN now() ELSE coalesce(failing_since, now()) END,
			state = CASE WHEN $5 <> '' AND $3 <= cursor AND failing_since <= now() - $7 * interval '1 millisecond' THEN 'dead' ELSE state END,
			last_error = $5,
			next_attempt_at = now() + $6 * interval '1 millisecond',
			lease_owner = NULL, lease_until = NULL, updated_at = now()
		WHERE id = $1 AND lease_owner = $2
		RETURNING `+endpointColumns, id, owner, o.Cursor, o.Delivered, o.Err, o.RetryIn.Milliseconds(), o.DeadAfter.Milliseconds())
	e, err := pgx.CollectExactlyOneRow(rows, scanEndpoint)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, fmt.Errorf("webhook endpoint %s: %w", id, ErrLeaseLost)
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("webhook endpoint %s: %w", id, err)
	}
	return e, nil
}

// EndpointLag is how far behind one endpoint's delivery is.
type EndpointLag struct {
	ID   string
	Dead bool
	// Oldest is the creation time of its oldest undelivered event; zero
	// when it has none.
	Oldest time.Time
}

// EndpointLags returns the lag of every enabled endpoint.
func (s *Store) EndpointLags(ctx context.Context) ([]EndpointLag, error) {
	defer s.observe(OpWebhooks, time.Now())
	rows, _ := s.pool.Query(ctx, `
		SELECT w.id, w.state = 'dead',
			(SELECT v.created_at FROM events v
			 WHERE v.position > w.cursor AND (cardinality(w.event_types) = 0 OR v.type = ANY (w.event_types))
			 ORDER BY v.position LIMIT 1)
		FROM webhook_endpoints w WHERE w.enabled ORDER BY w.id`)
	lags, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (EndpointLag, error) {
		var l EndpointLag
		var oldest *time.Time
		err := row.Scan(&l.ID, &l.Dead, &oldest)
		if oldest != nil {
			l.Oldest = *oldest
		}
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("webhook lags: %w", err)
	}
	return lags, nil
}
