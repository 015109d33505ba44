package polyv_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/callback"
	"giftd/internal/ledger"
	"giftd/internal/linkv"
	"giftd/internal/pgtest"
	"giftd/internal/polyv"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	testApp    = "polyv-app-1"
	testSecret = "polyv-test-secret"
)

// testNow is the clock of every test: the ts of the hand-derived vectors.
var testNow = time.UnixMilli(1700000000000)

type fixture struct {
	store    *ledger.Store
	handlers polyv.Handlers
	reg      *prometheus.Registry
	calls    *callback.Recorder
}

func newFixture(t *testing.T, mutate ...func(*polyv.Config)) *fixture {
	t.Helper()
	store, err := ledger.Open(context.Background(), pgtest.URL(t), pgtest.StoreOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cfg := polyv.Config{
		Apps: map[string][]string{
			testApp: {testSecret},
			"app2":  {"old-secret", "new-secret"},
		},
		MaxSkew:   5 * time.Minute,
		DBTimeout: 10 * time.Second,
		Now:       func() time.Time { return testNow },
	}
	for _, m := range mutate {
		m(&cfg)
	}
	reg := prometheus.NewRegistry()
	calls := callback.NewRecorder(reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return &fixture{store: store, reg: reg, calls: calls, handlers: polyv.NewHandlers(store, cfg, calls)}
}

func scale(n int64) func(*polyv.Config) {
	return func(c *polyv.Config) {
		s, err := polyv.NewScale(n)
		if err != nil {
			panic(err)
		}
		c.Scale = s
	}
}

// donation returns the parameters of a donation of count points (one good
// of that price) by user, at testNow, in session (which makes it unique).
func donation(session, user, count string) map[string]string {
	return map[string]string{
		"appId": testApp, "channelId": "2114561", "viewerId": user, "sessionId": session,
		"ts": strconv.FormatInt(testNow.UnixMilli(), 10), "goodName": "鲜花", "goodPrice": count, "goodNum": "1",
		"count": count,
	}
}

// withSign returns a copy of p with its sign under secret.
func withSign(p map[string]string, secret string) map[string]string {
	g := map[string]string{}
	for k, v := range p {
		g[k] = v
	}
	g["sign"] = polyv.Sign(g, secret)
	return g
}

func encode(p map[string]string) string {
	v := url.Values{}
	for k, s := range p {
		v.Set(k, s)
	}
	return v.Encode()
}

type reply struct {
	code int
	raw  string
	body struct {
		Code    int             `json:"code"`
		Status  string          `json:"status"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
}

func serve(t *testing.T, h http.Handler, req *http.Request) reply {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := reply{code: rec.Code, raw: rec.Body.String()}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &r.body); err != nil {
		t.Fatalf("answer %q: %v", r.raw, err)
	}
	wantStatus := "error"
	if r.code == 200 {
		wantStatus = "success"
	}
	if r.body.Code != r.code || r.body.Status != wantStatus {
		t.Errorf("HTTP status %d but code %d, status %q", r.code, r.body.Code, r.body.Status)
	}
	if r.code != 200 && string(r.body.Data) != "null" {
		t.Errorf("refusal with data %s", r.body.Data)
	}
	return r
}

// post sends a donation with query in its URL and body as a form.
func (f *fixture) post(t *testing.T, query, body string) reply {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/polyv/points/donate?"+query, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return serve(t, f.handlers.Donate, req)
}

// donate sends p signed with the test secret as a form body.
func (f *fixture) donate(t *testing.T, p map[string]string) reply {
	t.Helper()
	return f.post(t, "", encode(withSign(p, testSecret)))
}

func (f *fixture) query(t *testing.T, p map[string]string) reply {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/polyv/points?"+encode(p), nil)
	return serve(t, f.handlers.Query, req)
}

func (f *fixture) topUp(t *testing.T, user string, amount int64) {
	t.Helper()
	key := fmt.Sprintf("seed-%s-%d", user, time.Now().UnixNano())
	if _, err := f.store.TopUp(context.Background(), ledger.TopUp{UserID: user, Amount: amount, Key: key}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) balance(t *testing.T, user string) int64 {
	t.Helper()
	w, err := f.store.Wallet(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return w.Gold
}

func (f *fixture) debitEntries(t *testing.T) int {
	t.Helper()
	var n int
	if err := f.store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM ledger_entries WHERE kind = 'debit'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// outcome returns the count of giftd_debit_outcomes_total{platform="polyv",outcome=name}.
func (f *fixture) outcome(name string) float64 {
	return outcomeOf(f.reg, polyv.Platform, name)
}

func outcomeOf(reg *prometheus.Registry, platform, name string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "giftd_debit_outcomes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["platform"] == platform && labels["outcome"] == name {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

func TestDonate_HandDerivedVectorDebitsAndAnswers(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "viewer-1", 100)
	// The donation vector of sign_test.go, its sign written out: 2 × 5 points.
	p := map[string]string{
		"appId": "polyv-app-1", "channelId": "2114561", "viewerId": "viewer-1", "sessionId": "fz2qbq6gtd",
		"ts": "1700000000000", "goodName": "鲜花", "goodPrice": "5", "goodNum": "2", "count": "10",
	}
	r := f.post(t, "", encode(p)+"&sign=92473248D2976491D51A71BED250B86F")
	if r.code != 200 || r.raw != `{"code":200,"status":"success","message":"","data":90}`+"\n" {
		t.Fatalf("answer %d %s", r.code, r.raw)
	}
	if got := f.balance(t, "viewer-1"); got != 90 {
		t.Errorf("balance %d, want 90", got)
	}
	// The ledger entry: platform polyv, the SHA-256 of the signed string as
	// its ref, and the donation's details. printf '%s' 'appIdpolyv-app-1
	// channelId2114561count10goodName鲜花goodNum2goodPrice5sessionIdfz2qbq6gtd
	// ts1700000000000viewerIdviewer-1' (on one line) | sha256sum
	var platform, app, ref string
	var details map[string]string
	err := f.store.Pool().QueryRow(context.Background(),
		`SELECT platform, app_id, ref, details FROM ledger_entries WHERE kind = 'debit'`).Scan(&platform, &app, &ref, &details)
	if err != nil {
		t.Fatal(err)
	}
	const wantRef = "7d6f833779a10b0dbf1c3808e976c5ea8e08eac5671b89795f9a77e22a38c683"
	if platform != "polyv" || app != "polyv-app-1" || ref != wantRef {
		t.Errorf("entry platform %q app %q ref %q", platform, app, ref)
	}
	want := map[string]string{"channelId": "2114561", "sessionId": "fz2qbq6gtd", "goodName": "鲜花",
		"goodPrice": "5", "goodNum": "2", "count": "10"}
	if fmt.Sprint(details) != fmt.Sprint(want) {
		t.Errorf("details %v, want %v", details, want)
	}
	// Its record is kept for twice the skew window past its ts.
	var expires time.Time
	if err := f.store.Pool().QueryRow(context.Background(), `SELECT expires_at FROM debit_requests`).Scan(&expires); err != nil {
		t.Fatal(err)
	}
	if want := testNow.Add(10 * time.Minute); !expires.Equal(want) {
		t.Errorf("record expires at %v, want %v (ts + 2 × 5m)", expires, want)
	}
	if f.outcome("ok") != 1 {
		t.Errorf("ok outcomes %v, want 1", f.outcome("ok"))
	}
}

func TestDonate_URLParametersTakePartInTheSign(t *testing.T) {
	f := newFixture(t, scale(100), urlParams("shop"))
	f.topUp(t, "viewer-1", 10000)
	// The URL-parameter vector of sign_test.go: shop=s1 comes in the URL
	// (the configured updatePointUrl's own parameter), the rest in the body.
	body := url.Values{}
	for k, v := range map[string]string{
		"appId": "polyv-app-1", "channelId": "2114561", "viewerId": "viewer-1", "sessionId": "fz2qbq6gtd",
		"ts": "1700000000000", "goodName": "鲜花", "goodPrice": "6.17", "goodNum": "2", "count": "12.34",
		"sign": "DE14D6EB0AD664DB464F9108AF05FD1A",
	} {
		body.Set(k, v)
	}
	if r := f.post(t, "", body.Encode()); r.code != 422 || !strings.HasPrefix(r.body.Message, "shop: required") {
		t.Errorf("without the URL's parameter: %d %s, want 422 naming shop", r.code, r.raw)
	}
	if r := f.post(t, "shop=s2", body.Encode()); r.code != 403 {
		t.Errorf("with another value of it: %d %s, want 403", r.code, r.raw)
	}
	r := f.post(t, "shop=s1", body.Encode())
	if r.code != 200 || r.raw != `{"code":200,"status":"success","message":"","data":87.66}`+"\n" {
		t.Errorf("with it: %d %s, want 200 and 87.66 points", r.code, r.raw)
	}
	// Every parameter may come in the URL.
	all := donation("all-in-url", "viewer-1", "1.5")
	all["shop"] = "s1"
	if r := f.post(t, encode(withSign(all, testSecret)), ""); r.code != 200 || string(r.body.Data) != "86.16" {
		t.Errorf("all in the URL: %d %s, want 200 and 86.16", r.code, r.raw)
	}
	if got := f.balance(t, "viewer-1"); got != 8616 {
		t.Errorf("balance %d, want 8616", got)
	}
}

func TestDonate_AuthenticationFailuresDebitNothing(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "u1", 100)
	base := donation("auth", "u1", "10")
	tampered := strings.Replace(encode(withSign(base, testSecret)), "count=10", "count=90", 1)
	unknown := donation("auth", "u1", "10")
	unknown["appId"] = "nobody"
	other := donation("auth", "u1", "10")
	other["appId"] = "app2"
	cases := map[string]string{
		"tampered count":     tampered,
		"wrong secret":       encode(withSign(base, "not-the-secret")),
		"unknown appId":      encode(withSign(unknown, testSecret)),
		"sign not hex":       encode(base) + "&sign=zzzz",
		"other app's secret": encode(withSign(other, testSecret)),
		"sign of another":    encode(base) + "&sign=" + polyv.Sign(donation("other", "u1", "10"), testSecret),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			r := f.post(t, "", body)
			if r.code != 403 || r.body.Message != "invalid signature" {
				t.Errorf("answer %d %s, want 403 invalid signature", r.code, r.raw)
			}
		})
	}
	if got := f.balance(t, "u1"); got != 100 || f.debitEntries(t) != 0 {
		t.Errorf("balance %d, %d debits; want 100 and none", got, f.debitEntries(t))
	}
	if got := f.outcome("bad_sign"); got != float64(len(cases)) {
		t.Errorf("bad_sign outcomes %v, want %d", got, len(cases))
	}
}

func TestDonate_LowercaseSignAndEverySecretAccepted(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "u1", 100)
	for i, secret := range []string{"old-secret", "new-secret", "unlisted-secret"} {
		p := donation(fmt.Sprint("s", i), "u1", "1")
		p["appId"] = "app2"
		want := 200
		if secret == "unlisted-secret" {
			want = 403
		}
		if r := f.post(t, "", encode(withSign(p, secret))); r.code != want {
			t.Errorf("secret %d: answer %d %s, want %d", i, r.code, r.raw, want)
		}
	}
	p := donation("lower", "u1", "1")
	body := encode(p) + "&sign=" + strings.ToLower(polyv.Sign(p, testSecret))
	if r := f.post(t, "", body); r.code != 200 {
		t.Errorf("lowercase sign: answer %d %s", r.code, r.raw)
	}
	if got := f.balance(t, "u1"); got != 97 {
		t.Errorf("balance %d, want 97", got)
	}
}

func TestDonate_StaleOrFutureTsRefused403(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "u1", 100)
	ms := func(d time.Duration) string { return strconv.FormatInt(testNow.Add(d).UnixMilli(), 10) }
	for name, ts := range map[string]string{
		"5m1s old":    ms(-5*time.Minute - time.Second),
		"5m1s ahead":  ms(5*time.Minute + time.Second),
		"a year old":  ms(-365 * 24 * time.Hour),
		"epoch":       "0000000000000",
		"far ahead":   "9999999999999",
		"just before": ms(-5*time.Minute - time.Millisecond),
	} {
		t.Run(name, func(t *testing.T) {
			p := donation("stale-"+name, "u1", "10")
			p["ts"] = ts
			r := f.donate(t, p)
			if r.code != 403 || !strings.HasPrefix(r.body.Message, "ts") {
				t.Errorf("answer %d %s, want 403 naming ts", r.code, r.raw)
			}
		})
	}
	if got := f.balance(t, "u1"); got != 100 || f.debitEntries(t) != 0 {
		t.Errorf("balance %d, %d debits; want 100 and none", got, f.debitEntries(t))
	}
	if f.outcome("expired") != 6 {
		t.Errorf("expired outcomes %v, want 6", f.outcome("expired"))
	}
	// At the window's edges a donation is fresh.
	for i, d := range []time.Duration{-5 * time.Minute, 5 * time.Minute} {
		p := donation(fmt.Sprint("edge", i), "u1", "10")
		p["ts"] = ms(d)
		if r := f.donate(t, p); r.code != 200 {
			t.Errorf("ts %s from now: %d %s, want 200", d, r.code, r.raw)
		}
	}
}

func TestDonate_LateCopyOfAnExecutedDonationReplays(t *testing.T) {
	now := testNow
	f := newFixture(t, func(c *polyv.Config) { c.Now = func() time.Time { return now } })
	f.topUp(t, "u1", 100)
	body := encode(withSign(donation("late", "u1", "30"), testSecret))
	first := f.post(t, "", body)
	now = testNow.Add(6 * time.Minute) // the copy arrives past the window
	again := f.post(t, "", body)
	if first.code != 200 || again.raw != first.raw {
		t.Errorf("first %s, late copy %s; want the first answer twice", first.raw, again.raw)
	}
	if got := f.balance(t, "u1"); got != 70 || f.debitEntries(t) != 1 {
		t.Errorf("balance %d with %d debits, want 70 and 1", got, f.debitEntries(t))
	}
}

func TestDonate_ScaleConversions(t *testing.T) {
	cases := []struct {
		name                  string
		scale                 int64
		price, num, count     string
		code                  int
		data                  string // remaining points, for a 200
		field                 string // named in the message, for a 422
		balanceAfterFromStart int64
	}{
		{"scale 1, whole points", 1, "5", "2", "10", 200, "99990", "", 99990},
		{"scale 1, trailing zero decimals", 1, "5.00", "2", "10.0", 200, "99990", "", 99990},
		{"scale 100, 12.34 is 1234 coins", 100, "12.34", "1", "12.34", 200, "987.66", "", 98766},
		{"scale 100, price × num", 100, "0.01", "1234", "12.34", 200, "987.66", "", 98766},
		{"scale 100, one decimal", 100, "0.5", "3", "1.5", 200, "998.50", "", 99850},
		{"scale 1000, three decimals", 1000, "0.001", "7", "0.007", 200, "99.993", "", 99993},
		{"scale 1, count below one coin", 1, "0.5", "2", "1.0", 422, "", "goodPrice", 100000},
		{"scale 1, count not whole", 1, "12.5", "1", "12.5", 422, "", "goodPrice", 100000},
		{"scale 1, count 12.34", 1, "12", "1", "12.34", 422, "", "count", 100000},
		{"scale 100, count 12.345", 100, "12.34", "1", "12.345", 422, "", "count", 100000},
		{"scale 100, count ≠ price × num", 100, "6.17", "2", "12.35", 422, "", "count", 100000},
		{"scale 1, count ≠ price × num", 1, "5", "3", "10", 422, "", "count", 100000},
		{"scale 1, zero count", 1, "0", "1", "0", 422, "", "count", 100000},
		{"scale 100, zero count with decimals", 100, "0", "1", "0.00", 422, "", "count", 100000},
		{"scale 1, negative count", 1, "5", "1", "-5", 422, "", "count", 100000},
		{"scale 1, exponent count", 1, "10", "1", "1e1", 422, "", "count", 100000},
		{"scale 100, exponent count", 100, "10", "1", "1.0E1", 422, "", "count", 100000},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, scale(c.scale))
			f.topUp(t, "u1", 100000)
			p := donation(fmt.Sprint("scale", i), "u1", c.count)
			p["goodPrice"], p["goodNum"] = c.price, c.num
			r := f.donate(t, p)
			switch {
			case r.code != c.code:
				t.Errorf("answer %d %s, want %d", r.code, r.raw, c.code)
			case c.code == 200 && string(r.body.Data) != c.data:
				t.Errorf("data %s, want %s", r.body.Data, c.data)
			case c.code == 422 && !strings.HasPrefix(r.body.Message, c.field+": "):
				t.Errorf("message %q, want one naming %s", r.body.Message, c.field)
			}
			if got := f.balance(t, "u1"); got != c.balanceAfterFromStart {
				t.Errorf("balance %d coins, want %d", got, c.balanceAfterFromStart)
			}
		})
	}
}

func TestDonate_InsufficientPoints400AndItsReplayStays400(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "u1", 20)
	body := encode(withSign(donation("poor", "u1", "50"), testSecret))
	poor := f.post(t, "", body)
	if poor.code != 400 || poor.raw != `{"code":400,"status":"error","message":"insufficient points","data":null}`+"\n" {
		t.Fatalf("answer %d %s, want 400 insufficient points", poor.code, poor.raw)
	}
	f.topUp(t, "u1", 1000)
	if again := f.post(t, "", body); again.raw != poor.raw {
		t.Errorf("replay after a top-up: %s, want %s", again.raw, poor.raw)
	}
	// An unknown wallet has no points either.
	if r := f.donate(t, donation("nobody", "no-such-wallet", "1")); r.code != 400 {
		t.Errorf("unknown wallet: %d %s, want 400", r.code, r.raw)
	}
	if got := f.balance(t, "u1"); got != 1020 || f.debitEntries(t) != 0 {
		t.Errorf("balance %d with %d debits, want 1020 and none", got, f.debitEntries(t))
	}
	if f.outcome("insufficient") != 2 || f.outcome("replay") != 1 {
		t.Errorf("outcomes insufficient %v replay %v, want 2 and 1", f.outcome("insufficient"), f.outcome("replay"))
	}
}

func TestDonate_ByteIdenticalCopiesConcurrentlyDebitOnceAndAnswerAlike(t *testing.T) {
	f := newFixture(t, scale(100))
	f.topUp(t, "u1", 1000)
	body := encode(withSign(donation("copy", "u1", "0.07"), testSecret))
	const n = 30
	answers := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers[i] = f.post(t, "", body).raw })
	}
	wg.Wait()
	want := `{"code":200,"status":"success","message":"","data":9.93}` + "\n"
	for i, a := range answers {
		if a != want {
			t.Errorf("copy %d answered %s, want %s", i, a, want)
		}
	}
	if got := f.balance(t, "u1"); got != 993 || f.debitEntries(t) != 1 {
		t.Errorf("balance %d with %d debits, want 993 and 1", got, f.debitEntries(t))
	}
	if f.outcome("ok") != 1 || f.outcome("replay") != n-1 {
		t.Errorf("outcomes ok %v replay %v, want 1 and %d", f.outcome("ok"), f.outcome("replay"), n-1)
	}
}

// TestDonate_LinkVAndPolyvShareOneWalletWithoutOverdraft runs both platforms'
// handlers on one store and one observer against one wallet that can pay
// for half of their debits.
func TestDonate_LinkVAndPolyvShareOneWalletWithoutOverdraft(t *testing.T) {
	f := newFixture(t)
	const n = 100 // per platform
	f.topUp(t, "hot", n*3)
	lv := linkv.NewHandler(f.store, linkv.Config{
		Apps: map[string][]string{"lv-app": {"lv-secret"}}, MaxExpiry: 2400 * time.Hour, DBTimeout: 10 * time.Second,
	}, linkv.NewMetrics(f.reg), f.calls)
	linkvBody := func(i int) string {
		now := time.Now().Unix()
		p := map[string]string{
			"app_id": "lv-app", "request_id": fmt.Sprint("lv-", i), "user_id": "hot", "gold": "3", "type": "1",
			"nonce": "abcdefgh" + strconv.FormatInt(now, 10) + "ijklmnop", "expriation": strconv.FormatInt(now+3600, 10),
			"reason": `{"gift_id":"7","send_num":1,"resource_id":"room","vtype":"1","receiver_id":"host"}`,
		}
		p["sign"] = linkv.Sign(p, "lv-secret")
		return encode(p)
	}
	codes := make(map[string][]int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req := httptest.NewRequest(http.MethodPost, "/linkv/debit", strings.NewReader(linkvBody(i)))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rec := httptest.NewRecorder()
			lv.ServeHTTP(rec, req)
			mu.Lock()
			codes["linkv"] = append(codes["linkv"], rec.Code)
			mu.Unlock()
		})
		wg.Go(func() {
			r := f.donate(t, donation(fmt.Sprint("pv-", i), "hot", "3"))
			mu.Lock()
			codes["polyv"] = append(codes["polyv"], r.code)
			mu.Unlock()
		})
	}
	wg.Wait()
	count := map[string]int{}
	for platform, cs := range codes {
		for _, c := range cs {
			count[fmt.Sprint(platform, " ", c)]++
		}
	}
	ok := count["linkv 200"] + count["polyv 200"]
	refused := count["linkv 402"] + count["polyv 400"]
	if ok != n || refused != n {
		t.Errorf("answers %v, want %d debited and %d refused for insufficient gold", count, n, n)
	}
	var sum, debits int64
	if err := f.store.Pool().QueryRow(context.Background(),
		`SELECT sum(amount), count(*) FILTER (WHERE kind = 'debit') FROM ledger_entries WHERE user_id = 'hot'`).Scan(&sum, &debits); err != nil {
		t.Fatal(err)
	}
	if got := f.balance(t, "hot"); got != 0 || sum != got || debits != n {
		t.Errorf("balance %d, ledger sum %d with %d debits; want 0, 0 and %d", got, sum, debits, n)
	}
	if got := outcomeOf(f.reg, linkv.Platform, "ok") + f.outcome("ok"); got != n {
		t.Errorf("ok outcomes of both platforms %v, want %d", got, n)
	}
}

func TestDonate_MalformedInputsRefusedNamingTheParameter(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "u1", 1000)
	set := func(k, v string) func(map[string]string) { return func(m map[string]string) { m[k] = v } }
	del := func(k string) func(map[string]string) { return func(m map[string]string) { delete(m, k) } }
	cases := []struct {
		name   string
		change func(map[string]string)
		field  string
	}{
		{"appId missing", del("appId"), "appId"},
		{"channelId missing", del("channelId"), "channelId"},
		{"channelId not digits", set("channelId", "abc"), "channelId"},
		{"channelId negative", set("channelId", "-1"), "channelId"},
		{"channelId too long", set("channelId", strings.Repeat("1", 21)), "channelId"},
		{"viewerId missing", del("viewerId"), "viewerId"},
		{"viewerId empty", set("viewerId", ""), "viewerId"},
		{"viewerId too long", set("viewerId", strings.Repeat("u", 65)), "viewerId"},
		{"viewerId charset", set("viewerId", "u 1"), "viewerId"},
		{"ts missing", del("ts"), "ts"},
		{"ts seconds", set("ts", "1700000000"), "ts"},
		{"ts 14 digits", set("ts", "17000000000000"), "ts"},
		{"ts not digits", set("ts", "170000000000x"), "ts"},
		{"ts negative", set("ts", "-700000000000"), "ts"},
		{"sessionId control character", set("sessionId", "a\x01b"), "sessionId"},
		{"sessionId too long", set("sessionId", strings.Repeat("s", 129)), "sessionId"},
		{"goodName missing", del("goodName"), "goodName"},
		{"goodName not UTF-8", set("goodName", "\xff\xfe"), "goodName"},
		{"goodName too long", set("goodName", strings.Repeat("花", 43)), "goodName"},
		{"goodPrice missing", del("goodPrice"), "goodPrice"},
		{"goodPrice not a number", set("goodPrice", "five"), "goodPrice"},
		{"goodPrice negative", set("goodPrice", "-5"), "goodPrice"},
		{"goodPrice exponent", set("goodPrice", "5e0"), "goodPrice"},
		{"goodNum missing", del("goodNum"), "goodNum"},
		{"goodNum zero", set("goodNum", "0"), "goodNum"},
		{"goodNum negative", set("goodNum", "-1"), "goodNum"},
		{"goodNum decimal", set("goodNum", "1.0"), "goodNum"},
		{"goodNum above 10^9", set("goodNum", "1000000001"), "goodNum"},
		{"count missing", del("count"), "count"},
		{"count zero", func(m map[string]string) { m["count"], m["goodPrice"] = "0", "0" }, "count"},
		{"count negative", set("count", "-5"), "count"},
		{"count plus", set("count", "+5"), "count"},
		{"count exponent", set("count", "5e0"), "count"},
		{"count hex", set("count", "0x5"), "count"},
		{"count space", set("count", " 5"), "count"},
		{"count point only", set("count", "5."), "count"},
		{"count not whole at scale 1", set("count", "5.5"), "count"},
		{"count above 10^12", func(m map[string]string) { m["count"], m["goodPrice"] = "1000000000001", "1000000000001" }, "goodPrice"},
		{"count huge", set("count", "99999999999999999999999"), "count"},
		{"count ≠ price × num", set("count", "6"), "count"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := donation(fmt.Sprint("malformed-", i), "u1", "5")
			c.change(p)
			r := f.donate(t, p)
			if r.code != 422 || !strings.HasPrefix(r.body.Message, c.field+": ") {
				t.Errorf("answer %d %s, want 422 naming %s", r.code, r.raw, c.field)
			}
		})
	}
	signed := encode(withSign(donation("raw", "u1", "5"), testSecret))
	raw := []struct {
		name, query, contentType, body, field string
	}{
		{"sign missing", "", "application/x-www-form-urlencoded", encode(donation("nosign", "u1", "5")), "sign"},
		{"count twice in the body", "", "application/x-www-form-urlencoded", signed + "&count=5", "count"},
		{"count in the URL and the body", "count=5", "application/x-www-form-urlencoded", signed, "count"},
		{"wrong content type", "", "application/json", signed, "content-type"},
		{"oversized body", "", "application/x-www-form-urlencoded", signed + "&pad=" + strings.Repeat("p", callback.MaxBodyBytes), "body"},
		{"bad URL query", "a=%zz", "application/x-www-form-urlencoded", signed, "query"},
	}
	for _, c := range raw {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/polyv/points/donate?"+c.query, strings.NewReader(c.body))
			req.Header.Set("Content-Type", c.contentType)
			r := serve(t, f.handlers.Donate, req)
			if r.code != 422 || !strings.HasPrefix(r.body.Message, c.field+": ") {
				t.Errorf("answer %d %s, want 422 naming %s", r.code, r.raw, c.field)
			}
		})
	}
	if got := f.balance(t, "u1"); got != 1000 || f.debitEntries(t) != 0 {
		t.Errorf("balance %d with %d debits, want 1000 and none", got, f.debitEntries(t))
	}
	if got := f.outcome("bad_request"); got != float64(len(cases)+len(raw)) {
		t.Errorf("bad_request outcomes %v, want %d", got, len(cases)+len(raw))
	}
}

func TestDonate_DatabaseDownAnswers500(t *testing.T) {
	f := newFixture(t, func(c *polyv.Config) { c.DBTimeout = 2 * time.Second })
	f.store.Close()
	r := f.donate(t, donation("down", "u1", "1"))
	if r.raw != `{"code":500,"status":"error","message":"system error","data":null}`+"\n" {
		t.Errorf("answer %d %s, want 500 system error", r.code, r.raw)
	}
	if f.outcome("error") != 1 {
		t.Errorf("error outcomes %v", f.outcome("error"))
	}
}

func TestQuery_Points(t *testing.T) {
	f := newFixture(t, scale(100))
	f.topUp(t, "viewer-1", 1234)
	q := func(user string) map[string]string {
		return map[string]string{"appId": testApp, "channelId": "2114561", "viewerId": user, "viewerName": "小明",
			"sessionId": "", "ts": strconv.FormatInt(testNow.UnixMilli(), 10)}
	}
	// The query vector of sign_test.go, its sign written out.
	r := f.query(t, map[string]string{"appId": "polyv-app-1", "channelId": "2114561", "viewerId": "viewer-1",
		"viewerName": "小明", "sessionId": "", "ts": "1700000000000", "sign": "7D459CDEA8A487FEC0A655B1CD99CB23"})
	if r.raw != `{"code":200,"status":"success","message":"","data":12.34}`+"\n" {
		t.Errorf("known wallet: %d %s, want 12.34 points", r.code, r.raw)
	}
	if r := f.query(t, withSign(q("nobody"), testSecret)); r.code != 200 || string(r.body.Data) != "0.00" {
		t.Errorf("unknown wallet: %d %s, want 0.00 points", r.code, r.raw)
	}
	lower := q("viewer-1")
	lower["sign"] = strings.ToLower(polyv.Sign(lower, testSecret))
	if r := f.query(t, lower); r.code != 200 {
		t.Errorf("lowercase sign: %d %s", r.code, r.raw)
	}
	tampered := withSign(q("viewer-1"), testSecret)
	tampered["viewerId"] = "viewer-2"
	unknown := q("viewer-1")
	unknown["appId"] = "nobody"
	stale := q("viewer-1")
	stale["ts"] = strconv.FormatInt(testNow.Add(-6*time.Minute).UnixMilli(), 10)
	bad := q("viewer-1")
	bad["viewerId"] = "u 1"
	for name, c := range map[string]struct {
		params map[string]string
		code   int
		msg    string
	}{
		"bad sign":        {tampered, 403, "invalid signature"},
		"unknown appId":   {withSign(unknown, testSecret), 403, "invalid signature"},
		"stale ts":        {withSign(stale, testSecret), 403, "ts: "},
		"bad viewerId":    {withSign(bad, testSecret), 422, "viewerId: "},
		"no sign":         {q("viewer-1"), 422, "sign: "},
		"wrong secret":    {withSign(q("viewer-1"), "nope"), 403, "invalid signature"},
		"channelId wrong": {withSign(map[string]string{"appId": testApp, "viewerId": "v", "ts": "1700000000000"}, testSecret), 422, "channelId: "},
	} {
		if r := f.query(t, c.params); r.code != c.code || !strings.HasPrefix(r.body.Message, c.msg) {
			t.Errorf("%s: %d %s, want %d %s", name, r.code, r.raw, c.code, c.msg)
		}
	}
	// A query debits nothing and is not a debit outcome.
	if got := f.balance(t, "viewer-1"); got != 1234 || f.debitEntries(t) != 0 {
		t.Errorf("balance %d with %d debits, want 1234 and none", got, f.debitEntries(t))
	}
	if f.outcome("ok") != 0 || f.outcome("bad_sign") != 0 {
		t.Errorf("queries counted as debit outcomes: ok %v, bad_sign %v", f.outcome("ok"), f.outcome("bad_sign"))
	}
}

// variant is a copy of a signed donation that carries the same valid
// signature, and the field its refusal names ("" when it replays).
type variant struct{ body, refusedOn string }

// sameSignVariants returns a signed donation as a raw form body and, by
// name, copies of it that carry the same valid signature: Polyv's sign
// covers the signed string (k1v1k2v2… of the non-empty parameters other
// than sign), not the bytes received. The donation carries shop=s1, a
// configured URL parameter (see urlParams), and is by viewer "alice-wu",
// whose wallet the caller tops up (and that of "alice-", which a split can
// name). A variant that starts with "?" goes in the URL instead of the
// body. A copy that differs only where the sign does not look replays; a
// copy that parses differently carries a name no callback lists, and is
// refused naming it.
func sameSignVariants(t *testing.T) (string, map[string]variant) {
	t.Helper()
	p := donation("fz2qbq6gtd", "alice-wu", "7")
	p["shop"] = "s1"
	p = withSign(p, testSecret)
	// except returns p's parameters in byte order of name, without those
	// named, then extra pairs.
	except := func(drop []string, extra ...string) []string {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(p)) {
			if !slices.Contains(drop, k) {
				kv = append(kv, k, p[k])
			}
		}
		return append(kv, extra...)
	}
	original := form(except(nil)...)
	reversed := except(nil)
	for i, j := 0, len(reversed)-2; i < j; i, j = i+2, j-2 {
		reversed[i], reversed[i+1], reversed[j], reversed[j+1] = reversed[j], reversed[j+1], reversed[i], reversed[i+1]
	}
	sign := p["sign"]
	mixed := strings.ToLower(sign[:16]) + sign[16:]
	variants := map[string]variant{
		"sign in lowercase":           {form(except([]string{"sign"}, "sign", strings.ToLower(sign))...), ""},
		"sign in mixed case":          {form(except([]string{"sign"}, "sign", mixed)...), ""},
		"parameters in reverse order": {form(reversed...), ""},
		// Sent as a query string (see post): every parameter in the URL.
		"all parameters in the URL": {"?" + original, ""},
		// The query's viewerName is no donation parameter.
		"extra empty parameter":           {form(except(nil, "viewerName", "")...), "viewerName"},
		"extra empty parameter, new name": {form(except(nil, "zzz", "")...), "zzz"},
		"two extra empty parameters":      {form(except(nil, "a", "", "Z", "")...), "Z"},
		// shops1 read as sho + ps1: "sho" still sorts between sessionId and ts.
		"split shop=s1 as sho=ps1": {form(except([]string{"shop"}, "sho", "ps1")...), "sho"},
		// sessionIdfz2qbq6gtd read as sessionIdf + z2qbq6gtd: no sessionId,
		// which may be empty.
		"split sessionId into a new name": {form(except([]string{"sessionId"}, "sessionIdf", "z2qbq6gtd")...), "sessionIdf"},
		// viewerIdalice-wu read as viewerId alice- and w=u: another wallet
		// under the same signature.
		"split viewerId naming another wallet": {form(except([]string{"viewerId"}, "viewerId", "alice-", "w", "u")...), "w"},
	}
	return original, variants
}

// postVariant posts a variant of sameSignVariants.
func (f *fixture) postVariant(t *testing.T, v string) reply {
	t.Helper()
	if q, ok := strings.CutPrefix(v, "?"); ok {
		return f.post(t, q, "")
	}
	return f.post(t, "", v)
}

func TestDonate_SameSignatureVariantsReplayOrAreRefusedAndDebitOnce(t *testing.T) {
	_, variants := sameSignVariants(t)
	for name := range variants {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, urlParams("shop"))
			f.topUp(t, "alice-wu", 100)
			f.topUp(t, "alice-", 100)
			original, variants := sameSignVariants(t)
			v := variants[name]
			first := f.post(t, "", original)
			if first.raw != `{"code":200,"status":"success","message":"","data":93}`+"\n" {
				t.Fatalf("original: %d %s, want 200 and 93 points", first.code, first.raw)
			}
			again := f.postVariant(t, v.body)
			replays := 1.0
			if v.refusedOn == "" && again.raw != first.raw {
				t.Errorf("variant answered %d %s, want the first answer %s", again.code, again.raw, first.raw)
			}
			if v.refusedOn != "" {
				replays = 0
				if again.code != 422 || !strings.HasPrefix(again.body.Message, v.refusedOn+": ") {
					t.Errorf("variant answered %d %s, want 422 naming %s", again.code, again.raw, v.refusedOn)
				}
			}
			if a, b := f.balance(t, "alice-wu"), f.balance(t, "alice-"); a != 93 || b != 100 || f.debitEntries(t) != 1 {
				t.Errorf("balances alice-wu %d alice- %d with %d debits, want 93, 100 and 1", a, b, f.debitEntries(t))
			}
			if f.outcome("ok") != 1 || f.outcome("replay") != replays {
				t.Errorf("outcomes ok %v replay %v, want 1 and %v", f.outcome("ok"), f.outcome("replay"), replays)
			}
		})
	}
}

func TestDonate_SameSignatureVariantsConcurrentlyDebitOnce(t *testing.T) {
	f := newFixture(t, urlParams("shop"))
	f.topUp(t, "alice-wu", 100)
	f.topUp(t, "alice-", 100)
	original, variants := sameSignVariants(t)
	copies := []variant{{original, ""}}
	for _, name := range slices.Sorted(maps.Keys(variants)) {
		copies = append(copies, variants[name])
	}
	const n = 40
	answers := make([]reply, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers[i] = f.postVariant(t, copies[i%len(copies)].body) })
	}
	wg.Wait()
	// Only the one reading of the signed string may pay, whichever copy
	// came first.
	if a, b := f.balance(t, "alice-wu"), f.balance(t, "alice-"); a != 93 || b != 100 || f.debitEntries(t) != 1 {
		t.Errorf("balances alice-wu %d alice- %d with %d debits, want 93, 100 and 1", a, b, f.debitEntries(t))
	}
	want := `{"code":200,"status":"success","message":"","data":93}` + "\n"
	accepted := 0
	for i, a := range answers {
		switch c := copies[i%len(copies)]; {
		case c.refusedOn == "" && a.raw != want:
			t.Errorf("copy %d answered %s, want %s", i, a.raw, want)
		case c.refusedOn == "":
			accepted++
		case a.code != 422 || !strings.HasPrefix(a.body.Message, c.refusedOn+": "):
			t.Errorf("copy %d answered %s, want 422 naming %s", i, a.raw, c.refusedOn)
		}
	}
	if f.outcome("ok") != 1 || f.outcome("replay") != float64(accepted-1) {
		t.Errorf("outcomes ok %v replay %v, want 1 and %d", f.outcome("ok"), f.outcome("replay"), accepted-1)
	}
}

// TestDonate_DonationRecordedByTheOldKeyReplays: a build before keys
// followed the signed string recorded donations under the SHA-256 of every
// received parameter (sign and empty ones included, url-encoded in name
// order). A copy that reaches the new build while that record lives, fresh
// or late, replays it: the upgrade must not debit a donation twice.
func TestDonate_DonationRecordedByTheOldKeyReplays(t *testing.T) {
	for name, late := range map[string]time.Duration{"fresh copy": 0, "late copy": 6 * time.Minute} {
		t.Run(name, func(t *testing.T) {
			now := testNow
			f := newFixture(t, func(c *polyv.Config) { c.Now = func() time.Time { return now } })
			f.topUp(t, "u1", 100)
			p := withSign(donation("before-upgrade", "u1", "30"), testSecret)
			old := sha256.Sum256([]byte(encode(p)))
			_, err := f.store.Debit(context.Background(), ledger.Debit{
				Key:    ledger.DebitKey{Platform: polyv.Platform, AppID: testApp, RequestID: hex.EncodeToString(old[:])},
				UserID: "u1", Gold: 30, Fingerprint: old, ExpiresAt: testNow.Add(10 * time.Minute),
			})
			if err != nil {
				t.Fatal(err)
			}
			now = testNow.Add(late)
			r := f.post(t, "", encode(p))
			if r.raw != `{"code":200,"status":"success","message":"","data":70}`+"\n" {
				t.Errorf("copy after the upgrade: %d %s, want the recorded answer, 70 points", r.code, r.raw)
			}
			if got := f.balance(t, "u1"); got != 70 || f.debitEntries(t) != 1 {
				t.Errorf("balance %d with %d debits, want 70 and 1", got, f.debitEntries(t))
			}
			if f.outcome("replay") != 1 {
				t.Errorf("replay outcomes %v, want 1", f.outcome("replay"))
			}
		})
	}
}
