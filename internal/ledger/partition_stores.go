package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The direct Stores of a partitioned Store (WithPartitionStores), and how
// many of them are in use (docs/scale-out.md#resharding-n--2n): giftd serve
// may be given the URLs of more partitions than the proxy routes over (all
// 2n before giftd reshard doubles the cluster), and uses the first ones the
// proxy routes over; when the proxy's count grows, GrowPartitionStores
// takes the next ones into use once each claims its place.

// ErrPartitionsNotConnected: the proxy routes over more partitions than
// this Store has in use (its WithPartitionStores are fewer, or a new
// partition's claim has not been checked yet), so that a change every
// partition must get, or a read of them all, would miss some. Nothing was
// written; retry once the partitions are in use.
var ErrPartitionsNotConnected = errors.New("the proxy routes over partitions this giftd does not connect to")

// PartitionStores returns the Stores of WithPartitionStores in use now, in
// partition order: the first of them, as many as the proxy routes over (or
// fewer, when fewer were given or a new one's claim is not checked yet).
// nil if none. The slice is never changed afterwards; a later call may
// return a longer one.
func (s *Store) PartitionStores() []*Store {
	n := int(s.partsInUse.Load())
	return s.parts[:n:n]
}

// RoutedPartitionStores is PartitionStores when they are every partition
// the proxy routes over; otherwise an error wrapping
// ErrPartitionsNotConnected that says how many are in use and how many
// are routed (ErrNoPartitionStores when there are none).
func (s *Store) RoutedPartitionStores() ([]*Store, error) {
	parts := s.PartitionStores()
	if len(parts) == 0 {
		return nil, ErrNoPartitionStores
	}
	if n := s.Partitions(); len(parts) < n {
		return nil, fmt.Errorf("%w: the proxy routes over %d partitions, this giftd uses %d (GIFTD_PARTITION_URLS lists %d); retry later",
			ErrPartitionsNotConnected, n, len(parts), len(s.parts))
	}
	return parts, nil
}

// GrowPartitionStores takes into use the Stores of the partitions the proxy
// routes over now (Partitions) beyond those in use, in order, each once it
// claims to be that partition of this count and of the proxy's cluster
// (giftd_partition_identity): a database claiming another place is never
// read or written. It returns how many are in use, and the error that
// stopped it short of the routed count (ErrPartitionsNotConnected when
// there are fewer Stores than partitions). While it has Stores beyond those
// in use, it first rereads the proxy's count (one query, so that a replica
// called every second grows within about a second of giftd reshard's
// switch, debits or none); with every Store in use it reads nothing from
// the proxy (Ready and the debits' refusals, GD001, still learn the count).
func (s *Store) GrowPartitionStores(ctx context.Context) (int, error) {
	if used := int(s.partsInUse.Load()); used < len(s.parts) {
		if _, err := s.recount(ctx); err != nil {
			return used, err
		}
	}
	s.partsMu.Lock()
	defer s.partsMu.Unlock()
	used, n := int(s.partsInUse.Load()), s.Partitions()
	if used >= n || len(s.parts) == 0 {
		return used, nil
	}
	var cluster string
	if used < min(n, len(s.parts)) {
		if err := s.pool.QueryRow(ctx, `SELECT cluster_id::text FROM giftd_cluster`).Scan(&cluster); err != nil {
			return used, fmt.Errorf("read the proxy's cluster: %w", err)
		}
	}
	for i := used; i < min(n, len(s.parts)); i++ {
		var claimCluster string
		var p, of int
		err := s.parts[i].pool.QueryRow(ctx, `SELECT cluster_id::text, partition, partitions FROM giftd_partition_identity`).
			Scan(&claimCluster, &p, &of)
		var pgErr *pgconn.PgError
		switch {
		case errors.Is(err, pgx.ErrNoRows), errors.As(err, &pgErr) && pgErr.Code == "42P01":
			return i, fmt.Errorf("partition %d of %d: its database (URL %d of GIFTD_PARTITION_URLS) is not claimed by any partition", i, n, i)
		case err != nil:
			return i, fmt.Errorf("partition %d of %d: read its claim: %w", i, n, err)
		case claimCluster != cluster || p != i || of != n:
			return i, fmt.Errorf("partition %d of %d: its database (URL %d of GIFTD_PARTITION_URLS) claims to be partition %d of %d of cluster %s, the proxy's cluster is %s: check the order of the URLs",
				i, n, i, p, of, claimCluster, cluster)
		}
		s.partsInUse.Store(int32(i + 1))
	}
	if len(s.parts) < n {
		return len(s.parts), fmt.Errorf("%w: the proxy routes over %d partitions, GIFTD_PARTITION_URLS lists %d", ErrPartitionsNotConnected, n, len(s.parts))
	}
	return n, nil
}
