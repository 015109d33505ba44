package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/linkv"
	"giftd/internal/partition"
)

// debitFields are a LinkV debit of gold from user, expiring at expriation,
// signed with secret for app1.
func debitFields(requestID, user string, gold, expriation int64, secret string) map[string]string {
	now := time.Now().Unix()
	f := map[string]string{
		"app_id": "app1", "request_id": requestID, "user_id": user, "type": "1",
		"nonce":      "abcdefgh" + strconv.FormatInt(now, 10) + "ijklmnop",
		"gold":       strconv.FormatInt(gold, 10),
		"expriation": strconv.FormatInt(expriation, 10),
		"reason":     `{"gift_id":"7","send_num":1,"resource_id":"room","vtype":"1","receiver_id":"host"}`,
	}
	f["sign"] = linkv.Sign(f, secret)
	return f
}

// postDebit sends fields to the callback and returns the status and body.
func postDebit(t *testing.T, public string, fields map[string]string) (int, string) {
	t.Helper()
	form := url.Values{}
	for k, v := range fields {
		form.Set(k, v)
	}
	resp, err := http.PostForm("http://"+public+"/linkv/debit", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// adminCall sends an admin request with the given bearer token ("" for
// none) and returns the status and the decoded JSON answer.
func adminCall(t *testing.T, admin, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+admin+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m) //nolint:errcheck // a non-JSON answer leaves m nil
	return resp.StatusCode, m
}

// topUpWallet credits amount to user through the admin API.
func topUpWallet(t *testing.T, admin, user string, amount int64) {
	t.Helper()
	code, m := adminCall(t, admin, http.MethodPost, "/admin/v1/wallets/"+user+"/topups", e2eToken,
		`{"amount":`+strconv.FormatInt(amount, 10)+`,"idempotency_key":"seed-`+user+`"}`)
	if code != http.StatusOK {
		t.Fatalf("top-up %s: %d %v", user, code, m)
	}
}

// scrape returns the admin listener's /metrics text.
func scrape(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// debitsPlaced checks every debit entry on the partitions of urls: each
// request once, of the user it was sent for (sent: request id → user), on
// that user's partition of len(urls); and every request that must be there
// (must) is, on its user's partition.
func debitsPlaced(t *testing.T, urls []string, sent map[string]string, must func(id string) bool) {
	t.Helper()
	ctx := context.Background()
	for p, u := range urls {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := conn.Query(ctx, `SELECT ref, user_id, count(*) FROM ledger_entries WHERE kind = 'debit' GROUP BY ref, user_id`)
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		for rows.Next() {
			var ref, user string
			var n int
			if err := rows.Scan(&ref, &user, &n); err != nil {
				t.Fatal(err)
			}
			found[ref] = true
			if n != 1 || sent[ref] != user || partition.For(user, len(urls)) != p {
				t.Errorf("partition %d: %d debits %s of %s", p, n, ref, user)
			}
		}
		rows.Close()
		conn.Close(ctx)
		for id, user := range sent {
			if must(id) && partition.For(user, len(urls)) == p && !found[id] {
				t.Errorf("debit %s of %s is not on partition %d", id, user, p)
			}
		}
	}
}
