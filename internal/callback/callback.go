// Package callback holds what every partner platform's debit callback
// shares above the ledger: the outcomes it counts, the metric that counts
// them, the one log line per callback, and the database deadline. Platform
// adapters (linkv, and others beside it) use it; it knows none of them.
package callback

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/ledger"
)

// Outcomes of a debit callback, as counted in giftd_debit_outcomes_total.
const (
	OK           = "ok"
	Replay       = "replay"
	Insufficient = "insufficient"
	BadRequest   = "bad_request"
	Expired      = "expired"
	BadSign      = "bad_sign"
	Conflict     = "conflict"
	Error        = "error"
	// PriceRefused: the price check refused the gift (not in the catalogue,
	// inactive, or not its price; docs/economy.md).
	PriceRefused = "price_refused"
	// PolicyRefused: a spending safeguard refused the debit (a cap, a
	// cooling-off, a minor or blocked sender; docs/safeguards.md). Its
	// replays count as Replay, as an Insufficient's do.
	PolicyRefused = "policy_refused"
)

var outcomes = []string{OK, Replay, Insufficient, BadRequest, Expired, BadSign, Conflict, Error, PriceRefused, PolicyRefused}

// Recorder counts and logs every callback of every platform.
type Recorder struct {
	outcomes *prometheus.CounterVec
	debited  *prometheus.CounterVec
	log      *slog.Logger
}

// NewRecorder registers giftd_debit_outcomes_total and
// giftd_gold_debited_total on reg and logs to log.
func NewRecorder(reg prometheus.Registerer, log *slog.Logger) *Recorder {
	o := &Recorder{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "giftd_debit_outcomes_total",
			Help: "Debit callbacks answered, by platform and outcome.",
		}, []string{"platform", "outcome"}),
		debited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "giftd_gold_debited_total",
			Help: "Gold debited from wallets by callbacks, by platform. Replays count once.",
		}, []string{"platform"}),
		log: log,
	}
	reg.MustRegister(o.outcomes, o.debited)
	return o
}

// AddPlatform makes every outcome of platform visible, at zero, before its
// first callback, so that rates and alerts see a series from the start.
func (o *Recorder) AddPlatform(platform string) {
	for _, out := range outcomes {
		o.outcomes.WithLabelValues(platform, out)
	}
	o.debited.WithLabelValues(platform)
}

// Call is what one callback did. Only ids and amounts: never a secret,
// a sign, a token or the whole form.
type Call struct {
	Platform  string
	Outcome   string
	Status    int
	Latency   time.Duration
	AppID     string
	RequestID string
	UserID    string
	Gold      int64
	Msg       string // the answer's message, for refusals
	Err       error  // a system error behind an Error outcome
	Attrs     []slog.Attr
}

// Record counts c's outcome and writes its log line.
func (o *Recorder) Record(ctx context.Context, rec Call) {
	o.outcomes.WithLabelValues(rec.Platform, rec.Outcome).Inc()
	if rec.Outcome == OK {
		o.debited.WithLabelValues(rec.Platform).Add(float64(rec.Gold))
	}
	o.Log(ctx, "debit callback", rec)
}

// Log writes rec's log line under msg without counting it: for a callback
// that debits nothing, such as Polyv's points query.
func (o *Recorder) Log(ctx context.Context, msg string, rec Call) {
	// On the stack: a debit's line has up to 11 attributes.
	var buf [12]slog.Attr
	attrs := append(buf[:0],
		slog.String("platform", rec.Platform),
		slog.String("outcome", rec.Outcome),
		slog.Int("status", rec.Status),
		slog.Duration("latency", rec.Latency))
	attrs = append(attrs, rec.Attrs...)
	if rec.RequestID != "" {
		attrs = append(attrs, slog.String("app_id", rec.AppID), slog.String("request_id", rec.RequestID),
			slog.String("user_id", rec.UserID), slog.Int64("gold", rec.Gold))
	}
	level := slog.LevelInfo
	switch {
	case rec.Err != nil:
		level = slog.LevelError
		attrs = append(attrs, slog.String("error", rec.Err.Error()))
	case rec.Msg != "":
		// Not "msg": that key is the log line's own message.
		attrs = append(attrs, slog.String("answer", rec.Msg))
	}
	o.log.LogAttrs(ctx, level, msg, attrs...)
}

// DBContext is the context of a callback's database work: its own deadline,
// and not cancelled when the caller hangs up, so that a debit is never cut
// short by a client and shutdown lets it finish.
func DBContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), timeout)
}

// OutcomeOf names the outcome of a ledger debit's result.
func OutcomeOf(res ledger.DebitResult, err error) string {
	switch {
	case errors.Is(err, ledger.ErrRequestReused):
		return Conflict
	case err != nil:
		return Error
	case res.Status == ledger.Refused:
		// Before Replay: a copy folded into a refused debit's batch shares
		// the refusal, which was not recorded.
		return PriceRefused
	case res.Replay:
		return Replay
	case res.Status == ledger.Insufficient:
		return Insufficient
	case res.Status == ledger.PolicyRefused:
		return PolicyRefused
	}
	return OK
}

// PolicyMessage is the message of a debit a safeguard refused (first time
// or replayed: it depends only on what was recorded): the policy, its limit
// in the platform's unit (amount formats it) and when it resets.
func PolicyMessage(res ledger.DebitResult, amount func(int64) string) string {
	resets := "; it does not reset by itself"
	if !res.ResetsAt.IsZero() {
		resets = "; resets at " + res.ResetsAt.UTC().Format(time.RFC3339)
	}
	switch res.Refusal {
	case ledger.RefusedMinor:
		return "refused by policy minor: minors may not send gifts"
	case ledger.RefusedBlocked:
		return "refused by policy blocked: this user may not send gifts"
	case ledger.RefusedMaxDebit:
		return "refused by policy max_debit: more than the limit of " + amount(res.Limit) + " per gift"
	case ledger.RefusedCap24h:
		return "refused by policy cap_24h: over the limit of " + amount(res.Limit) + " per 24 hours" + resets
	case ledger.RefusedCapMonth:
		return "refused by policy cap_month: over the limit of " + amount(res.Limit) + " per calendar month" + resets
	case ledger.RefusedCoolingOff:
		return "refused by policy cooling_off: gifts pause after a day's spending crosses " + amount(res.Limit) + resets
	}
	return "refused by policy " + res.Refusal + resets
}
