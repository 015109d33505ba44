package ledger_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"giftd/internal/ledger"
)

// seeded is a gift written straight into the tables reports read, at a
// chosen time: the sender's wallet and debit entry, and its gift_entries
// row (earnings = floor(gold × share / 10000) when it has a receiver).
type seeded struct {
	at                                   time.Time
	platform, app, req, sender, receiver string // receiver "": none
	room, giftID                         string
	count, gold                          int64
	share                                int
	reversedAt                           time.Time // zero: not reversed
}

func seed(t *testing.T, s *ledger.Store, gifts []seeded) {
	t.Helper()
	ctx := context.Background()
	for _, g := range gifts {
		var receiver *string
		earnings := int64(0)
		if g.receiver != "" {
			receiver = &g.receiver
			earnings = g.gold * int64(g.share) / 10000
		}
		_, err := s.Pool().Exec(ctx, `
			WITH w AS (
				INSERT INTO wallets (user_id, gold) VALUES ($4, 1000000) ON CONFLICT (user_id) DO NOTHING
			), e AS (
				INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, app_id, ref, created_at)
				VALUES ($4, 'debit', -$9::bigint, 0, $2, $3, $10, $1) RETURNING id
			)
			INSERT INTO gift_entries (debit_entry, platform, app_id, request_id, sender_id, receiver_id, room_id, gift_id,
				count, gold, share_bp, earnings, house, house_slot, created_at)
			SELECT e.id, $2, $3, $10, $4, $5, $6, $7, $8, $9, $11, $12, $9::bigint - $12::bigint, 0, $1 FROM e`,
			g.at, g.platform, g.app, g.sender, receiver, g.room, g.giftID, g.count, g.gold, g.req, g.share, earnings)
		if err != nil {
			t.Fatalf("seed %s: %v", g.req, err)
		}
		if g.reversedAt.IsZero() {
			continue
		}
		_, err = s.Pool().Exec(ctx, `
			INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, ref, reverses, created_at)
			SELECT user_id, 'reversal', -amount, 0, 'admin', 'rev-' || ref, id, $2 FROM ledger_entries
			WHERE kind = 'debit' AND ref = $1`, g.req, g.reversedAt)
		if err != nil {
			t.Fatalf("seed the reversal of %s: %v", g.req, err)
		}
	}
}

func str(s string) *string { return &s }

// same fails the test when got is not want, printing both a line each.
func same[T any](t *testing.T, what string, want, got []T) {
	t.Helper()
	if reflect.DeepEqual(want, got) || len(want) == 0 && len(got) == 0 {
		return
	}
	show := func(xs []T) string {
		var out string
		for _, x := range xs {
			out += "\n\t" + fmt.Sprintf("%+v", x)
			if r, ok := any(x).(ledger.GiftReportRow); ok && r.Key != nil {
				out += " key=" + *r.Key
			}
		}
		return out
	}
	t.Errorf("%s:\nwant%s\ngot%s", what, show(want), show(got))
}

// TestGiftReport_GroupsByEachKeyLeavingOutReversedGifts checks each group
// against totals worked out by hand. g4 is in the period but reversed after
// it: left out. g5 and g6 are outside [T0, T0+24h).
func TestGiftReport_GroupsByEachKeyLeavingOutReversedGifts(t *testing.T) {
	s := openStore(t)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	seed(t, s, []seeded{
		{at: h(1), platform: "linkv", app: "a1", req: "g1", sender: "s1", receiver: "r1", room: "R1", giftID: "rose", count: 2, gold: 100, share: 4000},
		{at: h(2), platform: "linkv", app: "a1", req: "g2", sender: "s2", receiver: "r1", room: "R1", giftID: "rose", count: 1, gold: 50, share: 4000},
		{at: h(3), platform: "linkv", app: "a1", req: "g3", sender: "s1", receiver: "r2", room: "R2", giftID: "car", count: 1, gold: 300, share: 5000},
		{at: h(4), platform: "linkv", app: "a1", req: "g4", sender: "s3", receiver: "r2", room: "R1", giftID: "rose", count: 1, gold: 50, share: 4000, reversedAt: h(30)},
		{at: h(-1), platform: "linkv", app: "a1", req: "g5", sender: "s1", receiver: "r1", room: "R1", giftID: "rose", count: 1, gold: 50, share: 4000},
		{at: h(24), platform: "linkv", app: "a1", req: "g6", sender: "s1", receiver: "r1", room: "R1", giftID: "rose", count: 1, gold: 50, share: 4000},
		{at: h(5), platform: "polyv", app: "p1", req: "g7", sender: "s2", room: "2114561", giftID: "=cmd", count: 3, gold: 90},
		{at: h(6), platform: "polyv", app: "p1", req: "g8", sender: "s3", receiver: "r1", room: "R1", giftID: "rose", count: 1, gold: 10, share: 5000},
	})
	row := func(platform string, key *string, gifts, items, gold, earnings, house int64) ledger.GiftReportRow {
		return ledger.GiftReportRow{Platform: platform, Key: key, GiftTotals: ledger.GiftTotals{Gifts: gifts, Items: items, Gold: gold, Earnings: earnings, House: house}}
	}
	day := ledger.GiftFilter{From: t0, To: h(24)}
	for _, tc := range []struct {
		name          string
		group         ledger.ReportGroup
		f             ledger.GiftFilter
		limit, offset int
		want          []ledger.GiftReportRow
	}{
		{"receiver", ledger.ByReceiver, day, 100, 0, []ledger.GiftReportRow{
			row("", str("r2"), 1, 1, 300, 150, 150), row("", str("r1"), 3, 4, 160, 65, 95), row("", nil, 1, 3, 90, 0, 90)}},
		{"sender", ledger.BySender, day, 100, 0, []ledger.GiftReportRow{
			row("", str("s1"), 2, 3, 400, 190, 210), row("", str("s2"), 2, 4, 140, 20, 120), row("", str("s3"), 1, 1, 10, 5, 5)}},
		{"room", ledger.ByRoom, day, 100, 0, []ledger.GiftReportRow{
			row("linkv", str("R2"), 1, 1, 300, 150, 150), row("linkv", str("R1"), 2, 3, 150, 60, 90),
			row("polyv", str("2114561"), 1, 3, 90, 0, 90), row("polyv", str("R1"), 1, 1, 10, 5, 5)}},
		{"gift", ledger.ByGift, day, 100, 0, []ledger.GiftReportRow{
			row("linkv", str("car"), 1, 1, 300, 150, 150), row("linkv", str("rose"), 2, 3, 150, 60, 90),
			row("polyv", str("=cmd"), 1, 3, 90, 0, 90), row("polyv", str("rose"), 1, 1, 10, 5, 5)}},
		{"receiver, linkv only", ledger.ByReceiver, ledger.GiftFilter{From: t0, To: h(24), Platform: "linkv"}, 100, 0, []ledger.GiftReportRow{
			row("", str("r2"), 1, 1, 300, 150, 150), row("", str("r1"), 2, 3, 150, 60, 90)}},
		{"sender, app p1 only", ledger.BySender, ledger.GiftFilter{From: t0, To: h(24), AppID: "p1"}, 100, 0, []ledger.GiftReportRow{
			row("", str("s2"), 1, 3, 90, 0, 90), row("", str("s3"), 1, 1, 10, 5, 5)}},
		{"sender, first page", ledger.BySender, day, 2, 0, []ledger.GiftReportRow{
			row("", str("s1"), 2, 3, 400, 190, 210), row("", str("s2"), 2, 4, 140, 20, 120)}},
		{"sender, second page", ledger.BySender, day, 2, 2, []ledger.GiftReportRow{row("", str("s3"), 1, 1, 10, 5, 5)}},
		{"the hour of g5 and g6 only", ledger.BySender, ledger.GiftFilter{From: h(-1), To: h(0)}, 100, 0, []ledger.GiftReportRow{
			row("", str("s1"), 1, 1, 50, 20, 30)}},
		{"g4's hour: reversed, so nothing", ledger.BySender, ledger.GiftFilter{From: h(4), To: h(5)}, 100, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.GiftReport(context.Background(), tc.group, tc.f, tc.limit, tc.offset)
			if err != nil {
				t.Fatal(err)
			}
			same(t, "rows", tc.want, got)
		})
	}
}

func TestRoomLeaderboard_RanksByGoldOverTheWindow(t *testing.T) {
	s := openStore(t)
	now := time.Now()
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	g := func(at time.Time, req, sender, receiver, room string, gold int64) seeded {
		return seeded{at: at, platform: "linkv", app: "a", req: req, sender: sender, receiver: receiver, room: room, giftID: "x", count: 1, gold: gold, share: 4000}
	}
	reversed := g(ago(4*time.Hour), "g4", "s3", "r2", "L1", 500)
	reversed.reversedAt = ago(10 * time.Minute)
	otherPlatform := g(ago(time.Hour), "g9", "s5", "r1", "L1", 777)
	otherPlatform.platform = "polyv"
	seed(t, s, []seeded{
		g(ago(time.Hour), "g1", "s1", "r1", "L1", 100),
		g(ago(2*time.Hour), "g2", "s2", "r1", "L1", 150),
		g(ago(3*time.Hour), "g3", "s1", "r2", "L1", 100),
		reversed,
		g(ago(5*time.Hour), "g5", "s0", "r2", "L1", 150),
		g(ago(25*time.Hour), "g6", "s3", "r1", "L1", 1000),
		g(ago(time.Hour), "g7", "s4", "r1", "L2", 999),
		otherPlatform,
	})
	for _, tc := range []struct {
		name   string
		side   ledger.BoardSide
		window time.Duration
		limit  int
		want   []ledger.Leader
	}{
		{"senders, 24h: s0 and s2 tie, ranked by id", ledger.Senders, 24 * time.Hour, 20, []ledger.Leader{
			{Rank: 1, ID: "s1", Gifts: 2, Gold: 200, Earnings: 80}, {Rank: 2, ID: "s0", Gifts: 1, Gold: 150, Earnings: 60},
			{Rank: 3, ID: "s2", Gifts: 1, Gold: 150, Earnings: 60}}},
		{"receivers, 24h", ledger.Receivers, 24 * time.Hour, 20, []ledger.Leader{
			{Rank: 1, ID: "r1", Gifts: 2, Gold: 250, Earnings: 100}, {Rank: 2, ID: "r2", Gifts: 2, Gold: 250, Earnings: 100}}},
		{"senders, 2 days, top 2", ledger.Senders, 48 * time.Hour, 2, []ledger.Leader{
			{Rank: 1, ID: "s3", Gifts: 1, Gold: 1000, Earnings: 400}, {Rank: 2, ID: "s1", Gifts: 2, Gold: 200, Earnings: 80}}},
		{"receivers, 90 minutes", ledger.Receivers, 90 * time.Minute, 20, []ledger.Leader{
			{Rank: 1, ID: "r1", Gifts: 1, Gold: 100, Earnings: 40}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := s.RoomLeaderboard(context.Background(), "linkv", "L1", tc.side, tc.window, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			same(t, "leaders", tc.want, b.Leaders)
			if d := b.To.Sub(b.From); d != tc.window {
				t.Errorf("window %s to %s: want %s long", b.From, b.To, tc.window)
			}
		})
	}
	b, err := s.RoomLeaderboard(context.Background(), "linkv", "empty", ledger.Senders, time.Hour, 5)
	if err != nil || len(b.Leaders) != 0 {
		t.Errorf("an empty room: %+v, %v", b, err)
	}
}

// TestEarningsReports_SpendLedgerPeriodAndHeld runs real gifts, a payout and
// a reversal with a shortfall, then checks the sender's spend, the
// receiver's account, period and ledger against figures worked out by hand.
func TestEarningsReports_SpendLedgerPeriodAndHeld(t *testing.T) {
	s := openEconomy(t, ledger.Economy{Earnings: true, DefaultShareBP: 5000})
	ctx := context.Background()
	start := time.Now().Add(-time.Minute)
	topUp(t, s, "alice", 1000)
	topUp(t, s, "bob", 1000)
	for _, d := range []ledger.Debit{gift("g1", "alice", 100, "host", "x", 1), gift("g2", "bob", 60, "host", "x", 1),
		gift("g3", "alice", 40, "host", "x", 1)} {
		if res, err := s.Debit(ctx, d); err != nil || res.Status != ledger.Debited {
			t.Fatalf("%s: %+v, %v", d.Key.RequestID, res, err)
		}
	}
	if _, err := s.Payout(ctx, ledger.Payout{ReceiverID: "host", Amount: 70, Key: "p1"}); err != nil {
		t.Fatal(err)
	}
	// host has 30 left of g1's 50: 30 taken back, 20 owed.
	c, err := s.Reverse(ctx, ledger.Reversal{Debit: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: "g1"}, Key: "r1"})
	if err != nil || c.Gift == nil || c.Gift.Earnings != 30 || c.Gift.Shortfall != 20 {
		t.Fatalf("reversal: %+v, %v", c, err)
	}
	if res, err := s.Debit(ctx, gift("g4", "bob", 100, "host", "x", 1)); err != nil || res.Status != ledger.Debited {
		t.Fatalf("g4: %+v, %v", res, err)
	}

	for sender, want := range map[string]ledger.SenderSpend{
		"alice": {SenderID: "alice", Gifts: 1, Gold: 40}, // g1 reversed
		"bob":   {SenderID: "bob", Gifts: 2, Gold: 160},
		"zed":   {SenderID: "zed"},
	} {
		if got, err := s.SenderSpend(ctx, sender); err != nil || got != want {
			t.Errorf("spend of %s: %+v, %v; want %+v", sender, got, err, want)
		}
	}

	a := earningsOf(t, s, "host")
	if a.Balance != 50 || a.Owed != 20 || a.Payable != 30 || a.Held != 20 {
		t.Errorf("host's account %+v: want balance 50, owed 20, payable 30, held 20", a)
	}

	end := time.Now().Add(time.Minute)
	p, err := s.ReceiverPeriod(ctx, "host", start, end)
	want := ledger.ReceiverPeriod{ReceiverID: "host", From: start.UTC(), To: end.UTC(), Gifts: 4, Gold: 300, Earned: 150,
		TakenBack: 30, Shortfall: 20, Net: 100, PaidOut: 70}
	if err != nil || p != want {
		t.Errorf("period: %+v, %v\nwant %+v", p, err, want)
	}
	if p, err := s.ReceiverPeriod(ctx, "host", end, end.Add(time.Hour)); err != nil || p.Gifts != 0 || p.PaidOut != 0 {
		t.Errorf("a later period: %+v, %v; want nothing", p, err)
	}

	// Newest first, three a page: g4; r1's shortfall and takeback (one
	// transaction, by id); the payout; g3, g2; g1.
	type line struct {
		Kind, Account, RequestID string
		Amount                   int64
	}
	var got []line
	var before *ledger.EarningsCursor
	for page := 0; ; page++ {
		entries, err := s.EarningsLedger(ctx, "host", before, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			got = append(got, line{e.Kind, e.Account, e.RequestID, e.Amount})
		}
		if len(entries) < 3 || page > 5 {
			break
		}
		c, err := ledger.ParseEarningsCursor(entries[len(entries)-1].Cursor.String())
		if err != nil {
			t.Fatal(err)
		}
		before = &c
	}
	wantLines := []line{
		{"gift", "earnings", "g4", 50}, {"shortfall", "receivable", "", 20}, {"reversal", "earnings", "", -30},
		{"payout", "earnings", "", -70}, {"gift", "earnings", "g3", 20}, {"gift", "earnings", "g2", 30},
		{"gift", "earnings", "g1", 50},
	}
	same(t, "ledger", wantLines, got)
	if entries, err := s.EarningsLedger(ctx, "nobody", nil, 10); err != nil || len(entries) != 0 {
		t.Errorf("a receiver never credited: %v, %v", entries, err)
	}
	if _, err := ledger.ParseEarningsCursor("12-x-3"); err == nil {
		t.Error("a cursor from another table parsed")
	}
	auditOK(t, s)
}
