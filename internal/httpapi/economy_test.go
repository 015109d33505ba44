package httpapi_test

import (
	"context"
	"strings"
	"testing"

	"giftd/internal/ledger"
)

func TestEconomyAdmin_CatalogueCreateUpdateDeactivateList(t *testing.T) {
	e := newEnv(t)
	a := e.adm(t, "POST", "/admin/v1/gifts/polyv", `{"gift_id":"鲜花","name":"Flowers","price":500,"share_bp":7000}`)
	if a.code != 201 || a.m["version"] != float64(1) || a.m["active"] != true {
		t.Fatalf("create: %d %s", a.code, a.raw)
	}
	if a := e.adm(t, "POST", "/admin/v1/gifts/polyv", `{"gift_id":"鲜花","name":"x","price":1}`); a.code != 409 || a.errCode() != "gift_exists" {
		t.Errorf("create twice: %d %s", a.code, a.raw)
	}
	// Percent-encoded id, a change, then deactivation: three versions.
	if a := e.adm(t, "PATCH", "/admin/v1/gifts/polyv/%E9%B2%9C%E8%8A%B1", `{"price":600}`); a.code != 200 || a.m["version"] != float64(2) || a.m["share_bp"] != float64(7000) {
		t.Errorf("update: %d %s", a.code, a.raw)
	}
	if a := e.adm(t, "POST", "/admin/v1/gifts/polyv/%E9%B2%9C%E8%8A%B1/deactivate", ``); a.code != 200 || a.m["active"] != false || a.m["version"] != float64(3) {
		t.Errorf("deactivate: %d %s", a.code, a.raw)
	}
	a = e.adm(t, "GET", "/admin/v1/gifts/polyv/%E9%B2%9C%E8%8A%B1", ``)
	if versions, _ := a.m["versions"].([]any); a.code != 200 || len(versions) != 3 {
		t.Errorf("history: %d %s", a.code, a.raw)
	}
	// The default share applies when none is given.
	if a := e.adm(t, "POST", "/admin/v1/gifts/linkv", `{"gift_id":"10620","name":"Rose","price":5}`); a.code != 201 || a.m["share_bp"] != float64(0) {
		t.Errorf("create with the default share: %d %s", a.code, a.raw)
	}
	a = e.adm(t, "GET", "/admin/v1/gifts?platform=linkv", ``)
	if gifts, _ := a.m["gifts"].([]any); a.code != 200 || len(gifts) != 1 {
		t.Errorf("list linkv: %d %s", a.code, a.raw)
	}
	a = e.adm(t, "GET", "/admin/v1/gifts", ``)
	if gifts, _ := a.m["gifts"].([]any); a.code != 200 || len(gifts) != 2 {
		t.Errorf("list all: %d %s", a.code, a.raw)
	}
}

func TestEconomyAdmin_BadInputIsA4xxNamingTheField(t *testing.T) {
	e := newEnv(t)
	e.adm(t, "POST", "/admin/v1/gifts/linkv", `{"gift_id":"g","name":"G","price":5}`)
	for _, tc := range []struct {
		method, path, body string
		code               int
		field              string
	}{
		{"POST", "/admin/v1/gifts/tiktok", `{"gift_id":"g","name":"G","price":5}`, 400, "platform"},
		{"POST", "/admin/v1/gifts/linkv", `{"name":"G","price":5}`, 400, "gift_id"},
		{"POST", "/admin/v1/gifts/linkv", `{"gift_id":"h","price":5}`, 400, "name"},
		{"POST", "/admin/v1/gifts/linkv", `{"gift_id":"h","name":"H"}`, 400, "price"},
		{"POST", "/admin/v1/gifts/linkv", `{"gift_id":"h","name":"H","price":"5"}`, 400, "price"},
		{"POST", "/admin/v1/gifts/linkv", `{"gift_id":"h","name":"H","price":-1}`, 400, "price"},
		{"POST", "/admin/v1/gifts/linkv", `{"gift_id":"h","name":"H","price":5,"share_bp":10001}`, 400, "share_bp"},
		{"POST", "/admin/v1/gifts/linkv", `{"gift_id":"h","name":"H","price":5,"share_bp":1.5}`, 400, "share_bp"},
		{"POST", "/admin/v1/gifts/linkv", `{"gift_id":"h\u0000","name":"H","price":5}`, 400, "gift_id"},
		{"POST", "/admin/v1/gifts/linkv", `{"gift_id":"` + strings.Repeat("x", 129) + `","name":"H","price":5}`, 400, "gift_id"},
		{"POST", "/admin/v1/gifts/linkv", `{"gift_id":"h","name":"H","price":5,"colour":"red"}`, 400, "body"},
		{"PATCH", "/admin/v1/gifts/linkv/g", `{"price":1e3}`, 400, "price"},
		{"PATCH", "/admin/v1/gifts/linkv/g", `{"active":"no"}`, 400, "body"},
		{"PATCH", "/admin/v1/gifts/linkv/nope", `{"price":1}`, 404, "nope"},
		{"POST", "/admin/v1/gifts/linkv/nope/deactivate", ``, 404, "nope"},
		{"GET", "/admin/v1/gifts?platform=x", ``, 400, "platform"},
		{"PUT", "/admin/v1/polyv/channels/12a/receiver", `{"receiver_id":"r"}`, 400, "channel_id"},
		{"PUT", "/admin/v1/polyv/channels/12/receiver", `{}`, 400, "receiver_id"},
		{"DELETE", "/admin/v1/polyv/channels/12/receiver", ``, 404, "12"},
		{"GET", "/admin/v1/earnings/nobody", ``, 404, "nobody"},
		{"POST", "/admin/v1/earnings/nobody/payouts", `{"amount":1,"idempotency_key":"k"}`, 404, "nobody"},
		{"POST", "/admin/v1/earnings/r/payouts", `{"amount":0,"idempotency_key":"k"}`, 400, "amount"},
		{"POST", "/admin/v1/earnings/r/payouts", `{"amount":1}`, 400, "idempotency_key"},
	} {
		a := e.adm(t, tc.method, tc.path, tc.body)
		if a.code != tc.code || !strings.Contains(a.errMessage(), tc.field) || a.errCode() == "" {
			t.Errorf("%s %s %s: %d %s; want %d naming %s", tc.method, tc.path, tc.body, a.code, a.raw, tc.code, tc.field)
		}
	}
}

func TestEconomyAdmin_ChannelsAndPayouts(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if a := e.adm(t, "PUT", "/admin/v1/polyv/channels/2114561/receiver", `{"receiver_id":"anchor-1"}`); a.code != 200 || a.m["receiver_id"] != "anchor-1" {
		t.Fatalf("map: %d %s", a.code, a.raw)
	}
	a := e.adm(t, "GET", "/admin/v1/polyv/channels", ``)
	if ch, _ := a.m["channels"].([]any); a.code != 200 || len(ch) != 1 {
		t.Errorf("channels: %d %s", a.code, a.raw)
	}
	if a := e.adm(t, "DELETE", "/admin/v1/polyv/channels/2114561/receiver", ``); a.code != 200 || a.m["receiver_id"] != nil {
		t.Errorf("unmap: %d %s", a.code, a.raw)
	}

	// Earnings to pay out: a gift of 100 at the default share (0 here):
	// none; then a catalogue gift at 50%.
	if _, err := e.store.TopUp(ctx, ledger.TopUp{UserID: "fan", Amount: 1000, Key: "seed"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.CreateGift(ctx, ledger.CatalogueGift{Platform: "linkv", GiftID: "rose", Name: "Rose", Price: 100, ShareBP: 5000, Active: true}); err != nil {
		t.Fatal(err)
	}
	d := ledger.Debit{Key: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: "g1"}, UserID: "fan", Gold: 100,
		Gift: ledger.Gift{ReceiverID: "host", RoomID: "r", GiftID: "rose", Count: 1}}
	if _, err := e.store.Debit(ctx, d); err != nil {
		t.Fatal(err)
	}
	if a := e.adm(t, "GET", "/admin/v1/earnings/host", ``); a.code != 200 || a.m["payable"] != float64(50) {
		t.Errorf("earnings: %d %s", a.code, a.raw)
	}
	if a := e.adm(t, "POST", "/admin/v1/earnings/host/payouts", `{"amount":51,"idempotency_key":"p1"}`); a.code != 422 || a.errCode() != "insufficient_earnings" || !strings.Contains(a.errMessage(), "payable 50") {
		t.Errorf("over the limit: %d %s", a.code, a.raw)
	}
	for range 2 {
		if a := e.adm(t, "POST", "/admin/v1/earnings/host/payouts", `{"amount":20,"idempotency_key":"p1","note":"week 47"}`); a.code != 200 || a.m["balance"] != float64(30) {
			t.Errorf("payout: %d %s", a.code, a.raw)
		}
	}
	if a := e.adm(t, "POST", "/admin/v1/earnings/host/payouts", `{"amount":21,"idempotency_key":"p1"}`); a.code != 409 || a.errCode() != "idempotency_key_reused" {
		t.Errorf("reused key: %d %s", a.code, a.raw)
	}
	// The reversal answers what it took back from the receiving side.
	a = e.adm(t, "POST", "/admin/v1/debits/g1/reversal", `{"app_id":"app","idempotency_key":"r1"}`)
	gift, _ := a.m["gift"].(map[string]any)
	if a.code != 200 || gift["earnings"] != float64(30) || gift["shortfall"] != float64(20) || gift["house"] != float64(50) {
		t.Errorf("reversal: %d %s", a.code, a.raw)
	}
	a = e.adm(t, "GET", "/admin/v1/audit", ``)
	if a.code != 200 || a.m["ok"] != true || a.m["total_owed"] != float64(20) {
		t.Errorf("audit: %d %s", a.code, a.raw)
	}
}
