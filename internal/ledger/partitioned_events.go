package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Events, webhooks and pruning partitioned (docs/events.md#partitioned-mode):
// each partition has its own outbox, positions and webhook delivery state;
// they are read and written on each partition's own Store (WithPartitionStores).

// EndpointDelivery is where one partition's delivery to an endpoint stands.
type EndpointDelivery struct {
	Partition int `json:"partition"`
	// Unreachable: the partition could not be read; the rest is empty.
	Unreachable   bool       `json:"unreachable,omitempty"`
	Cursor        int64      `json:"cursor"`
	State         string     `json:"state,omitempty"`
	Attempts      int        `json:"attempts"`
	FailingSince  *time.Time `json:"failing_since,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`
}

// withDeliveries fills e.Partitions with each partition's delivery state.
func (s *Store) withDeliveries(ctx context.Context, eps []Endpoint) []Endpoint {
	parts := s.PartitionStores()
	byPart := make([]map[string]Endpoint, len(parts))
	for i, p := range parts {
		if i == 0 {
			byPart[0] = map[string]Endpoint{}
			for _, e := range eps {
				byPart[0][e.ID] = e
			}
			continue
		}
		got, err := p.Endpoints(ctx)
		if err != nil {
			continue
		}
		byPart[i] = map[string]Endpoint{}
		for _, e := range got {
			byPart[i][e.ID] = e
		}
	}
	for k := range eps {
		eps[k].Partitions = make([]EndpointDelivery, len(parts))
		for i := range parts {
			d := EndpointDelivery{Partition: i}
			e, ok := byPart[i][eps[k].ID]
			switch {
			case byPart[i] == nil:
				d.Unreachable = true
			case ok:
				next := e.NextAttemptAt
				d.Cursor, d.State, d.Attempts, d.FailingSince, d.NextAttemptAt, d.LastError, d.DeliveredAt =
					e.Cursor, e.State, e.Attempts, e.FailingSince, &next, e.LastError, e.DeliveredAt
			default:
				d.State = "missing" // its copy has not reached this partition: ConfigDrift says so too
			}
			eps[k].Partitions[i] = d
		}
	}
	return eps
}

func (s *Store) createEndpointPartitioned(ctx context.Context, e Endpoint) (Endpoint, error) {
	created, err := homeThenSpread(ctx, s, func(home *Store) (Endpoint, error) { return home.CreateEndpoint(ctx, e) },
		func() error { return s.spreadEndpoint(ctx, e.ID) })
	if err != nil {
		return created, err
	}
	return s.withDeliveries(ctx, []Endpoint{created})[0], nil
}

func (s *Store) endpointsPartitioned(ctx context.Context) ([]Endpoint, error) {
	home, err := s.home()
	if err != nil {
		return nil, err
	}
	eps, err := home.Endpoints(ctx)
	if err != nil {
		return nil, err
	}
	return s.withDeliveries(ctx, eps), nil
}

func (s *Store) endpointPartitioned(ctx context.Context, id string) (Endpoint, error) {
	home, err := s.home()
	if err != nil {
		return Endpoint{}, err
	}
	e, err := home.Endpoint(ctx, id)
	if err != nil {
		return Endpoint{}, err
	}
	return s.withDeliveries(ctx, []Endpoint{e})[0], nil
}

// changeEndpoint is a change of an endpoint's configuration partitioned.
func (s *Store) changeEndpoint(ctx context.Context, id string, change func(home *Store) (Endpoint, error)) (Endpoint, error) {
	e, err := homeThenSpread(ctx, s, change, func() error { return s.spreadEndpoint(ctx, id) })
	if err != nil {
		return e, err
	}
	return s.withDeliveries(ctx, []Endpoint{e})[0], nil
}

// redeliverPartitioned is Redeliver on every partition, or, with from > 0,
// on partition only (positions are a partition's own). ErrPartlyApplied
// names the partitions it failed on.
func (s *Store) redeliverPartitioned(ctx context.Context, id string, from int64, partition int) (Endpoint, error) {
	parts := s.PartitionStores()
	if from > 0 {
		if partition < 0 || partition >= s.Partitions() {
			return Endpoint{}, fmt.Errorf("%w: a position is a partition's: give the partition, 0 to %d", ErrBadPartition, s.Partitions()-1)
		}
		if partition >= len(parts) {
			return Endpoint{}, fmt.Errorf("webhook endpoint %s: partition %d: %w", id, partition, ErrPartitionsNotConnected)
		}
		if _, err := parts[partition].Redeliver(ctx, id, from); err != nil {
			return Endpoint{}, err
		}
		return s.endpointPartitioned(ctx, id)
	}
	parts, err := s.RoutedPartitionStores()
	if err != nil {
		return Endpoint{}, fmt.Errorf("webhook endpoint %s: %w", id, err)
	}
	if _, err := parts[0].Redeliver(ctx, id, 0); err != nil {
		return Endpoint{}, err
	}
	var failed []int
	for i, p := range parts[1:] {
		if _, err := p.Redeliver(ctx, id, 0); err != nil {
			failed = append(failed, i+1)
		}
	}
	if failed != nil {
		return Endpoint{}, fmt.Errorf("webhook endpoint %s: %w: redelivering on every partition but %v; retry", id, ErrPartlyApplied, failed)
	}
	return s.endpointPartitioned(ctx, id)
}

// ErrBadPartition: a partition number out of range, or one missing where a
// partition's own position needs it.
var ErrBadPartition = errors.New("bad partition")

// PartitionedEvents is one page of the partitioned pull feed.
type PartitionedEvents struct {
	// Events, each with its Partition, in each partition's position order,
	// the partitions interleaved by creation time.
	Events []Event
	// Next is the cursor to resume from: per partition, the last position
	// read (Events' last of that partition, else the one given).
	Next []int64
	// Horizons are each partition's horizon (-1: unreachable).
	Horizons []int64
	// Unavailable lists the partitions that could not be read; their
	// positions in Next are the ones given, so nothing of theirs is skipped.
	Unavailable []int
}

// EventsPartitioned is Events over every partition: after holds one
// position per partition (nil: all 0). It returns at most limit events,
// a prefix of each partition's events after its position, so that
// resuming from Next misses nothing and repeats nothing. A partition
// that cannot be read is skipped and named; it returns an error only when
// none can be read, or ErrBadPartition when after has the wrong length.
// A cursor of the count before giftd reshard doubled it goes on: new
// partition i + n starts from partition i's position, since it holds a copy
// of partition i's events with their positions (events copied and read
// already from i are not read again; those of i not read yet may be read
// from both, with one id). It reads the partitions this Store uses
// (PartitionStores), ErrPartitionsNotConnected when they are fewer than
// the proxy routes over.
func (s *Store) EventsPartitioned(ctx context.Context, after []int64, limit int) (PartitionedEvents, error) {
	parts, err := s.RoutedPartitionStores()
	if err != nil {
		return PartitionedEvents{}, err
	}
	if after == nil {
		after = make([]int64, len(parts))
	}
	for len(after) > 0 && len(after) < len(parts) && len(parts)%(2*len(after)) == 0 {
		after = append(slices.Clone(after), after...)
	}
	if len(after) != len(parts) {
		return PartitionedEvents{}, fmt.Errorf("%w: the cursor has %d positions, want one per partition (%d)", ErrBadPartition, len(after), len(parts))
	}
	out := PartitionedEvents{Next: slices.Clone(after), Horizons: make([]int64, len(parts))}
	heads := make([][]Event, len(parts))
	var errs []error
	for i, p := range parts {
		events, upTo, err := p.Events(ctx, after[i], limit)
		if err != nil {
			if ctx.Err() != nil {
				return PartitionedEvents{}, ctx.Err()
			}
			out.Horizons[i] = -1
			out.Unavailable = append(out.Unavailable, i)
			errs = append(errs, fmt.Errorf("partition %d: %w", i, err))
			continue
		}
		out.Horizons[i] = upTo
		for k := range events {
			events[k].Partition = &i
		}
		heads[i] = events
	}
	if len(errs) == len(parts) {
		return PartitionedEvents{}, errors.Join(errs...)
	}
	// A merge, not a sort: each partition's events stay in position order
	// (their creation times need not be), the oldest head first.
	var all []Event
	for len(all) < limit {
		pick := -1
		for i, h := range heads {
			if len(h) > 0 && (pick < 0 || h[0].CreatedAt.Before(heads[pick][0].CreatedAt)) {
				pick = i
			}
		}
		if pick < 0 {
			break
		}
		all = append(all, heads[pick][0])
		heads[pick] = heads[pick][1:]
	}
	for _, e := range all {
		out.Next[*e.Partition] = e.Position
	}
	out.Events = all
	return out, nil
}

// prunePartitioned runs prune on every partition's own Store, going on past
// one that fails, and returns the total and every failure.
func (s *Store) prunePartitioned(ctx context.Context, prune func(p *Store) (int64, error)) (int64, error) {
	parts := s.PartitionStores()
	if len(parts) == 0 {
		return 0, ErrNoPartitionStores
	}
	var total int64
	var errs []error
	for i, p := range parts {
		n, err := prune(p)
		total += n
		if err != nil {
			if ctx.Err() != nil {
				return total, ctx.Err()
			}
			errs = append(errs, fmt.Errorf("partition %d: %w", i, err))
		}
	}
	return total, errors.Join(errs...)
}

// remindersPartitioned is Reminders partitioned: a user's on the user's
// partition; every user's merged from every partition (each partition's
// first limit, then the first limit of them all in Reminders' order). It
// fails when a partition it needs cannot be read: a list missing a
// partition's users would look complete.
func (s *Store) remindersPartitioned(ctx context.Context, userID string, since time.Time, limit int) ([]Reminder, error) {
	parts, err := s.RoutedPartitionStores()
	if err != nil {
		return nil, err
	}
	if userID != "" {
		p := s.partitionOf(userID)
		if p >= len(parts) {
			return nil, fmt.Errorf("reminders of %s: partition %d: %w", userID, p, ErrPartitionsNotConnected)
		}
		return parts[p].Reminders(ctx, userID, since, limit)
	}
	var all []Reminder
	for i, p := range parts {
		rs, err := p.Reminders(ctx, "", since, limit)
		if err != nil {
			return nil, fmt.Errorf("partition %d: %w", i, err)
		}
		all = append(all, rs...)
	}
	slices.SortFunc(all, func(a, b Reminder) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.UserID, b.UserID)
	})
	if len(all) > limit {
		all = all[:limit]
	}
	return all, nil
}
