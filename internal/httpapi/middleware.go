package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the HTTP-level metrics of both listeners.
type Metrics struct {
	duration *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
	credited *prometheus.CounterVec
	db       *prometheus.HistogramVec
}

// NewMetrics registers on reg the HTTP metrics, the gold credited by the
// admin API, the durations of ledger operations (see ObserveDB), the
// statistics of pool, build info, and the Go runtime and process collectors.
func NewMetrics(reg prometheus.Registerer, pool *pgxpool.Pool) *Metrics {
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
	reg.MustRegister(m.duration, m.inFlight, m.credited, m.db, newPoolCollector(pool), newBuildInfo(),
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
			m.duration.WithLabelValues(listener, routeLabel(r), methodLabel(r.Method), strconv.Itoa(sw.status)).
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

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// recoverer turns a panic in a handler into a logged 500.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil && v != http.ErrAbortHandler {
					log.Error("panic serving request", "route", chi.RouteContext(r.Context()).RoutePattern(), "panic", v)
					writeError(w, http.StatusInternalServerError, "internal", "internal error")
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// requireToken lets a request through only with "Authorization: Bearer
// <token>", the scheme in any case (RFC 7235), the token exactly. Both sides
// are hashed first so the comparison takes the same time whatever the
// length of the guess.
func requireToken(token string) func(http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			scheme, given, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			ok := strings.EqualFold(scheme, "Bearer")
			got := sha256.Sum256([]byte(strings.TrimLeft(given, " ")))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="giftd-admin"`)
				writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// standardMethods are HTTP's methods, the ones an Allow header may name.
var standardMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace,
}

// notFound answers a request for no route with spec §6's error body.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "not_found", "no such route")
}

// methodNotAllowed answers a route asked with a method it has not, with
// spec §6's error body and the Allow header naming the methods of routes,
// the router it is set on.
func methodNotAllowed(routes chi.Routes) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		path := chi.RouteContext(r.Context()).RoutePath // set inside a sub-router
		if path == "" {
			path = r.URL.RawPath
		}
		if path == "" {
			path = r.URL.Path
		}
		for _, m := range standardMethods {
			if routes.Match(chi.NewRouteContext(), m, path) {
				w.Header().Add("Allow", m)
			}
		}
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "this route does not take that method; see the Allow header")
	}
}

// limitBody caps request bodies at n bytes.
func limitBody(n int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, n)
			next.ServeHTTP(w, r)
		})
	}
}

// poolCollector exports a pgxpool's statistics.
type poolCollector struct {
	pool  *pgxpool.Pool
	descs map[string]*prometheus.Desc
}

func newPoolCollector(pool *pgxpool.Pool) *poolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("giftd_db_pool_"+name, help, nil, nil)
	}
	return &poolCollector{pool: pool, descs: map[string]*prometheus.Desc{
		"acquired":       d("acquired_connections", "Connections in use."),
		"idle":           d("idle_connections", "Idle connections."),
		"total":          d("total_connections", "Open connections."),
		"max":            d("max_connections", "Largest pool size allowed."),
		"acquires":       d("acquires_total", "Connections acquired from the pool."),
		"empty":          d("empty_acquires_total", "Acquires that had to wait for or open a connection."),
		"canceled":       d("canceled_acquires_total", "Acquires cancelled by their context."),
		"acquire_wait":   d("acquire_wait_seconds_total", "Total time spent waiting to acquire a connection."),
		"new_conns":      d("new_connections_total", "Connections opened."),
		"lifetime_close": d("max_lifetime_destroys_total", "Connections closed for reaching their maximum lifetime."),
	}}
}

// Describe implements prometheus.Collector.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	g := func(key string, v float64) {
		ch <- prometheus.MustNewConstMetric(c.descs[key], prometheus.GaugeValue, v)
	}
	n := func(key string, v float64) {
		ch <- prometheus.MustNewConstMetric(c.descs[key], prometheus.CounterValue, v)
	}
	g("acquired", float64(s.AcquiredConns()))
	g("idle", float64(s.IdleConns()))
	g("total", float64(s.TotalConns()))
	g("max", float64(s.MaxConns()))
	n("acquires", float64(s.AcquireCount()))
	n("empty", float64(s.EmptyAcquireCount()))
	n("canceled", float64(s.CanceledAcquireCount()))
	n("acquire_wait", s.AcquireDuration().Seconds())
	n("new_conns", float64(s.NewConnsCount()))
	n("lifetime_close", float64(s.MaxLifetimeDestroyCount()))
}
