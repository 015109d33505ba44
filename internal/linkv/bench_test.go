package linkv

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/callback"
	"giftd/internal/ledger"
)

// benchNow is the moment of the benchmarks' requests.
var benchNow = time.Unix(1796079470, 0)

// benchBody is a debit as giftd-load sends it: the eight fields, signed
// over every field (form "all").
func benchBody() []byte {
	f := [8]Field{
		{Name: "app_id", Value: "bench-app"},
		{Name: "expriation", Value: strconv.FormatInt(benchNow.Unix()+91*86400, 10)},
		{Name: "gold", Value: "10"},
		{Name: "nonce", Value: "1a2b3c4d" + strconv.FormatInt(benchNow.Unix(), 10) + "5e6f7a8b"},
		{Name: "reason", Value: `{"gift_id":"1","send_num":1,"resource_id":"load-room","vtype":"1","receiver_id":"r-17"}`},
		{Name: "request_id", Value: "0f1e2d3c4b5a69788796a5b4c3d2e1f0"},
		{Name: "type", Value: "1"},
		{Name: "user_id", Value: "u-42"},
	}
	return AppendSignedBody(nil, f[:], vectorSecret)
}

// rewindBody is a request body the benchmarks read again and again without
// allocating a new one each time.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

func benchRequest(body []byte) (*http.Request, *rewindBody) {
	rb := &rewindBody{}
	rb.Reset(body)
	r, err := http.NewRequest(http.MethodPost, "http://giftd/linkv/debit", rb)
	if err != nil {
		panic(err)
	}
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r, rb
}

// BenchmarkReadVerifyValidate is the callback's work on a request before the
// ledger: reading the form, checking the sign, validating the fields and
// fingerprinting them.
func BenchmarkReadVerifyValidate(b *testing.B) {
	body := benchBody()
	r, rb := benchRequest(body)
	secrets := []string{vectorSecret}
	lim := Limits{Now: benchNow, MaxExpiry: 100 * 24 * time.Hour}
	b.ReportAllocs()
	for range b.N {
		rb.Reset(body)
		fields, err := ReadForm(r)
		if err != nil {
			b.Fatal(err)
		}
		form, ok := Verify(fields, fields["sign"], secrets)
		if !ok {
			b.Fatal("refused")
		}
		req, err := Validate(fields, form, lim)
		if err != nil {
			b.Fatal(err)
		}
		_ = req.Fingerprint()
		_ = req.Details()
		_ = req.Gift()
	}
}

// stubStore debits every request: the handler's path without a database.
type stubStore struct{}

func (stubStore) Debit(_ context.Context, d ledger.Debit) (ledger.DebitResult, error) {
	return ledger.DebitResult{Status: ledger.Debited, Balance: 990}, nil
}

func (stubStore) RecordedFor(context.Context, string, ledger.DebitKey, [32]byte) (ledger.DebitResult, error) {
	return ledger.DebitResult{}, ledger.ErrNotFound
}

// discardWriter is a ResponseWriter that keeps nothing but its header.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkHandler is the whole LinkV callback as giftd serves it, with a
// JSON log line and its metrics, over a stub ledger: what giftd's own code
// costs per debit, without net/http and the database.
func BenchmarkHandler(b *testing.B) {
	body := benchBody()
	r, rb := benchRequest(body)
	reg := prometheus.NewRegistry()
	h := NewHandler(nil, Config{
		Apps:      map[string][]string{"bench-app": {vectorSecret}},
		MaxExpiry: 100 * 24 * time.Hour,
		DBTimeout: 5 * time.Second,
		Now:       func() time.Time { return benchNow },
	}, NewMetrics(reg), callback.NewRecorder(reg, slog.New(slog.NewJSONHandler(io.Discard, nil))))
	h.store = stubStore{}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for range b.N {
		rb.Reset(body)
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}
