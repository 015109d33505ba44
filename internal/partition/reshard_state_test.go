package partition_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// TestReshard_ReadinessShowsARunStoppedUnfinished: a giftd reshard 1 → 2
// cut short once the claims moved and the economy split (the proxy not
// switched: the moving users refused) shows, at the next readiness check,
// partition 0 as fenced; one cut short after the switch, before the forget,
// shows both partitions as not forgotten. The run again clears both: what
// serve's gauges giftd_partition_reshard_fenced and
// giftd_partition_reshard_unforgotten show (cmd/giftd).
func TestReshard_ReadinessShowsARunStoppedUnfinished(t *testing.T) {
	for _, c := range []struct {
		step string
		want []ledger.ReshardState
	}{
		{"switch", []ledger.ReshardState{{Fenced: true, Unforgotten: true}}},
		{"forget", []ledger.ReshardState{{Unforgotten: true}, {Unforgotten: true}}},
	} {
		t.Run(c.step, func(t *testing.T) {
			l := pgtest.Partitioned(t, 1)
			requireLogical(t, l.ProxyURL)
			newURLs := newPartitions(t, l)
			bg := context.Background()
			s, err := ledger.Open(bg, l.ProxyURL, ledger.WithPartitions(1, partition.For),
				ledger.WithBatching(ledger.Batching{MaxBatch: 1}), ledger.WithEconomy(ledger.Economy{}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			for _, u := range append(usersOn(0, 2, 2), usersOn(1, 2, 2)...) {
				if _, err := s.TopUp(bg, ledger.TopUp{UserID: u, Amount: 100, Key: "seed-" + u}); err != nil {
					t.Fatal(err)
				}
			}
			states := func(want []ledger.ReshardState) {
				t.Helper()
				if err := s.Ready(bg); err != nil {
					t.Fatalf("ready: %v", err)
				}
				if got := s.ReshardStates(); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("reshard states %+v, want %+v", got, want)
				}
			}
			states([]ledger.ReshardState{{}})
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(s string) {
				if s == c.step {
					cancel()
				}
			})
			if _, err := partition.Reshard(ctx, r); !errors.Is(err, context.Canceled) {
				t.Fatalf("reshard cut short at %s: %v; want context.Canceled", c.step, err)
			}
			states(c.want)
			if _, err := partition.Reshard(bg, partition.Resharding{Layout: l, NewPartitionURLs: newURLs}); err != nil {
				t.Fatalf("reshard again: %v", err)
			}
			states([]ledger.ReshardState{{}, {}})
		})
	}
}
