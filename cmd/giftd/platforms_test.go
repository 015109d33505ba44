package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"giftd/internal/linkvapi/linkvfake"
	"giftd/internal/pgtest"
	"giftd/internal/polyvapi/polyvfake"
)

const (
	platLinkVSecret = "linkv-api-secret-must-not-leak-51"
	platPolyvSecret = "polyv-api-secret-must-not-leak-88"
)

// TestServe_PlatformJobsOnTheAdminAPI runs giftd serve against fakes of
// LinkV's and Polyv's APIs and does each job through the admin API: link,
// move (with LinkV answering 500 after applying), set Polyv up. No log line
// holds a secret or the user's live_token.
func TestServe_PlatformJobsOnTheAdminAPI(t *testing.T) {
	lf := linkvfake.New(t, "LMapp", platLinkVSecret)
	pf := polyvfake.New(t, "pvapp", platPolyvSecret)
	pf.AddChannel("2149710")
	env := map[string]string{
		"DATABASE_URL": pgtest.URL(t), "GIFTD_HTTP_ADDR": "127.0.0.1:0", "GIFTD_ADMIN_ADDR": "127.0.0.1:0",
		"GIFTD_ADMIN_TOKEN": e2eToken, "GIFTD_LINKV_APPS": "LMapp:" + e2eSecret,
		"GIFTD_LINKV_API_URL": lf.URL, "GIFTD_LINKV_API_APP": "LMapp:" + platLinkVSecret,
		"GIFTD_POLYV_API_URL": pf.URL, "GIFTD_POLYV_API_APP": "pvapp:" + platPolyvSecret,
		"GIFTD_PLATFORM_API_TIMEOUT": "100ms", "GIFTD_PLATFORM_API_ATTEMPTS": "2",
		"GIFTD_PUBLIC_URL": "https://gifts.example", "GIFTD_POLYV_UPDATE_PATH": "/pv/donate",
	}
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"giftd", "serve"}, func(k string) string { return env[k] }, &logs, &logs)
	}()
	t.Cleanup(func() { cancel(); <-errc })
	_, admin := boundAddrs(t, &logs, errc)
	waitHealthy(t, "http://"+admin, errc)

	code, m := adminCall(t, admin, http.MethodPost, "/admin/v1/linkv/accounts/ann", e2eToken, `{"name":"Ann","sex":"0"}`)
	token, _ := m["live_token"].(string)
	open, _ := m["live_open_id"].(string)
	if code != 200 || token == "" || open == "" {
		t.Fatalf("link: %d %v", code, m)
	}
	if code, m := adminCall(t, admin, http.MethodGet, "/admin/v1/linkv/accounts/ann", e2eToken, ""); code != 200 || m["live_open_id"] != open {
		t.Fatalf("linked account: %d %v", code, m)
	}
	if code, m := adminCall(t, admin, http.MethodPost, "/admin/v1/linkv/accounts/"+strings.Repeat("x", 65), e2eToken, `{}`); code != 400 {
		t.Fatalf("a bad user id: %d %v", code, m)
	}

	lf.SetBalance(open, 250)
	if code, m := adminCall(t, admin, http.MethodPost, "/admin/v1/linkv/wallet-moves", e2eToken, `{"users":[{"user_id":"ann"}],"dry_run":true}`); code != 200 || m["coins"] != 250.0 || m["ok"] != true {
		t.Fatalf("dry run: %d %v", code, m)
	}
	lf.Fail("changeGold", linkvfake.AppliedThen500, linkvfake.Fail500)
	if code, m := adminCall(t, admin, http.MethodPost, "/admin/v1/linkv/wallet-moves", e2eToken, `{"users":[{"user_id":"ann"}]}`); code != 200 || m["ok"] != false {
		t.Fatalf("move with LinkV failing: %d %v", code, m)
	}
	if code, m := adminCall(t, admin, http.MethodGet, "/admin/v1/linkv/wallet-moves/ann", e2eToken, ""); code != 200 || m["state"] != "taking" || m["amount"] != 250.0 {
		t.Fatalf("step: %d %v", code, m)
	}
	if code, m := adminCall(t, admin, http.MethodPost, "/admin/v1/linkv/wallet-moves", e2eToken, `{"users":[{"user_id":"ann"}]}`); code != 200 || m["ok"] != true || m["coins"] != 250.0 {
		t.Fatalf("resumed move: %d %v", code, m)
	}
	if code, m := adminCall(t, admin, http.MethodGet, "/admin/v1/wallets/ann", e2eToken, ""); code != 200 || m["gold"] != 250.0 || lf.Balance(open) != 0 {
		t.Fatalf("giftd wallet: %d %v; LinkV holds %d", code, m, lf.Balance(open))
	}
	if code, m := adminCall(t, admin, http.MethodPost, "/admin/v1/linkv/wallet-moves", e2eToken, `{"users":[]}`); code != 400 {
		t.Fatalf("no users: %d %v", code, m)
	}

	code, m = adminCall(t, admin, http.MethodPost, "/admin/v1/polyv/donation-settings", e2eToken,
		`{"channels":["2149710"],"goods":[{"goodName":"鲜花","goodImg":"//img/1.png","goodPrice":5,"goodEnabled":"Y"}]}`)
	if code != 200 || m["ok"] != true {
		t.Fatalf("polyv donation settings: %d %v", code, m)
	}
	if s, _ := pf.Setting(); s.UpdatePointURL != "https://gifts.example/pv/donate" {
		t.Fatalf("registered %q, want GIFTD_PUBLIC_URL + GIFTD_POLYV_UPDATE_PATH", s.UpdatePointURL)
	}
	if code, m := adminCall(t, admin, http.MethodPost, "/admin/v1/polyv/donation-settings", e2eToken, `{"channels":["x1"]}`); code != 400 {
		t.Fatalf("a bad channel: %d %v", code, m)
	}

	cancel()
	<-errc
	errc <- nil
	for _, s := range []string{platLinkVSecret, platPolyvSecret, e2eSecret, token, "sign="} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the logs hold %q:\n%s", s, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "linkv wallet move") {
		t.Errorf("no wallet move log line:\n%s", logs.String())
	}
}

// TestServe_PlatformRoutesOffWithoutSettings: without the clients'
// settings the routes answer 503 not_configured.
func TestServe_PlatformRoutesOffWithoutSettings(t *testing.T) {
	_, admin := serveFor(t, nil)
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPost, "/admin/v1/linkv/accounts/ann", `{}`},
		{http.MethodGet, "/admin/v1/linkv/accounts/ann", ``},
		{http.MethodPost, "/admin/v1/linkv/wallet-moves", `{"users":[{"user_id":"ann"}]}`},
		{http.MethodGet, "/admin/v1/linkv/wallet-moves/ann", ``},
		{http.MethodPost, "/admin/v1/polyv/donation-settings", `{"channels":["1"]}`},
	} {
		code, m := adminCall(t, admin, c.method, c.path, e2eToken, c.body)
		e, _ := m["error"].(map[string]any)
		if code != 503 || e["code"] != "not_configured" {
			t.Errorf("%s %s: %d %v, want 503 not_configured", c.method, c.path, code, m)
		}
	}
}
