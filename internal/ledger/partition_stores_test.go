package ledger_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// TestGrowPartitionStores_OnlyOntoADatabaseClaimingItsPlace: a store that
// starts routing over 1 partition of a proxy routing over 2 learns the 2
// (Ready), and takes its second direct store into use only when that
// database claims to be partition 1 of 2: given partition 0's database
// there, it never grows, and a configuration change is refused before
// anything is written; given the right one, it grows and the change
// reaches both.
func TestGrowPartitionStores_OnlyOntoADatabaseClaimingItsPlace(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	p0, p1 := partitionStore(t, l.PartitionURLs[0]), partitionStore(t, l.PartitionURLs[1])
	open := func(parts ...*ledger.Store) *ledger.Store {
		s, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(1, partition.For), ledger.WithPartitionStores(parts))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		if got := len(s.PartitionStores()); got != 1 {
			t.Fatalf("%d partition stores in use at the start; want 1", got)
		}
		if err := s.Ready(ctx); err != nil {
			t.Fatal(err)
		}
		if s.Partitions() != 2 {
			t.Fatalf("the store routes over %d partitions after Ready; want 2", s.Partitions())
		}
		return s
	}
	rose := ledger.CatalogueGift{Platform: "linkv", GiftID: "rose", Name: "Rose", Price: 10, Active: true}

	wrong := open(p0, p0)
	n, err := wrong.GrowPartitionStores(ctx)
	if n != 1 || err == nil || !strings.Contains(err.Error(), "claims to be partition 0 of 2") {
		t.Errorf("grow onto partition 0's database as partition 1: %d in use, %v; want 1 and an error naming its claim", n, err)
	}
	if _, err := wrong.CreateGift(ctx, rose); !errors.Is(err, ledger.ErrPartitionsNotConnected) {
		t.Errorf("a gift created with 1 partition of 2 in use: %v; want ErrPartitionsNotConnected", err)
	}
	if g := giftsOf(t, []*ledger.Store{p0, p1}); len(g[0]) != 0 || len(g[1]) != 0 {
		t.Errorf("after the refusal the partitions hold %v; want no gift", g)
	}

	right := open(p0, p1)
	if n, err := right.GrowPartitionStores(ctx); n != 2 || err != nil {
		t.Fatalf("grow onto partition 1: %d in use, %v; want 2", n, err)
	}
	if _, err := right.CreateGift(ctx, rose); err != nil {
		t.Fatal(err)
	}
	if g := giftsOf(t, []*ledger.Store{p0, p1}); len(g[0]) != 1 || len(g[1]) != 1 {
		t.Errorf("the partitions hold %v; want the gift on both", g)
	}
}

// TestGrowPartitionStores_ReadsTheProxysCount: a store that starts routing
// over 1 partition of a proxy routing over 2, and has not learnt the 2 (no
// Ready, no debit), learns them at GrowPartitionStores, since it has a
// second direct store not in use, and takes that one into use.
func TestGrowPartitionStores_ReadsTheProxysCount(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	p0, p1 := partitionStore(t, l.PartitionURLs[0]), partitionStore(t, l.PartitionURLs[1])
	s, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(1, partition.For), ledger.WithPartitionStores([]*ledger.Store{p0, p1}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if s.Partitions() != 1 || len(s.PartitionStores()) != 1 {
		t.Fatalf("at the start the store routes over %d partitions and uses %d; want 1 and 1", s.Partitions(), len(s.PartitionStores()))
	}
	if n, err := s.GrowPartitionStores(ctx); n != 2 || err != nil || s.Partitions() != 2 {
		t.Errorf("grow: %d in use, %v, routing over %d; want 2 in use and routing over 2", n, err, s.Partitions())
	}
}
