package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"giftd/internal/httpapi"
	"giftd/internal/ledger"
	"giftd/internal/pgtest"
)

// TestMetrics_RequestDurationIsClassicAndNative: the request histogram has
// classic buckets and native (sparse) buckets in the same series, which is
// what a Prometheus ingesting native histograms scrapes.
func TestMetrics_RequestDurationIsClassicAndNative(t *testing.T) {
	store, err := ledger.Open(context.Background(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	reg := prometheus.NewRegistry()
	h := httpapi.NewAdmin(httpapi.Deps{
		Store: store, AdminToken: "token-0123456789abcdef", Metrics: httpapi.NewMetrics(reg),
		Gatherer: reg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/healthz", nil))

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != "giftd_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			hist := m.GetHistogram()
			if len(hist.GetBucket()) == 0 || len(hist.GetPositiveSpan()) == 0 || hist.GetZeroThreshold() == 0 {
				t.Errorf("request histogram: %d classic buckets, %d native spans; want both", len(hist.GetBucket()), len(hist.GetPositiveSpan()))
			}
			return
		}
	}
	t.Fatal("no giftd_http_request_duration_seconds series after a request")
}

// TestMetrics_LabelsBoundedWhateverClientsSend: made-up methods and paths,
// on both listeners, add no series once each kind of mistake has been seen:
// a client cannot grow /metrics by varying what it sends.
func TestMetrics_LabelsBoundedWhateverClientsSend(t *testing.T) {
	e := newEnv(t)
	send := func(base, method, path, auth string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) //nolint:errcheck // only the metrics matter
		resp.Body.Close()
	}
	// round sends every kind of made-up request once, its made-up parts
	// drawn from i.
	round := func(i int) {
		method := fmt.Sprintf("X%d%s", i, strings.Repeat("M", 200))
		junk := fmt.Sprintf("/no-%d-%s", i, strings.Repeat("p", 200))
		for _, base := range []string{e.public.URL, e.admin.URL} {
			for _, m := range []string{method, http.MethodGet, http.MethodPost, http.MethodDelete} {
				send(base, m, junk, "")
				send(base, m, "/readyz", "")
				send(base, m, "/linkv/debit", "")
			}
		}
		for _, m := range []string{method, http.MethodGet, http.MethodPut} {
			for _, auth := range []string{"", "Bearer " + token} {
				send(e.admin.URL, m, "/admin/v1"+junk, auth)
				send(e.admin.URL, m, "/admin/v1/wallets/u1"+junk, auth)
				send(e.admin.URL, m, "/admin/v1/wallets/u1", auth)
				send(e.admin.URL, m, "/metrics", auth)
			}
		}
	}
	round(0)
	before, err := testutil.GatherAndCount(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 100; i++ {
		round(i)
	}
	after, err := testutil.GatherAndCount(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("%d series after 100 rounds of made-up methods and paths, %d after one: labels are not bounded", after, before)
	}
	// The made-up parts never reach a label: methods outside the standard
	// ones are "other", routes nobody registered are "unmatched".
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "MMMM") || strings.Contains(l.GetValue(), "/no-") {
					t.Errorf("%s{%s=%.40q…}: a client's method or path became a label", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}
