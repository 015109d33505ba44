package polyv_test

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"giftd/internal/polyv"
)

// urlParams configures the registered URLs' own parameters.
func urlParams(names ...string) func(*polyv.Config) {
	return func(c *polyv.Config) { c.URLParams = names }
}

// form writes kv (name, value, name, value…) as a form in the order given,
// each name and value query-escaped.
func form(kv ...string) string {
	var b strings.Builder
	for i := 0; i < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(kv[i]) + "=" + url.QueryEscape(kv[i+1]))
	}
	return b.String()
}

// resplit returns p's parameters as form pairs in name order, without
// those named in drop, then extra: a copy of p that keeps p's sign.
func resplit(p map[string]string, drop []string, extra ...string) string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(p)) {
		if !slices.Contains(drop, k) {
			kv = append(kv, k, p[k])
		}
	}
	return form(append(kv, extra...)...)
}

func TestDonate_ViewerIdResplitIntoAnUnlistedNameRefusedAndDebitsNothing(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "alice-wu", 100)
	f.topUp(t, "alice-", 100)
	p := withSign(donation("resplit", "alice-wu", "7"), testSecret)
	// viewerIdalice-wu read as viewerId=alice- and w=u: the same signed
	// string, another wallet.
	copy := resplit(p, []string{"viewerId"}, "viewerId", "alice-", "w", "u")
	for i := range 2 { // before and after Polyv's own call
		r := f.post(t, "", copy)
		if r.code != 422 || !strings.HasPrefix(r.body.Message, "w: ") || !strings.Contains(r.body.Message, "GIFTD_POLYV_URL_PARAMS") {
			t.Errorf("re-split copy %d: %d %s, want 422 naming w and GIFTD_POLYV_URL_PARAMS", i, r.code, r.raw)
		}
		if i == 0 {
			if r := f.post(t, "", encode(p)); r.raw != `{"code":200,"status":"success","message":"","data":93}`+"\n" {
				t.Errorf("Polyv's call: %d %s, want 200 and 93", r.code, r.raw)
			}
		}
	}
	if a, b := f.balance(t, "alice-wu"), f.balance(t, "alice-"); a != 93 || b != 100 || f.debitEntries(t) != 1 {
		t.Errorf("balances alice-wu %d alice- %d with %d debits, want 93, 100 and 1", a, b, f.debitEntries(t))
	}
}

func TestDonate_ViewerIdAbsorbingAURLParameterRefused(t *testing.T) {
	f := newFixture(t, urlParams("zone"))
	f.topUp(t, "viewer-1", 100)
	f.topUp(t, "viewer-1zonecn", 100)
	p := donation("absorb", "viewer-1", "7")
	p["zone"] = "cn"
	p = withSign(p, testSecret)
	// viewerIdviewer-1zonecn read as viewerId=viewer-1zonecn, zone absent.
	r := f.post(t, "", resplit(p, []string{"viewerId", "zone"}, "viewerId", "viewer-1zonecn"))
	if r.code != 422 || !strings.HasPrefix(r.body.Message, "zone: ") {
		t.Errorf("absorbing copy: %d %s, want 422 naming zone", r.code, r.raw)
	}
	if r := f.post(t, "zone=cn", resplit(p, []string{"zone"})); r.code != 200 {
		t.Errorf("Polyv's call: %d %s, want 200", r.code, r.raw)
	}
	if a, b := f.balance(t, "viewer-1"), f.balance(t, "viewer-1zonecn"); a != 93 || b != 100 {
		t.Errorf("balances viewer-1 %d viewer-1zonecn %d, want 93 and 100", a, b)
	}
}

func TestCallbacks_UnlistedParameterRefused422NamingIt(t *testing.T) {
	f := newFixture(t, urlParams("shop"))
	f.topUp(t, "u1", 100)
	cases := map[string]struct {
		extra      []string
		name, want string
	}{
		"made-up name":              {[]string{"promo", "x"}, "promo", "not a parameter of Polyv's donation callback"},
		"made-up name, empty value": {[]string{"zzz", ""}, "zzz", "not a parameter of Polyv's donation callback"},
		"query's name in a donation": {[]string{"viewerName", "bob"}, "viewerName",
			"not a parameter of Polyv's donation callback"},
		"configured name, empty":  {[]string{"shop", ""}, "shop", "required"},
		"configured name, absent": {nil, "shop", "required"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p := donation("unlisted-"+name, "u1", "1")
			if c.name != "shop" {
				p["shop"] = "s1"
			}
			for i := 0; i < len(c.extra); i += 2 {
				p[c.extra[i]] = c.extra[i+1]
			}
			r := f.donate(t, p)
			if r.code != 422 || !strings.HasPrefix(r.body.Message, c.name+": "+c.want) ||
				!strings.Contains(r.body.Message, "GIFTD_POLYV_URL_PARAMS") {
				t.Errorf("answer %d %s, want 422 %q… naming GIFTD_POLYV_URL_PARAMS", r.code, r.raw, c.name+": "+c.want)
			}
		})
	}
	q := withSign(map[string]string{"appId": testApp, "channelId": "2114561", "viewerId": "u1", "viewerName": "bob",
		"ts": "1700000000000", "shop": "s1", "count": "1"}, testSecret)
	if r := f.query(t, q); r.code != 422 || !strings.HasPrefix(r.body.Message, "count: not a parameter of Polyv's points query") {
		t.Errorf("query with count: %d %s, want 422 naming count", r.code, r.raw)
	}
	if got := f.balance(t, "u1"); got != 100 || f.debitEntries(t) != 0 {
		t.Errorf("balance %d with %d debits, want 100 and none", got, f.debitEntries(t))
	}
}

func TestCallbacks_ConfiguredURLParametersAcceptedAndSigned(t *testing.T) {
	f := newFixture(t, urlParams("shop", "zone"))
	f.topUp(t, "u1", 100)
	p := donation("configured", "u1", "7")
	p["shop"], p["zone"] = "s1", "cn"
	p = withSign(p, testSecret)
	body := resplit(p, []string{"shop", "zone"})
	if r := f.post(t, "shop=s1&zone=cn", body); r.raw != `{"code":200,"status":"success","message":"","data":93}`+"\n" {
		t.Errorf("donation: %d %s, want 200 and 93", r.code, r.raw)
	}
	if r := f.post(t, "shop=s1&zone=jp", body); r.code != 403 {
		t.Errorf("another value of zone: %d %s, want 403", r.code, r.raw)
	}
	q := withSign(map[string]string{"appId": testApp, "channelId": "2114561", "viewerId": "u1", "viewerName": "bob",
		"ts": "1700000000000", "shop": "s1", "zone": "cn"}, testSecret)
	if r := f.query(t, q); r.code != 200 || string(r.body.Data) != "93" {
		t.Errorf("query: %d %s, want 200 and 93", r.code, r.raw)
	}
}

// TestCallbacks_AmbiguousSignedStringRefused: a signed string that more
// than one set of acceptable parameters writes is refused however it is
// split, Polyv's own call included.
func TestCallbacks_AmbiguousSignedStringRefused(t *testing.T) {
	f := newFixture(t, urlParams("zone"))
	for _, u := range []string{"victim", "x", "xzoney", "sts1700000000000viewerIdvictim"} {
		f.topUp(t, u, 100)
	}
	// sessionIds1 ts1700000000000 viewerIdsts1700000000000viewerIdvictim
	// also reads as sessionId=s1ts1700000000000viewerIds, ts=1700000000000,
	// viewerId=victim.
	p := donation("s1", "sts1700000000000viewerIdvictim", "7")
	p["zone"] = "cn"
	p = withSign(p, testSecret)
	// viewerIdxzoneyzonecn also reads as viewerId=x, zone=yzonecn.
	z := donation("z1", "xzoney", "7")
	z["zone"] = "cn"
	z = withSign(z, testSecret)
	for name, body := range map[string]string{
		"Polyv's call, ts in viewerId": encode(p),
		"its re-split": resplit(p, []string{"sessionId", "viewerId"},
			"sessionId", "s1ts1700000000000viewerIds", "viewerId", "victim"),
		"Polyv's call, zone in viewerId": encode(z),
		"its re-split, zone":             resplit(z, []string{"viewerId", "zone"}, "viewerId", "x", "zone", "yzonecn"),
	} {
		if r := f.post(t, "", body); r.code != 422 || !strings.HasPrefix(r.body.Message, "sign: ") {
			t.Errorf("%s: %d %s, want 422 on sign (ambiguous)", name, r.code, r.raw)
		}
	}
	// A points query: viewerIdaliceviewerNamebob also reads as
	// viewerId=aliceviewerNamebob without viewerName.
	q := withSign(map[string]string{"appId": testApp, "channelId": "2114561", "viewerId": "victim", "viewerName": "bob",
		"ts": "1700000000000", "zone": "cn"}, testSecret)
	if r := f.query(t, q); r.code != 200 || string(r.body.Data) != "100" {
		t.Errorf("query: %d %s, want 200 and 100", r.code, r.raw)
	}
	absorbed := resplit(q, []string{"viewerId", "viewerName"}, "viewerId", "victimviewerNamebob")
	req := httptest.NewRequest(http.MethodGet, "/polyv/points?"+absorbed, nil)
	if r := serve(t, f.handlers.Query, req); r.code != 422 || !strings.HasPrefix(r.body.Message, "viewerId: ") {
		t.Errorf("query with viewerName in viewerId: %d %s, want 422 on viewerId", r.code, r.raw)
	}
	if f.debitEntries(t) != 0 {
		t.Errorf("%d debits, want none", f.debitEntries(t))
	}
}
