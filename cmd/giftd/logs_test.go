package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/linkv"
)

// TestLogs_NoSecretUnderAnyOutcome drives every callback outcome and
// admin requests, authorised and not, through a real giftd and checks that
// its JSON log never carries the app secret, the admin token, a wrong token
// a client tried, or any request's sign, while it does carry one line per
// callback with its request_id, app_id, outcome and latency.
func TestLogs_NoSecretUnderAnyOutcome(t *testing.T) {
	// Short, so that a locked wallet makes the error outcome quickly.
	srv := startServe(t, map[string]string{"GIFTD_DB_TIMEOUT": "300ms"})
	public, admin, dbURL, logs := srv.public, srv.admin, srv.dbURL, srv.logs
	ctx := context.Background()

	topUpWallet(t, admin, "rich", 1000)
	topUpWallet(t, admin, "poor", 1)
	topUpWallet(t, admin, "locked", 1000)
	exp := time.Now().Add(time.Hour).Unix()
	var signs []string
	send := func(fields map[string]string, want int) {
		t.Helper()
		if s := fields["sign"]; s != "" {
			signs = append(signs, s)
		}
		if code, body := postDebit(t, public, fields); code != want {
			t.Errorf("%s: answered %d %s, want %d", fields["request_id"], code, body, want)
		}
	}
	resign := func(f map[string]string, secret string) map[string]string {
		delete(f, "sign")
		f["sign"] = linkv.Sign(f, secret)
		return f
	}

	send(debitFields("log-ok", "rich", 5, exp, e2eSecret), 200)                  // ok
	send(debitFields("log-ok", "rich", 5, exp, e2eSecret), 200)                  // replay
	send(debitFields("log-ok", "rich", 6, exp, e2eSecret), 409)                  // conflict
	send(debitFields("log-poor", "poor", 5, exp, e2eSecret), 402)                // insufficient
	send(debitFields("log-expired", "rich", 5, exp-7200, e2eSecret), 400)        // expired
	send(debitFields("log-wrong-secret", "rich", 5, exp, "not-the-secret"), 403) // bad_sign
	unknown := debitFields("log-unknown-app", "rich", 5, exp, e2eSecret)
	unknown["app_id"] = "app-nobody-knows"
	send(resign(unknown, e2eSecret), 403) // bad_sign
	bad := debitFields("log-bad-gold", "rich", 5, exp, e2eSecret)
	bad["gold"] = "5.0"
	send(resign(bad, e2eSecret), 400) // bad_request, after a valid sign
	noNonce := debitFields("log-no-nonce", "rich", 5, exp, e2eSecret)
	delete(noNonce, "nonce")
	send(resign(noNonce, e2eSecret), 400) // bad_request

	// error: the wallet is locked by someone else past GIFTD_DB_TIMEOUT.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM wallets WHERE user_id = 'locked' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	send(debitFields("log-locked", "locked", 5, exp, e2eSecret), 500)
	tx.Rollback(ctx) //nolint:errcheck // only the lock mattered

	// Admin requests: authorised, and 401s with no, a wrong, and the right
	// token in the wrong scheme.
	const wrongToken = "wrong-token-a-client-tried-0123"
	for _, c := range []struct {
		method, path, auth, body string
		want                     int
	}{
		{"GET", "/admin/v1/wallets/rich", "Bearer " + e2eToken, "", 200},
		{"GET", "/admin/v1/wallets/rich/ledger", "Bearer " + e2eToken, "", 200},
		{"POST", "/admin/v1/debits/log-ok/reversal", "Bearer " + e2eToken, `{"app_id":"app1","idempotency_key":"rev-1"}`, 200},
		{"GET", "/admin/v1/audit", "Bearer " + e2eToken, "", 200},
		{"POST", "/admin/v1/wallets/rich/topups", "Bearer " + e2eToken, `{"amount":"nope","idempotency_key":"k"}`, 400},
		{"GET", "/admin/v1/wallets/rich", "", "", 401},
		{"GET", "/admin/v1/wallets/rich", "Bearer " + wrongToken, "", 401},
		{"POST", "/admin/v1/wallets/rich/topups", "Token " + e2eToken, `{"amount":1,"idempotency_key":"k"}`, 401},
		{"GET", "/admin/v1/audit", "Basic " + wrongToken, "", 401},
	} {
		req, _ := http.NewRequest(c.method, "http://"+admin+c.path, strings.NewReader(c.body))
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s (%.12s…): %d, want %d", c.method, c.path, c.auth, resp.StatusCode, c.want)
		}
	}

	if err := srv.stop(t); err != nil {
		t.Fatalf("run: %v", err)
	}
	out := logs.String()
	for what, secret := range map[string]string{"app secret": e2eSecret, "admin token": e2eToken, "wrong token": wrongToken} {
		if strings.Contains(out, secret) {
			t.Errorf("logs carry the %s", what)
		}
	}
	for _, s := range signs {
		if strings.Contains(strings.ToLower(out), s) {
			t.Errorf("logs carry a sign: %s", s)
		}
	}

	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec["msg"] != "debit callback" {
			continue
		}
		outcome, _ := rec["outcome"].(string)
		seen[outcome] = true
		if _, ok := rec["latency"]; !ok {
			t.Errorf("callback line without latency: %s", line)
		}
		// Refused before validation, a request has no trusted ids to log.
		validated := outcome != "bad_sign" && outcome != "bad_request" && outcome != "expired"
		if validated && (rec["request_id"] == nil || rec["app_id"] == nil) {
			t.Errorf("callback line without request_id or app_id: %s", line)
		}
		for _, key := range []string{"sign", "form", "secret", "token"} {
			if _, ok := rec[key]; ok {
				t.Errorf("callback line has a %q field: %s", key, line)
			}
		}
	}
	for _, o := range []string{"ok", "replay", "insufficient", "bad_request", "expired", "bad_sign", "conflict", "error"} {
		if !seen[o] {
			t.Errorf("no callback log line with outcome %s", o)
		}
	}
}

func TestLogs_TextInDevJSONOtherwise(t *testing.T) {
	env := map[string]string{"GIFTD_ADMIN_TOKEN": e2eToken, "GIFTD_LINKV_APPS": "app1:" + e2eSecret}
	for _, c := range []struct {
		dev  bool
		want string
	}{{false, "json"}, {true, "text"}} {
		getenv := func(k string) string { return env[k] }
		if c.dev {
			getenv, _ = devEnv(getenv)
		}
		s, err := readSettings(getenv)
		if err != nil || s.LogFormat != c.want {
			t.Errorf("dev=%t: log format %q (%v), want %s", c.dev, s.LogFormat, err, c.want)
		}
	}
	var buf syncBuffer
	newLogger("json", &buf).Info("x", "k", "v")
	if !json.Valid([]byte(strings.TrimSpace(buf.String()))) {
		t.Errorf("json logger wrote %q", buf.String())
	}
}
