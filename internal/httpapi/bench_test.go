package httpapi_test

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/httpapi"
)

// discardWriter is a ResponseWriter that keeps nothing but its header.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkPublic_Middleware is what the public listener adds to every
// callback around its handler: chi's routing, the request metrics and the
// recoverer, here around a callback that answers a fixed body.
func BenchmarkPublic_Middleware(b *testing.B) {
	answer := []byte(`{"status":200,"msg":"","gold":990,"data":{"gold":990}}` + "\n")
	cb := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write(answer) //nolint:errcheck // discarded
	})
	h := httpapi.NewPublic(httpapi.Deps{
		Callbacks: []httpapi.Callback{{Doc: "linkv-debit", Method: http.MethodPost, Path: "/linkv/debit", Handler: cb}},
		Metrics:   httpapi.NewMetrics(prometheus.NewRegistry()),
		Log:       slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	r, err := http.NewRequest(http.MethodPost, "http://giftd/linkv/debit", strings.NewReader(""))
	if err != nil {
		b.Fatal(err)
	}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for range b.N {
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}
