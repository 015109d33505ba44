package httpapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

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
		Store: store, AdminToken: "token-0123456789abcdef", Metrics: httpapi.NewMetrics(reg, store.Pool()),
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
