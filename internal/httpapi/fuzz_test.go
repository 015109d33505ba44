package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/httpapi"
	"giftd/internal/ledger"
	"giftd/internal/linkv"
	"giftd/internal/pgtest"
)

// adminRoutes are the admin routes FuzzAdminAPI drives: the method, and the
// path around the fuzzed segment; query: the fuzzed body is the query string.
var adminRoutes = []struct {
	method, before, after string
	query                 bool
}{
	{http.MethodPost, "/admin/v1/wallets/", "/topups", false},
	{http.MethodGet, "/admin/v1/wallets/", "", false},
	{http.MethodGet, "/admin/v1/wallets/", "/ledger", true},
	{http.MethodPost, "/admin/v1/debits/", "/reversal", false},
	{http.MethodGet, "/admin/v1/debits/", "", true},
}

// FuzzAdminAPI drives the real admin handler, on a real PostgreSQL, with
// fuzzed path segments and JSON bodies for top-ups, wallet reads, ledger
// pages, reversals and debit look-ups. Property: nothing an operator sends
// gets a 500 while the database is up, and every answer is JSON, a 4xx with
// spec §6's error body.
func FuzzAdminAPI(f *testing.F) {
	for _, s := range []struct {
		route     uint8
		seg, body string
	}{
		{0, "u1", `{"amount":5,"idempotency_key":"k"}`},
		{0, "u1", `{"amount":5,"idempotency_key":"k\u0000"}`},
		{0, "u1", `{"amount":5,"idempotency_key":"k","note":"\u0000"}`},
		{0, "u1", "{\"amount\":5,\"idempotency_key\":\"k\xff\xfe\"}"},
		{0, "u1", `{"amount":5,"idempotency_key":"\ud800"}`},
		{0, "u1", `{"amount":99999999999999999999,"idempotency_key":"k"}`},
		{0, "u1", `{"amount":1e3,"idempotency_key":"k"}`},
		{0, "u1", `{"amount":5,"idempotency_key":"k","note":null,"Note":"x"}`},
		{0, "a%2Bb%3D", `{"amount":5,"idempotency_key":"k2"}`},
		{0, "u%00", `{"amount":5,"idempotency_key":"k"}`},
		{0, "u%FF", `{"amount":5,"idempotency_key":"k"}`},
		{0, "u%252B", `{"amount":5,"idempotency_key":"k"}`},
		{0, "u\x00", `{"amount":5,"idempotency_key":"k"}`},
		{1, "u1", ""},
		{1, "a%2Bb%3D", ""},
		{1, "%00", ""},
		{1, "%ff", ""},
		{1, "%zz", ""},
		{1, "a%2Fb", ""},
		{2, "u1", "limit=2&before=1"},
		{2, "u1", "limit=%00&before=99999999999999999999"},
		{2, "a%2Bb%3D", "limit=500"},
		{3, "r1", `{"app_id":"app","idempotency_key":"rk"}`},
		{3, "r%00", `{"app_id":"app","idempotency_key":"rk"}`},
		{3, "r%FF", `{"app_id":"app","idempotency_key":"rk"}`},
		{3, "r1", `{"app_id":"app\u0000","idempotency_key":"rk"}`},
		{3, "r1", `{"platform":"polyv\u0000","app_id":"app","idempotency_key":"rk"}`},
		{3, "r1", `{"app_id":"app","idempotency_key":"rk2","note":"` + strings.Repeat("\\u0000", 100) + `"}`},
		{4, "r1", "app_id=app"},
		{4, "r1", "app_id=app&platform=polyv"},
		{4, "r%00", "app_id=app%00&platform=x"},
		{4, "r1", "app_id=%ff"},
		{4, "r1", ""},
	} {
		f.Add(s.route, s.seg, s.body)
	}

	store, err := ledger.Open(context.Background(), pgtest.URL(f), pgtest.StoreOptions()...)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(store.Close)
	ctx := context.Background()
	if _, err := store.TopUp(ctx, ledger.TopUp{UserID: "u1", Amount: 1000, Key: "seed"}); err != nil {
		f.Fatal(err)
	}
	_, err = store.Debit(ctx, ledger.Debit{
		Key: ledger.DebitKey{Platform: linkv.Platform, AppID: "app", RequestID: "r1"}, UserID: "u1", Gold: 40,
		ExpiresAt: time.Now().Add(24 * time.Hour),
	})
	if err != nil {
		f.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	admin := httpapi.NewAdmin(httpapi.Deps{
		Store: store, AdminToken: token, Metrics: httpapi.NewMetrics(reg), Gatherer: reg,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})

	f.Fuzz(func(t *testing.T, route uint8, seg, body string) {
		rt := adminRoutes[int(route)%len(adminRoutes)]
		target := rt.before + seg + rt.after
		if rt.query {
			target += "?" + body
		}
		// What a server could have read from a request line: no spaces or
		// control characters; else the segment is sent percent-encoded.
		u, err := url.ParseRequestURI(target)
		if err != nil || strings.ContainsFunc(target, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			target = rt.before + url.PathEscape(seg) + rt.after
			if u, err = url.ParseRequestURI(target); err != nil {
				t.Skip(err)
			}
		}
		req := (&http.Request{
			Method: rt.method, URL: u, RequestURI: target, Host: "giftd", RemoteAddr: "192.0.2.1:1234",
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:        http.Header{"Authorization": {"Bearer " + token}, "Content-Type": {"application/json"}},
			Body:          io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)),
		}).WithContext(ctx)
		w := httptest.NewRecorder()
		admin.ServeHTTP(w, req)

		what := fmt.Sprintf("%s %q body %q", rt.method, target, body)
		if w.Code >= 500 {
			t.Fatalf("%s: %d %s", what, w.Code, w.Body)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: %d with Content-Type %q", what, w.Code, ct)
		}
		var answer struct {
			Error *struct{ Code, Message string }
		}
		if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil {
			t.Fatalf("%s: %d, body not JSON: %v: %q", what, w.Code, err, w.Body)
		}
		if w.Code >= 400 && (answer.Error == nil || answer.Error.Code == "" || answer.Error.Message == "") {
			t.Errorf("%s: %d without the error body: %s", what, w.Code, w.Body)
		}
	})
}
