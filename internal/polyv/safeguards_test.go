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

// TestDonate_PolicyRefusalIs403NeverInsufficientPoints: a minor's donation
// is refused 403 (400 would read "insufficient points" to Polyv), named,
// counted as policy_refused, and its copy replays the same answer.
func TestDonate_PolicyRefusalIs403NeverInsufficientPoints(t *testing.T) {
	store, err := ledger.Open(context.Background(), pgtest.URL(t), append(pgtest.StoreOptions(),
		ledger.WithSafeguards(ledger.Safeguards{On: true, MaxDebit: 300}))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cfg := polyv.Config{Apps: map[string][]string{testApp: {testSecret}}, MaxSkew: 5 * time.Minute,
		DBTimeout: 10 * time.Second, Now: func() time.Time { return testNow }}
	scale(100)(&cfg)
	reg := prometheus.NewRegistry()
	calls := callback.NewRecorder(reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f := &fixture{store: store, reg: reg, calls: calls, handlers: polyv.NewHandlers(store, cfg, calls)}
	f.topUp(t, "viewer-1", 10000)
	r := f.donate(t, donation("s1", "viewer-1", "5.00"))
	if want := "refused by policy max_debit: more than the limit of 3.00 points per gift"; r.code != 403 || r.body.Message != want {
		t.Fatalf("over max_debit: %d %s, want 403 %q", r.code, r.raw, want)
	}
	if again := f.donate(t, donation("s1", "viewer-1", "5.00")); again.code != 403 || again.raw != r.raw {
		t.Errorf("the copy: %d %s, want %s", again.code, again.raw, r.raw)
	}
	if _, err := store.PutPolicy(context.Background(), ledger.PolicyKey{Scope: ledger.ScopeUser, Subject: "viewer-1"},
		ledger.Policy{Minor: new(bool)}, "t"); err != nil {
		t.Fatal(err)
	}
	minor := true
	if _, err := store.PutPolicy(context.Background(), ledger.PolicyKey{Scope: ledger.ScopeUser, Subject: "viewer-1"},
		ledger.Policy{Minor: &minor}, "t"); err != nil {
		t.Fatal(err)
	}
	if r := f.donate(t, donation("s2", "viewer-1", "1.00")); r.code != 403 || r.body.Message != "refused by policy minor: minors may not send gifts" {
		t.Errorf("a minor: %d %s", r.code, r.raw)
	}
	if f.outcome(callback.PolicyRefused) != 2 || f.outcome(callback.Replay) != 1 || f.debitEntries(t) != 0 || f.balance(t, "viewer-1") != 10000 {
		t.Errorf("policy_refused %v, replay %v, %d debits", f.outcome(callback.PolicyRefused), f.outcome(callback.Replay), f.debitEntries(t))
	}
}
