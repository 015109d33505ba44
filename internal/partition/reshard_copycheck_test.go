package partition_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// TestReshard_ChecksTheCopyBeforeTheForget: a moved user whose copy on the
// new partition lacks its last entry, its wallet as of the entry before
// (each partition's audit passes: the wallet is the sum of its entries),
// stops the run after the switch with nothing forgotten: the old partition
// still holds the user's rows. Once the entry is there again, the run
// again forgets them.
func TestReshard_ChecksTheCopyBeforeTheForget(t *testing.T) {
	l := pgtest.Partitioned(t, 1)
	requireLogical(t, l.ProxyURL)
	newURLs := newPartitions(t, l)
	bg := context.Background()
	mover, stayer := usersOn(1, 2, 1)[0], usersOn(0, 2, 1)[0]
	proxy := connect(t, l.ProxyURL)
	for k := range 3 {
		for _, u := range []string{mover, stayer} {
			if _, err := topUpThroughProxy(bg, proxy, u, 10, fmt.Sprintf("seed-%s-%d", u, k)); err != nil {
				t.Fatal(err)
			}
		}
	}
	old, moved := connect(t, l.PartitionURLs[0]), connect(t, newURLs[0])
	wallets := func() (n int) {
		t.Helper()
		if err := old.QueryRow(bg, `SELECT count(*) FROM wallets WHERE user_id = $1`, mover).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The mover's last entry, as the copy would have lost it: kept aside,
	// then deleted on the new partition with the wallet set back, as
	// replication writes (the ledger's triggers refuse it otherwise).
	const lose = `
		WITH last AS (DELETE FROM ledger_entries WHERE id = (SELECT max(id) FROM ledger_entries WHERE user_id = $1) RETURNING *)
		UPDATE wallets SET gold = gold - (SELECT amount FROM last) WHERE user_id = $1`
	r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(step string) {
		if step != "switch" { // the copy cut, the proxy about to switch
			return
		}
		tx, err := moved.Begin(bg)
		if err == nil {
			_, err = tx.Exec(bg, `CREATE TABLE lost AS SELECT * FROM ledger_entries WHERE id = (SELECT max(id) FROM ledger_entries WHERE user_id = $1)`, mover)
		}
		if err == nil {
			_, err = tx.Exec(bg, `SET LOCAL session_replication_role = replica`)
		}
		if err == nil {
			_, err = tx.Exec(bg, lose, mover)
		}
		if err == nil {
			err = tx.Commit(bg)
		}
		if err != nil {
			t.Errorf("lose the mover's last entry on the new partition: %v", err)
		}
	})
	_, err := partition.Reshard(bg, r)
	if err == nil || !strings.Contains(err.Error(), "nothing forgotten") || !strings.Contains(err.Error(), "the copy differs: the ledger entries") ||
		!strings.Contains(err.Error(), "2 rows") || !strings.Contains(err.Error(), "3 rows") {
		t.Fatalf("reshard over a copy missing an entry: %v; want the copy check failing with 3 entries against 2, nothing forgotten", err)
	}
	if n := wallets(); n != 1 {
		t.Errorf("old partition 0 holds %d wallets of the mover after the failed check; want 1 (not forgotten)", n)
	}
	// What the audit would not have seen: each partition's books agree.
	for p, u := range []string{l.PartitionURLs[0], newURLs[0]} {
		s, err := ledger.Open(bg, u, ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
		if err != nil {
			t.Fatal(err)
		}
		if a, err := s.Audit(bg); err != nil || !a.OK() {
			t.Errorf("partition %d's audit with the copy missing an entry: %+v, %v; want it OK (only the copy check sees it)", p, a, err)
		}
		s.Close()
	}
	var gold int64
	if err := proxy.QueryRow(bg, `SELECT gold FROM giftd_wallet($1)`, mover).Scan(&gold); err != nil || gold != 20 {
		t.Fatalf("the mover's wallet through the proxy, switched: %d, %v; want 20 (the copy as the test left it)", gold, err)
	}

	// Repaired: the entry back, the wallet with it; the run again forgets.
	tx, err := moved.Begin(bg)
	if err == nil {
		_, err = tx.Exec(bg, `SET LOCAL session_replication_role = replica`)
	}
	if err == nil {
		_, err = tx.Exec(bg, `INSERT INTO ledger_entries SELECT * FROM lost`)
	}
	if err == nil {
		_, err = tx.Exec(bg, `UPDATE wallets SET gold = gold + (SELECT amount FROM lost) WHERE user_id = $1`, mover)
	}
	if err == nil {
		err = tx.Commit(bg)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := partition.Reshard(bg, partition.Resharding{Layout: l, NewPartitionURLs: newURLs}); err != nil {
		t.Fatalf("reshard again once repaired: %v", err)
	}
	if n := wallets(); n != 0 {
		t.Errorf("old partition 0 holds %d wallets of the mover after the run again; want 0 (forgotten)", n)
	}
	if err := proxy.QueryRow(bg, `SELECT gold FROM giftd_wallet($1)`, mover).Scan(&gold); err != nil || gold != 30 {
		t.Errorf("the mover's wallet through the proxy: %d, %v; want 30", gold, err)
	}
}
