package httpapi_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/linkv"
	"giftd/internal/polyv"
)

func TestAdmin_FindDebitShowsAskedAnsweredAndReversal(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.adm(t, http.MethodPost, "/admin/v1/wallets/u1/topups", `{"amount":100,"idempotency_key":"seed"}`)
	for _, d := range []struct {
		platform, id string
		gold         int64
	}{{linkv.Platform, "r1", 40}, {polyv.Platform, "r1", 5}, {linkv.Platform, "poor", 1000}} {
		_, err := e.store.Debit(ctx, ledger.Debit{
			Key: ledger.DebitKey{Platform: d.platform, AppID: "app", RequestID: d.id}, UserID: "u1", Gold: d.gold,
			ExpiresAt: time.Now().Add(time.Hour), Details: map[string]string{"gift_id": "7"},
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	a := e.adm(t, http.MethodGet, "/admin/v1/debits/r1?app_id=app", "")
	rec, _ := a.m["record"].(map[string]any)
	entry, _ := a.m["entry"].(map[string]any)
	if a.code != 200 || a.m["platform"] != "linkv" || a.m["user_id"] != "u1" || a.m["reversal"] != nil ||
		rec["gold"] != 40.0 || rec["status"] != 200.0 || rec["balance"] != 60.0 ||
		entry["amount"] != -40.0 || entry["details"].(map[string]any)["gift_id"] != "7" || rec["entry_id"] != entry["id"] {
		t.Fatalf("linkv debit: %d %s", a.code, a.raw)
	}
	if a := e.adm(t, http.MethodGet, "/admin/v1/debits/r1?app_id=app&platform=polyv", ""); a.code != 200 ||
		a.m["platform"] != "polyv" || a.m["record"].(map[string]any)["gold"] != 5.0 {
		t.Errorf("polyv debit: %d %s", a.code, a.raw)
	}
	// Answered 402: a record, no entry.
	if a := e.adm(t, http.MethodGet, "/admin/v1/debits/poor?app_id=app", ""); a.code != 200 ||
		a.m["record"].(map[string]any)["status"] != 402.0 || a.m["entry"] != nil {
		t.Errorf("402 debit: %d %s", a.code, a.raw)
	}

	rev := e.adm(t, http.MethodPost, "/admin/v1/debits/r1/reversal", `{"app_id":"app","idempotency_key":"rev1","note":"refund"}`)
	a = e.adm(t, http.MethodGet, "/admin/v1/debits/r1?app_id=app&platform=linkv", "")
	reversal, _ := a.m["reversal"].(map[string]any)
	if a.code != 200 || reversal["id"] != rev.m["entry_id"] || reversal["amount"] != 40.0 || reversal["ref"] != "rev1" ||
		reversal["details"].(map[string]any)["note"] != "refund" {
		t.Fatalf("after reversal: %d %s", a.code, a.raw)
	}

	for _, c := range []struct {
		path    string
		code    int
		errCode string
	}{
		{"/admin/v1/debits/nope?app_id=app", 404, "not_found"},
		{"/admin/v1/debits/r1?app_id=other", 404, "not_found"},
		{"/admin/v1/debits/r1", 400, "bad_request"},
		{"/admin/v1/debits/r1?app_id=app&platform=other", 400, "bad_request"},
		{"/admin/v1/debits/r1?app_id=" + url.QueryEscape("a\x00"), 400, "bad_request"},
	} {
		if a := e.adm(t, http.MethodGet, c.path, ""); a.code != c.code || a.errCode() != c.errCode {
			t.Errorf("%s: %d %s, want %d %s", c.path, a.code, a.raw, c.code, c.errCode)
		}
	}
	if a := e.call(t, http.MethodGet, "/admin/v1/debits/r1?app_id=app", "Bearer wrong", ""); a.code != 401 {
		t.Errorf("wrong token: %d %s", a.code, a.raw)
	}
}

func TestAdmin_StatsFromTheRegistry(t *testing.T) {
	e := newEnv(t)
	if a := e.call(t, http.MethodGet, "/admin/v1/stats", "", ""); a.code != 401 || a.errCode() != "unauthorized" {
		t.Fatalf("without token: %d %s", a.code, a.raw)
	}
	e.adm(t, http.MethodPost, "/admin/v1/wallets/u1/topups", `{"amount":100,"idempotency_key":"seed"}`)
	now := time.Now().Unix()
	f := map[string]string{
		"app_id": "app", "request_id": "s1", "nonce": "abcdefgh" + strconv.FormatInt(now, 10) + "ijklmnop",
		"user_id": "u1", "gold": "30", "expriation": strconv.FormatInt(now+600, 10), "type": "1",
		"reason": `{"gift_id":"7","send_num":1,"resource_id":"room","vtype":"1","receiver_id":"host"}`,
	}
	f["sign"] = linkv.Sign(f, "secret")
	form := url.Values{}
	for k, v := range f {
		form.Set(k, v)
	}
	resp, err := http.PostForm(e.public.URL+"/linkv/debit", form)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("debit: %v %v", resp, err)
	}
	resp.Body.Close()

	a := e.adm(t, http.MethodGet, "/admin/v1/stats", "")
	if a.code != 200 || a.m["ready"] != true {
		t.Fatalf("stats: %d %s", a.code, a.raw)
	}
	ok := 0.0
	for _, c := range a.m["callbacks"].([]any) {
		if c := c.(map[string]any); c["platform"] == "linkv" && c["outcome"] == "ok" {
			ok = c["count"].(float64)
		}
	}
	lat := a.m["callback_latency"].(map[string]any)
	buckets := lat["buckets"].([]any)
	last := buckets[len(buckets)-1].(map[string]any)
	if ok != 1 || lat["count"] != 1.0 || last["count"] != 1.0 || last["le"] != 5.0 {
		t.Errorf("callbacks ok %v, latency %v: want one debit", ok, lat)
	}
	if a.m["gold_debited"].(map[string]any)["linkv"] != 30.0 || a.m["gold_credited"].(map[string]any)["topup"] != 100.0 {
		t.Errorf("gold: %s", a.raw)
	}
	forms := 0.0
	for _, n := range a.m["sign_forms"].(map[string]any) {
		forms += n.(float64)
	}
	if forms != 1 {
		t.Errorf("sign_forms %v, want one match", a.m["sign_forms"])
	}
	if h := a.m["http_5xx"].(map[string]any); h["public"] != 0.0 || h["admin"] != 0.0 {
		t.Errorf("http_5xx %v", h)
	}
}
