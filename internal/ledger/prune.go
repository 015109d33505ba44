package ledger

import (
	"context"
	"fmt"
	"time"
)

// DefaultPruneBatch is how many debit records one pruning statement deletes
// at most: small enough that no statement holds locks or writes WAL for long.
const DefaultPruneBatch = 1000

// PruneRequests deletes the records of executed debit requests whose
// expiry is before cutoff, at most batch rows per statement (each its own
// transaction), until none is left or ctx ends. It returns how many it
// deleted, also when it stops early with ctx's error or the database's.
//
// Only the requests' records go: the ledger is never pruned. A copy of a
// pruned request is refused as expired before it reaches the ledger, and
// the ledger's unique key would refuse a second debit even then.
// Rows another transaction holds (a concurrent pruner on another replica)
// are skipped rather than waited for.
func (s *Store) PruneRequests(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
	defer s.observe(OpPrune, time.Now())
	if s.partitions > 0 {
		return s.prunePartitioned(ctx, func(p *Store) (int64, error) { return p.PruneRequests(ctx, cutoff, batch) })
	}
	if batch < 1 {
		batch = DefaultPruneBatch
	}
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `
			DELETE FROM debit_requests
			WHERE (platform, app_id, request_id) IN (
				SELECT platform, app_id, request_id FROM debit_requests
				WHERE expires_at < $1
				ORDER BY expires_at
				LIMIT $2
				FOR UPDATE SKIP LOCKED
			)`, cutoff, batch)
		if err != nil {
			return total, fmt.Errorf("prune debit records before %s: %w", cutoff.UTC().Format(time.RFC3339), err)
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
