package ledger_test

import (
	"context"
	"fmt"
	"testing"

	"giftd/internal/ledger"
)

// fillEconomy writes top-ups, 200 gift debits in batches (some with no
// receiver), 5 reversals and a payout, and returns the debits.
func fillEconomy(t *testing.T, s *ledger.Store, prefix string) []ledger.Debit {
	t.Helper()
	ctx := context.Background()
	for u := range 20 {
		topUp(t, s, fmt.Sprint("u", u), 1000)
	}
	var ds []ledger.Debit
	for i := range 200 {
		d := gift(fmt.Sprint(prefix, i), fmt.Sprint("u", i%20), 10*int64(1+i%3), fmt.Sprint("h", i%5), "rose", int64(1+i%3))
		if i%10 == 9 {
			d.Gift.ReceiverID = ""
		}
		ds = append(ds, d)
	}
	for i := 0; i < len(ds); i += 50 {
		if _, errs := ledger.RunBatch(s, ds[i:i+50]); errs[0] != nil {
			t.Fatal(errs[0])
		}
	}
	for i := range 5 {
		if _, err := s.Reverse(ctx, ledger.Reversal{Debit: ds[i*7].Key, Key: fmt.Sprint(prefix, "rev-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Payout(ctx, ledger.Payout{ReceiverID: "h1", Amount: 5, Key: prefix + "pay"}); err != nil {
		t.Fatal(err)
	}
	return ds
}

// entryLinks counts the debits whose gift row, event or request record does
// not name the ledger entry of the same key, and the batches whose entries'
// ids do not follow their arrival order (request ids are numbered).
func entryLinks(t *testing.T, s *ledger.Store) (broken int64) {
	t.Helper()
	err := s.Pool().QueryRow(context.Background(), `
		SELECT count(*) FROM ledger_entries e
		LEFT JOIN gift_entries g ON g.platform = e.platform AND g.app_id = e.app_id AND g.request_id = e.ref
		LEFT JOIN debit_requests d ON d.platform = e.platform AND d.app_id = e.app_id AND d.request_id = e.ref
		LEFT JOIN events v ON v.type = 'gift.debited' AND v.data ->> 'request_id' = e.ref
		WHERE e.kind = 'debit'
		  AND (g.debit_entry IS DISTINCT FROM e.id OR d.entry_id IS DISTINCT FROM e.id
		       OR (v.data ->> 'entry_id')::bigint IS DISTINCT FROM e.id)`).Scan(&broken)
	if err != nil {
		t.Fatal(err)
	}
	return broken
}

// TestMigrate_10OnADatabaseFullOfData migrates a database full of gifts,
// reversals and payouts from 9 to 10, down and up again: the data stays,
// the audit passes, every debit's rows name its entry, new debits debit
// once with their rows linked, and at 10 a wallet cannot be deleted.
func TestMigrate_10OnADatabaseFullOfData(t *testing.T) {
	ctx := context.Background()
	url, s := economyAt(t, 9)
	old := fillEconomy(t, s, "old-")

	step := 0
	check := func(want snapshot) snapshot {
		t.Helper()
		step++
		if got := takeSnapshot(t, s); want != (snapshot{}) && got != want {
			t.Errorf("step %d: data changed:\n got %+v\nwant %+v", step, got, want)
		}
		auditOK(t, s)
		checkBooks(t, s)
		if n := entryLinks(t, s); n != 0 {
			t.Errorf("step %d: %d debits whose gift, record or event names another entry", step, n)
		}
		if res, err := s.Debit(ctx, old[3]); err != nil || !res.Replay {
			t.Errorf("step %d: an old key answered %+v, %v; want its replay", step, res, err)
		}
		return takeSnapshot(t, s)
	}
	work := func() {
		t.Helper()
		var ds []ledger.Debit
		for i := range 40 {
			ds = append(ds, gift(fmt.Sprint("new-", step, "-", i), fmt.Sprint("u", i%4), 10, fmt.Sprint("h", i%3), "rose", 1))
		}
		ds = append(ds, ds[5]) // a copy in the batch
		res, errs := ledger.RunBatch(s, ds)
		for i := range ds {
			if errs[i] != nil || res[i].Status != ledger.Debited || res[i].Replay != (i == len(ds)-1) {
				t.Errorf("step %d: new debit %d: %+v, %v", step, i, res[i], errs[i])
			}
		}
	}
	deleteWallet := func() error {
		_, err := s.Pool().Exec(ctx, `DELETE FROM wallets WHERE user_id = 'u19'`)
		return err
	}

	at9 := check(snapshot{})
	if err := ledger.MigrateTo(url, 10); err != nil {
		t.Fatal(err)
	}
	check(at9)
	if err := deleteWallet(); err == nil {
		t.Error("at 10: a wallet with entries was deleted")
	}
	work()
	check(snapshot{})
	if err := ledger.MigrateTo(url, 9); err != nil {
		t.Fatal(err)
	}
	check(snapshot{})
	if err := deleteWallet(); err == nil {
		t.Error("at 9: a wallet with entries was deleted")
	}
	work()
	back := check(snapshot{})
	if err := ledger.MigrateTo(url, 10); err != nil {
		t.Fatal(err)
	}
	check(back)
	work()
	check(snapshot{})
}

// TestAudit_EntriesWithoutAWalletAreMismatched: with no foreign key from
// the entries to the wallets (migration 10), the audit is what finds an
// entry of a user who has no wallet.
func TestAudit_EntriesWithoutAWalletAreMismatched(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	topUp(t, s, "u1", 100)
	if r := auditOK(t, s); r.Wallets != 1 {
		t.Fatalf("wallets %d, want 1", r.Wallets)
	}
	if _, err := s.Pool().Exec(ctx, `INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, ref)
		VALUES ('ghost', 'topup', 5, 5, 'admin', 'ghost-1')`); err != nil {
		t.Fatal(err)
	}
	r, err := s.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || r.Mismatched != 1 || r.Wallets != 1 {
		t.Fatalf("audit %+v: want one mismatch (ghost's entries), one wallet", r)
	}
	if len(r.Findings) != 1 || r.Findings[0].UserID != "ghost" || r.Findings[0].LedgerSum != 5 {
		t.Errorf("findings %+v, want ghost's", r.Findings)
	}
}

// economyAt returns a fresh database migrated to version, and a store on it
// with earnings on and the gift "rose" (10 gold, a 50 % share).
func economyAt(t *testing.T, version uint) (string, *ledger.Store) {
	t.Helper()
	url := emptyDatabase(t)
	if err := ledger.MigrateTo(url, version); err != nil {
		t.Fatal(err)
	}
	s, err := ledger.Open(context.Background(), url, ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	addGift(t, s, "linkv", "rose", 10, 5000)
	return url, s
}
