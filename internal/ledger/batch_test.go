package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/ledger"
	"giftd/internal/pgtest"
)

func TestBatch_OneWalletInArrivalOrderEachChecked(t *testing.T) {
	s := openStore(t)
	topUp(t, s, "u1", 10)
	res, errs := ledger.RunBatch(s, []ledger.Debit{debit("a", "u1", 8), debit("b", "u1", 5), debit("c", "u1", 2)})
	want := []ledger.DebitResult{{Status: ledger.Debited, Balance: 2}, {Status: ledger.Insufficient, Balance: 2}, {Status: ledger.Debited, Balance: 0}}
	for i := range want {
		if errs[i] != nil || res[i] != want[i] {
			t.Errorf("debit %d: %+v, %v; want %+v", i, res[i], errs[i], want[i])
		}
	}
	checkBooks(t, s)
}

func TestBatch_CopiesInsideABatchExecuteOnce(t *testing.T) {
	s := openStore(t)
	topUp(t, s, "u1", 100)
	other := debit("a", "u1", 11) // same key, other fingerprint
	res, errs := ledger.RunBatch(s, []ledger.Debit{debit("a", "u1", 10), debit("a", "u1", 10), debit("b", "u1", 1), other, debit("a", "u1", 10)})
	want := []ledger.DebitResult{
		{Status: ledger.Debited, Balance: 90},
		{Status: ledger.Debited, Balance: 90, Replay: true},
		{Status: ledger.Debited, Balance: 89},
		{},
		{Status: ledger.Debited, Balance: 90, Replay: true},
	}
	for i := range want {
		if res[i] != want[i] {
			t.Errorf("debit %d: %+v, %v; want %+v", i, res[i], errs[i], want[i])
		}
	}
	if !errors.Is(errs[3], ledger.ErrRequestReused) {
		t.Errorf("other fingerprint: err %v, want ErrRequestReused", errs[3])
	}
	if w, _ := s.Wallet(context.Background(), "u1"); w.Gold != 89 {
		t.Errorf("balance %d, want 89", w.Gold)
	}
	checkBooks(t, s)
}

func TestBatch_ReplaysAndConflictsOfEarlierRequests(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	topUp(t, s, "u1", 100)
	if _, err := s.Debit(ctx, debit("old", "u1", 30)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Debit(ctx, debit("poor", "u1", 1000)); err != nil {
		t.Fatal(err)
	}
	res, errs := ledger.RunBatch(s, []ledger.Debit{debit("old", "u1", 30), debit("new", "u1", 5), debit("poor", "u1", 1000), debit("old2", "u1", 1)})
	if res[0] != (ledger.DebitResult{Status: ledger.Debited, Balance: 70, Replay: true}) {
		t.Errorf("replay of old: %+v %v", res[0], errs[0])
	}
	if res[1] != (ledger.DebitResult{Status: ledger.Debited, Balance: 65}) {
		t.Errorf("new: %+v %v", res[1], errs[1])
	}
	if res[2] != (ledger.DebitResult{Status: ledger.Insufficient, Balance: 70, Replay: true}) {
		t.Errorf("replay of a 402: %+v %v", res[2], errs[2])
	}
	conflict := debit("new", "u1", 6)
	if _, errs := ledger.RunBatch(s, []ledger.Debit{conflict}); !errors.Is(errs[0], ledger.ErrRequestReused) {
		t.Errorf("reused key: %v, want ErrRequestReused", errs[0])
	}
	checkBooks(t, s)
}

func TestBatch_FailingBatchIsNeverHalfApplied(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	topUp(t, s, "u1", 100)
	topUp(t, s, "poison", 100)
	// A fault no validation catches: the database refuses one entry.
	if _, err := s.Pool().Exec(ctx, `
		CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.user_id = 'poison' AND NEW.kind = 'debit' THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_poison BEFORE INSERT ON ledger_entries FOR EACH ROW EXECUTE FUNCTION refuse_poison();`); err != nil {
		t.Fatal(err)
	}
	batch := []ledger.Debit{debit("a", "u1", 10), debit("b", "poison", 10), debit("c", "u1", 10)}
	if err := ledger.Execute(s, batch); err == nil {
		t.Fatal("the batch with a refused entry succeeded")
	}
	var requests int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM debit_requests`).Scan(&requests); err != nil {
		t.Fatal(err)
	}
	if w, _ := s.Wallet(ctx, "u1"); w.Gold != 100 || requests != 0 {
		t.Errorf("after a failed batch: balance %d, %d request records; want 100 and none", w.Gold, requests)
	}
	// Through the batcher, the neighbours of the bad debit still go through.
	res, errs := ledger.RunBatch(s, batch)
	if errs[0] != nil || errs[2] != nil || res[2].Balance != 80 || errs[1] == nil {
		t.Errorf("results %+v, errors %v; want a and c debited, b refused", res, errs)
	}
	checkBooks(t, s)
}

// TestBatch_ReplicasShareOneDatabase runs three stores (as three giftd
// replicas would) on one database, sending every request to two of them at
// once, over a few wallets in random order.
func TestBatch_ReplicasShareOneDatabase(t *testing.T) {
	url := pgtest.URL(t)
	var stores []*ledger.Store
	for range 3 {
		s, err := ledger.Open(context.Background(), url, pgtest.StoreOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		stores = append(stores, s)
	}
	wallets := []string{"w1", "w2", "w3", "w4"}
	for _, w := range wallets {
		topUp(t, stores[0], w, 50*3) // each wallet affords 50 of the 3-gold debits
	}
	const requests = 400
	type answer struct {
		res ledger.DebitResult
		err error
	}
	answers := make([][2]answer, requests)
	var wg sync.WaitGroup
	for i := range requests {
		d := debit(fmt.Sprint("r", i), wallets[rand.IntN(len(wallets))], 3)
		a, b := rand.IntN(3), rand.IntN(2)
		if b >= a {
			b++
		}
		for copyN, replica := range []int{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := stores[replica].Debit(context.Background(), d)
				answers[i][copyN] = answer{res, err}
			}()
		}
	}
	wg.Wait()
	debited := 0
	for i, pair := range answers {
		for _, a := range pair {
			if a.err != nil {
				t.Fatalf("request %d: %v", i, a.err)
			}
		}
		x, y := pair[0].res, pair[1].res
		if x.Status != y.Status || x.Balance != y.Balance || x.Replay == y.Replay {
			t.Errorf("request %d: copies answered %+v and %+v; want one execution and one identical replay", i, x, y)
		}
		if x.Status == ledger.Debited {
			debited++
		}
	}
	var entries int
	if err := stores[0].Pool().QueryRow(context.Background(), `SELECT count(*) FROM ledger_entries WHERE kind = 'debit'`).Scan(&entries); err != nil {
		t.Fatal(err)
	}
	if debited != 200 || entries != 200 {
		t.Errorf("%d requests debited, %d debit entries; want 200 and 200 (4 wallets × 50)", debited, entries)
	}
	checkBooks(t, stores[0])
}

// TestBatch_WalletWriteChecked makes the database skip one wallet's write
// in a batch (a BEFORE UPDATE trigger returning NULL for it), and then
// change another's on its way (a trigger taking one coin more): either way
// the batch must fail whole with GD005 (main migration 11) and apply
// nothing, never commit entries their wallet does not carry.
func TestBatch_WalletWriteChecked(t *testing.T) {
	for _, fault := range []struct{ name, body string }{
		{"skipped", `IF NEW.user_id = 'poison' THEN RETURN NULL; END IF; RETURN NEW;`},
		{"changed", `IF NEW.user_id = 'poison' THEN NEW.gold := NEW.gold - 1; END IF; RETURN NEW;`},
	} {
		t.Run(fault.name, func(t *testing.T) {
			s := openStore(t)
			ctx := context.Background()
			topUp(t, s, "u1", 100)
			topUp(t, s, "poison", 100)
			if _, err := s.Pool().Exec(ctx, `
				CREATE FUNCTION fault_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN `+fault.body+` END $$;
				CREATE TRIGGER fault_poison BEFORE UPDATE ON wallets FOR EACH ROW EXECUTE FUNCTION fault_poison();`); err != nil {
				t.Fatal(err)
			}
			batch := []ledger.Debit{debit("a", "u1", 10), debit("b", "poison", 10), debit("c", "u1", 10)}
			err := ledger.Execute(s, batch)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "GD005" {
				t.Fatalf("the batch whose wallet write went wrong: %v; want SQLSTATE GD005", err)
			}
			var requests, entries int
			if err := s.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM debit_requests),
				(SELECT count(*) FROM ledger_entries WHERE kind = 'debit')`).Scan(&requests, &entries); err != nil {
				t.Fatal(err)
			}
			if requests != 0 || entries != 0 {
				t.Errorf("after the refused batch: %d request records, %d debit entries; want none", requests, entries)
			}
			checkBooks(t, s)
		})
	}
}
