package main

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"giftd/internal/polyv"
)

const polyvSecret = "e2e-polyv-secret-7"

// polyvCall sends a Polyv callback: a GET with params in the query, or a
// POST with them as a form body. It returns the status and the body.
func polyvCall(t *testing.T, method, rawURL string, params map[string]string) (int, string) {
	t.Helper()
	form := url.Values{}
	for k, v := range params {
		form.Set(k, v)
	}
	var resp *http.Response
	var err error
	if method == http.MethodGet {
		resp, err = http.Get(rawURL + "?" + form.Encode())
	} else {
		resp, err = http.PostForm(rawURL, form)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func polyvSigned(p map[string]string) map[string]string {
	p["sign"] = polyv.Sign(p, polyvSecret)
	return p
}

func TestServe_PolyvOffHasNoRoutes(t *testing.T) {
	public, _ := serveFor(t, nil)
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/polyv/points"}, {http.MethodPost, "/polyv/points/donate"},
	} {
		req, _ := http.NewRequest(c.method, "http://"+public+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s with Polyv off: %d, want 404", c.method, c.path, resp.StatusCode)
		}
	}
}

// TestServe_PolyvEndToEnd switches Polyv on beside LinkV with its settings,
// donates, queries, debits the same wallet through LinkV and reverses the
// donation through the admin API. (The load in Polyv mode: e2e/load_test.go.)
func TestServe_PolyvEndToEnd(t *testing.T) {
	srv := startServe(t, map[string]string{
		"GIFTD_POLYV_APPS":        "pv1:" + polyvSecret,
		"GIFTD_POLYV_POINT_SCALE": "100",
		"GIFTD_POLYV_QUERY_PATH":  "/cb/pv/points",
		"GIFTD_POLYV_UPDATE_PATH": "/cb/pv/donate",
	})
	public, admin, logs := srv.public, srv.admin, srv.logs
	topUpWallet(t, admin, "viewer-1", 5000)

	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	donation := polyvSigned(map[string]string{
		"appId": "pv1", "channelId": "2114561", "viewerId": "viewer-1", "sessionId": "s1", "ts": ts,
		"goodName": "鲜花", "goodPrice": "6.17", "goodNum": "2", "count": "12.34",
	})
	query := func() (int, string) {
		return polyvCall(t, http.MethodGet, "http://"+public+"/cb/pv/points", polyvSigned(map[string]string{
			"appId": "pv1", "channelId": "2114561", "viewerId": "viewer-1", "viewerName": "小明",
			"ts": strconv.FormatInt(time.Now().UnixMilli(), 10),
		}))
	}
	for i := range 2 { // the second is a byte-identical copy: a replay
		if code, body := polyvCall(t, http.MethodPost, "http://"+public+"/cb/pv/donate", donation); code != 200 ||
			body != `{"code":200,"status":"success","message":"","data":37.66}` {
			t.Fatalf("donation %d: %d %s", i, code, body)
		}
	}
	if code, body := query(); code != 200 || body != `{"code":200,"status":"success","message":"","data":37.66}` {
		t.Errorf("points: %d %s, want 37.66", code, body)
	}
	// LinkV debits the same wallet.
	if code, body := postDebit(t, public, debitFields("lv-1", "viewer-1", 1000, time.Now().Unix()+3600, e2eSecret)); code != 200 {
		t.Fatalf("LinkV debit: %d %s", code, body)
	}
	if code, body := query(); code != 200 || !strings.Contains(body, `"data":27.66`) {
		t.Errorf("points after the LinkV debit: %d %s, want 27.66", code, body)
	}
	// The default paths are not served: these are configured.
	if code, _ := polyvCall(t, http.MethodPost, "http://"+public+"/polyv/points/donate", donation); code != 404 {
		t.Errorf("default donate path: %d, want 404", code)
	}

	// The ledger shows the donation under platform polyv; the admin API
	// reverses it by the request id giftd derived.
	code, page := adminCall(t, admin, http.MethodGet, "/admin/v1/wallets/viewer-1/ledger", e2eToken, "")
	var ref string
	entries, _ := page["entries"].([]any)
	for _, e := range entries {
		if m, _ := e.(map[string]any); m["platform"] == "polyv" && m["kind"] == "debit" {
			ref, _ = m["ref"].(string)
		}
	}
	if code != 200 || len(ref) != 64 {
		t.Fatalf("ledger: %d %v; want a polyv debit", code, page)
	}
	code, m := adminCall(t, admin, http.MethodPost, "/admin/v1/debits/"+ref+"/reversal", e2eToken,
		`{"platform":"polyv","app_id":"pv1","idempotency_key":"refund-pv"}`)
	if code != 200 || m["amount"] != 1234.0 || m["gold"] != 4000.0 {
		t.Errorf("reversal: %d %v, want 1234 back and gold 4000", code, m)
	}

	metrics := scrape(t, admin)
	for _, want := range []string{
		`giftd_debit_outcomes_total{outcome="ok",platform="polyv"} 1`,
		`giftd_debit_outcomes_total{outcome="replay",platform="polyv"} 1`,
		`giftd_debit_outcomes_total{outcome="ok",platform="linkv"} 1`,
		`giftd_gold_debited_total{platform="polyv"} 1234`,
		`route="/cb/pv/donate"`, `route="/cb/pv/points"`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	if err := srv.stop(t); err != nil {
		t.Errorf("serve: %v", err)
	}
	if out := logs.String(); strings.Contains(out, polyvSecret) || strings.Contains(out, donation["sign"]) {
		t.Error("logs carry the Polyv secret or a sign")
	}
}

// TestServe_PolyvURLParams: GIFTD_POLYV_URL_PARAMS lists the registered
// URL's own parameters. A donation that carries zone in its URL, signed,
// debits; one without it, or with a parameter not listed, is refused 422
// naming the parameter and the setting. (giftd-load signing the -url's
// query: e2e/load_test.go.)
func TestServe_PolyvURLParams(t *testing.T) {
	s, err := readSettings(func(k string) string {
		return map[string]string{"GIFTD_ADMIN_TOKEN": e2eToken, "GIFTD_LINKV_APPS": "a:s", "GIFTD_POLYV_URL_PARAMS": "zone, shop"}[k]
	})
	if err != nil || !slices.Equal(s.PolyvURLParams, []string{"zone", "shop"}) {
		t.Fatalf("readSettings: %v, %v; want [zone shop]", s.PolyvURLParams, err)
	}
	srv := startServe(t, map[string]string{"GIFTD_POLYV_APPS": "pv1:" + polyvSecret, "GIFTD_POLYV_URL_PARAMS": "zone"})
	public, admin := srv.public, srv.admin
	topUpWallet(t, admin, "viewer-1", 100)

	donate := "http://" + public + "/polyv/points/donate"
	donation := func(session string) map[string]string {
		return map[string]string{
			"appId": "pv1", "channelId": "2114561", "viewerId": "viewer-1", "sessionId": session,
			"ts": strconv.FormatInt(time.Now().UnixMilli(), 10), "goodName": "鲜花", "goodPrice": "5", "goodNum": "1", "count": "5",
		}
	}
	p := donation("s1")
	p["zone"] = "cn"
	polyvSigned(p)
	delete(p, "zone") // sent in the URL
	if code, body := polyvCall(t, http.MethodPost, donate+"?zone=cn", p); code != 200 || body != `{"code":200,"status":"success","message":"","data":95}` {
		t.Errorf("with zone: %d %s, want 200 and 95", code, body)
	}
	if code, body := polyvCall(t, http.MethodPost, donate, polyvSigned(donation("s2"))); code != 422 ||
		!strings.Contains(body, `"message":"zone: required: GIFTD_POLYV_URL_PARAMS`) {
		t.Errorf("without zone: %d %s, want 422 naming zone and the setting", code, body)
	}
	p = donation("s3")
	p["shop"] = "s1"
	if code, body := polyvCall(t, http.MethodPost, donate+"?zone=cn", polyvSigned(p)); code != 422 ||
		!strings.Contains(body, `"message":"shop: not a parameter`) || !strings.Contains(body, "GIFTD_POLYV_URL_PARAMS") {
		t.Errorf("with shop: %d %s, want 422 naming shop and the setting", code, body)
	}
	if err := srv.stop(t); err != nil {
		t.Errorf("serve: %v", err)
	}
}
