package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/pgtest"
)

// TestDebit_CopiesRacingAcrossBatchesAndReplicasDebitOnce sends every key
// many times at once, in different batches of two stores (two replicas) on
// one database and alone through a third with batching off, a fifth of the
// keys also with another user and amount (a reused key), an eighth of them
// for a user with no wallet (a 402 whose copies have no wallet lock to wait
// on). Nothing but the
// database serialises the copies (no lock per key since migration 9: the
// request records' primary key). Every copy must get an answer, never an
// error: one execution per key, the copies with its fingerprint its replay,
// the others ErrRequestReused; the ledger holds exactly one debit entry per
// key debited, every balance equals its entries and the audit passes.
func TestDebit_CopiesRacingAcrossBatchesAndReplicasDebitOnce(t *testing.T) {
	url := pgtest.URL(t)
	economy := ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000})
	// The batches get a minute, not DefaultBatching's 2 s: they queue for
	// 16 wallets' locks behind each other and the single debits, and run
	// again when a copy of one of their keys committed meanwhile; on a
	// loaded machine (load 10-15 on 2 cores) that queue outlasted 2 s, a
	// timeout this test does not check.
	batching := ledger.DefaultBatching()
	batching.Timeout = time.Minute
	var stores []*ledger.Store
	for _, b := range []ledger.Batching{batching, batching, {MaxBatch: 1}} {
		s, err := ledger.Open(context.Background(), url, economy, ledger.WithBatching(b))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		stores = append(stores, s)
	}
	const wallets, keys, copies = 16, 240, 6
	for w := range wallets {
		topUp(t, stores[0], fmt.Sprint("w", w), 12*5) // each wallet affords 12 of the 5-gold debits
	}
	// Each key's copies: the first `copies` identical, plus for every fifth
	// key one with another user and amount.
	type sent struct {
		key   int
		d     ledger.Debit
		other bool // the reused variant
	}
	var all []sent
	for k := range keys {
		id := fmt.Sprintf("race-%04d", k)
		d := gift(id, fmt.Sprint("w", k%wallets), 5, fmt.Sprint("h", k%7), "rose", 1)
		if k%8 == 3 {
			d.UserID = fmt.Sprint("nobody-", k) // no wallet to lock: a 402, recorded
		}
		for range copies {
			all = append(all, sent{key: k, d: d})
		}
		if k%5 == 0 {
			o := gift(id, fmt.Sprint("w", (k+1)%wallets), 7, "h0", "rose", 1)
			all = append(all, sent{key: k, d: o, other: true})
		}
	}
	rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })

	type answer struct {
		res ledger.DebitResult
		err error
	}
	answers := make([]answer, len(all))
	var wg sync.WaitGroup
	start := make(chan struct{})
	// Batches of up to 16 copies, on the two batching stores, each batch
	// a goroutine of its own; every third copy goes alone through the third.
	var batch []int
	flush := func(s *ledger.Store, idx []int) {
		wg.Go(func() {
			<-start
			debits := make([]ledger.Debit, len(idx))
			for i, j := range idx {
				debits[i] = all[j].d
			}
			res, errs := ledger.RunBatch(s, debits)
			for i, j := range idx {
				answers[j] = answer{res[i], errs[i]}
			}
		})
	}
	for j := range all {
		if j%3 == 2 {
			wg.Go(func() {
				<-start
				res, err := stores[2].Debit(context.Background(), all[j].d)
				answers[j] = answer{res, err}
			})
			continue
		}
		batch = append(batch, j)
		if len(batch) == 16 {
			flush(stores[len(batch)%2+j%2], batch)
			batch = nil
		}
	}
	if len(batch) > 0 {
		flush(stores[0], batch)
	}
	close(start)
	wg.Wait()

	// Per key: the executions (answers that are no replay) and the answers.
	type verdict struct {
		executed []answer
		variant  []bool // of each execution: the reused variant?
		all      []int
	}
	byKey := make([]verdict, keys)
	for j, a := range answers {
		v := &byKey[all[j].key]
		v.all = append(v.all, j)
		switch {
		case errors.Is(a.err, ledger.ErrRequestReused):
		case a.err != nil:
			t.Errorf("key %d: a copy failed: %v", all[j].key, a.err)
		case !a.res.Replay:
			v.executed = append(v.executed, a)
			v.variant = append(v.variant, all[j].other)
		}
	}
	debited := 0
	for k, v := range byKey {
		if len(v.executed) != 1 {
			t.Errorf("key %d executed %d times: %+v", k, len(v.executed), v.executed)
			continue
		}
		first := v.executed[0]
		if first.res.Status == ledger.Debited {
			debited++
		}
		for _, j := range v.all {
			a := answers[j]
			switch {
			case a.err != nil && all[j].other == v.variant[0]:
				t.Errorf("key %d: a copy of the executed request got %v", k, a.err)
			case a.err == nil && all[j].other != v.variant[0]:
				t.Errorf("key %d: a copy with other parameters got %+v, want ErrRequestReused", k, a.res)
			case a.err == nil && (a.res.Status != first.res.Status || a.res.Balance != first.res.Balance):
				t.Errorf("key %d: copy answered %+v, the execution %+v", k, a.res, first.res)
			}
		}
	}
	var keysInLedger, perKeyMax, records int
	if err := stores[0].Pool().QueryRow(context.Background(), `
		SELECT count(*), coalesce(max(n), 0) FROM (
			SELECT count(*) AS n FROM ledger_entries WHERE kind = 'debit' GROUP BY platform, app_id, ref) AS e`,
	).Scan(&keysInLedger, &perKeyMax); err != nil {
		t.Fatal(err)
	}
	if err := stores[0].Pool().QueryRow(context.Background(), `SELECT count(*) FROM debit_requests`).Scan(&records); err != nil {
		t.Fatal(err)
	}
	if keysInLedger != debited || perKeyMax > 1 || records != keys {
		t.Errorf("%d keys debited; the ledger holds debits of %d keys, up to %d entries per key, and %d records for %d keys",
			debited, keysInLedger, perKeyMax, records, keys)
	}
	if debited == 0 || debited == keys {
		t.Errorf("%d of %d keys debited: the wallets should afford some and refuse others", debited, keys)
	}
	checkBooks(t, stores[0])
	auditOK(t, stores[0])
}
