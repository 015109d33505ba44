package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/callback"
	"giftd/internal/httpapi"
	"giftd/internal/ledger"
	"giftd/internal/linkv"
	"giftd/internal/pgtest"
	"giftd/internal/polyv"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const token = "test-admin-token-0123456789"

type env struct {
	store  *ledger.Store
	reg    *prometheus.Registry
	admin  *httptest.Server
	public *httptest.Server
}

func newEnv(t *testing.T, opts ...ledger.Option) *env {
	t.Helper()
	store, err := ledger.Open(context.Background(), pgtest.URL(t), append(pgtest.StoreOptions(), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	deps := httpapi.Deps{
		Store: store,
		Callbacks: []httpapi.Callback{{Doc: "linkv-debit", Method: http.MethodPost, Path: "/linkv/debit",
			Handler: linkv.NewHandler(store, linkv.Config{
				Apps: map[string][]string{"app": {"secret"}}, MaxExpiry: time.Hour, DBTimeout: 5 * time.Second,
			}, linkv.NewMetrics(reg), callback.NewRecorder(reg, log))}},
		AdminToken: token,
		Metrics:    httpapi.NewMetrics(reg),
		Gatherer:   reg,
		Log:        log,
	}
	e := &env{store: store, reg: reg, admin: httptest.NewServer(httpapi.NewAdmin(deps)), public: httptest.NewServer(httpapi.NewPublic(deps))}
	t.Cleanup(e.admin.Close)
	t.Cleanup(e.public.Close)
	return e
}

type answer struct {
	code int
	raw  string
	m    map[string]any
	hdr  http.Header
}

func (a answer) errCode() string {
	e, _ := a.m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (a answer) errMessage() string {
	e, _ := a.m["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

func (e *env) call(t *testing.T, method, path, auth, body string) answer {
	t.Helper()
	return e.send(t, e.admin.URL, method, path, auth, body)
}

func (e *env) send(t *testing.T, base, method, path, auth, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, raw: string(raw), hdr: resp.Header}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") && !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	json.Unmarshal(raw, &a.m) //nolint:errcheck // /metrics is not JSON
	return a
}

func (e *env) adm(t *testing.T, method, path, body string) answer {
	t.Helper()
	return e.call(t, method, path, "Bearer "+token, body)
}

func TestAdmin_RequiresBearerToken(t *testing.T) {
	e := newEnv(t)
	for name, auth := range map[string]string{
		"none":         "",
		"wrong token":  "Bearer " + strings.Repeat("x", len(token)),
		"prefix only":  "Bearer " + token[:10],
		"not bearer":   "Basic " + token,
		"token alone":  token,
		"longer token": "Bearer " + token + "x",
	} {
		t.Run(name, func(t *testing.T) {
			for _, path := range []string{"/admin/v1/wallets/u1", "/admin/v1/nowhere"} {
				a := e.call(t, http.MethodGet, path, auth, "")
				if a.code != 401 || a.errCode() != "unauthorized" {
					t.Errorf("%s: %d %s, want 401 unauthorized", path, a.code, a.raw)
				}
			}
		})
	}
	// RFC 7235: the scheme is case-insensitive; the token is not.
	for i, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		body := fmt.Sprintf(`{"amount":5,"idempotency_key":"k%d"}`, i)
		if a := e.call(t, http.MethodPost, "/admin/v1/wallets/u1/topups", scheme+" "+token, body); a.code != 200 {
			t.Errorf("%s scheme: %d %s", scheme, a.code, a.raw)
		}
	}
	if a := e.call(t, http.MethodGet, "/admin/v1/wallets/u1", "bearer "+strings.ToUpper(token), ""); a.code != 401 {
		t.Errorf("token in another case: %d %s, want 401", a.code, a.raw)
	}
}

func TestAdmin_TopUpReplaysAndConflicts(t *testing.T) {
	e := newEnv(t)
	first := e.adm(t, http.MethodPost, "/admin/v1/wallets/u1/topups", `{"amount":100,"idempotency_key":"k1","note":"welcome"}`)
	if first.code != 200 || first.m["gold"] != 100.0 || first.m["user_id"] != "u1" || first.m["entry_id"] == nil {
		t.Fatalf("first: %d %s", first.code, first.raw)
	}
	e.adm(t, http.MethodPost, "/admin/v1/wallets/u1/topups", `{"amount":1,"idempotency_key":"k2"}`)
	if again := e.adm(t, http.MethodPost, "/admin/v1/wallets/u1/topups", `{"amount":100,"idempotency_key":"k1"}`); again.raw != first.raw {
		t.Errorf("replay %s, want %s", again.raw, first.raw)
	}
	for _, c := range []struct{ path, body string }{
		{"/admin/v1/wallets/u1/topups", `{"amount":99,"idempotency_key":"k1"}`},
		{"/admin/v1/wallets/u2/topups", `{"amount":100,"idempotency_key":"k1"}`},
	} {
		if a := e.adm(t, http.MethodPost, c.path, c.body); a.code != 409 || a.errCode() != "idempotency_key_reused" {
			t.Errorf("%s %s: %d %s, want 409", c.path, c.body, a.code, a.raw)
		}
	}
	if w := e.adm(t, http.MethodGet, "/admin/v1/wallets/u1", ""); w.code != 200 || w.m["gold"] != 101.0 || w.m["updated_at"] == nil {
		t.Errorf("wallet: %d %s, want gold 101", w.code, w.raw)
	}
}

func TestAdmin_BadTopUpsRefused(t *testing.T) {
	e := newEnv(t)
	cases := map[string]struct{ path, body string }{
		"amount string":    {"/admin/v1/wallets/u1/topups", `{"amount":"5","idempotency_key":"k"}`},
		"amount float":     {"/admin/v1/wallets/u1/topups", `{"amount":5.0,"idempotency_key":"k"}`},
		"amount exponent":  {"/admin/v1/wallets/u1/topups", `{"amount":5e2,"idempotency_key":"k"}`},
		"amount zero":      {"/admin/v1/wallets/u1/topups", `{"amount":0,"idempotency_key":"k"}`},
		"amount negative":  {"/admin/v1/wallets/u1/topups", `{"amount":-5,"idempotency_key":"k"}`},
		"amount too big":   {"/admin/v1/wallets/u1/topups", `{"amount":1000000000001,"idempotency_key":"k"}`},
		"amount null":      {"/admin/v1/wallets/u1/topups", `{"amount":null,"idempotency_key":"k"}`},
		"amount missing":   {"/admin/v1/wallets/u1/topups", `{"idempotency_key":"k"}`},
		"key missing":      {"/admin/v1/wallets/u1/topups", `{"amount":5}`},
		"key too long":     {"/admin/v1/wallets/u1/topups", `{"amount":5,"idempotency_key":"` + strings.Repeat("k", 129) + `"}`},
		"unknown field":    {"/admin/v1/wallets/u1/topups", `{"amount":5,"idempotency_key":"k","amout":5}`},
		"not JSON":         {"/admin/v1/wallets/u1/topups", `amount=5`},
		"trailing data":    {"/admin/v1/wallets/u1/topups", `{"amount":5,"idempotency_key":"k"} {}`},
		"bad user id":      {"/admin/v1/wallets/u%201/topups", `{"amount":5,"idempotency_key":"k"}`},
		"user id too long": {"/admin/v1/wallets/" + strings.Repeat("u", 65) + "/topups", `{"amount":5,"idempotency_key":"k"}`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if a := e.adm(t, http.MethodPost, c.path, c.body); a.code != 400 || a.errCode() != "bad_request" {
				t.Errorf("%d %s, want 400 bad_request", a.code, a.raw)
			}
		})
	}
	var n int
	if err := e.store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM ledger_entries`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d ledger entries (%v), want none", n, err)
	}
}

func TestAdmin_WalletAndLedgerPages(t *testing.T) {
	e := newEnv(t)
	if a := e.adm(t, http.MethodGet, "/admin/v1/wallets/ghost", ""); a.code != 404 || a.errCode() != "not_found" {
		t.Errorf("ghost wallet: %d %s", a.code, a.raw)
	}
	if a := e.adm(t, http.MethodGet, "/admin/v1/wallets/ghost/ledger", ""); a.code != 404 {
		t.Errorf("ghost ledger: %d %s", a.code, a.raw)
	}
	for i := 1; i <= 5; i++ {
		e.adm(t, http.MethodPost, "/admin/v1/wallets/u1/topups", fmt.Sprintf(`{"amount":%d,"idempotency_key":"k%d"}`, i, i))
	}
	var amounts []float64
	path := "/admin/v1/wallets/u1/ledger?limit=2"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		a := e.adm(t, http.MethodGet, path, "")
		if a.code != 200 {
			t.Fatalf("%s: %d %s", path, a.code, a.raw)
		}
		for _, entry := range a.m["entries"].([]any) {
			en := entry.(map[string]any)
			if en["kind"] != "topup" || en["user_id"] != "u1" {
				t.Errorf("entry %v", en)
			}
			amounts = append(amounts, en["amount"].(float64))
		}
		next, ok := a.m["next_before"].(float64)
		if !ok {
			break
		}
		path = fmt.Sprintf("/admin/v1/wallets/u1/ledger?limit=2&before=%d", int64(next))
	}
	if fmt.Sprint(amounts) != "[5 4 3 2 1]" {
		t.Errorf("amounts %v, want [5 4 3 2 1]", amounts)
	}
	for _, q := range []string{"limit=0", "limit=501", "limit=x", "before=0", "before=-1", "before=x"} {
		if a := e.adm(t, http.MethodGet, "/admin/v1/wallets/u1/ledger?"+q, ""); a.code != 400 {
			t.Errorf("%s: %d %s, want 400", q, a.code, a.raw)
		}
	}
}

func TestAdmin_ReversalOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.adm(t, http.MethodPost, "/admin/v1/wallets/u1/topups", `{"amount":100,"idempotency_key":"seed"}`)
	_, err := e.store.Debit(ctx, ledger.Debit{
		Key: ledger.DebitKey{Platform: linkv.Platform, AppID: "app", RequestID: "r1"}, UserID: "u1", Gold: 40,
		ExpiresAt: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	first := e.adm(t, http.MethodPost, "/admin/v1/debits/r1/reversal", `{"app_id":"app","idempotency_key":"rev1","note":"refund"}`)
	if first.code != 200 || first.m["gold"] != 100.0 || first.m["amount"] != 40.0 || first.m["user_id"] != "u1" {
		t.Fatalf("first: %d %s", first.code, first.raw)
	}
	if again := e.adm(t, http.MethodPost, "/admin/v1/debits/r1/reversal", `{"app_id":"app","idempotency_key":"rev1","note":"refund"}`); again.raw != first.raw {
		t.Errorf("replay %s, want %s", again.raw, first.raw)
	}
	cases := []struct {
		path, body string
		code       int
		errCode    string
	}{
		{"/admin/v1/debits/r1/reversal", `{"app_id":"app","idempotency_key":"rev2"}`, 409, "already_reversed"},
		{"/admin/v1/debits/nope/reversal", `{"app_id":"app","idempotency_key":"rev3"}`, 404, "not_found"},
		{"/admin/v1/debits/r1/reversal", `{"app_id":"other","idempotency_key":"rev4"}`, 404, "not_found"},
		{"/admin/v1/debits/r1/reversal", `{"idempotency_key":"rev5"}`, 400, "bad_request"},
		{"/admin/v1/debits/r1/reversal", `{"app_id":"app"}`, 400, "bad_request"},
	}
	for _, c := range cases {
		if a := e.adm(t, http.MethodPost, c.path, c.body); a.code != c.code || a.errCode() != c.errCode {
			t.Errorf("%s %s: %d %s, want %d %s", c.path, c.body, a.code, a.raw, c.code, c.errCode)
		}
	}
	if w, _ := e.store.Wallet(ctx, "u1"); w.Gold != 100 {
		t.Errorf("balance %d, want 100", w.Gold)
	}
}

func TestAdmin_ReversalOfAPolyvDebitNamesItsPlatform(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.adm(t, http.MethodPost, "/admin/v1/wallets/u1/topups", `{"amount":100,"idempotency_key":"seed"}`)
	// A LinkV debit and a Polyv debit under the same app id and request id:
	// the platform tells them apart.
	for _, d := range []struct {
		platform string
		gold     int64
	}{{linkv.Platform, 10}, {polyv.Platform, 30}} {
		_, err := e.store.Debit(ctx, ledger.Debit{
			Key: ledger.DebitKey{Platform: d.platform, AppID: "app", RequestID: "same"}, UserID: "u1", Gold: d.gold,
			ExpiresAt: time.Now().Add(time.Hour),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if a := e.adm(t, http.MethodPost, "/admin/v1/debits/same/reversal", `{"platform":"other","app_id":"app","idempotency_key":"p0"}`); a.code != 400 || a.errCode() != "bad_request" {
		t.Errorf("unknown platform: %d %s, want 400", a.code, a.raw)
	}
	a := e.adm(t, http.MethodPost, "/admin/v1/debits/same/reversal", `{"platform":"polyv","app_id":"app","idempotency_key":"p1"}`)
	if a.code != 200 || a.m["amount"] != 30.0 || a.m["gold"] != 90.0 || a.m["platform"] != "polyv" {
		t.Fatalf("polyv reversal: %d %s, want 30 back, gold 90", a.code, a.raw)
	}
	// Without platform it is LinkV's.
	a = e.adm(t, http.MethodPost, "/admin/v1/debits/same/reversal", `{"app_id":"app","idempotency_key":"p2"}`)
	if a.code != 200 || a.m["amount"] != 10.0 || a.m["gold"] != 100.0 || a.m["platform"] != "linkv" {
		t.Fatalf("default reversal: %d %s, want LinkV's 10 back, gold 100", a.code, a.raw)
	}
	if a := e.adm(t, http.MethodPost, "/admin/v1/debits/same/reversal", `{"platform":"polyv","app_id":"app","idempotency_key":"p3"}`); a.code != 409 || a.errCode() != "already_reversed" {
		t.Errorf("second polyv reversal: %d %s, want 409 already_reversed", a.code, a.raw)
	}
	var details map[string]string
	if err := e.store.Pool().QueryRow(ctx, `SELECT details FROM ledger_entries WHERE kind = 'reversal' AND ref = 'p1'`).Scan(&details); err != nil {
		t.Fatal(err)
	}
	if details["platform"] != "polyv" || details["request_id"] != "same" {
		t.Errorf("reversal entry details %v, want the polyv debit named", details)
	}
}

func TestProbesAndMetrics(t *testing.T) {
	e := newEnv(t)
	for _, base := range []string{e.public.URL, e.admin.URL} {
		for _, p := range []string{"/healthz", "/readyz"} {
			resp, err := http.Get(base + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("%s%s: %d", base, p, resp.StatusCode)
			}
		}
	}
	// The admin API is not on the public listener.
	resp, err := http.Get(e.public.URL + "/admin/v1/wallets/u1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("admin route on the public listener: %d, want 404", resp.StatusCode)
	}
	resp, err = http.Post(e.public.URL+"/linkv/debit", "application/x-www-form-urlencoded", strings.NewReader("app_id=app"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	e.adm(t, http.MethodGet, "/admin/v1/wallets/secret-user-77", "")

	m := e.call(t, http.MethodGet, "/metrics", "", "")
	for _, want := range []string{
		`giftd_http_request_duration_seconds_bucket{code="400",listener="public",method="POST",route="/linkv/debit",le="0.001"}`,
		`giftd_http_request_duration_seconds_bucket{code="404",listener="admin",method="GET",route="/admin/v1/wallets/{user_id}",le="0.005"}`,
		`giftd_debit_outcomes_total{outcome="bad_request",platform="linkv"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(m.raw, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(m.raw, "secret-user-77") {
		t.Error("/metrics carries a user id")
	}
}

func TestReadyz_FalseWhenDatabaseDown(t *testing.T) {
	e := newEnv(t)
	e.store.Close()
	resp, err := http.Get(e.public.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("readyz with the pool closed: %d, want 503", resp.StatusCode)
	}
}

// TestAdmin_BadInputIs4xxWithErrorBody: whatever an operator's request gets
// wrong, the answer is a 4xx with spec §6's error body naming the problem,
// never a 500, and never an invitation to retry what cannot succeed.
func TestAdmin_BadInputIs4xxWithErrorBody(t *testing.T) {
	e := newEnv(t)
	e.adm(t, http.MethodPost, "/admin/v1/wallets/u1/topups", `{"amount":100,"idempotency_key":"seed"}`)
	_, err := e.store.Debit(context.Background(), ledger.Debit{
		Key: ledger.DebitKey{Platform: linkv.Platform, AppID: "app", RequestID: "r1"}, UserID: "u1", Gold: 40,
		ExpiresAt: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	bearer := "Bearer " + token
	cases := []struct {
		name, base, method, path, auth, body string
		code                                 int
		errCode, mentions                    string
	}{
		{"NUL in a top-up key", "admin", "POST", "/admin/v1/wallets/u1/topups", bearer, `{"amount":5,"idempotency_key":"k\u0000"}`, 400, "bad_request", "idempotency_key"},
		{"NUL in a top-up note", "admin", "POST", "/admin/v1/wallets/u1/topups", bearer, `{"amount":5,"idempotency_key":"k","note":"a\u0000b"}`, 400, "bad_request", "note"},
		{"NUL in a reversal app id", "admin", "POST", "/admin/v1/debits/r1/reversal", bearer, `{"app_id":"app\u0000","idempotency_key":"k"}`, 400, "bad_request", "app_id"},
		{"NUL in a reversal key", "admin", "POST", "/admin/v1/debits/r1/reversal", bearer, `{"app_id":"app","idempotency_key":"\u0000"}`, 400, "bad_request", "idempotency_key"},
		{"NUL in a reversal note", "admin", "POST", "/admin/v1/debits/r1/reversal", bearer, `{"app_id":"app","idempotency_key":"k","note":"\u0000"}`, 400, "bad_request", "note"},
		{"NUL in a request id", "admin", "POST", "/admin/v1/debits/r%00/reversal", bearer, `{"app_id":"app","idempotency_key":"k"}`, 400, "bad_request", "request_id"},
		{"invalid UTF-8 in a request id", "admin", "POST", "/admin/v1/debits/r%FF/reversal", bearer, `{"app_id":"app","idempotency_key":"k"}`, 400, "bad_request", "request_id"},
		{"request id too long", "admin", "POST", "/admin/v1/debits/" + strings.Repeat("r", 129) + "/reversal", bearer, `{"app_id":"app","idempotency_key":"k"}`, 400, "bad_request", "request_id"},
		{"NUL in a user id", "admin", "GET", "/admin/v1/wallets/u%00", bearer, "", 400, "bad_request", "user_id"},
		{"invalid UTF-8 in a user id", "admin", "GET", "/admin/v1/wallets/u%FF/ledger", bearer, "", 400, "bad_request", "user_id"},
		{"double-encoded user id", "admin", "GET", "/admin/v1/wallets/u%252B", bearer, "", 400, "bad_request", "user_id"},
		{"unknown admin route", "admin", "GET", "/admin/v1/nowhere", bearer, "", 404, "not_found", ""},
		{"unknown route on the admin listener", "admin", "GET", "/nowhere", "", "", 404, "not_found", ""},
		{"admin route, wrong method", "admin", "PUT", "/admin/v1/wallets/u1", bearer, "", 405, "method_not_allowed", "GET"},
		{"admin route, made-up method", "admin", "FROB", "/admin/v1/wallets/u1/topups", bearer, "", 405, "method_not_allowed", "POST"},
		{"probe, wrong method, admin listener", "admin", "POST", "/readyz", "", "", 405, "method_not_allowed", "GET"},
		{"probe, wrong method, public listener", "public", "DELETE", "/healthz", "", "", 405, "method_not_allowed", "GET"},
		{"callback, wrong method", "public", "GET", "/linkv/debit", "", "", 405, "method_not_allowed", "POST"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := e.admin.URL
			if c.base == "public" {
				base = e.public.URL
			}
			a := e.send(t, base, c.method, c.path, c.auth, c.body)
			msg := a.errMessage()
			if a.code != c.code || a.errCode() != c.errCode || msg == "" {
				t.Fatalf("%d %s, want %d with error code %s and a message", a.code, a.raw, c.code, c.errCode)
			}
			if c.code == 405 {
				// mentions is then the method the Allow header must name.
				if allow := a.hdr.Get("Allow"); allow != c.mentions {
					t.Errorf("Allow %q, want %q", allow, c.mentions)
				}
			} else if !strings.Contains(msg, c.mentions) {
				t.Errorf("message %q does not name %s", msg, c.mentions)
			}
			if strings.Contains(strings.ToLower(msg), "retry") {
				t.Errorf("message %q invites a retry that cannot succeed", msg)
			}
		})
	}
	if w, _ := e.store.Wallet(context.Background(), "u1"); w.Gold != 60 {
		t.Errorf("balance %d, want 60: a refused request moved gold", w.Gold)
	}
}

// TestAdmin_PercentEncodedUserIDs: user ids may hold + and =, which
// clients percent-encode in a path; the id is the decoded segment, decoded
// once.
func TestAdmin_PercentEncodedUserIDs(t *testing.T) {
	e := newEnv(t)
	a := e.adm(t, http.MethodPost, "/admin/v1/wallets/a%2Bb%3D/topups", `{"amount":7,"idempotency_key":"k"}`)
	if a.code != 200 || a.m["user_id"] != "a+b=" {
		t.Fatalf("top-up to a%%2Bb%%3D: %d %s, want 200 for user a+b=", a.code, a.raw)
	}
	for _, path := range []string{"/admin/v1/wallets/a+b=", "/admin/v1/wallets/a%2Bb%3D", "/admin/v1/wallets/a%2bb%3d"} {
		if w := e.adm(t, http.MethodGet, path, ""); w.code != 200 || w.m["user_id"] != "a+b=" || w.m["gold"] != 7.0 {
			t.Errorf("%s: %d %s, want a+b='s 7 gold", path, w.code, w.raw)
		}
	}
	if l := e.adm(t, http.MethodGet, "/admin/v1/wallets/a%2Bb%3D/ledger", ""); l.code != 200 || len(l.m["entries"].([]any)) != 1 {
		t.Errorf("ledger: %d %s, want one entry", l.code, l.raw)
	}
}
