package ledger_test

import (
	"context"
	"testing"
	"time"

	"giftd/internal/ledger"
)

func TestAudit_BalancesMatchTheLedger(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	topUp(t, s, "alice", 100)
	topUp(t, s, "bob", 5)
	if _, err := s.Debit(ctx, debit("a1", "alice", 30)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Debit(ctx, debit("b1", "bob", 50)); err != nil { // insufficient: no entry
		t.Fatal(err)
	}
	if _, err := s.Reverse(ctx, ledger.Reversal{Debit: debit("a1", "", 0).Key, Key: "r1"}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Wallets != 2 || r.Entries != 4 || r.TotalGold != 105 || len(r.Findings) != 0 {
		t.Errorf("report = %+v, want OK with 2 wallets, 4 entries, 105 gold", r)
	}
}

func TestAudit_FindsWalletsChangedBehindTheLedger(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	topUp(t, s, "alice", 100)
	topUp(t, s, "bob", 10)
	topUp(t, s, "carol", 1)
	// Bypass giftd: change a balance without an entry, and (dropping the
	// CHECK that would refuse it) make another one negative.
	for _, q := range []string{
		`UPDATE wallets SET gold = gold + 7 WHERE user_id = 'alice'`,
		`ALTER TABLE wallets DROP CONSTRAINT wallets_gold_check`,
		`UPDATE wallets SET gold = -3 WHERE user_id = 'bob'`,
	} {
		if _, err := s.Pool().Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	r, err := s.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []ledger.AuditFinding{{Account: "wallet", UserID: "alice", Gold: 107, LedgerSum: 100}, {Account: "wallet", UserID: "bob", Gold: -3, LedgerSum: 10}}
	if r.OK() || r.Mismatched != 2 || r.Negative != 1 || len(r.Findings) != 2 || r.Findings[0] != want[0] || r.Findings[1] != want[1] {
		t.Errorf("report = %+v, want findings %+v", r, want)
	}
}

func TestPruneRequests_DeletesExpiredRecordsInBatchesAndKeepsTheLedger(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	topUp(t, s, "alice", 100)
	past := time.Now().Add(-time.Hour)
	for i, id := range []string{"old1", "old2", "old3", "old4", "old5", "new1"} {
		d := debit(id, "alice", 1)
		if i < 5 {
			d.ExpiresAt = past
		}
		if _, err := s.Debit(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	var ops []string
	s.SetTimer(func(op string, _ time.Duration) { ops = append(ops, op) })
	n, err := s.PruneRequests(ctx, time.Now().Add(-time.Minute), 2) // three statements: 2, 2, 1
	if err != nil || n != 5 {
		t.Fatalf("pruned %d, %v; want 5", n, err)
	}
	s.SetTimer(nil)
	if len(ops) != 1 || ops[0] != ledger.OpPrune {
		t.Errorf("observer saw %v, want [prune]", ops)
	}
	var records, entries int
	if err := s.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM debit_requests), (SELECT count(*) FROM ledger_entries WHERE kind = 'debit')`).Scan(&records, &entries); err != nil {
		t.Fatal(err)
	}
	if records != 1 || entries != 6 {
		t.Errorf("after pruning: %d records (want 1), %d debit entries (want 6)", records, entries)
	}
	// The ledger's unique key still refuses a second debit of a pruned key.
	if _, err := s.Debit(ctx, debit("old1", "alice", 1)); err == nil {
		if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM ledger_entries WHERE ref = 'old1'`).Scan(&entries); err != nil || entries != 1 {
			t.Errorf("pruned key debited again: %d entries, %v", entries, err)
		}
	}
	if r, err := s.Audit(ctx); err != nil || !r.OK() {
		t.Errorf("audit after pruning: %+v, %v", r, err)
	}
}
