package httpapi

import (
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"giftd/internal/ledger"
)

// Kinds of credit counted in giftd_gold_credited_total.
const (
	creditTopUp    = "topup"
	creditReversal = "reversal"
)

func newLedgerMetrics() (credited *prometheus.CounterVec, db *prometheus.HistogramVec) {
	credited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "giftd_gold_credited_total",
		Help: "Gold credited to wallets through the admin API, by kind: topup or reversal. Replays count once.",
	}, []string{"kind"})
	for _, k := range []string{creditTopUp, creditReversal} {
		credited.WithLabelValues(k)
	}
	db = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "giftd_db_duration_seconds",
		Help: "Time of one ledger operation (its transaction or statement, pool wait included), by operation.",
		// Milliseconds for a debit; seconds for an audit or a prune.
		Buckets:                         []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 30},
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  160,
		NativeHistogramMinResetDuration: time.Hour,
	}, []string{"op"})
	for _, op := range ledger.Ops() {
		db.WithLabelValues(op)
	}
	return credited, db
}

// ObserveDB records one ledger operation's duration; it is a
// ledger.Timer, for Store.SetTimer.
func (m *Metrics) ObserveDB(op string, d time.Duration) {
	m.db.WithLabelValues(op).Observe(d.Seconds())
}

// countCredit counts gold credited by a top-up or reversal; a replay
// credited nothing.
func (m *Metrics) countCredit(kind string, c ledger.Credit) {
	if m != nil && !c.Replay {
		m.credited.WithLabelValues(kind).Add(float64(c.Amount))
	}
}

// newBuildInfo is giftd_build_info: always 1, its labels say which build
// this is. The revision is the VCS commit Go stamped into the binary, or
// "unknown" when built without VCS information (-buildvcs=false).
func newBuildInfo() prometheus.Collector {
	version, revision := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && revision != "unknown" {
			revision += "-dirty"
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "giftd_build_info",
		Help:        "Always 1; the labels name giftd's version, VCS revision and Go version.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// Metrics are the HTTP-level metrics of both listeners.
type Metrics struct {
	duration *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
	credited *prometheus.CounterVec
	db       *prometheus.HistogramVec
}

// NewMetrics registers on reg the HTTP metrics, the gold credited by the
// admin API, the durations of ledger operations (see ObserveDB), build info,
// and the Go runtime and process collectors.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "giftd_http_request_duration_seconds",
			Help: "Time to answer an HTTP request, by listener, route pattern, method and status code.",
			// Fine enough at the low end to tell 1 ms from 5 ms from 25 ms.
			Buckets: []float64{.0005, .001, .002, .003, .005, .0075, .01, .015, .025, .05, .1, .25, .5, 1, 2.5, 5},
			// The same observations as a native histogram, for a Prometheus
			// that scrapes them: ~10% wide buckets, at most 160 per series.
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"listener", "route", "method", "code"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "giftd_http_requests_in_flight",
			Help: "HTTP requests being answered, by listener.",
		}, []string{"listener"}),
	}
	m.credited, m.db = newLedgerMetrics()
	reg.MustRegister(m.duration, m.inFlight, m.credited, m.db, newBuildInfo(),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// instrument observes every request's duration, labelled by chi's route
// pattern (never the raw path, which carries user and request ids) and by
// method. Every label value comes from a fixed set, whatever the client
// sends: see routeLabel and methodLabel.
func (m *Metrics) instrument(listener string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		inFlight := m.inFlight.WithLabelValues(listener)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			inFlight.Inc()
			defer inFlight.Dec()
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			next.ServeHTTP(sw, r)
			m.duration.WithLabelValues(listener, routeLabel(r), methodLabel(r.Method), codeLabel(sw.status)).
				Observe(time.Since(start).Seconds())
		})
	}
}

// routeUnmatched is the route label of a request no route took: a 404, a
// 405 from the router, or a 401 under /admin/ (refused before routing).
const routeUnmatched = "unmatched"

// routeLabel is the pattern of the route that answered r, or
// routeUnmatched. A pattern ending in "/*" is a sub-router's mount point,
// not a route: giftd registers no wildcard route of its own.
func routeLabel(r *http.Request) string {
	route := chi.RouteContext(r.Context()).RoutePattern()
	if route == "" || strings.HasSuffix(route, "/*") {
		return routeUnmatched
	}
	return route
}

// methodLabel is method if it is one of HTTP's standard methods, else
// "other": a client may send any token as a method, and each distinct label
// value is a series kept for the life of the process.
func methodLabel(method string) string {
	for _, m := range standardMethods {
		if method == m {
			return method
		}
	}
	return "other"
}

// codeLabel is status as text: a constant for the codes the callbacks
// answer with, so that counting them allocates nothing.
func codeLabel(status int) string {
	switch status {
	case http.StatusOK:
		return "200"
	case http.StatusBadRequest:
		return "400"
	case http.StatusPaymentRequired:
		return "402"
	case http.StatusForbidden:
		return "403"
	case http.StatusConflict:
		return "409"
	case http.StatusInternalServerError:
		return "500"
	}
	return strconv.Itoa(status)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

// Unwrap lets http.ResponseController reach the connection (a platform job
// lifts its write deadline).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// standardMethods are HTTP's methods, the ones an Allow header may name.
var standardMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace,
}
