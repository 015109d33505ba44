package ledger_test

import (
	"context"
	"encoding/json"
	"testing"

	"giftd/internal/ledger"
)

// ledgerAsEvents returns, in entry order, what the events must say: one
// (type, entry id) per ledger entry and per payout.
func ledgerAsEvents(t *testing.T, s *ledger.Store) [][2]any {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), `
		SELECT t, id FROM (
			SELECT CASE kind WHEN 'debit' THEN 'gift.debited' WHEN 'topup' THEN 'wallet.topped_up'
			                 ELSE 'debit.reversed' END AS t, id, created_at FROM ledger_entries
			UNION ALL
			SELECT 'earnings.paid_out', id, created_at FROM account_entries WHERE kind = 'payout'
		) AS x ORDER BY created_at, id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][2]any
	for rows.Next() {
		var typ string
		var id int64
		if err := rows.Scan(&typ, &id); err != nil {
			t.Fatal(err)
		}
		out = append(out, [2]any{typ, id})
	}
	return out
}

func feed(t *testing.T, s *ledger.Store) []ledger.Event {
	t.Helper()
	var all []ledger.Event
	var after int64
	for {
		evs, _, err := s.Events(context.Background(), after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return all
		}
		all = append(all, evs...)
		after = evs[len(evs)-1].Position
	}
}

func TestEvents_OnePerLedgerEntryReplaysAddNone(t *testing.T) {
	s := openEconomy(t, ledger.Economy{Earnings: true, DefaultShareBP: 5000})
	ctx := context.Background()
	topUp(t, s, "u1", 1000)
	topUp(t, s, "u1", 1000) // a replay of the same key
	results, errs := ledger.RunBatch(s, []ledger.Debit{
		gift("g1", "u1", 100, "host", "rose", 1), gift("g2", "u1", 10000, "host", "rose", 1), gift("g3", "u1", 50, "host", "rose", 1),
	})
	for i, e := range errs {
		if e != nil {
			t.Fatal(i, e)
		}
	}
	if results[1].Status != ledger.Insufficient {
		t.Fatalf("g2: %+v", results[1])
	}
	if _, err := s.Debit(ctx, gift("g1", "u1", 100, "host", "rose", 1)); err != nil { // a replay
		t.Fatal(err)
	}
	rev := ledger.Reversal{Debit: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: "g3"}, Key: "r1"}
	for range 2 {
		if _, err := s.Reverse(ctx, rev); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := s.Payout(ctx, ledger.Payout{ReceiverID: "host", Amount: 20, Key: "p1"}); err != nil {
			t.Fatal(err)
		}
	}
	want := ledgerAsEvents(t, s)
	got := feed(t, s)
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d (%v)", len(got), len(want), want)
	}
	for i, e := range got {
		var d struct {
			EntryID int64 `json:"entry_id"`
		}
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		if e.Type != want[i][0] || d.EntryID != want[i][1] {
			t.Errorf("event %d: %s entry %d, want %v", i, e.Type, d.EntryID, want[i])
		}
		if i > 0 && e.Position <= got[i-1].Position {
			t.Errorf("event %d: position %d after %d", i, e.Position, got[i-1].Position)
		}
	}
	var g1 struct {
		Earnings, House int64
		ReceiverID      string `json:"receiver_id"`
	}
	if err := json.Unmarshal(got[1].Data, &g1); err != nil || g1.Earnings != 50 || g1.House != 50 || g1.ReceiverID != "host" {
		t.Errorf("g1's event: %s (%v)", got[1].Data, err)
	}
}

// TestEventHorizon_NeverPassesAnUncommittedSmallerPosition is the gap
// problem: a transaction takes position p and commits after another that
// took p+1; a reader at p+1 would never see p. The feed must not serve p+1
// until p's transaction has ended.
func TestEventHorizon_NeverPassesAnUncommittedSmallerPosition(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	slow, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback(ctx) //nolint:errcheck // committed below
	var first int64
	if err := slow.QueryRow(ctx, `INSERT INTO events (type, data) VALUES ('wallet.topped_up', '{}') RETURNING position`).Scan(&first); err != nil {
		t.Fatal(err)
	}
	// Before anything else commits: the slow writer's id is then at or
	// past its snapshot's xmax, absent from the in-progress list.
	if upTo, err := s.EventHorizon(ctx); err != nil || upTo >= first {
		t.Fatalf("horizon %d (%v) while position %d is uncommitted", upTo, err, first)
	}
	topUp(t, s, "u1", 5) // commits position first+1
	for range 3 {
		evs, upTo, err := s.Events(ctx, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 0 || upTo >= first {
			t.Fatalf("served %d events up to %d while position %d is uncommitted", len(evs), upTo, first)
		}
	}
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// Horizon computations of one process are reused for a few
	// milliseconds; wait for the one that sees the commit.
	var evs []ledger.Event
	for len(evs) < 2 {
		if evs, _, err = s.Events(ctx, 0, 10); err != nil {
			t.Fatal(err)
		}
	}
	if evs[0].Position != first || evs[1].Position != first+1 {
		t.Fatalf("got positions %d, %d; want %d, %d", evs[0].Position, evs[1].Position, first, first+1)
	}
}

// TestEvents_PolicyRefusalWritesOneEventReplayNone: a safeguards refusal is
// recorded like a 402 and, unlike a 402, has an event; its replay adds none.
func TestEvents_PolicyRefusalWritesOneEventReplayNone(t *testing.T) {
	s := openSafe(t, ledger.Safeguards{Cap24h: 15}, nil)
	topUp(t, s, "whale", 1000)
	results, _ := ledger.RunBatch(s, []ledger.Debit{
		gift("p1", "whale", 10, "host", "rose", 1), gift("p2", "whale", 10, "host", "rose", 1),
	})
	if results[0].Status != ledger.Debited || results[1].Status != ledger.PolicyRefused {
		t.Fatalf("results %+v, want debited then refused by the 24 h cap", results)
	}
	mustDebit(t, s, gift("p2", "whale", 10, "host", "rose", 1)) // a replay
	got := feed(t, s)
	var types []string
	for _, e := range got {
		types = append(types, e.Type)
	}
	if len(got) != 3 || got[1].Type != ledger.EventGiftDebited || got[2].Type != ledger.EventGiftRefused {
		t.Fatalf("events %v, want a top-up, the gift and its refused successor", types)
	}
	var r struct {
		RequestID string `json:"request_id"`
		Refusal   string `json:"refusal"`
		Limit     int64  `json:"refusal_limit"`
	}
	if err := json.Unmarshal(got[2].Data, &r); err != nil || r.RequestID != "p2" || r.Refusal != ledger.RefusedCap24h || r.Limit != 15 {
		t.Errorf("refusal event %s (%v)", got[2].Data, err)
	}
}
