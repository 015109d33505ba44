package linkv_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/callback"
	"giftd/internal/ledger"
	"giftd/internal/linkv"
	"giftd/internal/pgtest"
)

// newEconomyFixture is newFixture on a store with the economy e.
func newEconomyFixture(t *testing.T, e ledger.Economy) *fixture {
	t.Helper()
	store, err := ledger.Open(context.Background(), pgtest.URL(t), append(pgtest.StoreOptions(), ledger.WithEconomy(e))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cfg := linkv.Config{Apps: map[string][]string{"LM6000167049877161121920": {testSecret}},
		MaxExpiry: 2400 * time.Hour, DBTimeout: 10 * time.Second, Now: func() time.Time { return docNow }}
	reg := prometheus.NewRegistry()
	m := linkv.NewMetrics(reg)
	logs := &lockedBuffer{}
	return &fixture{store: store, metrics: m, reg: reg, logs: logs,
		handler: linkv.NewHandler(store, cfg, m, callback.NewRecorder(reg, slog.New(slog.NewTextHandler(logs, nil))))}
}

// TestDebit_PriceCheckRefuses400NamingWhatWasExpected holds docs/economy.md's
// price check: gold must be the catalogue price × send_num of the signed
// reason, for an active catalogue gift; refusals debit and record nothing.
func TestDebit_PriceCheckRefuses400NamingWhatWasExpected(t *testing.T) {
	f := newEconomyFixture(t, ledger.Economy{Earnings: true, PriceCheck: true, DefaultShareBP: 5000})
	ctx := context.Background()
	f.topUp(t, "19718472", 1000)
	if _, err := f.store.CreateGift(ctx, ledger.CatalogueGift{Platform: "linkv", GiftID: "10620", Name: "Rose", Price: 5, ShareBP: 4000, Active: true}); err != nil {
		t.Fatal(err)
	}
	withReason := func(id string, gold int64, reason string) map[string]string {
		fl := fields(id, "19718472", gold)
		fl["reason"] = reason
		return fl
	}
	for _, tc := range []struct {
		name string
		f    map[string]string
		msg  string
	}{
		{"wrong gold", withReason("p1", 14, `{"gift_id":"10620","send_num":3,"resource_id":"room","vtype":"1","receiver_id":"host"}`),
			`gold: want 15 (gift "10620" at 5 × send_num 3), got 14`},
		{"unknown gift", withReason("p2", 5, `{"gift_id":"999","send_num":1,"resource_id":"room","vtype":"1","receiver_id":"host"}`),
			`gift_id: "999" is not in the catalogue`},
	} {
		r := f.debit(t, tc.f)
		if r.code != 400 || r.body.Msg != tc.msg {
			t.Errorf("%s: %d %s; want 400 %q", tc.name, r.code, r.raw, tc.msg)
		}
	}
	off := false
	if _, err := f.store.UpdateGift(ctx, "linkv", "10620", ledger.GiftChange{Active: &off}); err != nil {
		t.Fatal(err)
	}
	inactive := withReason("p3", 5, `{"gift_id":"10620","send_num":1,"resource_id":"room","vtype":"1","receiver_id":"host"}`)
	if r := f.debit(t, inactive); r.code != 400 || !strings.Contains(r.body.Msg, "inactive") {
		t.Errorf("inactive gift: %d %s", r.code, r.raw)
	}
	if got := f.outcome(callback.PriceRefused); got != 3 {
		t.Errorf("outcome price_refused = %v, want 3", got)
	}
	if f.balance(t, "19718472") != 1000 || f.debitEntries(t) != 0 {
		t.Error("a refused gift debited")
	}
	// Refusals are not recorded: the same request, once the gift is on sale
	// again, is debited, and its receiver earns its share.
	on := true
	if _, err := f.store.UpdateGift(ctx, "linkv", "10620", ledger.GiftChange{Active: &on}); err != nil {
		t.Fatal(err)
	}
	if r := f.debit(t, inactive); r.code != 200 || *r.body.Gold != 995 {
		t.Errorf("after reactivation: %d %s", r.code, r.raw)
	}
	if a, err := f.store.Earnings(ctx, "host"); err != nil || a.Balance != 2 {
		t.Errorf("host's earnings %+v, %v; want floor(5 × 0.4) = 2", a, err)
	}
}

// TestDebit_ReceiverOnlyFromTheSignedReason: under an eight-field sign a
// top-level receiver_id is not signed; the credit goes to reason's.
func TestDebit_ReceiverOnlyFromTheSignedReason(t *testing.T) {
	f := newEconomyFixture(t, ledger.Economy{Earnings: true, DefaultShareBP: 10000})
	f.topUp(t, "19718472", 100)
	fl := docFields()
	fl["sign"] = linkv.Sign(fl, testSecret) // the eight fields
	fl["receiver_id"] = "1431136630483329025"
	body := encode(fl)
	if r := f.post(t, "application/x-www-form-urlencoded", body); r.code != 200 {
		t.Fatalf("%d %s", r.code, r.raw)
	}
	if a, err := f.store.Earnings(context.Background(), "1431136630483329025"); err != nil || a.Balance != 5 {
		t.Errorf("reason's receiver: %+v, %v", a, err)
	}
}
