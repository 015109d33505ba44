package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/pgtest"
)

// openEconomy opens a store on a fresh database with the economy e.
func openEconomy(t *testing.T, e ledger.Economy) *ledger.Store {
	t.Helper()
	s, err := ledger.Open(context.Background(), pgtest.URL(t), append(pgtest.StoreOptions(), ledger.WithEconomy(e))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// gift is a debit of gold from sender for count items of giftID given to
// receiver ("" for none) in room.
func gift(id, sender string, gold int64, receiver, giftID string, count int64) ledger.Debit {
	d := debit(id, sender, gold)
	d.Gift = ledger.Gift{ReceiverID: receiver, RoomID: "room-1", GiftID: giftID, Count: count}
	return d
}

func addGift(t *testing.T, s *ledger.Store, platform, id string, price int64, share int) ledger.CatalogueGift {
	t.Helper()
	g, err := s.CreateGift(context.Background(), ledger.CatalogueGift{Platform: platform, GiftID: id, Name: "gift " + id,
		Price: price, ShareBP: share, Active: true})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// auditOK runs the store's audit and fails the test on any finding.
func auditOK(t *testing.T, s *ledger.Store) ledger.AuditReport {
	t.Helper()
	r, err := s.Audit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Errorf("audit: %+v", r)
	}
	return r
}

type settled struct {
	Receiver                     *string
	Gold, Earnings, House, Count int64
	Version                      *int
	Price                        *int64
	Share                        int
	EarningsAfter                *int64
}

func giftEntry(t *testing.T, s *ledger.Store, requestID string) (settled, bool) {
	t.Helper()
	var g settled
	err := s.Pool().QueryRow(context.Background(), `
		SELECT receiver_id, gold, earnings, house, count, gift_version, price, share_bp
		FROM gift_entries WHERE request_id = $1`, requestID).
		Scan(&g.Receiver, &g.Gold, &g.Earnings, &g.House, &g.Count, &g.Version, &g.Price, &g.Share)
	if err != nil {
		return settled{}, false
	}
	return g, true
}

func earningsOf(t *testing.T, s *ledger.Store, receiver string) ledger.EarningsAccount {
	t.Helper()
	a, err := s.Earnings(context.Background(), receiver)
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		t.Fatal(err)
	}
	return a
}

func TestEconomy_GiftSplitsFloorToReceiverRestToHouse(t *testing.T) {
	s := openEconomy(t, ledger.Economy{Earnings: true, DefaultShareBP: 5000})
	ctx := context.Background()
	topUp(t, s, "alice", 1000)
	addGift(t, s, "linkv", "rose", 101, 3333)
	res, err := s.Debit(ctx, gift("g1", "alice", 101, "host", "rose", 1))
	if err != nil || res.Status != ledger.Debited || res.Balance != 899 {
		t.Fatalf("debit: %+v, %v", res, err)
	}
	// Not in the catalogue: the default share.
	if _, err := s.Debit(ctx, gift("g2", "alice", 9, "host", "unlisted", 3)); err != nil {
		t.Fatal(err)
	}
	g1, _ := giftEntry(t, s, "g1")
	if g1.Earnings != 33 || g1.House != 68 || *g1.Receiver != "host" || *g1.Version != 1 || *g1.Price != 101 || g1.Share != 3333 {
		t.Errorf("g1 settled as %+v, want floor(101 × 3333 / 10000) = 33 to host, 68 to the house, version 1", g1)
	}
	g2, _ := giftEntry(t, s, "g2")
	if g2.Earnings != 4 || g2.House != 5 || g2.Version != nil || g2.Share != 5000 || g2.Count != 3 {
		t.Errorf("g2 settled as %+v, want 4 to host (default share), 5 to the house", g2)
	}
	if a := earningsOf(t, s, "host"); a.Balance != 37 || a.Payable != 37 {
		t.Errorf("host's earnings %+v, want 37", a)
	}
	r := auditOK(t, s)
	if r.Gifts != 2 || r.TotalEarnings != 37 || r.House != 73 || r.TotalGold != 890 || r.Unsettled != 0 {
		t.Errorf("audit %+v: want 2 gifts, 37 earnings, 73 house, 890 gold", r)
	}
	checkBooks(t, s)
}

func TestEconomy_ManyConcurrentGiftsToOneReceiver(t *testing.T) {
	s := openEconomy(t, ledger.Economy{Earnings: true, DefaultShareBP: 4000})
	const n = 200
	for i := range n {
		topUp(t, s, fmt.Sprint("s", i), 10)
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.Debit(context.Background(), gift(fmt.Sprint("g", i), fmt.Sprint("s", i), 7, "star", "1", 1))
			if err != nil || res.Status != ledger.Debited {
				t.Errorf("gift %d: %+v, %v", i, res, err)
			}
		}()
	}
	wg.Wait()
	// floor(7 × 0.4) = 2 each.
	if a := earningsOf(t, s, "star"); a.Balance != 2*n {
		t.Errorf("star earned %d, want %d", a.Balance, 2*n)
	}
	r := auditOK(t, s)
	if r.Gifts != n || r.House != 5*n {
		t.Errorf("audit %+v: want %d gifts and %d to the house", r, n, 5*n)
	}
}

func TestEconomy_CopiesOfOneGiftSettleOnce(t *testing.T) {
	s := openEconomy(t, ledger.Economy{Earnings: true, DefaultShareBP: 5000})
	topUp(t, s, "alice", 1000)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Debit(context.Background(), gift("same", "alice", 10, "host", "1", 1)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// A batch with copies and a replay of an executed key.
	ledger.RunBatch(s, []ledger.Debit{gift("same", "alice", 10, "host", "1", 1), gift("same", "alice", 10, "host", "1", 1)})
	var gifts, entries int
	if err := s.Pool().QueryRow(context.Background(), `
		SELECT (SELECT count(*) FROM gift_entries), (SELECT count(*) FROM ledger_entries WHERE kind = 'debit')`).Scan(&gifts, &entries); err != nil {
		t.Fatal(err)
	}
	if gifts != 1 || entries != 1 {
		t.Errorf("%d settlements and %d debit entries, want one set", gifts, entries)
	}
	if a := earningsOf(t, s, "host"); a.Balance != 5 {
		t.Errorf("host earned %d, want 5", a.Balance)
	}
	auditOK(t, s)
}

func TestEconomy_BatchSettlesEachGiftInArrivalOrder(t *testing.T) {
	s := openEconomy(t, ledger.Economy{Earnings: true, DefaultShareBP: 5000})
	topUp(t, s, "a", 100)
	topUp(t, s, "b", 100)
	res, errs := ledger.RunBatch(s, []ledger.Debit{
		gift("1", "a", 10, "h1", "x", 1), gift("2", "b", 20, "h2", "x", 1), gift("3", "a", 200, "h1", "x", 1),
		gift("4", "a", 30, "h1", "x", 1), gift("5", "b", 2, "", "x", 1),
	})
	for i, e := range errs {
		if e != nil {
			t.Fatalf("debit %d: %v", i, e)
		}
	}
	if res[2].Status != ledger.Insufficient {
		t.Errorf("debit 3: %+v, want insufficient", res[2])
	}
	want := map[string]int64{"1": 5, "2": 10, "4": 15}
	for id, earned := range want {
		if g, _ := giftEntry(t, s, id); g.Earnings != earned {
			t.Errorf("gift %s: earnings %d, want %d", id, g.Earnings, earned)
		}
	}
	if a := earningsOf(t, s, "h1"); a.Balance != 20 {
		t.Errorf("h1 earned %d, want 20", a.Balance)
	}
	if _, ok := giftEntry(t, s, "3"); ok {
		t.Error("the refused gift 3 was settled")
	}
	if g, _ := giftEntry(t, s, "5"); g.Receiver != nil || g.House != 2 {
		t.Errorf("gift 5 without receiver: %+v, want all to the house", g)
	}
	r := auditOK(t, s)
	if r.Unassigned != 1 || r.House != 5+10+15+2 {
		t.Errorf("audit %+v", r)
	}
}

func TestEconomy_PriceCheckRefusesWhatTheCatalogueDoesNotSell(t *testing.T) {
	s := openEconomy(t, ledger.Economy{Earnings: true, PriceCheck: true, DefaultShareBP: 5000})
	ctx := context.Background()
	topUp(t, s, "alice", 1000)
	addGift(t, s, "linkv", "rose", 10, 5000)
	addGift(t, s, "linkv", "old", 10, 5000)
	off := false
	if _, err := s.UpdateGift(ctx, "linkv", "old", ledger.GiftChange{Active: &off}); err != nil {
		t.Fatal(err)
	}
	polyvGift := gift("p1", "alice", 30, "", "rose", 3)
	polyvGift.Key.Platform, polyvGift.Gift.UnitPrice = "polyv", 10
	for _, tc := range []struct {
		d       ledger.Debit
		refusal string
		price   int64
	}{
		{gift("unknown", "alice", 10, "h", "tulip", 1), ledger.RefusedUnknownGift, 0},
		{gift("inactive", "alice", 10, "h", "old", 1), ledger.RefusedInactiveGift, 10},
		{gift("cheap", "alice", 49, "h", "rose", 5), ledger.RefusedPrice, 10},
		{polyvGift, ledger.RefusedUnknownGift, 0}, // rose is LinkV's, not Polyv's
	} {
		res, err := s.Debit(ctx, tc.d)
		if err != nil || res.Status != ledger.Refused || res.Refusal != tc.refusal || res.Price != tc.price {
			t.Errorf("%s: %+v, %v; want refused %s at price %d", tc.d.Key.RequestID, res, err, tc.refusal, tc.price)
		}
	}
	res, err := s.Debit(ctx, gift("ok", "alice", 50, "h", "rose", 5))
	if err != nil || res.Status != ledger.Debited || res.Balance != 950 {
		t.Errorf("the right price: %+v, %v", res, err)
	}
	// Refusals are not recorded: once Polyv's catalogue sells rose at 10
	// (and the claimed unit price must match), the same donation goes through.
	addGift(t, s, "polyv", "rose", 10, 5000)
	wrongUnit := polyvGift
	wrongUnit.Key.RequestID, wrongUnit.Gift.UnitPrice = "p2", 11
	if res, err := s.Debit(ctx, wrongUnit); err != nil || res.Refusal != ledger.RefusedPrice {
		t.Errorf("claimed unit price 11: %+v, %v; want refused", res, err)
	}
	if res, err := s.Debit(ctx, polyvGift); err != nil || res.Status != ledger.Debited || res.Replay {
		t.Errorf("the donation after the catalogue was fixed: %+v, %v", res, err)
	}
	var records int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM debit_requests`).Scan(&records); err != nil {
		t.Fatal(err)
	}
	if records != 2 {
		t.Errorf("%d request records, want 2 (refusals leave none)", records)
	}
	auditOK(t, s)
}

func TestCatalogue_EveryChangeKeptAndPastGiftsKeepWhatTheyWereCharged(t *testing.T) {
	s := openEconomy(t, ledger.Economy{Earnings: true})
	ctx := context.Background()
	topUp(t, s, "alice", 1000)
	addGift(t, s, "linkv", "rose", 10, 5000)
	if _, err := s.CreateGift(ctx, ledger.CatalogueGift{Platform: "linkv", GiftID: "rose", Name: "x", Price: 1, ShareBP: 1}); !errors.Is(err, ledger.ErrGiftExists) {
		t.Errorf("a second rose: %v, want ErrGiftExists", err)
	}
	if _, err := s.Debit(ctx, gift("before", "alice", 10, "h", "rose", 1)); err != nil {
		t.Fatal(err)
	}
	price, share := int64(20), 2500
	g, err := s.UpdateGift(ctx, "linkv", "rose", ledger.GiftChange{Price: &price, ShareBP: &share})
	if err != nil || g.Version != 2 || g.Price != 20 || g.ShareBP != 2500 || g.Name != "gift rose" {
		t.Fatalf("update: %+v, %v", g, err)
	}
	if same, err := s.UpdateGift(ctx, "linkv", "rose", ledger.GiftChange{Price: &price}); err != nil || same.Version != 2 {
		t.Errorf("an update that changes nothing: %+v, %v; want version 2 kept", same, err)
	}
	if _, err := s.UpdateGift(ctx, "linkv", "nope", ledger.GiftChange{Price: &price}); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("update of an unknown gift: %v", err)
	}
	if _, err := s.Debit(ctx, gift("after", "alice", 20, "h", "rose", 1)); err != nil {
		t.Fatal(err)
	}
	before, _ := giftEntry(t, s, "before")
	after, _ := giftEntry(t, s, "after")
	if *before.Version != 1 || *before.Price != 10 || before.Share != 5000 || before.Earnings != 5 {
		t.Errorf("the gift before the change: %+v", before)
	}
	if *after.Version != 2 || *after.Price != 20 || after.Share != 2500 || after.Earnings != 5 {
		t.Errorf("the gift after the change: %+v", after)
	}
	hist, err := s.GiftHistory(ctx, "linkv", "rose")
	if err != nil || len(hist) != 2 || hist[0].Version != 2 || hist[1].Price != 10 {
		t.Errorf("history %+v, %v", hist, err)
	}
	for _, q := range []string{`DELETE FROM gift_catalogue`, `UPDATE gift_catalogue_history SET price = 1`, `UPDATE gift_entries SET earnings = 0`,
		`DELETE FROM gift_catalogue_history`, `DELETE FROM gift_entries`, `TRUNCATE gift_entries CASCADE`} {
		if _, err := s.Pool().Exec(ctx, q); err == nil {
			t.Errorf("%s: succeeded, want refused", q)
		}
	}
	list, err := s.Gifts(ctx, "linkv")
	if err != nil || len(list) != 1 || list[0].Version != 2 {
		t.Errorf("list %+v, %v", list, err)
	}
}

func TestEconomy_PolyvChannelMappedToItsReceiverElseHouse(t *testing.T) {
	s := openEconomy(t, ledger.Economy{Earnings: true, DefaultShareBP: 5000})
	ctx := context.Background()
	topUp(t, s, "v", 1000)
	donation := func(id string) ledger.Debit {
		d := gift(id, "v", 10, "", "flower", 1)
		d.Key.Platform = "polyv"
		return d
	}
	if _, err := s.Debit(ctx, donation("before")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRoomReceiver(ctx, "polyv", "room-1", "anchor"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Debit(ctx, donation("mapped")); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveRoomReceiver(ctx, "polyv", "room-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveRoomReceiver(ctx, "polyv", "room-1"); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("removing it twice: %v", err)
	}
	if _, err := s.Debit(ctx, donation("after")); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"before": "", "mapped": "anchor", "after": ""} {
		g, _ := giftEntry(t, s, id)
		got := ""
		if g.Receiver != nil {
			got = *g.Receiver
		}
		if got != want {
			t.Errorf("%s: receiver %q, want %q", id, got, want)
		}
	}
	if r := auditOK(t, s); r.Unassigned != 2 || r.TotalEarnings != 5 {
		t.Errorf("audit %+v: want 2 unassigned donations, 5 earned", r)
	}
}

func TestEconomy_EarningsOffDebitsOnly(t *testing.T) {
	s := openEconomy(t, ledger.Economy{Earnings: false, DefaultShareBP: 5000})
	topUp(t, s, "alice", 100)
	if res, err := s.Debit(context.Background(), gift("g", "alice", 10, "host", "1", 1)); err != nil || res.Balance != 90 {
		t.Fatalf("%+v, %v", res, err)
	}
	if _, ok := giftEntry(t, s, "g"); ok {
		t.Error("settled with earnings off")
	}
	if r := auditOK(t, s); r.Unsettled != 1 || r.Gifts != 0 {
		t.Errorf("audit %+v: want 1 unsettled debit", r)
	}
	// Its reversal gives the gold back and nothing else.
	c, err := s.Reverse(context.Background(), ledger.Reversal{Debit: debit("g", "", 0).Key, Key: "r"})
	if err != nil || c.Gift != nil || c.Balance != 100 {
		t.Errorf("reversal: %+v, %v", c, err)
	}
}

func TestReverse_TakesBackAllThreeSidesAndRecordsAShortfall(t *testing.T) {
	s := openEconomy(t, ledger.Economy{Earnings: true, DefaultShareBP: 6000})
	ctx := context.Background()
	topUp(t, s, "alice", 1000)
	for _, id := range []string{"g1", "g2"} {
		if _, err := s.Debit(ctx, gift(id, "alice", 100, "host", "1", 1)); err != nil {
			t.Fatal(err)
		}
	}
	// host has 120; 100 is paid out, then both gifts are reversed: the
	// first takes back 20 and leaves a shortfall of 40.
	if _, err := s.Payout(ctx, ledger.Payout{ReceiverID: "host", Amount: 100, Key: "pay-1"}); err != nil {
		t.Fatal(err)
	}
	c1, err := s.Reverse(ctx, ledger.Reversal{Debit: debit("g1", "", 0).Key, Key: "rev-1"})
	want := ledger.GiftReversal{ReceiverID: "host", Earnings: 20, Shortfall: 40, House: 40}
	if err != nil || c1.Amount != 100 || c1.Balance != 900 || c1.Gift == nil || *c1.Gift != want {
		t.Fatalf("reversal 1: %+v (%+v), %v; want %+v", c1, c1.Gift, err, want)
	}
	again, err := s.Reverse(ctx, ledger.Reversal{Debit: debit("g1", "", 0).Key, Key: "rev-1"})
	if err != nil || !again.Replay || again.Gift == nil || *again.Gift != want {
		t.Errorf("replay: %+v, %v", again, err)
	}
	if _, err := s.Reverse(ctx, ledger.Reversal{Debit: debit("g1", "", 0).Key, Key: "rev-other"}); !errors.Is(err, ledger.ErrAlreadyReversed) {
		t.Errorf("second key: %v", err)
	}
	c2, err := s.Reverse(ctx, ledger.Reversal{Debit: debit("g2", "", 0).Key, Key: "rev-2"})
	want2 := ledger.GiftReversal{ReceiverID: "host", Shortfall: 60, House: 40}
	if err != nil || c2.Gift == nil || *c2.Gift != want2 {
		t.Errorf("reversal 2: %+v, %v; want %+v", c2.Gift, err, want2)
	}
	a := earningsOf(t, s, "host")
	if a.Balance != 0 || a.Owed != 100 || a.Payable != 0 {
		t.Errorf("host %+v, want balance 0, owing 100", a)
	}
	r := auditOK(t, s)
	if r.TotalGold != 1000 || r.House != 0 || r.TotalOwed != 100 {
		t.Errorf("audit %+v: want all 1000 gold back, the house at 0, 100 owed", r)
	}
	// New earnings are payable only past what host owes; a payout recovers it first.
	if _, err := s.Debit(ctx, gift("g3", "alice", 300, "host", "1", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Payout(ctx, ledger.Payout{ReceiverID: "host", Amount: 81, Key: "pay-2"}); !errors.Is(err, ledger.ErrInsufficientEarnings) {
		t.Errorf("payout past payable: %v", err)
	}
	p, err := s.Payout(ctx, ledger.Payout{ReceiverID: "host", Amount: 80, Key: "pay-2"})
	if err != nil || p.Recovered != 100 || p.Balance != 0 {
		t.Errorf("payout: %+v, %v; want 100 recovered, 0 left", p, err)
	}
	if a := earningsOf(t, s, "host"); a.Balance != 0 || a.Owed != 0 {
		t.Errorf("host %+v after the recovery", a)
	}
	auditOK(t, s)
}

func TestPayout_LimitsAndIdempotency(t *testing.T) {
	s := openEconomy(t, ledger.Economy{Earnings: true, DefaultShareBP: 10000})
	ctx := context.Background()
	topUp(t, s, "alice", 100)
	if _, err := s.Debit(ctx, gift("g", "alice", 50, "host", "1", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Payout(ctx, ledger.Payout{ReceiverID: "nobody", Amount: 1, Key: "k0"}); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("unknown receiver: %v", err)
	}
	if _, err := s.Payout(ctx, ledger.Payout{ReceiverID: "host", Amount: 51, Key: "k1"}); !errors.Is(err, ledger.ErrInsufficientEarnings) {
		t.Errorf("over the limit: %v", err)
	}
	// Copies of one payout, concurrently: one pays, the others replay.
	var wg sync.WaitGroup
	var paid sync.Map
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := s.Payout(ctx, ledger.Payout{ReceiverID: "host", Amount: 30, Key: "k2"})
			if err != nil {
				t.Error(err)
				return
			}
			paid.Store(i, p)
		}()
	}
	wg.Wait()
	fresh := 0
	paid.Range(func(_, v any) bool {
		if p := v.(ledger.PayoutResult); !p.Replay {
			fresh++
		} else if p.Balance != 20 || p.Amount != 30 {
			t.Errorf("replay %+v", p)
		}
		return true
	})
	if fresh != 1 {
		t.Errorf("%d payouts executed, want 1", fresh)
	}
	if _, err := s.Payout(ctx, ledger.Payout{ReceiverID: "host", Amount: 20, Key: "k2"}); !errors.Is(err, ledger.ErrKeyReused) {
		t.Errorf("the key with another amount: %v", err)
	}
	if a := earningsOf(t, s, "host"); a.Balance != 20 {
		t.Errorf("host has %d, want 20", a.Balance)
	}
	auditOK(t, s)
}

func TestEarningsPeriod_PayableAtTheEnd(t *testing.T) {
	s := openEconomy(t, ledger.Economy{Earnings: true, DefaultShareBP: 5000})
	ctx := context.Background()
	topUp(t, s, "alice", 1000)
	for i, r := range []string{"h1", "h1", "h2"} {
		if _, err := s.Debit(ctx, gift(fmt.Sprint("g", i), "alice", 100, r, "1", 1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Payout(ctx, ledger.Payout{ReceiverID: "h1", Amount: 30, Key: "p"}); err != nil {
		t.Fatal(err)
	}
	rows, err := s.EarningsPeriod(ctx, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	want := []ledger.EarningsRow{
		{ReceiverID: "h1", Gifts: 2, Earned: 100, PaidOut: 30, Balance: 70, Payable: 70},
		{ReceiverID: "h2", Gifts: 1, Earned: 50, Balance: 50, Payable: 50},
	}
	if err != nil || len(rows) != 2 || rows[0] != want[0] || rows[1] != want[1] {
		t.Errorf("rows %+v, %v; want %+v", rows, err, want)
	}
	if rows, err := s.EarningsPeriod(ctx, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)); err != nil || len(rows) != 0 {
		t.Errorf("an earlier period: %+v, %v", rows, err)
	}
}

func TestAudit_FindsEarningsAndHouseChangedBehindTheirEntries(t *testing.T) {
	s := openEconomy(t, ledger.Economy{Earnings: true, DefaultShareBP: 5000})
	ctx := context.Background()
	topUp(t, s, "alice", 100)
	if _, err := s.Debit(ctx, gift("g", "alice", 10, "host", "1", 1)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE earnings_accounts SET balance = balance + 1`,
		`UPDATE house_slots SET balance = balance + 2 WHERE slot = 3`,
		// A gift whose debit entry does not match it.
		`ALTER TABLE gift_entries DISABLE TRIGGER gift_entries_append_only`,
		`ALTER TABLE gift_entries DROP CONSTRAINT gift_entries_check`,
		`UPDATE gift_entries SET gold = 11, house = 6`,
		// A gift without a debit entry.
		`INSERT INTO gift_entries (debit_entry, platform, app_id, request_id, sender_id, room_id, gift_id, count, gold,
			share_bp, earnings, house, house_slot) VALUES (999999, 'linkv', 'app', 'ghost', 'alice', 'r', '1', 1, 0, 0, 0, 0, 0)`,
	} {
		if _, err := s.Pool().Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	r, err := s.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The house slot of the gift is now off by 1 as well.
	if r.OK() || r.Unbalanced != 2 || r.Mismatched < 2 {
		t.Errorf("report %+v, want earnings and house mismatched and two unbalanced gifts", r)
	}
	accounts := map[string]bool{}
	for _, f := range r.Findings {
		accounts[f.Account] = true
	}
	if !accounts["earnings"] || !accounts["house"] || !accounts["gift"] {
		t.Errorf("findings %+v", r.Findings)
	}
}
