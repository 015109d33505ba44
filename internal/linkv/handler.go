package linkv

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/ledger"
)

// Platform is the name LinkV's debits carry in the ledger and in metrics.
const Platform = "linkv"

// Outcomes of a debit callback, as counted in giftd_debit_outcomes_total.
const (
	OutcomeOK           = "ok"
	OutcomeReplay       = "replay"
	OutcomeInsufficient = "insufficient"
	OutcomeBadRequest   = "bad_request"
	OutcomeExpired      = "expired"
	OutcomeBadSign      = "bad_sign"
	OutcomeConflict     = "conflict"
	OutcomeError        = "error"
)

// Metrics are the callback's counters. Create them once per registry.
type Metrics struct {
	outcomes  *prometheus.CounterVec
	signForms *prometheus.CounterVec
}

// NewMetrics registers the callback's counters on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "giftd_debit_outcomes_total",
			Help: "Debit callbacks answered, by platform and outcome.",
		}, []string{"platform", "outcome"}),
		signForms: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "giftd_linkv_sign_forms_total",
			Help: "LinkV callbacks whose signature matched, by the field set it covered: all (every field) or eight (the PHP SDK's eight fields).",
		}, []string{"form"}),
	}
	reg.MustRegister(m.outcomes, m.signForms)
	for _, o := range []string{OutcomeOK, OutcomeReplay, OutcomeInsufficient, OutcomeBadRequest,
		OutcomeExpired, OutcomeBadSign, OutcomeConflict, OutcomeError} {
		m.outcomes.WithLabelValues(Platform, o)
	}
	for _, f := range []SignForm{SignAllFields, SignEightField} {
		m.signForms.WithLabelValues(string(f))
	}
	return m
}

// Config is what the callback needs to know besides the store.
type Config struct {
	// Apps maps each accepted app_id to its secrets; any one may sign.
	Apps map[string][]string
	// MaxExpiry refuses requests whose expriation is further ahead than this.
	MaxExpiry time.Duration
	// NonceMaxAge refuses new requests whose nonce timestamp is older than
	// this; 0 turns the check off.
	NonceMaxAge time.Duration
	// DBTimeout bounds the database work of one callback.
	DBTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Handler answers LinkV's debit callback (spec §1–§4).
type Handler struct {
	store   *ledger.Store
	cfg     Config
	metrics *Metrics
	log     *slog.Logger
}

// NewHandler returns the debit callback handler.
func NewHandler(store *ledger.Store, cfg Config, m *Metrics, log *slog.Logger) *Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{store: store, cfg: cfg, metrics: m, log: log}
}

// answer is the callback's JSON answer; Status is also the HTTP status.
type answer struct {
	Status int       `json:"status"`
	Msg    string    `json:"msg"`
	Gold   *int64    `json:"gold,omitempty"`
	Data   *goldOnly `json:"data,omitempty"`
	out    string    // the outcome counted
	form   SignForm  // the signature form that matched, if any
	req    *Request  // the validated request, if it got that far
	err    error     // a system error, logged
}

type goldOnly struct {
	Gold int64 `json:"gold"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	a := h.serve(r)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.Status)
	json.NewEncoder(w).Encode(a) //nolint:errcheck // the client is gone; nothing to do

	h.metrics.outcomes.WithLabelValues(Platform, a.out).Inc()
	attrs := []slog.Attr{
		slog.String("platform", Platform),
		slog.String("outcome", a.out),
		slog.Int("status", a.Status),
		slog.Duration("latency", time.Since(start)),
	}
	if a.req != nil {
		attrs = append(attrs, slog.String("app_id", a.req.AppID), slog.String("request_id", a.req.RequestID),
			slog.String("user_id", a.req.UserID), slog.Int64("gold", a.req.Gold))
	}
	if a.form != "" {
		attrs = append(attrs, slog.String("sign_form", string(a.form)))
	}
	level := slog.LevelInfo
	if a.err != nil {
		level = slog.LevelError
		attrs = append(attrs, slog.String("error", a.err.Error()))
	} else if a.Status != http.StatusOK {
		attrs = append(attrs, slog.String("msg", a.Msg))
	}
	h.log.LogAttrs(r.Context(), level, "debit callback", attrs...)
}

func (h *Handler) serve(r *http.Request) answer {
	fields, err := ReadForm(r)
	if err != nil {
		return badRequest(err)
	}
	// Authenticate before trusting anything else in the form.
	for _, f := range []string{"app_id", "sign"} {
		if fields[f] == "" {
			return badRequest(&FieldError{Field: f, Reason: "required"})
		}
	}
	secrets, ok := h.cfg.Apps[fields["app_id"]]
	if !ok {
		return answer{Status: http.StatusForbidden, Msg: "sign err", out: OutcomeBadSign}
	}
	form, ok := Verify(fields, fields["sign"], secrets)
	if !ok {
		return answer{Status: http.StatusForbidden, Msg: "sign err", out: OutcomeBadSign}
	}
	h.metrics.signForms.WithLabelValues(string(form)).Inc()

	now := h.cfg.Now()
	req, err := Validate(fields, Limits{Now: now, MaxExpiry: h.cfg.MaxExpiry})
	if err != nil {
		a := badRequest(err)
		var fe *FieldError
		if errors.As(err, &fe) && fe.Field == "expriation" && strings.Contains(fe.Reason, "expired") {
			a.out = OutcomeExpired
		}
		a.form = form
		return a
	}

	// The database work runs to its own deadline: LinkV hanging up must not
	// cut a debit short, and shutdown lets it finish.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.cfg.DBTimeout)
	defer cancel()
	key := ledger.DebitKey{Platform: Platform, AppID: req.AppID, RequestID: req.RequestID}
	fp := req.Fingerprint()

	var res ledger.DebitResult
	if h.cfg.NonceMaxAge > 0 && !h.nonceFresh(req.Nonce, now) {
		// A late retry of an executed request still gets its answer.
		res, err = h.store.Recorded(ctx, key, fp)
		if errors.Is(err, ledger.ErrNotFound) {
			a := badRequest(&FieldError{Field: "nonce", Reason: "older than " + h.cfg.NonceMaxAge.String()})
			a.out, a.form, a.req = OutcomeExpired, form, &req
			return a
		}
	} else {
		res, err = h.store.Debit(ctx, ledger.Debit{
			Key:         key,
			UserID:      req.UserID,
			Gold:        req.Gold,
			Fingerprint: fp,
			ExpiresAt:   req.Expriation,
			Details:     req.Details(),
		})
	}
	a := h.result(res, err)
	a.form, a.req = form, &req
	return a
}

// nonceFresh reports whether the nonce's embedded timestamp is within
// NonceMaxAge of now; a nonce without one is not fresh.
func (h *Handler) nonceFresh(nonce string, now time.Time) bool {
	t, ok := NonceTime(nonce)
	return ok && now.Sub(t) <= h.cfg.NonceMaxAge
}

// result maps the ledger's answer to LinkV's.
func (h *Handler) result(res ledger.DebitResult, err error) answer {
	switch {
	case errors.Is(err, ledger.ErrRequestReused):
		return answer{Status: http.StatusConflict, Msg: "request_id reused with different parameters", out: OutcomeConflict}
	case err != nil:
		return answer{Status: http.StatusInternalServerError, Msg: "system error", out: OutcomeError, err: err}
	}
	gold := res.Balance
	a := answer{Status: int(res.Status), Gold: &gold}
	switch res.Status {
	case ledger.Debited:
		a.Data, a.out = &goldOnly{Gold: gold}, OutcomeOK
	case ledger.Insufficient:
		a.Msg, a.out = "insufficient gold", OutcomeInsufficient
	}
	if res.Replay {
		a.out = OutcomeReplay
	}
	return a
}

func badRequest(err error) answer {
	return answer{Status: http.StatusBadRequest, Msg: err.Error(), out: OutcomeBadRequest}
}
