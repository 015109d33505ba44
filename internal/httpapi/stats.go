package httpapi

import (
	"context"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// statsAnswer is GET /admin/v1/stats: a snapshot of giftd's own metrics,
// read from the registry /metrics serves, in a shape a browser can use
// without parsing Prometheus's text format. Counters are totals since the
// process started; a client takes two snapshots and divides by the time
// between them for rates.
type statsAnswer struct {
	At         time.Time `json:"at"`
	Ready      bool      `json:"ready"`
	ReadyError string    `json:"ready_error,omitempty"`
	// Callbacks is giftd_debit_outcomes_total: callbacks answered, by
	// platform and outcome.
	Callbacks []statsOutcome `json:"callbacks"`
	// CallbackLatency merges giftd_http_request_duration_seconds of the
	// callback routes of the public listener.
	CallbackLatency statsHistogram `json:"callback_latency"`
	// HTTP5xx counts answers with a 5xx status, by listener.
	HTTP5xx      map[string]float64 `json:"http_5xx"`
	SignForms    map[string]float64 `json:"sign_forms"`
	Pool         map[string]float64 `json:"pool"`
	GoldDebited  map[string]float64 `json:"gold_debited"`
	GoldCredited map[string]float64 `json:"gold_credited"`
	PruneErrors  float64            `json:"prune_errors"`
}

type statsOutcome struct {
	Platform string  `json:"platform"`
	Outcome  string  `json:"outcome"`
	Count    float64 `json:"count"`
}

type statsHistogram struct {
	Count float64 `json:"count"`
	Sum   float64 `json:"sum"`
	// Buckets are cumulative, by upper bound in seconds; the +Inf bucket is
	// Count.
	Buckets []statsBucket `json:"buckets"`
}

type statsBucket struct {
	LE    float64 `json:"le"`
	Count float64 `json:"count"`
}

// handleStats answers a snapshot of the metrics in g (see statsAnswer), the
// callback latency being that of callbacks' routes.
func handleStats(g prometheus.Gatherer, ready *Readiness, callbacks []Callback) http.HandlerFunc {
	var routes []string
	for _, c := range callbacks {
		routes = append(routes, c.Path)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		a := statsAnswer{
			At: time.Now().UTC(), Callbacks: []statsOutcome{}, CallbackLatency: statsHistogram{Buckets: []statsBucket{}},
			HTTP5xx: map[string]float64{}, SignForms: map[string]float64{}, Pool: map[string]float64{},
			GoldDebited: map[string]float64{}, GoldCredited: map[string]float64{},
		}
		if err := ready.Check(ctx); err != nil {
			a.ReadyError = err.Error()
		} else {
			a.Ready = true
		}
		families, err := g.Gather()
		if err != nil && len(families) == 0 {
			writeError(w, http.StatusInternalServerError, "internal", "gather metrics: "+err.Error())
			return
		}
		for _, f := range families {
			name := f.GetName()
			for _, m := range f.GetMetric() {
				l := labels(m)
				switch {
				case name == "giftd_debit_outcomes_total":
					a.Callbacks = append(a.Callbacks, statsOutcome{l["platform"], l["outcome"], value(m)})
				case name == "giftd_http_request_duration_seconds":
					if strings.HasPrefix(l["code"], "5") {
						a.HTTP5xx[l["listener"]] += float64(m.GetHistogram().GetSampleCount())
					}
					if l["listener"] == "public" && slices.Contains(routes, l["route"]) {
						a.CallbackLatency.add(m.GetHistogram())
					}
				case name == "giftd_linkv_sign_forms_total":
					a.SignForms[l["form"]] = value(m)
				case strings.HasPrefix(name, "giftd_db_pool_"):
					a.Pool[strings.TrimPrefix(name, "giftd_db_pool_")] = value(m)
				case name == "giftd_gold_debited_total":
					a.GoldDebited[l["platform"]] = value(m)
				case name == "giftd_gold_credited_total":
					a.GoldCredited[l["kind"]] = value(m)
				case name == "giftd_prune_errors_total":
					a.PruneErrors = value(m)
				}
			}
		}
		for _, l := range []string{"public", "admin"} {
			a.HTTP5xx[l] += 0
		}
		writeJSON(w, http.StatusOK, a)
	}
}

// add merges h's classic buckets into s (every series of one histogram
// has the same bounds).
func (s *statsHistogram) add(h *dto.Histogram) {
	s.Count += float64(h.GetSampleCount())
	s.Sum += h.GetSampleSum()
	for i, b := range h.GetBucket() {
		if math.IsInf(b.GetUpperBound(), +1) {
			continue
		}
		if i == len(s.Buckets) {
			s.Buckets = append(s.Buckets, statsBucket{LE: b.GetUpperBound()})
		}
		s.Buckets[i].Count += float64(b.GetCumulativeCount())
	}
}

func labels(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// value is a counter's or gauge's value (an untyped one's for const
// metrics of another kind).
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	default:
		return m.GetUntyped().GetValue()
	}
}
