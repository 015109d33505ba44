package httpapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func (e *env) admAs(t *testing.T, operator, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.admin.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Giftd-Operator", operator)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestSafeguardsAdmin_SetReadClearWithHistory(t *testing.T) {
	e := newEnv(t)
	e.adm(t, "POST", "/admin/v1/wallets/alice/topups", `{"amount":100,"idempotency_key":"k1"}`)
	if code, body := e.admAs(t, "ann", "PUT", "/admin/v1/policies/users/alice",
		`{"cap_24h":500,"minor":true,"time_zone":"Asia/Shanghai","suspended_until":"2026-12-01T00:00:00Z"}`); code != 200 ||
		!strings.Contains(body, `"updated_by":"ann"`) || !strings.Contains(body, `"cap_24h":500`) {
		t.Fatalf("put: %d %s", code, body)
	}
	a := e.adm(t, "GET", "/admin/v1/policies/users/alice", ``)
	if p, _ := a.m["policy"].(map[string]any); a.code != 200 || p["minor"] != true || p["time_zone"] != "Asia/Shanghai" || a.m["enforced"] != false {
		t.Errorf("get: %d %s", a.code, a.raw)
	}
	if code, body := e.admAs(t, "bob", "PUT", "/admin/v1/policies/apps/linkv/app", `{"max_debit":50}`); code != 200 {
		t.Errorf("put app: %d %s", code, body)
	}
	if a := e.adm(t, "DELETE", "/admin/v1/policies/users/alice", ``); a.code != 200 || a.m["cleared_by"] != "unknown" {
		t.Errorf("clear without an operator: %d %s", a.code, a.raw)
	}
	if a := e.adm(t, "GET", "/admin/v1/policies/users/alice", ``); a.code != 404 {
		t.Errorf("get a cleared policy: %d %s", a.code, a.raw)
	}
	a = e.adm(t, "GET", "/admin/v1/policies/users/alice/history", ``)
	changes, _ := a.m["changes"].([]any)
	if a.code != 200 || len(changes) != 2 {
		t.Fatalf("history: %d %s", a.code, a.raw)
	}
	if c := changes[0].(map[string]any); c["changed_by"] != "unknown" || c["new"] != nil || c["old"] == nil {
		t.Errorf("the clear: %v", c)
	}
	if c := changes[1].(map[string]any); c["changed_by"] != "ann" || c["old"] != nil {
		t.Errorf("the set: %v", c)
	}
	if a := e.adm(t, "GET", "/admin/v1/policies/defaults", ``); a.code != 200 || a.m["enforced"] != false || a.m["time_zone"] != "UTC" {
		t.Errorf("defaults: %d %s", a.code, a.raw)
	}
	if a := e.adm(t, "GET", "/admin/v1/reminders?user_id=alice", ``); a.code != 200 || a.raw != "{\"reminders\":[]}\n" {
		t.Errorf("reminders: %d %s", a.code, a.raw)
	}
}

func TestSafeguardsAdmin_BadInputIsA4xxNamingTheProblem(t *testing.T) {
	e := newEnv(t)
	e.adm(t, "POST", "/admin/v1/wallets/alice/topups", `{"amount":100,"idempotency_key":"k1"}`)
	for _, tc := range []struct {
		method, path, body string
		code               int
		names              string
	}{
		{"PUT", "/admin/v1/policies/users/alice", `{"cap_24h":-1}`, 400, "cap_24h"},
		{"PUT", "/admin/v1/policies/users/alice", `{"cap_month":1000000000001}`, 400, "cap_month"},
		{"PUT", "/admin/v1/policies/users/alice", `{"max_debit":99999999999999999999}`, 400, "max_debit"},
		{"PUT", "/admin/v1/policies/users/alice", `{"remind_day":1.5}`, 400, "remind_day"},
		{"PUT", "/admin/v1/policies/users/alice", `{"cooling_off_s":9999999999}`, 400, "cooling_off_s"},
		{"PUT", "/admin/v1/policies/users/alice", `{"time_zone":"Mars/Olympus"}`, 400, "time_zone"},
		{"PUT", "/admin/v1/policies/users/alice", `{"time_zone":"+08:00"}`, 400, "time_zone"},
		{"PUT", "/admin/v1/policies/users/alice", `{"suspended_until":"tomorrow"}`, 400, "suspended_until"},
		{"PUT", "/admin/v1/policies/users/alice", `{"cap_day":1}`, 400, "cap_day"},
		{"PUT", "/admin/v1/policies/users/nobody", `{"minor":true}`, 404, "unknown user"},
		{"PUT", "/admin/v1/policies/apps/linkv/app", `{"minor":true}`, 400, "minor"},
		{"PUT", "/admin/v1/policies/apps/tiktok/app", `{}`, 400, "platform"},
		{"GET", "/admin/v1/policies/users/alice/history?limit=0", ``, 400, "limit"},
		{"GET", "/admin/v1/reminders?since=yesterday", ``, 400, "since"},
	} {
		a := e.adm(t, tc.method, tc.path, tc.body)
		if a.code != tc.code || !strings.Contains(a.errMessage(), tc.names) {
			t.Errorf("%s %s %s: %d %s, want %d naming %s", tc.method, tc.path, tc.body, a.code, a.raw, tc.code, tc.names)
		}
	}
	if code, body := e.admAs(t, strings.Repeat("x", 65), "PUT", "/admin/v1/policies/users/alice", `{}`); code != 400 || !strings.Contains(body, "X-Giftd-Operator") {
		t.Errorf("a long operator: %d %s", code, body)
	}
}
