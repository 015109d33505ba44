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

// TestDebit_PolicyRefusalIs403FinalRecordedAndReplayed: a safeguard's refusal
// is 403 (final for LinkV, which retries only 500), names the limit and its
// reset, debits nothing, is counted as policy_refused, and its retry replays
// it byte for byte even after the cap would let it through.
func TestDebit_PolicyRefusalIs403FinalRecordedAndReplayed(t *testing.T) {
	at := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	store, err := ledger.Open(context.Background(), pgtest.URL(t), append(pgtest.StoreOptions(),
		ledger.WithSafeguards(ledger.Safeguards{On: true, Cap24h: 100}), ledger.WithClock(func() time.Time { return at }))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cfg := linkv.Config{Apps: map[string][]string{"LM6000167049877161121920": {testSecret}},
		MaxExpiry: 2400 * time.Hour, DBTimeout: 10 * time.Second, Now: func() time.Time { return docNow }}
	reg := prometheus.NewRegistry()
	m := linkv.NewMetrics(reg)
	f := &fixture{store: store, metrics: m, reg: reg, logs: &lockedBuffer{},
		handler: linkv.NewHandler(store, cfg, m, callback.NewRecorder(reg, slog.New(slog.NewTextHandler(&lockedBuffer{}, nil))))}
	f.topUp(t, "19718472", 1000)
	if r := f.debit(t, fields("c1", "19718472", 100)); r.code != 200 {
		t.Fatalf("within the cap: %d %s", r.code, r.raw)
	}
	r := f.debit(t, fields("c2", "19718472", 1))
	want := "refused by policy cap_24h: over the limit of 100 gold per 24 hours; resets at 2026-03-02T11:00:00Z"
	if r.code != 403 || r.body.Status != 403 || r.body.Msg != want {
		t.Fatalf("over the cap: %d %s; want 403 %q", r.code, r.raw, want)
	}
	at = at.Add(48 * time.Hour)
	if again := f.debit(t, fields("c2", "19718472", 1)); again.code != 403 || again.raw != r.raw {
		t.Errorf("the retry: %d %s, want %s", again.code, again.raw, r.raw)
	}
	if got := f.outcome(callback.PolicyRefused); got != 1 {
		t.Errorf("outcome policy_refused = %v, want 1", got)
	}
	if got := f.balance(t, "19718472"); got != 900 {
		t.Errorf("balance %d, want 900", got)
	}
	if !strings.Contains(r.raw, `"gold":900`) {
		t.Errorf("the refusal should carry the balance: %s", r.raw)
	}
}
