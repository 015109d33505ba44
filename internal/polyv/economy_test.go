package polyv_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/callback"
	"giftd/internal/ledger"
	"giftd/internal/pgtest"
	"giftd/internal/polyv"
)

func newEconomyFixture(t *testing.T, e ledger.Economy, mutate ...func(*polyv.Config)) *fixture {
	t.Helper()
	store, err := ledger.Open(context.Background(), pgtest.URL(t), append(pgtest.StoreOptions(), ledger.WithEconomy(e))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cfg := polyv.Config{Apps: map[string][]string{testApp: {testSecret}}, MaxSkew: 5 * time.Minute,
		DBTimeout: 10 * time.Second, Now: func() time.Time { return testNow }}
	for _, m := range mutate {
		m(&cfg)
	}
	reg := prometheus.NewRegistry()
	calls := callback.NewRecorder(reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return &fixture{store: store, reg: reg, calls: calls, handlers: polyv.NewHandlers(store, cfg, calls)}
}

// TestDonate_PriceCheckRefuses422AgainstTheCatalogue holds docs/economy.md's
// price check for Polyv: goodName must be an active catalogue gift and
// goodPrice its price (count = goodPrice × goodNum is checked before).
func TestDonate_PriceCheckRefuses422AgainstTheCatalogue(t *testing.T) {
	f := newEconomyFixture(t, ledger.Economy{Earnings: true, PriceCheck: true}, scale(100))
	ctx := context.Background()
	f.topUp(t, "viewer-1", 10000)
	unknown := f.donate(t, donation("s1", "viewer-1", "5.00"))
	if unknown.code != 422 || unknown.body.Message != `goodName: "鲜花" is not in the catalogue` {
		t.Errorf("unknown gift: %d %s", unknown.code, unknown.raw)
	}
	// 鲜花 costs 4.50 points (450 coins at scale 100).
	if _, err := f.store.CreateGift(ctx, ledger.CatalogueGift{Platform: "polyv", GiftID: "鲜花", Name: "Flowers", Price: 450, ShareBP: 5000, Active: true}); err != nil {
		t.Fatal(err)
	}
	wrong := f.donate(t, donation("s2", "viewer-1", "5.00"))
	if wrong.code != 422 || wrong.body.Message != `goodPrice: want 4.50 (the catalogue's price of "鲜花"), got 5.00` {
		t.Errorf("wrong price: %d %s", wrong.code, wrong.raw)
	}
	if f.outcome(callback.PriceRefused) != 2 || f.debitEntries(t) != 0 {
		t.Errorf("price_refused %v, %d debits", f.outcome(callback.PriceRefused), f.debitEntries(t))
	}
	two := donation("s3", "viewer-1", "9.00")
	two["goodPrice"], two["goodNum"] = "4.50", "2"
	if r := f.donate(t, two); r.code != 200 || string(r.body.Data) != "91.00" {
		t.Errorf("the right price: %d %s", r.code, r.raw)
	}
	// No channel mapped: all to the house, reported as unassigned.
	rep, err := f.store.Audit(ctx)
	if err != nil || !rep.OK() || rep.Unassigned != 1 || rep.House != 900 || rep.TotalEarnings != 0 {
		t.Errorf("audit %+v, %v", rep, err)
	}
	// Mapped: the channel's receiver earns its share.
	if _, err := f.store.SetRoomReceiver(ctx, polyv.Platform, "2114561", "anchor"); err != nil {
		t.Fatal(err)
	}
	two["sessionId"] = "s4"
	if r := f.donate(t, two); r.code != 200 {
		t.Fatalf("%d %s", r.code, r.raw)
	}
	if a, err := f.store.Earnings(ctx, "anchor"); err != nil || a.Balance != 450 {
		t.Errorf("anchor's earnings %+v, %v; want 450", a, err)
	}
}
