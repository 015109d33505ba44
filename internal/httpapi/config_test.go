package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/httpapi"
	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// newConfigEnv serves the admin API on a proxy and two partitions,
// with a Store on each partition's own database.
func newConfigEnv(t *testing.T) (*env, partition.Layout) {
	t.Helper()
	l := pgtest.Partitioned(t, 2)
	ctx := context.Background()
	var parts []*ledger.Store
	for _, u := range l.PartitionURLs {
		p, err := ledger.Open(ctx, u, ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		parts = append(parts, p)
	}
	store, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(2, partition.For), ledger.WithPartitionStores(parts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	reg := prometheus.NewRegistry()
	deps := httpapi.Deps{Store: store, AdminToken: token, Metrics: httpapi.NewMetrics(reg), Gatherer: reg,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), WebhookAllowPrivate: true}
	e := &env{store: store, reg: reg, admin: httptest.NewServer(httpapi.NewAdmin(deps))}
	t.Cleanup(e.admin.Close)
	return e, l
}

// TestAdminPartitioned_ConfigurationPartlyAppliedDriftAndSync: with
// partition 1 down a catalogue change answers 503 partly_applied naming the
// partitions (and no connection string); reads say the partitions disagree
// until a sync; the partitioned feed's cursor and a redelivery from a
// position refuse what they cannot place, with 400s.
func TestAdminPartitioned_ConfigurationPartlyAppliedDriftAndSync(t *testing.T) {
	e, l := newConfigEnv(t)
	if a := e.adm(t, http.MethodPost, "/admin/v1/gifts/linkv", `{"gift_id":"rose","name":"Rose","price":10,"share_bp":5000}`); a.code != http.StatusCreated {
		t.Fatalf("create: %d %s", a.code, a.raw)
	}
	pgtest.StopPartition(t, l.PartitionURLs[1])
	a := e.adm(t, http.MethodPatch, "/admin/v1/gifts/linkv/rose", `{"price":12}`)
	if a.code != http.StatusServiceUnavailable || a.errCode() != "partly_applied" ||
		!strings.Contains(a.errMessage(), "applied on partitions [0], not on [1]") {
		t.Errorf("a change with partition 1 down: %d %s; want 503 partly_applied naming the partitions", a.code, a.raw)
	}
	for _, secret := range []string{"postgres://", "password", "host="} {
		if strings.Contains(a.raw, secret) {
			t.Errorf("the answer names a connection (%q): %s", secret, a.raw)
		}
	}
	if a := e.adm(t, http.MethodGet, "/admin/v1/gifts", ""); a.code != http.StatusOK ||
		a.hdr.Get("Giftd-Config-Drift") != "gifts: partition 1 unreachable" {
		t.Errorf("gifts with partition 1 down: %d, drift %q", a.code, a.hdr.Get("Giftd-Config-Drift"))
	}
	// An endpoint made on partition 0 only: 202 with its secret (shown
	// once), not an error that would lose it.
	a = e.adm(t, http.MethodPost, "/admin/v1/webhooks", `{"url":"http://127.0.0.1:1/early"}`)
	if secret, _ := a.m["secret"].(string); a.code != http.StatusAccepted || !strings.HasPrefix(secret, "whsec_") ||
		!strings.Contains(fmt.Sprint(a.m["warning"]), "not on [1]") {
		t.Errorf("an endpoint made with partition 1 down: %d %s; want 202 with its secret and a warning", a.code, a.raw)
	}
	pgtest.StartPartition(t, l.PartitionURLs[1])
	if a := e.adm(t, http.MethodGet, "/admin/v1/gifts/linkv/rose", ""); a.hdr.Get("Giftd-Config-Drift") != "gifts: partition 1 differs" {
		t.Errorf("a gift while partition 1 missed its change: %d, drift %q", a.code, a.hdr.Get("Giftd-Config-Drift"))
	}
	if a := e.adm(t, http.MethodGet, "/admin/v1/config/drift", ""); a.code != http.StatusOK || a.m["agree"] != false {
		t.Errorf("config drift: %d %s; want agree false", a.code, a.raw)
	}
	if a := e.adm(t, http.MethodPost, "/admin/v1/config/sync", ""); a.code != http.StatusOK {
		t.Errorf("config sync: %d %s", a.code, a.raw)
	}
	if a := e.adm(t, http.MethodGet, "/admin/v1/gifts", ""); a.hdr.Get("Giftd-Config-Drift") != "" {
		t.Errorf("gifts after a sync: drift %q", a.hdr.Get("Giftd-Config-Drift"))
	}
	if a := e.adm(t, http.MethodGet, "/admin/v1/config/drift", ""); a.code != http.StatusOK || a.m["agree"] != true {
		t.Errorf("config drift after a sync: %d %s; want agree", a.code, a.raw)
	}

	for _, after := range []string{"1,2,3,4", "1,2,3", "1,-2", "x,1", ","} {
		if a := e.adm(t, http.MethodGet, "/admin/v1/events?after="+after, ""); a.code != http.StatusBadRequest || !strings.Contains(a.errMessage(), "one per partition") {
			t.Errorf("events after %q: %d %s; want 400", after, a.code, a.raw)
		}
	}
	if a := e.adm(t, http.MethodGet, "/admin/v1/events?after=0,0", ""); a.code != http.StatusOK || a.m["next_after"] != "0,0" {
		t.Errorf("events after 0,0: %d %s", a.code, a.raw)
	}
	// A cursor of a cluster of 1 goes on over the 2 it was resharded to.
	if a := e.adm(t, http.MethodGet, "/admin/v1/events?after=5", ""); a.code != http.StatusOK || a.m["next_after"] != "5,5" {
		t.Errorf("events after 5: %d %s; want 200 and next_after 5,5", a.code, a.raw)
	}
	a = e.adm(t, http.MethodPost, "/admin/v1/webhooks", `{"url":"http://127.0.0.1:1/hook"}`)
	id, _ := a.m["id"].(string)
	if ps, _ := a.m["partitions"].([]any); a.code != http.StatusCreated || len(ps) != 2 {
		t.Fatalf("create an endpoint: %d %s; want 201 with both partitions' deliveries", a.code, a.raw)
	}
	if a := e.adm(t, http.MethodPost, "/admin/v1/webhooks/"+id+"/redeliver", `{"from_position":1}`); a.code != http.StatusBadRequest {
		t.Errorf("redeliver from a position without its partition: %d %s; want 400", a.code, a.raw)
	}
	if a := e.adm(t, http.MethodPost, "/admin/v1/webhooks/"+id+"/redeliver", `{"from_position":1,"partition":1}`); a.code != http.StatusOK {
		t.Errorf("redeliver from a position of partition 1: %d %s; want 200", a.code, a.raw)
	}
}

// TestAdmin_ConfigRoutesAreForPartitionedMode: on one database there is
// nothing to compare or copy.
func TestAdmin_ConfigRoutesAreForPartitionedMode(t *testing.T) {
	e := newEnv(t)
	for _, r := range []struct{ method, path string }{{http.MethodGet, "/admin/v1/config/drift"}, {http.MethodPost, "/admin/v1/config/sync"}} {
		if a := e.adm(t, r.method, r.path, ""); a.code != http.StatusNotFound || a.errCode() != "not_partitioned" {
			t.Errorf("%s %s on one database: %d %s; want 404 not_partitioned", r.method, r.path, a.code, a.raw)
		}
	}
}

// TestAdminPartitioned_ConfigurationRefusedInAReshardsPause fences both
// partitions as giftd reshard's pause does (a fence row, partition
// migration 23's trigger enabled on every configuration table): a change
// of the catalogue, an app's policy, a webhook endpoint, and a user's
// policy put or cleared through the proxy each answer 503 reshard_paused
// with Retry-After, naming no connection, and write nothing; once the
// fences are lifted the same requests succeed on both partitions.
func TestAdminPartitioned_ConfigurationRefusedInAReshardsPause(t *testing.T) {
	e, l := newConfigEnv(t)
	ctx := context.Background()
	if a := e.adm(t, http.MethodPost, "/admin/v1/gifts/linkv", `{"gift_id":"rose","name":"Rose","price":10,"share_bp":5000}`); a.code != http.StatusCreated {
		t.Fatalf("create: %d %s", a.code, a.raw)
	}
	if a := e.adm(t, http.MethodPost, "/admin/v1/wallets/u1/topups", `{"amount":100,"idempotency_key":"seed"}`); a.code != http.StatusOK {
		t.Fatalf("top-up: %d %s", a.code, a.raw)
	}
	if a := e.adm(t, http.MethodPut, "/admin/v1/policies/users/u1", `{"max_debit":50}`); a.code != http.StatusOK {
		t.Fatalf("a user's policy: %d %s", a.code, a.raw)
	}
	tables := []string{"gift_catalogue", "gift_catalogue_history", "room_receivers", "room_receivers_history",
		"spend_policies", "spend_policy_history", "webhook_endpoints"}
	fence := func(on bool) {
		t.Helper()
		for _, u := range l.PartitionURLs {
			q, verb := `INSERT INTO giftd_reshard_fence (partitions) VALUES (4)`, "ENABLE"
			if !on {
				q, verb = `DELETE FROM giftd_reshard_fence`, "DISABLE"
			}
			for _, table := range tables {
				q += `; ALTER TABLE ` + table + ` ` + verb + ` TRIGGER giftd_reshard_config_fence`
			}
			if err := execOn(ctx, u, q); err != nil {
				t.Fatal(err)
			}
		}
	}
	fence(true)
	changes := []struct{ method, path, body string }{
		{http.MethodPatch, "/admin/v1/gifts/linkv/rose", `{"price":12}`},
		{http.MethodPost, "/admin/v1/gifts/linkv", `{"gift_id":"tulip","name":"Tulip","price":5,"share_bp":5000}`},
		{http.MethodPut, "/admin/v1/polyv/channels/1001/receiver", `{"receiver_id":"host-1"}`},
		{http.MethodPut, "/admin/v1/policies/apps/linkv/app", `{"max_debit":100}`},
		{http.MethodPut, "/admin/v1/policies/users/u1", `{"max_debit":40}`},
		{http.MethodDelete, "/admin/v1/policies/users/u1", ``},
		{http.MethodPost, "/admin/v1/webhooks", `{"url":"http://127.0.0.1:1/hook"}`},
	}
	for _, c := range changes {
		a := e.adm(t, c.method, c.path, c.body)
		if a.code != http.StatusServiceUnavailable || a.errCode() != "reshard_paused" || a.hdr.Get("Retry-After") == "" ||
			!strings.Contains(a.errMessage(), "giftd reshard") {
			t.Errorf("%s %s in a reshard's pause: %d %s (Retry-After %q); want 503 reshard_paused naming the reshard, with Retry-After",
				c.method, c.path, a.code, a.raw, a.hdr.Get("Retry-After"))
		}
		for _, secret := range []string{"postgres://", "password", "host=", "dbname="} {
			if strings.Contains(a.raw, secret) {
				t.Errorf("%s %s: the answer names a connection (%q): %s", c.method, c.path, secret, a.raw)
			}
		}
	}
	fence(false)
	if a := e.adm(t, http.MethodGet, "/admin/v1/config/drift", ""); a.code != http.StatusOK || a.m["agree"] != true {
		t.Errorf("config drift after the refused changes: %d %s; want agree", a.code, a.raw)
	}
	for _, c := range changes {
		if a := e.adm(t, c.method, c.path, c.body); a.code/100 != 2 {
			t.Errorf("%s %s once the fences are lifted: %d %s; want success", c.method, c.path, a.code, a.raw)
		}
	}
	if a := e.adm(t, http.MethodGet, "/admin/v1/config/drift", ""); a.code != http.StatusOK || a.m["agree"] != true {
		t.Errorf("config drift after the changes again: %d %s; want agree", a.code, a.raw)
	}
	for p, u := range l.PartitionURLs {
		var price int64
		var policies int
		c, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		err = c.QueryRow(ctx, `SELECT (SELECT price FROM gift_catalogue WHERE gift_id = 'rose'),
			(SELECT count(*) FROM spend_policies WHERE scope = 'user')`).Scan(&price, &policies)
		c.Close(ctx)
		if err != nil || price != 12 || policies != 0 {
			t.Errorf("partition %d after the changes again: price %d, %d user policies, %v; want 12 and none (cleared)", p, price, policies, err)
		}
	}
}

// execOn runs sql (statements without arguments) on the database at url.
func execOn(ctx context.Context, url, sql string) error {
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql)
	return err
}

// TestAdminPartitioned_EarningsRefusedBeforeTheSwitch puts partition 1 in
// the state giftd reshard leaves between moving the claims and the proxy's
// switch (a fence row of the count it is claimed at, no switch recorded of
// it): a receiver's earnings account, which would read wrong there, answers
// 503 reshard_paused with Retry-After: 1, naming no connection (partition
// migration 25). With the switch recorded, or the fence gone, it reads
// again (404 for a receiver never credited).
func TestAdminPartitioned_EarningsRefusedBeforeTheSwitch(t *testing.T) {
	e, l := newConfigEnv(t)
	ctx := context.Background()
	const path = "/admin/v1/earnings/nobody"
	if a := e.adm(t, http.MethodGet, path, ""); a.code != http.StatusNotFound {
		t.Fatalf("GET %s: %d %s; want 404", path, a.code, a.raw)
	}
	if err := execOn(ctx, l.PartitionURLs[1], `INSERT INTO giftd_reshard_fence (partitions) VALUES (2)`); err != nil {
		t.Fatal(err)
	}
	a := e.adm(t, http.MethodGet, path, "")
	if a.code != http.StatusServiceUnavailable || a.errCode() != "reshard_paused" || a.hdr.Get("Retry-After") != "1" ||
		!strings.Contains(a.errMessage(), "giftd reshard") {
		t.Errorf("GET %s with a claim moved, not switched: %d %s (Retry-After %q); want 503 reshard_paused naming the reshard, Retry-After 1",
			path, a.code, a.raw, a.hdr.Get("Retry-After"))
	}
	for _, secret := range []string{"postgres://", "password", "host=", "dbname="} {
		if strings.Contains(a.raw, secret) {
			t.Errorf("GET %s: the answer names a connection (%q): %s", path, secret, a.raw)
		}
	}
	for _, q := range []string{`INSERT INTO giftd_reshard_switched (partitions) VALUES (2)`,
		`DELETE FROM giftd_reshard_switched; DELETE FROM giftd_reshard_fence`} {
		if err := execOn(ctx, l.PartitionURLs[1], q); err != nil {
			t.Fatal(err)
		}
		if a := e.adm(t, http.MethodGet, path, ""); a.code != http.StatusNotFound {
			t.Errorf("GET %s after %q: %d %s; want 404", path, q, a.code, a.raw)
		}
	}
}

// TestAdminPartitioned_MovingUsersWritesRefusedInAReshardsPause: with both
// partitions fenced for 4 by hand, as the pause does (the fence row, and the
// economy's freeze enabled on account_entries), a top-up of a user the
// reshard moves, a top-up of a staying user under a key that moves, and a
// staying receiver's payout (every payout waits for the economy's split)
// each answer 503 reshard_paused with Retry-After, nothing written; a
// staying user's top-up under a staying key goes through. Once the fences
// are lifted the same requests succeed, once: the refused keys were left
// free for the same call. (A reversal of a gift meets its credit in
// transit first here, no consumer running: 503 credit_in_transit.)
func TestAdminPartitioned_MovingUsersWritesRefusedInAReshardsPause(t *testing.T) {
	e, l := newConfigEnv(t)
	ctx := context.Background()
	moves := func(s string) bool { return partition.Placement(s)&3 >= 2 }
	pick := func(prefix string, moving bool) string {
		for i := 0; ; i++ {
			if s := fmt.Sprintf("%s-%d", prefix, i); moves(s) == moving {
				return s
			}
		}
	}
	mover, stayer := pick("mover", true), pick("stayer", false)
	stayKey, movingKey, otherKey, freeKey := pick("key", false), pick("key", true), pick("other", false), pick("free", false)
	for _, u := range []string{mover, stayer} {
		if a := e.adm(t, http.MethodPost, "/admin/v1/wallets/"+u+"/topups", `{"amount":100,"idempotency_key":"seed-`+u+`"}`); a.code != http.StatusOK {
			t.Fatalf("seed %s: %d %s", u, a.code, a.raw)
		}
	}
	home := l.PartitionURLs[partition.Placement(stayer)&1]
	if err := execOn(ctx, home, `INSERT INTO earnings_accounts (receiver_id, balance) VALUES ('`+stayer+`', 50)`); err != nil {
		t.Fatal(err)
	}
	fence := func(q string) {
		t.Helper()
		for _, u := range l.PartitionURLs {
			if err := execOn(ctx, u, q); err != nil {
				t.Fatal(err)
			}
		}
	}
	fence(`INSERT INTO giftd_reshard_fence (partitions) VALUES (4); ALTER TABLE account_entries ENABLE TRIGGER giftd_reshard_freeze`)
	refused := []struct{ path, body string }{
		{"/admin/v1/wallets/" + mover + "/topups", `{"amount":7,"idempotency_key":"` + stayKey + `"}`},
		{"/admin/v1/wallets/" + stayer + "/topups", `{"amount":5,"idempotency_key":"` + movingKey + `"}`},
		{"/admin/v1/earnings/" + stayer + "/payouts", `{"amount":20,"idempotency_key":"` + otherKey + `-payout"}`},
	}
	for _, c := range refused {
		a := e.adm(t, http.MethodPost, c.path, c.body)
		if a.code != http.StatusServiceUnavailable || a.errCode() != "reshard_paused" || a.hdr.Get("Retry-After") == "" ||
			!strings.Contains(a.errMessage(), "giftd reshard") || strings.Contains(a.raw, "postgres://") {
			t.Errorf("POST %s in a reshard's pause: %d %s (Retry-After %q); want 503 reshard_paused naming the reshard, with Retry-After",
				c.path, a.code, a.raw, a.hdr.Get("Retry-After"))
		}
	}
	if a := e.adm(t, http.MethodPost, "/admin/v1/wallets/"+stayer+"/topups", `{"amount":3,"idempotency_key":"`+stayKey+`-2"}`); a.code != http.StatusOK {
		t.Errorf("a staying user's top-up under a staying key in the pause: %d %s; want 200", a.code, a.raw)
	}
	freed := "/admin/v1/wallets/" + mover + "/topups"
	if a := e.adm(t, http.MethodPost, freed, `{"amount":9,"idempotency_key":"`+freeKey+`"}`); a.code != http.StatusServiceUnavailable {
		t.Errorf("a moving user's top-up in the pause: %d %s; want 503", a.code, a.raw)
	}
	fence(`DELETE FROM giftd_reshard_fence; ALTER TABLE account_entries DISABLE TRIGGER giftd_reshard_freeze`)
	// The pause's refusal wrote nothing: its key is free for another call.
	if a := e.adm(t, http.MethodPost, freed, `{"amount":1,"idempotency_key":"`+freeKey+`"}`); a.code != http.StatusOK {
		t.Errorf("the key of a top-up the pause refused, used for another amount after it: %d %s; want 200 (the key free)", a.code, a.raw)
	}
	for _, c := range refused {
		for range 2 { // the second a replay
			if a := e.adm(t, http.MethodPost, c.path, c.body); a.code != http.StatusOK {
				t.Errorf("POST %s once the fences are lifted: %d %s; want 200", c.path, a.code, a.raw)
			}
		}
	}
	for u, gold := range map[string]float64{mover: 108, stayer: 108} { // 100 + 7 + 1; 100 + 5 + 3
		if a := e.adm(t, http.MethodGet, "/admin/v1/wallets/"+u, ""); a.code != http.StatusOK || a.m["gold"] != gold {
			t.Errorf("wallet %s: %d %s; want gold %v (each write once)", u, a.code, a.raw, gold)
		}
	}
	c, err := pgx.Connect(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var balance int64
	if err := c.QueryRow(ctx, `SELECT balance FROM earnings_accounts WHERE receiver_id = $1`, stayer).Scan(&balance); err != nil || balance != 30 {
		t.Errorf("%s's earnings after the payout and its replay: %d, %v; want 30 (paid once)", stayer, balance, err)
	}
}
