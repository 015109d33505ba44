package ledger_test

import (
	"context"
	"errors"
	"testing"

	"giftd/internal/ledger"
)

// TestPartitioned_WalletMoveNotPlacedHereIsPausedOnlyInAReshard: a wallet
// move's write refused by the partition the proxy reaches as one not owning
// its user (GD001) is ErrReshardPaused only when that partition is claimed
// as its own number of twice the proxy's count, as giftd reshard leaves it
// between moving the claims and switching the proxy; refused by a database
// claimed as another partition, as one of another count, or not claimed at
// all, it is not (a misplaced database is no pause to wait out). A user
// staying on the partition writes through while it is claimed of twice the
// count. internal/partition's TestReshard_WalletMoveDuringThePauseIsRefusedAndResumes
// holds the same inside a real reshard.
func TestPartitioned_WalletMoveNotPlacedHereIsPausedOnlyInAReshard(t *testing.T) {
	ctx := context.Background()
	s, conn := storeAndPartition1(t)
	of4 := usersOn(4, 2)
	mover, stayer := of4[3], of4[1] // on partition 1 of 2: moving to 3 of 4, staying on 1
	for i, c := range []struct {
		claim  string // how partition 1's database is claimed
		sql    string
		paused bool
	}{
		{"1 of 4, the proxy routing over 2 (a reshard's pause)", `UPDATE giftd_partition_identity SET partitions = 4`, true},
		{"0 of 2 (the proxy's URLs out of order)", `UPDATE giftd_partition_identity SET partition = 0, partitions = 2`, false},
		{"1 of 8", `UPDATE giftd_partition_identity SET partition = 1, partitions = 8`, false},
		{"not claimed", `DELETE FROM giftd_partition_identity`, false},
	} {
		if _, err := conn.Exec(ctx, c.sql); err != nil {
			t.Fatalf("claim partition 1 as %s: %v", c.claim, err)
		}
		for _, u := range mover {
			_, err := s.StartWalletMove(ctx, "app", u, "open-"+u)
			if err == nil || errors.Is(err, ledger.ErrReshardPaused) != c.paused {
				t.Errorf("%d. claimed as %s: starting the move of %s (3 of 4): %v; want refused, ErrReshardPaused %t", i, c.claim, u, err, c.paused)
			}
		}
		if c.paused {
			for _, u := range stayer {
				if _, err := s.StartWalletMove(ctx, "app", u, "open-"+u); err != nil {
					t.Errorf("%d. claimed as %s: starting the move of %s (1 of 4): %v; want started", i, c.claim, u, err)
				}
			}
		}
	}
}
