package main

import (
	"strings"
	"testing"
	"time"

	"giftd/internal/pgtest"
)

func TestSettings_Policies(t *testing.T) {
	base := map[string]string{"GIFTD_ADMIN_TOKEN": e2eToken, "GIFTD_LINKV_APPS": "a:s"}
	cn := map[string]string{"GIFTD_SAFEGUARDS_PROFILE": "cn", "GIFTD_MAX_DEBIT": "1000", "GIFTD_CAP_24H": "5000",
		"GIFTD_CAP_MONTH": "50000", "GIFTD_REMIND_DAY": "2000", "GIFTD_COOLING_OFF": "30m", "GIFTD_EARNINGS_HOLD": "72h"}
	read := func(env ...map[string]string) (settings, error) {
		return readSettings(func(k string) string {
			for i := len(env) - 1; i >= 0; i-- {
				if v, ok := env[i][k]; ok {
					return v
				}
			}
			return base[k]
		})
	}
	s, err := read()
	if err != nil || s.Safeguards.On || s.SafeguardsProfile != "none" || s.Safeguards.TimeZone != "UTC" {
		t.Errorf("the none profile: %+v, %v; want off in UTC", s.Safeguards, err)
	}
	s, err = read(cn)
	g := s.Safeguards
	if err != nil || !g.On || g.TimeZone != "Asia/Shanghai" || g.MaxDebit != 1000 || g.Cap24h != 5000 || g.CapMonth != 50000 ||
		g.RemindDay != 2000 || g.CoolingOff != 30*time.Minute || g.EarningsHold != 72*time.Hour || !g.DisplayHideAmounts {
		t.Errorf("the cn profile: %+v, %v", g, err)
	}
	for _, c := range []struct {
		env  map[string]string
		name string
	}{
		{map[string]string{"GIFTD_SAFEGUARDS_PROFILE": "eu"}, "GIFTD_SAFEGUARDS_PROFILE"},
		{map[string]string{"GIFTD_SAFEGUARDS_PROFILE": "cn"}, "GIFTD_MAX_DEBIT"},
		{map[string]string{"GIFTD_CAP_24H": "0"}, "GIFTD_CAP_24H"},
		{map[string]string{"GIFTD_CAP_MONTH": "-5"}, "GIFTD_CAP_MONTH"},
		{map[string]string{"GIFTD_MAX_DEBIT": "1000000000001"}, "GIFTD_MAX_DEBIT"},
		{map[string]string{"GIFTD_SAFEGUARDS_TIME_ZONE": "Asia/Nowhere"}, "GIFTD_SAFEGUARDS_TIME_ZONE"},
		{map[string]string{"GIFTD_SAFEGUARDS_TIME_ZONE": "Local"}, "GIFTD_SAFEGUARDS_TIME_ZONE"},
		{map[string]string{"GIFTD_COOLING_OFF": "31d"}, "GIFTD_COOLING_OFF"},
		{map[string]string{"GIFTD_COOLING_OFF": "1000h"}, "GIFTD_COOLING_OFF"},
		{map[string]string{"GIFTD_EARNINGS_HOLD": "-1h"}, "GIFTD_EARNINGS_HOLD"},
		{map[string]string{"GIFTD_SAFEGUARDS": "yes"}, "GIFTD_SAFEGUARDS"},
		{map[string]string{"GIFTD_DISPLAY_HIDE_AMOUNTS": "1"}, "GIFTD_DISPLAY_HIDE_AMOUNTS"},
	} {
		env := c.env
		if c.name == "GIFTD_CAP_24H" {
			env = merge(cn, c.env)
		}
		if _, err := read(env); err == nil || !strings.HasPrefix(err.Error(), c.name+": ") {
			t.Errorf("%v: %v, want an error naming %s", c.env, err, c.name)
		}
	}
}

func merge(a, b map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

// TestServe_SafeguardsThroughTheAdminAPIAndACallback: with the cn profile,
// a minor set through the admin API is refused 403 by LinkV's callback,
// and a gift over the merchant's max debit too.
func TestServe_SafeguardsThroughTheAdminAPIAndACallback(t *testing.T) {
	dbURL := pgtest.URL(t)
	public, admin := serveFor(t, map[string]string{"DATABASE_URL": dbURL, "GIFTD_SAFEGUARDS_PROFILE": "cn", "GIFTD_MAX_DEBIT": "50",
		"GIFTD_CAP_24H": "5000", "GIFTD_CAP_MONTH": "50000", "GIFTD_REMIND_DAY": "2000", "GIFTD_COOLING_OFF": "30m", "GIFTD_EARNINGS_HOLD": "72h",
		"GIFTD_DEFAULT_SHARE_BP": "5000"})
	topUpWallet(t, admin, "kid", 100)
	topUpWallet(t, admin, "adult", 100)
	if code, m := adminCall(t, admin, "PUT", "/admin/v1/policies/users/kid", e2eToken, `{"minor":true}`); code != 200 || m["enforced"] != true {
		t.Fatalf("set minor: %d %v", code, m)
	}
	exp := time.Now().Add(time.Hour).Unix()
	if code, body := postDebit(t, public, debitFields("k1", "kid", 10, exp, e2eSecret)); code != 403 || !strings.Contains(body, "refused by policy minor") {
		t.Errorf("a minor's gift: %d %s", code, body)
	}
	if code, body := postDebit(t, public, debitFields("a1", "adult", 51, exp, e2eSecret)); code != 403 || !strings.Contains(body, "limit of 50 gold per gift") {
		t.Errorf("over the max debit: %d %s", code, body)
	}
	if code, body := postDebit(t, public, debitFields("a2", "adult", 50, exp, e2eSecret)); code != 200 {
		t.Errorf("at the max debit: %d %s", code, body)
	}
	if code, m := adminCall(t, admin, "GET", "/admin/v1/earnings/host", e2eToken, ``); code != 200 || m["held"] == float64(0) || m["payable"] != float64(0) {
		t.Errorf("earnings within the hold: %d %v", code, m)
	}
}
