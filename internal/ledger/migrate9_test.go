package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"giftd/internal/ledger"
)

// snapshot is what migration 9 must keep: every table's rows, summed.
type snapshot struct {
	Wallets, Entries, Gifts, Accounts, Events, Records int64
	Gold, EntrySum, Earnings, House                    int64
	Reversals                                          int64
}

func takeSnapshot(t *testing.T, s *ledger.Store) snapshot {
	t.Helper()
	var n snapshot
	err := s.Pool().QueryRow(context.Background(), `
		SELECT (SELECT count(*) FROM wallets), (SELECT count(*) FROM ledger_entries), (SELECT count(*) FROM gift_entries),
			(SELECT count(*) FROM account_entries), (SELECT count(*) FROM events), (SELECT count(*) FROM debit_requests),
			(SELECT coalesce(sum(gold), 0) FROM wallets)::bigint, (SELECT coalesce(sum(amount), 0) FROM ledger_entries)::bigint,
			(SELECT coalesce(sum(balance), 0) FROM earnings_accounts)::bigint, (SELECT sum(balance) FROM house_slots)::bigint,
			(SELECT count(*) FROM ledger_entries WHERE reverses IS NOT NULL)`).
		Scan(&n.Wallets, &n.Entries, &n.Gifts, &n.Accounts, &n.Events, &n.Records, &n.Gold, &n.EntrySum, &n.Earnings, &n.House, &n.Reversals)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// schemaFacts are the parts of the schema migration 9 changes.
func schemaFacts(t *testing.T, s *ledger.Store) (reversesUnique string, giftIndex, keyLocks bool) {
	t.Helper()
	err := s.Pool().QueryRow(context.Background(), `
		SELECT coalesce((SELECT CASE WHEN c.oid IS NOT NULL THEN 'constraint' ELSE 'partial index' END
		                 FROM pg_indexes i LEFT JOIN pg_constraint c ON c.conname = i.indexname
		                 WHERE i.indexname = 'ledger_entries_reverses_key'
		                   AND (c.oid IS NOT NULL OR i.indexdef LIKE '%WHERE (reverses IS NOT NULL)')), 'none'),
			EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'gift_entries_gift'),
			(SELECT bool_and(prosrc LIKE '%pg_advisory_xact_lock%') FROM pg_proc
			 WHERE proname = 'giftd_debit_gifts' AND pronargs = 18)`).Scan(&reversesUnique, &giftIndex, &keyLocks)
	if err != nil {
		t.Fatal(err)
	}
	return reversesUnique, giftIndex, keyLocks
}

// TestMigrate_9OnADatabaseFullOfData fills a database at migration 8 with
// top-ups, gift debits (settled, refused, reused), reversals, a payout and
// their events, migrates it to 9, down to 8 and up again: the data stays
// as it was, the audit passes, and every guarantee holds at each step:
// old keys replay, a reversed debit cannot be reversed again, a used
// top-up key replays, new debits debit once.
func TestMigrate_9OnADatabaseFullOfData(t *testing.T) {
	ctx := context.Background()
	url, s := economyAt(t, 8)
	for u := range 20 {
		topUp(t, s, fmt.Sprint("u", u), 1000)
	}
	var first []ledger.Debit
	for i := range 300 {
		d := gift(fmt.Sprint("old-", i), fmt.Sprint("u", i%20), 10*int64(1+i%7), fmt.Sprint("h", i%5), "rose", int64(1+i%7))
		if i%10 == 9 {
			d.Gift.ReceiverID = "" // no receiver: all to the house
		}
		first = append(first, d)
	}
	for i := 0; i < len(first); i += 50 {
		if _, errs := ledger.RunBatch(s, first[i:i+50]); errs[0] != nil && !errors.Is(errs[0], ledger.ErrRequestReused) {
			t.Fatal(errs[0])
		}
	}
	for i := range 10 {
		if _, err := s.Reverse(ctx, ledger.Reversal{Debit: first[i*3].Key, Key: fmt.Sprint("rev-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Payout(ctx, ledger.Payout{ReceiverID: "h1", Amount: 5, Key: "pay-1"}); err != nil {
		t.Fatal(err)
	}

	// What must hold at every step.
	step := 0
	check := func(want snapshot, reverses string, giftIndex, keyLocks bool) snapshot {
		t.Helper()
		step++
		if got := takeSnapshot(t, s); want != (snapshot{}) {
			if got != want {
				t.Errorf("step %d: data changed:\n got %+v\nwant %+v", step, got, want)
			}
		}
		r, g, l := schemaFacts(t, s)
		if r != reverses || g != giftIndex || l != keyLocks {
			t.Errorf("step %d: reverses unique as %s, gift_entries_gift %t, key locks %t; want %s, %t, %t",
				step, r, g, l, reverses, giftIndex, keyLocks)
		}
		auditOK(t, s)
		checkBooks(t, s)
		// An old key replays its answer; with other parameters it is refused.
		res, err := s.Debit(ctx, first[7])
		if err != nil || !res.Replay {
			t.Errorf("step %d: an old key answered %+v, %v; want its replay", step, res, err)
		}
		other := first[7]
		other.UserID, other.Fingerprint[0] = "u19", other.Fingerprint[0]+1
		if _, err := s.Debit(ctx, other); !errors.Is(err, ledger.ErrRequestReused) {
			t.Errorf("step %d: an old key reused by another user: %v, want ErrRequestReused", step, err)
		}
		// A reversed debit is never reversed twice; a reversal's key replays.
		if _, err := s.Reverse(ctx, ledger.Reversal{Debit: first[0].Key, Key: fmt.Sprint("again-", step)}); !errors.Is(err, ledger.ErrAlreadyReversed) {
			t.Errorf("step %d: a second reversal of a reversed debit: %v, want ErrAlreadyReversed", step, err)
		}
		if c, err := s.Reverse(ctx, ledger.Reversal{Debit: first[0].Key, Key: "rev-0"}); err != nil || !c.Replay {
			t.Errorf("step %d: a reversal's key again: %+v, %v; want its replay", step, c, err)
		}
		if c, err := s.TopUp(ctx, ledger.TopUp{UserID: "u3", Amount: 1000, Key: "seed-u3"}); err != nil || !c.Replay {
			t.Errorf("step %d: a used top-up key: %+v, %v; want its replay", step, c, err)
		}
		return takeSnapshot(t, s)
	}
	// Each step's new work: a debit, its copy, and its reversal.
	work := func() {
		t.Helper()
		d := gift(fmt.Sprint("new-", step), "u2", 10, "h2", "rose", 1)
		for copyN := range 2 {
			res, err := s.Debit(ctx, d)
			if err != nil || res.Status != ledger.Debited || res.Replay != (copyN == 1) {
				t.Errorf("step %d: new debit, copy %d: %+v, %v", step, copyN, res, err)
			}
		}
		if _, err := s.Reverse(ctx, ledger.Reversal{Debit: d.Key, Key: fmt.Sprint("new-rev-", step)}); err != nil {
			t.Errorf("step %d: reverse a new debit: %v", step, err)
		}
	}

	at8 := check(snapshot{}, "constraint", true, true)
	if err := ledger.MigrateTo(url, 9); err != nil {
		t.Fatal(err)
	}
	check(at8, "partial index", false, false)
	work()
	at9 := takeSnapshot(t, s)
	if err := ledger.MigrateTo(url, 8); err != nil {
		t.Fatal(err)
	}
	check(at9, "constraint", true, true)
	work()
	back := takeSnapshot(t, s)
	if err := ledger.MigrateTo(url, 9); err != nil {
		t.Fatal(err)
	}
	check(back, "partial index", false, false)
	work()
	auditOK(t, s)
}
