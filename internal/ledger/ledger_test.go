package ledger_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func openStore(t *testing.T) *ledger.Store {
	t.Helper()
	s, err := ledger.Open(context.Background(), pgtest.URL(t), pgtest.StoreOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func topUp(t *testing.T, s *ledger.Store, user string, amount int64) {
	t.Helper()
	if _, err := s.TopUp(context.Background(), ledger.TopUp{UserID: user, Amount: amount, Key: "seed-" + user}); err != nil {
		t.Fatal(err)
	}
}

func debit(id, user string, gold int64) ledger.Debit {
	return ledger.Debit{
		Key:         ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id},
		UserID:      user,
		Gold:        gold,
		Fingerprint: sha256.Sum256([]byte(fmt.Sprint(user, gold))),
		ExpiresAt:   time.Now().Add(time.Hour),
		Details:     map[string]string{"gift_id": "1"},
	}
}

// checkBooks asserts that every wallet's balance equals the sum of its
// ledger entries and that no balance is negative.
func checkBooks(t *testing.T, s *ledger.Store) {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), `
		SELECT w.user_id, w.gold, coalesce(sum(e.amount), 0)
		FROM wallets w LEFT JOIN ledger_entries e USING (user_id)
		GROUP BY w.user_id, w.gold`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var user string
		var gold, sum int64
		if err := rows.Scan(&user, &gold, &sum); err != nil {
			t.Fatal(err)
		}
		if gold != sum || gold < 0 {
			t.Errorf("wallet %s: balance %d, ledger sum %d", user, gold, sum)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestDebit_ManyGoroutinesOneWalletNeverOverdraw(t *testing.T) {
	s := openStore(t)
	topUp(t, s, "u1", 100*7)
	const n = 200
	results := make([]ledger.DebitResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.Debit(context.Background(), debit(fmt.Sprintf("r%d", i), "u1", 7))
		}()
	}
	wg.Wait()
	var ok, insufficient int
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("debit %d: %v", i, errs[i])
		}
		switch r.Status {
		case ledger.Debited:
			ok++
		case ledger.Insufficient:
			insufficient++
			if r.Balance != 0 && r.Balance >= 7 {
				t.Errorf("debit %d: insufficient with balance %d", i, r.Balance)
			}
		}
	}
	if ok != 100 || insufficient != 100 {
		t.Errorf("debited %d, insufficient %d; want 100 and 100", ok, insufficient)
	}
	w, err := s.Wallet(context.Background(), "u1")
	if err != nil || w.Gold != 0 {
		t.Errorf("wallet = %+v, %v; want 0 gold", w, err)
	}
	var entries int
	if err := s.Pool().QueryRow(context.Background(), `SELECT count(*) FROM ledger_entries WHERE kind = 'debit'`).Scan(&entries); err != nil {
		t.Fatal(err)
	}
	if entries != 100 {
		t.Errorf("%d debit entries, want 100", entries)
	}
	checkBooks(t, s)
}

func TestDebit_ConcurrentCopiesDebitOnce(t *testing.T) {
	s := openStore(t)
	topUp(t, s, "u1", 1000)
	const n = 50
	results := make([]ledger.DebitResult, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if results[i], err = s.Debit(context.Background(), debit("same", "u1", 10)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var fresh int
	for _, r := range results {
		if !r.Replay {
			fresh++
		}
		if r.Status != ledger.Debited || r.Balance != 990 {
			t.Errorf("result %+v, want debited with balance 990", r)
		}
	}
	if fresh != 1 {
		t.Errorf("%d copies executed, want 1", fresh)
	}
	if w, _ := s.Wallet(context.Background(), "u1"); w.Gold != 990 {
		t.Errorf("balance %d, want 990", w.Gold)
	}
	checkBooks(t, s)
}

func TestDebit_ReplayReturnsStoredAnswer(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	topUp(t, s, "u1", 100)
	first, err := s.Debit(ctx, debit("a", "u1", 30))
	if err != nil || first.Status != ledger.Debited || first.Balance != 70 || first.Replay {
		t.Fatalf("first = %+v, %v", first, err)
	}
	if _, err := s.Debit(ctx, debit("b", "u1", 50)); err != nil {
		t.Fatal(err)
	}
	again, err := s.Debit(ctx, debit("a", "u1", 30))
	if err != nil || again != (ledger.DebitResult{Status: ledger.Debited, Balance: 70, Replay: true}) {
		t.Errorf("replay = %+v, %v; want the first answer (balance 70) replayed", again, err)
	}

	// A 402 stays a 402 even after the wallet could pay.
	poor, err := s.Debit(ctx, debit("c", "u1", 500))
	if err != nil || poor.Status != ledger.Insufficient || poor.Balance != 20 {
		t.Fatalf("poor = %+v, %v", poor, err)
	}
	if _, err := s.TopUp(ctx, ledger.TopUp{UserID: "u1", Amount: 1000, Key: "more"}); err != nil {
		t.Fatal(err)
	}
	poorAgain, err := s.Debit(ctx, debit("c", "u1", 500))
	if err != nil || poorAgain != (ledger.DebitResult{Status: ledger.Insufficient, Balance: 20, Replay: true}) {
		t.Errorf("402 replay = %+v, %v; want insufficient with balance 20", poorAgain, err)
	}
	if w, _ := s.Wallet(ctx, "u1"); w.Gold != 1020 {
		t.Errorf("balance %d, want 1020", w.Gold)
	}
	checkBooks(t, s)
}

func TestDebit_ReusedKeyOtherParametersConflicts(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	topUp(t, s, "u1", 100)
	if _, err := s.Debit(ctx, debit("a", "u1", 30)); err != nil {
		t.Fatal(err)
	}
	_, err := s.Debit(ctx, debit("a", "u1", 31))
	if !errors.Is(err, ledger.ErrRequestReused) {
		t.Errorf("err = %v, want ErrRequestReused", err)
	}
	if w, _ := s.Wallet(ctx, "u1"); w.Gold != 70 {
		t.Errorf("balance %d, want 70", w.Gold)
	}
}

func TestDebit_UnknownWalletIsInsufficient(t *testing.T) {
	s := openStore(t)
	res, err := s.Debit(context.Background(), debit("a", "nobody", 1))
	if err != nil || res.Status != ledger.Insufficient || res.Balance != 0 {
		t.Errorf("res = %+v, %v; want insufficient, balance 0", res, err)
	}
	if _, err := s.Wallet(context.Background(), "nobody"); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("wallet of nobody: err = %v, want ErrNotFound (a debit must not create wallets)", err)
	}
}

func TestSchema_RefusesNegativeBalanceAndLedgerEdits(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	topUp(t, s, "u1", 5)
	for _, stmt := range []string{
		`UPDATE wallets SET gold = -1 WHERE user_id = 'u1'`,
		`UPDATE ledger_entries SET amount = 1000`,
		`DELETE FROM ledger_entries`,
		`TRUNCATE ledger_entries CASCADE`,
	} {
		if _, err := s.Pool().Exec(ctx, stmt); err == nil {
			t.Errorf("%s: succeeded, want refused", stmt)
		}
	}
	checkBooks(t, s)
}

func TestTopUp_ReplayAndConflict(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	first, err := s.TopUp(ctx, ledger.TopUp{UserID: "u1", Amount: 100, Key: "k1"})
	if err != nil || first.Balance != 100 || first.Replay {
		t.Fatalf("first = %+v, %v", first, err)
	}
	if _, err := s.TopUp(ctx, ledger.TopUp{UserID: "u1", Amount: 50, Key: "k2"}); err != nil {
		t.Fatal(err)
	}
	again, err := s.TopUp(ctx, ledger.TopUp{UserID: "u1", Amount: 100, Key: "k1"})
	if err != nil || again.Balance != 100 || again.EntryID != first.EntryID || !again.Replay {
		t.Errorf("replay = %+v, %v; want first answer %+v", again, err, first)
	}
	for _, bad := range []ledger.TopUp{{UserID: "u1", Amount: 101, Key: "k1"}, {UserID: "u2", Amount: 100, Key: "k1"}} {
		if _, err := s.TopUp(ctx, bad); !errors.Is(err, ledger.ErrKeyReused) {
			t.Errorf("%+v: err = %v, want ErrKeyReused", bad, err)
		}
	}
	if w, _ := s.Wallet(ctx, "u1"); w.Gold != 150 {
		t.Errorf("balance %d, want 150", w.Gold)
	}
	if _, err := s.Wallet(ctx, "u2"); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("u2 exists after a refused top-up: %v", err)
	}
	checkBooks(t, s)
}

func TestTopUp_ConcurrentSameKeyCreditsOnce(t *testing.T) {
	s := openStore(t)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.TopUp(context.Background(), ledger.TopUp{UserID: "u1", Amount: 10, Key: "k"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if w, _ := s.Wallet(context.Background(), "u1"); w.Gold != 10 {
		t.Errorf("balance %d, want 10", w.Gold)
	}
	checkBooks(t, s)
}

func TestTopUp_OverflowRefused(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	for i := range 9 {
		if _, err := s.TopUp(ctx, ledger.TopUp{UserID: "u1", Amount: 1 << 62, Key: fmt.Sprint(i)}); err != nil {
			if !errors.Is(err, ledger.ErrBalanceOverflow) {
				t.Fatalf("top-up %d: %v, want ErrBalanceOverflow", i, err)
			}
			checkBooks(t, s)
			return
		}
	}
	t.Fatal("no overflow refused")
}

func TestReverse_OnceAndConflicts(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	topUp(t, s, "u1", 100)
	d := debit("a", "u1", 30)
	if _, err := s.Debit(ctx, d); err != nil {
		t.Fatal(err)
	}
	rev := ledger.Reversal{Debit: d.Key, Key: "rev1"}
	first, err := s.Reverse(ctx, rev)
	if err != nil || first.Amount != 30 || first.Balance != 100 || first.UserID != "u1" {
		t.Fatalf("first = %+v, %v", first, err)
	}
	again, err := s.Reverse(ctx, rev)
	if err != nil || !again.Replay || again.EntryID != first.EntryID || again.Balance != 100 {
		t.Errorf("replay = %+v, %v", again, err)
	}
	if _, err := s.Reverse(ctx, ledger.Reversal{Debit: d.Key, Key: "rev2"}); !errors.Is(err, ledger.ErrAlreadyReversed) {
		t.Errorf("second key: err = %v, want ErrAlreadyReversed", err)
	}
	other := debit("b", "u1", 5)
	if _, err := s.Debit(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reverse(ctx, ledger.Reversal{Debit: other.Key, Key: "rev1"}); !errors.Is(err, ledger.ErrKeyReused) {
		t.Errorf("key of another reversal: err = %v, want ErrKeyReused", err)
	}
	unknown := ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: "nope"}
	if _, err := s.Reverse(ctx, ledger.Reversal{Debit: unknown, Key: "rev3"}); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("unknown debit: err = %v, want ErrNotFound", err)
	}
	// A 402 is not a debit: nothing to give back.
	poor := debit("c", "u1", 1_000_000)
	if _, err := s.Debit(ctx, poor); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reverse(ctx, ledger.Reversal{Debit: poor.Key, Key: "rev4"}); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("402 debit: err = %v, want ErrNotFound", err)
	}
	if w, _ := s.Wallet(ctx, "u1"); w.Gold != 95 {
		t.Errorf("balance %d, want 95", w.Gold)
	}
	checkBooks(t, s)
}

func TestReverse_ConcurrentKeysReverseOnce(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	topUp(t, s, "u1", 100)
	d := debit("a", "u1", 30)
	if _, err := s.Debit(ctx, d); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	succeeded := 0
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Reverse(ctx, ledger.Reversal{Debit: d.Key, Key: fmt.Sprint("k", i)})
			switch {
			case err == nil:
				mu.Lock()
				succeeded++
				mu.Unlock()
			case !errors.Is(err, ledger.ErrAlreadyReversed):
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if succeeded != 1 {
		t.Errorf("%d reversals succeeded, want 1", succeeded)
	}
	if w, _ := s.Wallet(ctx, "u1"); w.Gold != 100 {
		t.Errorf("balance %d, want 100", w.Gold)
	}
	checkBooks(t, s)
}

func TestEntries_PagesNewestFirst(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	for i := range 5 {
		if _, err := s.TopUp(ctx, ledger.TopUp{UserID: "u1", Amount: int64(i + 1), Key: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var amounts []int64
	before := int64(0)
	for {
		page, err := s.Entries(ctx, "u1", before, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			amounts = append(amounts, e.Amount)
		}
		if len(page) < 2 {
			break
		}
		before = page[len(page)-1].ID
	}
	if fmt.Sprint(amounts) != "[5 4 3 2 1]" {
		t.Errorf("amounts %v, want [5 4 3 2 1]", amounts)
	}
	if _, err := s.Entries(ctx, "ghost", 0, 2); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("ghost: err = %v, want ErrNotFound", err)
	}
}

func TestFindDebit_RecordEntryAndReversal(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	topUp(t, s, "u1", 100)
	d := debit("a", "u1", 30)
	if _, err := s.Debit(ctx, d); err != nil {
		t.Fatal(err)
	}
	v, err := s.FindDebit(ctx, d.Key)
	if err != nil {
		t.Fatal(err)
	}
	if v.Key != d.Key || v.Record == nil || v.Record.Status != ledger.Debited || v.Record.Gold != 30 ||
		v.Record.Balance != 70 || v.Record.UserID != "u1" {
		t.Fatalf("record = %+v", v.Record)
	}
	if v.Entry == nil || v.Entry.Kind != "debit" || v.Entry.Amount != -30 || v.Record.EntryID == nil ||
		*v.Record.EntryID != v.Entry.ID || string(v.Entry.Details) != `{"gift_id": "1"}` {
		t.Fatalf("entry = %+v", v.Entry)
	}
	if v.Reversal != nil {
		t.Fatalf("reversal before any: %+v", v.Reversal)
	}

	rev, err := s.Reverse(ctx, ledger.Reversal{Debit: d.Key, Key: "rev1", Note: "gift lost"})
	if err != nil {
		t.Fatal(err)
	}
	v, err = s.FindDebit(ctx, d.Key)
	if err != nil {
		t.Fatal(err)
	}
	if v.Reversal == nil || v.Reversal.ID != rev.EntryID || v.Reversal.Amount != 30 || *v.Reversal.Reverses != v.Entry.ID {
		t.Fatalf("reversal = %+v", v.Reversal)
	}

	// A 402 has a record and no entry.
	poor := debit("b", "u1", 1_000_000)
	if _, err := s.Debit(ctx, poor); err != nil {
		t.Fatal(err)
	}
	v, err = s.FindDebit(ctx, poor.Key)
	if err != nil || v.Record == nil || v.Record.Status != ledger.Insufficient || v.Record.EntryID != nil || v.Entry != nil {
		t.Fatalf("402: %+v, %v", v, err)
	}

	// The same request id under another app or platform is another debit.
	for _, k := range []ledger.DebitKey{
		{Platform: "linkv", AppID: "other", RequestID: "a"},
		{Platform: "polyv", AppID: "app", RequestID: "a"},
		{Platform: "linkv", AppID: "app", RequestID: "never"},
	} {
		if _, err := s.FindDebit(ctx, k); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", k, err)
		}
	}
}

func TestFindDebit_EntryOutlivesPrunedRecord(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	topUp(t, s, "u1", 100)
	d := debit("a", "u1", 30)
	if _, err := s.Debit(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `DELETE FROM debit_requests`); err != nil {
		t.Fatal(err)
	}
	v, err := s.FindDebit(ctx, d.Key)
	if err != nil || v.Record != nil || v.Entry == nil || v.Entry.Amount != -30 {
		t.Fatalf("after pruning: %+v, %v", v, err)
	}
}
