package ledger_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// TestPartitioned_BatchInAPauseGoesAgainSplit: a batch mixing users a
// reshard moves and users it keeps, refused by a reshard's pause (behind the
// fence, GD003; once the claims moved, GD001), goes again as two batches:
// the staying users' debits commit together, in one transaction, and the
// moving users' are answered with the pause's refusal, nothing written
// (Store.Debit then waits for the switch). Before, the batch went again one
// debit at a time, each answered only once all had run: in a real pause the
// moving users' debits waited for a second or more behind the staying ones.
func TestPartitioned_BatchInAPauseGoesAgainSplit(t *testing.T) {
	ctx := context.Background()
	s, conn := storeAndPartition1(t)
	of4 := usersOn(4, 3)
	movers, stayers := of4[3], of4[1] // on partition 1 of 2: moving to 3 of 4, staying on 1
	for _, u := range append(append([]string{}, movers...), stayers...) {
		if _, err := s.TopUp(ctx, ledger.TopUp{UserID: u, Amount: 100, Key: "seed-" + u}); err != nil {
			t.Fatal(err)
		}
	}

	for _, c := range []struct {
		pause, lift string // on partition 1
		code        string // the moving users' refusal
	}{
		{`INSERT INTO giftd_reshard_fence (partitions) VALUES (4)`, `DELETE FROM giftd_reshard_fence`, "GD003"},
		{`UPDATE giftd_partition_identity SET partitions = 4`, `UPDATE giftd_partition_identity SET partitions = 2`, "GD001"},
	} {
		if _, err := conn.Exec(ctx, c.pause); err != nil {
			t.Fatalf("%s: %v", c.pause, err)
		}
		var batch []ledger.Debit
		for i := range stayers {
			batch = append(batch, debit(c.code+"-stay-"+stayers[i], stayers[i], 1), debit(c.code+"-move-"+movers[i], movers[i], 1))
		}
		results, errs := ledger.RunBatch(s, batch)
		var stayed []string
		for i, d := range batch {
			var pgErr *pgconn.PgError
			if i%2 == 0 {
				if errs[i] != nil || results[i].Status != ledger.Debited {
					t.Errorf("%s: the staying user's debit %s: %+v, %v; want debited", c.code, d.Key.RequestID, results[i], errs[i])
				}
				stayed = append(stayed, d.Key.RequestID)
			} else if !errors.As(errs[i], &pgErr) || pgErr.Code != c.code {
				t.Errorf("%s: the moving user's debit %s: %+v, %v; want refused with %s", c.code, d.Key.RequestID, results[i], errs[i], c.code)
			}
		}
		if txs, err := debitTransactions(ctx, conn, stayed); err != nil || len(txs) != 1 {
			t.Errorf("%s: the staying users' entries were written by the transactions %v (%v); want one batch", c.code, txs, err)
		}
		if _, err := conn.Exec(ctx, c.lift); err != nil {
			t.Fatalf("%s: %v", c.lift, err)
		}
	}
	// Nothing of the moving users' debits was written: each goes through now.
	for _, u := range movers {
		w, err := s.Wallet(ctx, u)
		if err != nil || w.Gold != 100 {
			t.Errorf("the wallet of moving user %s after the pauses: %+v, %v; want 100", u, w, err)
		}
	}
}

// TestPartitioned_PauseRefusalPastItsDeadlineNamesThePause: a debit the
// partition it is leaving refused (GD001) in a reshard's pause, the answer
// arriving as its deadline passed, is answered ErrReshardPaused, as one
// arriving earlier whose wait the pause outlasts: before, the reads telling
// the pause apart ran on the ended context, failed, and the raw GD001 came
// back, read in the logs as a misplaced partition. A GD001 from a partition
// claimed as another is still not the pause.
func TestPartitioned_PauseRefusalPastItsDeadlineNamesThePause(t *testing.T) {
	ctx := context.Background()
	s, conn := storeAndPartition1(t)
	mover := usersOn(4, 1)[3][0] // from partition 1 of 2 to 3 of 4
	ended, cancel := context.WithCancel(ctx)
	cancel()
	refusal := &pgconn.PgError{Code: "GD001", Message: "giftd: partition 1 of 4 does not own " + mover}
	for _, c := range []struct {
		claim  string
		paused bool
	}{
		{`UPDATE giftd_partition_identity SET partitions = 4`, true},                 // 1 of 4, the proxy at 2
		{`UPDATE giftd_partition_identity SET partition = 0, partitions = 2`, false}, // URLs out of order
	} {
		if _, err := conn.Exec(ctx, c.claim); err != nil {
			t.Fatalf("%s: %v", c.claim, err)
		}
		_, err := ledger.DebitAfterSwitch(ended, s, debit("late-"+c.claim, mover, 1), 2, refusal)
		if !errors.As(err, new(*pgconn.PgError)) || errors.Is(err, ledger.ErrReshardPaused) != c.paused {
			t.Errorf("claimed by %s: the refusal past the deadline answered %v; want the GD001, ErrReshardPaused %t", c.claim, err, c.paused)
		}
	}
}

// storeAndPartition1 returns a partitioned store on a new cluster of 2
// partitions and a connection to partition 1's database, where the tests
// set up a reshard's pause by hand.
func storeAndPartition1(t *testing.T) (*ledger.Store, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	s, err := ledger.Open(ctx, l.ProxyURL, append(pgtest.StoreOptions(), ledger.WithPartitions(2, partition.For))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	conn, err := pgx.Connect(ctx, l.PartitionURLs[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return s, conn
}

// TestPartitioned_BatchAcrossASwitchGoesAgainPerPartition: a store that
// still routes over 2 partitions after the proxy switched to 4 sends a
// batch of users of partitions 0 and 2 (of 4) to partition 0, which refuses
// it (GD001); the store learns the count, and the batch, which now spans
// two partitions, goes again as one batch on each (before, one debit at a
// time): each partition's debits are written by one transaction.
func TestPartitioned_BatchAcrossASwitchGoesAgainPerPartition(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 4)
	s, err := ledger.Open(ctx, l.ProxyURL, append(pgtest.StoreOptions(), ledger.WithPartitions(2, partition.For))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	of8 := usersOn(8, 2)
	on := map[int][]string{0: of8[0], 2: of8[2]} // partition of 4 → its users, of one partition of 8 each
	var batch []ledger.Debit
	for i := range 2 {
		for _, p := range []int{0, 2} {
			u := on[p][i]
			if _, err := s.TopUp(ctx, ledger.TopUp{UserID: u, Amount: 100, Key: "seed-" + u}); err != nil {
				t.Fatal(err)
			}
			batch = append(batch, debit("across-"+u, u, 1))
		}
	}
	if s.Partitions() != 2 {
		t.Fatalf("the store routes over %d partitions before the batch; want 2 (the switch not learnt yet)", s.Partitions())
	}
	results, errs := ledger.RunBatch(s, batch)
	for i, d := range batch {
		if errs[i] != nil || results[i].Status != ledger.Debited {
			t.Errorf("debit %s: %+v, %v; want debited", d.Key.RequestID, results[i], errs[i])
		}
	}
	if s.Partitions() != 4 {
		t.Errorf("the store routes over %d partitions after the batch; want 4", s.Partitions())
	}
	for _, p := range []int{0, 2} {
		conn, err := pgx.Connect(ctx, l.PartitionURLs[p])
		if err != nil {
			t.Fatal(err)
		}
		txs, err := debitTransactions(ctx, conn, []string{"across-" + on[p][0], "across-" + on[p][1]})
		conn.Close(ctx)
		if err != nil || len(txs) != 1 {
			t.Errorf("partition %d: its users' entries were written by the transactions %v (%v); want one batch", p, txs, err)
		}
	}
}

// debitTransactions returns the transactions (xmin) that wrote the debit
// entries of the request ids refs on conn's partition.
func debitTransactions(ctx context.Context, conn *pgx.Conn, refs []string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT DISTINCT xmin::text FROM ledger_entries WHERE kind = 'debit' AND ref = ANY($1)`, refs)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
