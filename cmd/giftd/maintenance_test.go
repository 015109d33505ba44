package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/ledger"
	"giftd/internal/pgtest"
)

func dbExec(t *testing.T, dbURL string, queries ...string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, q := range queries {
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func dbInt(t *testing.T, dbURL, query string, args ...any) int64 {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// runCmd runs one giftd subcommand against dbURL and returns its output.
func runCmd(dbURL string, args ...string) (string, error) {
	var out bytes.Buffer
	env := map[string]string{"DATABASE_URL": dbURL}
	err := run(context.Background(), append([]string{"giftd"}, args...), func(k string) string { return env[k] }, &out, io.Discard)
	return out.String(), err
}

// TestAudit_CommandAndAdminAPIFindChangesBehindTheLedger: books that
// balance pass `giftd audit` and GET /admin/v1/audit; a balance changed
// directly in the database, or an entry deleted behind the append-only
// trigger, fails both.
func TestAudit_CommandAndAdminAPIFindChangesBehindTheLedger(t *testing.T) {
	dbURL := pgtest.URL(t)
	public, admin := serveFor(t, map[string]string{"DATABASE_URL": dbURL})
	topUpWallet(t, admin, "alice", 100)
	topUpWallet(t, admin, "bob", 50)
	if code, body := postDebit(t, public, debitFields("audit-1", "alice", 30, time.Now().Add(time.Hour).Unix(), e2eSecret)); code != 200 {
		t.Fatalf("debit: %d %s", code, body)
	}

	out, err := runCmd(dbURL, "audit")
	if err != nil || !strings.Contains(out, "2 wallets, 3 ledger entries, 120 gold in all") || !strings.Contains(out, "audit OK") {
		t.Fatalf("giftd audit on sound books: %v\n%s", err, out)
	}
	code, rep := adminCall(t, admin, http.MethodGet, "/admin/v1/audit", e2eToken, "")
	if code != 200 || rep["ok"] != true || rep["wallets"] != 2.0 || rep["mismatched"] != 0.0 {
		t.Fatalf("GET /admin/v1/audit on sound books: %d %v", code, rep)
	}
	if code, _ := adminCall(t, admin, http.MethodGet, "/admin/v1/audit", "", ""); code != http.StatusUnauthorized {
		t.Errorf("audit without a token: %d, want 401", code)
	}

	// Bypass giftd: credit alice without an entry; delete bob's top-up entry
	// with the append-only trigger disabled.
	dbExec(t, dbURL,
		`UPDATE wallets SET gold = gold + 7 WHERE user_id = 'alice'`,
		`ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only`,
		`DELETE FROM ledger_entries WHERE user_id = 'bob'`,
		`ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only`,
	)
	out, err = runCmd(dbURL, "audit")
	if err == nil || !strings.Contains(err.Error(), "2 accounts differ") {
		t.Errorf("giftd audit on broken books returned %v, want a failure", err)
	}
	for _, want := range []string{"MISMATCH wallet alice: balance 77, ledger sum 70", "MISMATCH wallet bob: balance 50, ledger sum 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("giftd audit output lacks %q:\n%s", want, out)
		}
	}
	code, rep = adminCall(t, admin, http.MethodGet, "/admin/v1/audit", e2eToken, "")
	findings, _ := rep["findings"].([]any)
	if code != 200 || rep["ok"] != false || rep["mismatched"] != 2.0 || len(findings) != 2 {
		t.Errorf("GET /admin/v1/audit on broken books: %d %v", code, rep)
	}
}

// TestPrune_PrunedRequestIsRefusedAsExpiredNotDebitedTwice: the background
// pruning deletes an executed request's record once its expriation has
// passed; a copy sent afterwards is refused as expired (400) and the wallet
// is debited once.
func TestPrune_PrunedRequestIsRefusedAsExpiredNotDebitedTwice(t *testing.T) {
	dbURL := pgtest.URL(t)
	public, admin := serveFor(t, map[string]string{
		"DATABASE_URL": dbURL, "GIFTD_PRUNE_INTERVAL": "200ms", "GIFTD_PRUNE_MARGIN": "0s",
	})
	topUpWallet(t, admin, "viewer", 100)
	req := debitFields("prune-1", "viewer", 5, time.Now().Unix()+1, e2eSecret)
	if code, body := postDebit(t, public, req); code != 200 || !strings.Contains(body, `"gold":95`) {
		t.Fatalf("debit: %d %s", code, body)
	}
	deadline := time.Now().Add(15 * time.Second)
	for dbInt(t, dbURL, `SELECT count(*) FROM debit_requests WHERE request_id = 'prune-1'`) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the expired request's record was not pruned in 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	code, body := postDebit(t, public, req)
	if code != 400 || !strings.Contains(body, "expired") {
		t.Errorf("copy of a pruned request: %d %s, want 400 expired", code, body)
	}
	if n := dbInt(t, dbURL, `SELECT count(*) FROM ledger_entries WHERE ref = 'prune-1'`); n != 1 {
		t.Errorf("the pruned request has %d ledger entries, want 1", n)
	}
	if g := dbInt(t, dbURL, `SELECT gold FROM wallets WHERE user_id = 'viewer'`); g != 95 {
		t.Errorf("balance %d, want 95", g)
	}
	m := scrape(t, admin)
	for _, want := range []string{`giftd_debit_outcomes_total{outcome="expired",platform="linkv"} 1`, "giftd_debit_requests_pruned_total 1"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestPrune_CommandKeepsTheMarginAndTheLedger: giftd prune deletes only
// the records expired more than the margin ago, and no ledger entry.
func TestPrune_CommandKeepsTheMarginAndTheLedger(t *testing.T) {
	dbURL := pgtest.URL(t)
	store, err := ledger.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.TopUp(context.Background(), ledger.TopUp{UserID: "u", Amount: 100, Key: "seed"}); err != nil {
		t.Fatal(err)
	}
	for i, age := range []time.Duration{72 * time.Hour, 48 * time.Hour, 25 * time.Hour, time.Hour, -time.Hour} {
		_, err := store.Debit(context.Background(), ledger.Debit{
			Key:    ledger.DebitKey{Platform: "linkv", AppID: "app1", RequestID: fmt.Sprint("old-", i)},
			UserID: "u", Gold: 1, Fingerprint: sha256.Sum256([]byte{byte(i)}), ExpiresAt: time.Now().Add(-age),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	out, err := runCmd(dbURL, "prune")
	if err != nil || !strings.HasPrefix(out, "pruned 3 ") {
		t.Fatalf("giftd prune: %v %s", err, out)
	}
	out, err = runCmd(dbURL, "prune", "-margin", "0s", "-batch", "1")
	if err != nil || !strings.HasPrefix(out, "pruned 1 ") {
		t.Fatalf("giftd prune -margin 0s: %v %s", err, out)
	}
	if n := dbInt(t, dbURL, `SELECT count(*) FROM debit_requests`); n != 1 {
		t.Errorf("%d records left, want the one not yet expired", n)
	}
	if n := dbInt(t, dbURL, `SELECT count(*) FROM ledger_entries`); n != 6 {
		t.Errorf("%d ledger entries, want all 6", n)
	}
	if out, err := runCmd(dbURL, "audit"); err != nil {
		t.Errorf("audit after pruning: %v\n%s", err, out)
	}
}

func TestHealthcheck_ReadyzOfTheAdminListener(t *testing.T) {
	_, admin := serveFor(t, nil)
	env := map[string]string{"GIFTD_ADMIN_ADDR": admin}
	getenv := func(k string) string { return env[k] }
	if err := run(context.Background(), []string{"giftd", "healthcheck"}, getenv, io.Discard, io.Discard); err != nil {
		t.Errorf("healthcheck of a ready giftd: %v", err)
	}
	env["GIFTD_ADMIN_ADDR"] = freeAddr(t) // nothing listens there
	if err := run(context.Background(), []string{"giftd", "healthcheck"}, getenv, io.Discard, io.Discard); err == nil {
		t.Error("healthcheck of nothing succeeded")
	}
}

func TestOpenAPI_ServedOnAdminWithTheConfiguredDebitPath(t *testing.T) {
	_, admin := serveFor(t, map[string]string{"GIFTD_DEBIT_PATH": "/cb/debit"})
	resp, err := http.Get("http://" + admin + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /openapi.json: %d %v", resp.StatusCode, err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") || doc.Paths["/cb/debit"] == nil || doc.Paths["/linkv/debit"] != nil ||
		doc.Paths["/polyv/points"] != nil || doc.Paths["/polyv/points/donate"] != nil {
		t.Errorf("openapi %q with paths %v: want 3.x with the callback at /cb/debit and none of Polyv's (off)", doc.OpenAPI, mapKeysAny(doc.Paths))
	}
}

func mapKeysAny(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// TestMetrics_GoldDatabaseReadinessAndBuild: the counters of gold move by
// what was debited and credited (replays count once), ledger operations
// are timed, and readiness, requests in flight and build info are exposed.
func TestMetrics_GoldDatabaseReadinessAndBuild(t *testing.T) {
	public, admin := serveFor(t, nil)
	topUpWallet(t, admin, "m-viewer", 100)
	topUpWallet(t, admin, "m-viewer", 100) // a replay: nothing credited
	req := debitFields("m-1", "m-viewer", 30, time.Now().Add(time.Hour).Unix(), e2eSecret)
	for range 2 { // the second is a replay
		if code, body := postDebit(t, public, req); code != 200 {
			t.Fatalf("debit: %d %s", code, body)
		}
	}
	if code, m := adminCall(t, admin, http.MethodPost, "/admin/v1/debits/m-1/reversal", e2eToken, `{"app_id":"app1","idempotency_key":"r"}`); code != 200 {
		t.Fatalf("reversal: %d %v", code, m)
	}
	if code, _ := adminCall(t, admin, http.MethodGet, "/admin/v1/wallets/m-viewer", e2eToken, ""); code != 200 {
		t.Fatalf("wallet: %d", code)
	}
	m := scrape(t, admin)
	for _, want := range []string{
		`giftd_gold_credited_total{kind="topup"} 100`,
		`giftd_gold_credited_total{kind="reversal"} 30`,
		`giftd_gold_debited_total{platform="linkv"} 30`,
		`giftd_db_duration_seconds_count{op="topup"} 2`,
		`giftd_db_duration_seconds_count{op="reversal"} 1`,
		`giftd_db_duration_seconds_count{op="wallet"} 1`,
		`giftd_db_duration_seconds_bucket{op="audit",le="+Inf"} 0`,
		`giftd_ready 1`,
		`giftd_http_requests_in_flight{listener="admin"} 1`, // this scrape
		`giftd_http_requests_in_flight{listener="public"} 0`,
		`giftd_build_info{goversion="go`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestEarnings_CommandExportsThePeriodAsCSV: giftd earnings writes each
// receiver's earnings over the period and what is payable at its end.
func TestEarnings_CommandExportsThePeriodAsCSV(t *testing.T) {
	dbURL := pgtest.URL(t)
	public, admin := serveFor(t, map[string]string{"DATABASE_URL": dbURL, "GIFTD_DEFAULT_SHARE_BP": "5000"})
	topUpWallet(t, admin, "alice", 100)
	// debitFields' reason names receiver host.
	if code, body := postDebit(t, public, debitFields("earn-1", "alice", 30, time.Now().Add(time.Hour).Unix(), e2eSecret)); code != 200 {
		t.Fatalf("debit: %d %s", code, body)
	}
	day := time.Now().UTC().Format(time.DateOnly)
	out, err := runCmd(dbURL, "earnings", "-from", day, "-to", time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 2 || !strings.HasPrefix(lines[0], "receiver_id,period_from,period_to,gifts,earned,") ||
		!strings.HasPrefix(lines[1], "host,"+day+"T00:00:00Z,") || !strings.HasSuffix(lines[1], ",1,15,0,0,0,0,15,0,15,0") {
		t.Errorf("giftd earnings: %v\n%s", err, out)
	}
	if _, err := runCmd(dbURL, "earnings", "-from", "yesterday"); err == nil || !strings.Contains(err.Error(), "-from") {
		t.Errorf("a bad -from: %v", err)
	}
}
