package linkv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/callback"
	"giftd/internal/ledger"
)

// Platform is the name LinkV's debits carry in the ledger and in metrics.
const Platform = "linkv"

// Metrics are LinkV's own counters; outcomes are counted by the shared
// callback.Recorder.
type Metrics struct {
	signForms *prometheus.CounterVec
	// byForm holds signForms' counter of each form, looked up once.
	byForm map[SignForm]prometheus.Counter
}

// NewMetrics registers LinkV's counters on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		signForms: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "giftd_linkv_sign_forms_total",
			Help: "LinkV callbacks whose signature matched, by the canonicalisation that matched: all or eight (every field or the PHP SDK's eight fields, empty values dropped), with -php (values \"\" and \"0\" dropped, PHP genSign's separator quirk) or -keep-empty (empty values kept).",
		}, []string{"form"}),
	}
	reg.MustRegister(m.signForms)
	// Every form's series exists from the start, at zero: the label set is bounded.
	m.byForm = make(map[SignForm]prometheus.Counter)
	for _, f := range SignForms() {
		m.byForm[f] = m.signForms.WithLabelValues(string(f))
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

// Handler answers LinkV's debit callback (docs/linkv.md §1–§4).
type Handler struct {
	store   debitStore
	cfg     Config
	metrics *Metrics
	calls   *callback.Recorder
	// formAttrs is the log line's sign_form attribute of each form, made
	// once: shared read-only by every line.
	formAttrs map[SignForm][]slog.Attr
}

// NewHandler returns the debit callback handler.
func NewHandler(store *ledger.Store, cfg Config, m *Metrics, calls *callback.Recorder) *Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	calls.AddPlatform(Platform)
	formAttrs := make(map[SignForm][]slog.Attr)
	for _, f := range SignForms() {
		formAttrs[f] = []slog.Attr{slog.String("sign_form", string(f))}
	}
	return &Handler{store: store, cfg: cfg, metrics: m, calls: calls, formAttrs: formAttrs}
}

// debitStore is what the handler needs of the ledger: *ledger.Store, or a
// stub in a benchmark of the handler without a database.
type debitStore interface {
	Debit(ctx context.Context, d ledger.Debit) (ledger.DebitResult, error)
	RecordedFor(ctx context.Context, userID string, key ledger.DebitKey, fingerprint [32]byte) (ledger.DebitResult, error)
}

// answer is the callback's JSON answer (docs/linkv.md §3); Status is also
// the HTTP status. appendJSON writes it.
type answer struct {
	Status  int
	Msg     string
	Gold    int64    // the balance, written when HasGold
	HasGold bool     // a debit's, an insufficient's or a refusal's answer
	Debited bool     // also written as data.gold, which LinkV's PHP SDK requires
	outcome string   // the outcome counted
	form    SignForm // the signature form that matched, if any
	req     Request  // the validated request, if it got that far (then AppID is set)
	err     error    // a system error, logged
}

// appendJSON appends a's body to b as encoding/json's Encoder wrote it
// before: {"status":…,"msg":…} with "gold":… and "data":{"gold":…} when set,
// and a newline. By hand, because the answer is on every debit's path.
func (a *answer) appendJSON(b []byte) []byte {
	b = append(b, `{"status":`...)
	b = strconv.AppendInt(b, int64(a.Status), 10)
	b = append(b, `,"msg":`...)
	b = appendJSONString(b, a.Msg)
	if a.HasGold {
		b = append(b, `,"gold":`...)
		b = strconv.AppendInt(b, a.Gold, 10)
		if a.Debited {
			b = append(b, `,"data":{"gold":`...)
			b = strconv.AppendInt(b, a.Gold, 10)
			b = append(b, '}')
		}
	}
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it (HTML's <, > and & too).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			if err != nil { // a string always marshals
				q = []byte(`""`)
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	a := h.serve(r)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.Status)
	var buf [128]byte
	w.Write(a.appendJSON(buf[:0])) //nolint:errcheck // the client is gone; nothing to do

	rec := callback.Call{Platform: Platform, Outcome: a.outcome, Status: a.Status, Latency: time.Since(start), Err: a.err}
	if a.req.AppID != "" {
		rec.AppID, rec.RequestID, rec.UserID, rec.Gold = a.req.AppID, a.req.RequestID, a.req.UserID, a.req.Gold
	}
	if a.form != "" {
		rec.Attrs = h.formAttrs[a.form]
	}
	if a.Status != http.StatusOK {
		rec.Msg = a.Msg
	}
	h.calls.Record(r.Context(), rec)
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
		return answer{Status: http.StatusForbidden, Msg: "sign err", outcome: callback.BadSign}
	}
	form, ok := Verify(fields, fields["sign"], secrets)
	if !ok {
		return answer{Status: http.StatusForbidden, Msg: "sign err", outcome: callback.BadSign}
	}
	h.metrics.byForm[form].Inc()

	now := h.cfg.Now()
	req, err := Validate(fields, form, Limits{Now: now, MaxExpiry: h.cfg.MaxExpiry})
	if err != nil {
		a := badRequest(err)
		var fe *FieldError
		if errors.As(err, &fe) && fe.Reason == reasonExpired {
			a.outcome = callback.Expired
		}
		a.form = form
		return a
	}

	ctx, cancel := callback.DBContext(r.Context(), h.cfg.DBTimeout)
	defer cancel()
	key := ledger.DebitKey{Platform: Platform, AppID: req.AppID, RequestID: req.RequestID}
	fp := req.Fingerprint()

	var res ledger.DebitResult
	if h.cfg.NonceMaxAge > 0 && !h.nonceFresh(req.Nonce, now) {
		// A late retry of an executed request still gets its answer.
		res, err = h.store.RecordedFor(ctx, req.UserID, key, fp)
		if errors.Is(err, ledger.ErrNotFound) {
			a := badRequest(&FieldError{Field: "nonce", Reason: "older than " + h.cfg.NonceMaxAge.String()})
			a.outcome, a.form, a.req = callback.Expired, form, req
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
			Gift:        req.Gift(),
		})
	}
	a := h.result(res, err)
	if a.outcome == callback.PriceRefused {
		a.Msg = refusal(res, req)
	}
	if err == nil && res.Status == ledger.PolicyRefused {
		a.Msg = callback.PolicyMessage(res, func(n int64) string { return strconv.FormatInt(n, 10) + " gold" })
	}
	a.form, a.req = form, req
	return a
}

// refusal is the 400 message of a gift the price check refused: what the
// catalogue expected (docs/economy.md).
func refusal(res ledger.DebitResult, req Request) string {
	switch res.Refusal {
	case ledger.RefusedUnknownGift:
		return fmt.Sprintf("gift_id: %q is not in the catalogue", req.GiftID)
	case ledger.RefusedInactiveGift:
		return fmt.Sprintf("gift_id: %q is inactive in the catalogue", req.GiftID)
	}
	n, _ := strconv.ParseInt(req.SendNum, 10, 64)
	want := new(big.Int).Mul(big.NewInt(res.Price), big.NewInt(n))
	return fmt.Sprintf("gold: want %s (gift %q at %d × send_num %d), got %d", want, req.GiftID, res.Price, n, req.Gold)
}

// nonceFresh reports whether the nonce's embedded timestamp is within
// NonceMaxAge of now; a nonce without one is not fresh.
func (h *Handler) nonceFresh(nonce string, now time.Time) bool {
	t, ok := NonceTime(nonce)
	return ok && now.Sub(t) <= h.cfg.NonceMaxAge
}

// result maps the ledger's answer to LinkV's.
func (h *Handler) result(res ledger.DebitResult, err error) answer {
	a := answer{outcome: callback.OutcomeOf(res, err)}
	switch a.outcome {
	case callback.Conflict:
		a.Status, a.Msg = http.StatusConflict, "request_id reused with different parameters"
	case callback.Error:
		a.Status, a.Msg, a.err = http.StatusInternalServerError, "system error", err
	case callback.PriceRefused:
		a.Status = http.StatusBadRequest
	default:
		// A policy refusal is 403, its message set by serve: final for
		// LinkV, whose SDK retries only a 500 (docs/safeguards.md).
		a.Status, a.Gold, a.HasGold = int(res.Status), res.Balance, true
		if res.Status == ledger.Debited {
			a.Debited = true
		} else {
			a.Msg = "insufficient gold"
		}
	}
	return a
}

func badRequest(err error) answer {
	return answer{Status: http.StatusBadRequest, Msg: err.Error(), outcome: callback.BadRequest}
}
