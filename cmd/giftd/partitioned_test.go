package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// TestRun_ServePartitioned runs giftd serve on a proxy and two partitions
// it migrates itself at start, and plays LinkV against it: every debit
// lands on the partition Go's placement names, a copy replays, a debit for
// a user whose partition is down gets a retryable 500 while the other
// partition's users carry on and /readyz stays 200, and its retry once the
// partition is back is executed once. The admin routes answer: the
// catalogue on every partition, the reads across partitions, the audit,
// and the per-user routes (a reversal takes a gift's earnings back from
// its receiver's partition).
func TestRun_ServePartitioned(t *testing.T) {
	l := pgtest.UnmigratedPartitioned(t, 2)
	srv := startServe(t, map[string]string{
		// Ignored in partitioned mode: nothing may reach it.
		"DATABASE_URL":         "postgres://unused@127.0.0.1:1/unused",
		"GIFTD_PROXY_URL":      l.ProxyURL,
		"GIFTD_PARTITION_URLS": strings.Join(l.PartitionURLs, " "),
		"GIFTD_BATCH_WINDOW":   "1ms",
		// Half of every gift to its receiver, "host": its earnings move to
		// host's partition from the other one.
		"GIFTD_DEFAULT_SHARE_BP":      "5000",
		"GIFTD_WEBHOOK_ALLOW_PRIVATE": "true",
	})
	ready := func() int {
		t.Helper()
		resp, err := http.Get("http://" + srv.admin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Ready once the proxy's first calls to each partition answer within
	// /readyz's second (a loaded machine may need more than one try).
	for deadline := time.Now().Add(30 * time.Second); ready() != http.StatusOK; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: not 200 within 30 s\n%s", srv.logs.String())
		}
	}

	// A webhook endpoint, made before any event: it gets every event of
	// both partitions (docs/events.md#partitioned-mode).
	var hookMu sync.Mutex
	hooked := map[string]bool{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hookMu.Lock()
		hooked[r.Header.Get("webhook-id")] = true
		hookMu.Unlock()
	}))
	defer hook.Close()
	if code, m := adminCall(t, srv.admin, http.MethodPost, "/admin/v1/webhooks", e2eToken, `{"url":"`+hook.URL+`"}`); code != http.StatusCreated {
		t.Fatalf("create a webhook endpoint: %d %v", code, m)
	}

	users := make([][]string, 2) // users[p]: users of partition p
	for i := 0; len(users[0]) < 3 || len(users[1]) < 3; i++ {
		u := fmt.Sprintf("viewer-%d", i)
		users[partition.For(u, 2)] = append(users[partition.For(u, 2)], u)
	}
	for _, us := range users {
		for _, u := range us {
			topUpWallet(t, srv.admin, u, 100)
		}
	}
	expires := time.Now().Add(time.Hour).Unix()
	sent := map[string]string{} // request id → user
	for p, us := range users {
		for i, u := range us {
			id := fmt.Sprintf("p%d-%d", p, i)
			f := debitFields(id, u, 10, expires, e2eSecret)
			code, body := postDebit(t, srv.public, f)
			want := `{"status":200,"msg":"","gold":90,"data":{"gold":90}}` + "\n"
			if code != http.StatusOK || body != want {
				t.Errorf("debit %s of %s: %d %s; want 200 %s", id, u, code, body, want)
			}
			// A copy replays the answer.
			if code, again := postDebit(t, srv.public, f); code != http.StatusOK || again != body {
				t.Errorf("copy of %s: %d %s; want %s", id, code, again, body)
			}
			sent[id] = u
		}
	}
	code, m := adminCall(t, srv.admin, http.MethodGet, "/admin/v1/wallets/"+users[1][0], e2eToken, "")
	if code != http.StatusOK || m["gold"] != float64(90) {
		t.Errorf("wallet of %s: %d %v; want 200 with 90 gold", users[1][0], code, m)
	}
	// The catalogue is changed on every partition, and read with them
	// agreeing (docs/scale-out.md#configuration-on-every-partition).
	if code, m := adminCall(t, srv.admin, http.MethodPost, "/admin/v1/gifts/linkv", e2eToken,
		`{"gift_id":"rose","name":"Rose","price":10,"share_bp":5000}`); code != http.StatusCreated {
		t.Errorf("create a gift: %d %v; want 201", code, m)
	}
	if code, m := adminCall(t, srv.admin, http.MethodGet, "/admin/v1/config/drift", e2eToken, ""); code != http.StatusOK || m["agree"] != true {
		t.Errorf("config drift: %d %v; want 200, agree", code, m)
	}
	for p, u := range l.PartitionURLs {
		conn, err := pgx.Connect(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		var price int64
		if err := conn.QueryRow(context.Background(), `SELECT price FROM gift_catalogue WHERE gift_id = 'rose'`).Scan(&price); err != nil || price != 10 {
			t.Errorf("partition %d's gift: %d, %v; want price 10", p, price, err)
		}
		conn.Close(context.Background())
	}

	// Partition 1 down: its users' debits get a 500 (retryable), partition
	// 0's go on, and giftd stays ready.
	pgtest.StopPartition(t, l.PartitionURLs[1])
	down := debitFields("down-1", users[1][1], 10, expires, e2eSecret)
	if code, body := postDebit(t, srv.public, down); code != http.StatusInternalServerError {
		t.Errorf("debit of %s with its partition down: %d %s; want 500", users[1][1], code, body)
	}
	sent["down-1"] = users[1][1]
	// A debit's look-up asks every partition: retryable, never a wrong 404;
	// a wallet's ledger on the partition that is up goes on.
	code, m = adminCall(t, srv.admin, http.MethodGet, "/admin/v1/debits/p0-0?app_id=app1", e2eToken, "")
	if e, _ := m["error"].(map[string]any); code != http.StatusServiceUnavailable || e["code"] != "partition_unavailable" {
		t.Errorf("debit look-up with partition 1 down: %d %v; want 503 partition_unavailable", code, m)
	}
	if code, m := adminCall(t, srv.admin, http.MethodGet, "/admin/v1/wallets/"+users[0][0]+"/ledger", e2eToken, ""); code != http.StatusOK {
		t.Errorf("ledger of %s with partition 1 down: %d %v; want 200", users[0][0], code, m)
	}
	up := debitFields("up-1", users[0][1], 10, expires, e2eSecret)
	if code, body := postDebit(t, srv.public, up); code != http.StatusOK {
		t.Errorf("debit of %s on the partition that is up: %d %s; want 200", users[0][1], code, body)
	}
	sent["up-1"] = users[0][1]
	if code := ready(); code != http.StatusOK {
		t.Errorf("/readyz with partition 1 down: %d; want 200", code)
	}
	pgtest.StartPartition(t, l.PartitionURLs[1])
	// LinkV's retry, once the partition is back, executes it.
	if code, body := postDebit(t, srv.public, down); code != http.StatusOK || !strings.Contains(body, `"gold":80`) {
		t.Errorf("retry of down-1: %d %s; want 200 with 80 gold", code, body)
	}

	// Every debit is on its user's partition, once, and nowhere else.
	debitsPlaced(t, l.PartitionURLs, sent, func(string) bool { return true })
	// Every gift's earnings (5 of its 10 gold) end on host's partition,
	// moved there by the credit consumer from the other.
	hostPart := partition.For("host", 2)
	want := int64(5 * len(sent))
	conn, err := pgx.Connect(context.Background(), l.PartitionURLs[hostPart])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var got int64
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err := conn.QueryRow(context.Background(), `SELECT coalesce(sum(balance), 0)::bigint FROM earnings_accounts WHERE receiver_id = 'host'`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the consumer polls every 100 ms
	}
	if got != want {
		t.Errorf("host's earnings on its partition %d: %d; want %d", hostPart, got, want)
	}
	// Every event of both partitions reaches the endpoint.
	var ids []string
	for _, u := range l.PartitionURLs {
		c, err := pgx.Connect(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		rows, _ := c.Query(context.Background(), `SELECT id::text FROM events`)
		more, err := pgx.CollectRows(rows, pgx.RowTo[string])
		c.Close(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, more...)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		hookMu.Lock()
		missing := 0
		for _, id := range ids {
			if !hooked[id] {
				missing++
			}
		}
		hookMu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d of %d events of both partitions never reached the webhook endpoint", missing, len(ids))
			break
		}
		time.Sleep(20 * time.Millisecond) // delivery polls every 100 ms
	}
	// The reads across partitions: host's account sums both partitions;
	// the admin audit is every partition's and the credits'.
	code, m = adminCall(t, srv.admin, http.MethodGet, "/admin/v1/earnings/host", e2eToken, "")
	if code != http.StatusOK || m["balance"] != float64(want) {
		t.Errorf("earnings of host: %d %v; want 200 with balance %d", code, m, want)
	}
	code, m = adminCall(t, srv.admin, http.MethodGet, "/admin/v1/audit", e2eToken, "")
	if parts, _ := m["partitions"].([]any); code != http.StatusOK || m["ok"] != true || len(parts) != 2 ||
		m["wallets"] != float64(len(users[0])+len(users[1])) {
		t.Errorf("admin audit partitioned: %d %v; want 200, ok, 2 partitions, 6 wallets", code, m)
	}
	// The per-user admin routes: a wallet's ledger, a debit, its reversal
	// (the gift's earnings taken back from host, whichever partition the
	// sender is on), its replay, a payout of host's earnings.
	if code, m := adminCall(t, srv.admin, http.MethodGet, "/admin/v1/wallets/"+users[0][0]+"/ledger", e2eToken, ""); code != http.StatusOK ||
		len(m["entries"].([]any)) != 2 {
		t.Errorf("ledger of %s: %d %v; want 200 with the top-up and the debit", users[0][0], code, m)
	}
	for p := range 2 {
		id := fmt.Sprintf("p%d-0", p)
		if code, m := adminCall(t, srv.admin, http.MethodGet, "/admin/v1/debits/"+id+"?app_id=app1", e2eToken, ""); code != http.StatusOK ||
			m["user_id"] != users[p][0] {
			t.Errorf("debit %s: %d %v; want 200 of %s", id, code, m, users[p][0])
		}
		body := `{"app_id":"app1","idempotency_key":"rev-` + id + `"}`
		code, first := adminCall(t, srv.admin, http.MethodPost, "/admin/v1/debits/"+id+"/reversal", e2eToken, body)
		gift, _ := first["gift"].(map[string]any)
		if code != http.StatusOK || first["amount"] != float64(10) || gift["receiver_id"] != "host" || gift["earnings"] != float64(5) {
			t.Errorf("reversal of %s: %d %v; want 200 giving 10 back, 5 taken from host", id, code, first)
		}
		if code, again := adminCall(t, srv.admin, http.MethodPost, "/admin/v1/debits/"+id+"/reversal", e2eToken, body); code != http.StatusOK ||
			fmt.Sprint(again) != fmt.Sprint(first) {
			t.Errorf("replay of the reversal of %s: %d %v; want %v", id, code, again, first)
		}
	}
	if code, m := adminCall(t, srv.admin, http.MethodPost, "/admin/v1/earnings/host/payouts", e2eToken,
		`{"amount":7,"idempotency_key":"pay-1"}`); code != http.StatusOK || m["balance"] != float64(want-10-7) {
		t.Errorf("payout of host: %d %v; want 200 leaving %d", code, m, want-10-7)
	}
	if err := srv.stop(t); err != nil {
		t.Errorf("run returned %v after shutdown", err)
	}
	// giftd audit partitioned: each partition's books, then the credits.
	var out strings.Builder
	env := map[string]string{"GIFTD_PROXY_URL": l.ProxyURL, "GIFTD_PARTITION_URLS": strings.Join(l.PartitionURLs, " ")}
	if err := run(context.Background(), []string{"giftd", "audit"}, func(k string) string { return env[k] }, &out, io.Discard); err != nil {
		t.Errorf("giftd audit partitioned: %v\n%s", err, out.String())
	}
	for _, want := range []string{"partition 0 (", "partition 1 (", "audit OK", "credits OK", " 0 in flight", "claw-backs: 1, 0 pending", "configuration OK"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("giftd audit partitioned lacks %q:\n%s", want, out.String())
		}
	}
	if logs := srv.logs.String(); !strings.Contains(logs, `"partitions":2`) {
		t.Errorf("the start line does not say partitions 2:\n%s", logs)
	}
}

// TestPrune_CommandPartitionedPrunesEveryPartition: giftd prune with the
// partitioned settings prunes each partition's expired debit records on its
// own connection, says so per partition, keeps every ledger entry, and
// giftd audit then finds every partition clean (and the configuration the
// same on both). A catalogue edited on one partition behind giftd's back
// makes giftd audit fail, naming the drift.
func TestPrune_CommandPartitionedPrunesEveryPartition(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	ctx := context.Background()
	store, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(2, partition.For), ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	users := [2][]string{}
	for i := 0; len(users[0]) < 2 || len(users[1]) < 2; i++ {
		u := fmt.Sprintf("viewer-%d", i)
		if p := partition.For(u, 2); len(users[p]) < 2 {
			users[p] = append(users[p], u)
		}
	}
	for _, us := range users {
		for _, u := range us {
			if _, err := store.TopUp(ctx, ledger.TopUp{UserID: u, Amount: 10, Key: "seed-" + u}); err != nil {
				t.Fatal(err)
			}
			_, err := store.Debit(ctx, ledger.Debit{Key: ledger.DebitKey{Platform: "linkv", AppID: "app1", RequestID: "old-" + u},
				UserID: u, Gold: 1, Fingerprint: sha256.Sum256([]byte(u)), ExpiresAt: time.Now().Add(-48 * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	env := map[string]string{"GIFTD_PROXY_URL": l.ProxyURL, "GIFTD_PARTITION_URLS": strings.Join(l.PartitionURLs, " ")}
	cmd := func(args ...string) (string, error) {
		var out strings.Builder
		err := run(ctx, append([]string{"giftd"}, args...), func(k string) string { return env[k] }, &out, io.Discard)
		return out.String(), err
	}
	out, err := cmd("prune")
	if err != nil {
		t.Fatalf("giftd prune partitioned: %v\n%s", err, out)
	}
	for p := range 2 {
		if want := fmt.Sprintf("partition %d (", p); !strings.Contains(out, want) ||
			strings.Count(out, "pruned 2 debit request records") != 2 {
			t.Errorf("giftd prune partitioned: want 2 records pruned on partition %d:\n%s", p, out)
		}
		if n := dbInt(t, l.PartitionURLs[p], `SELECT count(*) FROM debit_requests`); n != 0 {
			t.Errorf("partition %d: %d debit records left, want none", p, n)
		}
		if n := dbInt(t, l.PartitionURLs[p], `SELECT count(*) FROM ledger_entries`); n != 4 {
			t.Errorf("partition %d: %d ledger entries, want all 4", p, n)
		}
	}
	if out, err := cmd("audit"); err != nil || !strings.Contains(out, "configuration OK") {
		t.Errorf("giftd audit partitioned after pruning: %v\n%s", err, out)
	}
	conn, err := pgx.Connect(ctx, l.PartitionURLs[1])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO gift_catalogue (platform, gift_id, name, price, share_bp) VALUES ('linkv', 'rogue', 'r', 1, 0)`); err != nil {
		t.Fatal(err)
	}
	if out, err := cmd("audit"); err == nil || !strings.Contains(out, "DRIFT gifts: partition 1 differs") {
		t.Errorf("giftd audit with partition 1's catalogue edited alone: %v\n%s; want a failure naming the drift", err, out)
	}
	// A user's policy on partition 1 only (a write through the proxy that
	// reached some partitions only): reported, and the user named.
	if _, err := conn.Exec(ctx, `INSERT INTO spend_policies (scope, subject, updated_by, max_debit) VALUES ('user', $1, 'test', 5)`, users[0][0]); err != nil {
		t.Fatal(err)
	}
	out, err = cmd("audit")
	if want := fmt.Sprintf("POLICY user %s: partitions [1] differ from partition 0", users[0][0]); err == nil ||
		!strings.Contains(out, "DRIFT user_policies: partition 1 differs") || !strings.Contains(out, want) {
		t.Errorf("giftd audit with a user's policy on partition 1 alone: %v\n%s; want a failure naming the drift and %q", err, out, want)
	}
}
