package polyv

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"giftd/internal/callback"
	"giftd/internal/ledger"
)

// Platform is the name Polyv's debits carry in the ledger and in metrics.
const Platform = "polyv"

// Config is what the callbacks need to know besides the store.
type Config struct {
	// Apps maps each accepted appId to its secrets; any one may sign.
	Apps map[string][]string
	// Scale is how many coins make one point.
	Scale Scale
	// MaxSkew refuses a ts further than this from now, either way. A
	// donation's record is kept until its ts plus twice MaxSkew.
	MaxSkew time.Duration
	// DBTimeout bounds the database work of one callback.
	DBTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// URLParams are the names of the registered URLs' own query
	// parameters, which Polyv sends with both callbacks and signs: with the
	// parameters Polyv documents, the only names a callback may carry (see
	// checkNames). They must pass CheckURLParams.
	URLParams []string
}

// Handlers are Polyv's two callbacks: the URLs a merchant registers as
// queryPointUrl and updatePointUrl.
type Handlers struct {
	// Query answers a viewer's points (GET).
	Query http.Handler
	// Donate debits a donation (POST, form body and/or URL query).
	Donate http.Handler
}

// NewHandlers returns Polyv's callbacks on store. Donations are counted
// and logged by calls; points queries are logged by it, not counted. It
// panics when cfg.URLParams fails CheckURLParams: the caller checks its
// settings first.
func NewHandlers(store *ledger.Store, cfg Config, calls *callback.Recorder) Handlers {
	if err := CheckURLParams(cfg.URLParams); err != nil {
		panic("polyv: Config.URLParams: " + err.Error())
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	calls.AddPlatform(Platform)
	h := &handler{store: store, cfg: cfg, calls: calls,
		queryParams: newCallbackParams(false, cfg.URLParams), donationParams: newCallbackParams(true, cfg.URLParams)}
	return Handlers{Query: http.HandlerFunc(h.serveQuery), Donate: http.HandlerFunc(h.serveDonate)}
}

type handler struct {
	store *ledger.Store
	cfg   Config
	calls *callback.Recorder
	// What each callback may carry.
	queryParams, donationParams callbackParams
}

// answer is a callback's JSON answer; Code is also the HTTP status.
type answer struct {
	Code    int             `json:"code"`
	Status  string          `json:"status"` // success or error, set by write
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"` // points, or null
	outcome string          // the outcome counted
	err     error           // a system error, logged
}

func (h *handler) serveQuery(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	a, v := h.query(r)
	write(w, a)
	rec := callback.Call{Platform: Platform, Outcome: a.outcome, Status: a.Code, Latency: time.Since(start), Err: a.err}
	if v != nil {
		rec.Attrs = []slog.Attr{slog.String("app_id", v.AppID), slog.String("user_id", v.ViewerID)}
	}
	if a.Code != http.StatusOK {
		rec.Msg = a.Message
	}
	h.calls.Log(r.Context(), "points query", rec)
}

func (h *handler) serveDonate(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	a, d := h.donate(r)
	write(w, a)
	rec := callback.Call{Platform: Platform, Outcome: a.outcome, Status: a.Code, Latency: time.Since(start), Err: a.err}
	if d != nil {
		rec.AppID, rec.RequestID, rec.UserID, rec.Gold = d.AppID, d.RequestID(), d.ViewerID, d.Coins
	}
	if a.Code != http.StatusOK {
		rec.Msg = a.Message
	}
	h.calls.Record(r.Context(), rec)
}

func write(w http.ResponseWriter, a answer) {
	a.Status = "error"
	if a.Code == http.StatusOK {
		a.Status = "success"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.Code)
	json.NewEncoder(w).Encode(a) //nolint:errcheck // the client is gone; nothing to do
}

// query answers a points query, and the validated query when it got that far.
func (h *handler) query(r *http.Request) (answer, *Viewer) {
	params, err := ReadParams(r, false)
	if err == nil {
		err = h.queryParams.checkNames(params)
	}
	if err != nil {
		return unprocessable(err), nil
	}
	if a, ok := h.authenticate(params); !ok {
		return a, nil
	}
	v, err := ValidateQuery(params)
	if err == nil {
		err = h.queryParams.unique(SignedString(params), h.fieldOK)
	}
	if err != nil {
		return unprocessable(err), nil
	}
	if a, ok := h.fresh(v.TS); !ok {
		return a, &v
	}
	ctx, cancel := callback.DBContext(r.Context(), h.cfg.DBTimeout)
	defer cancel()
	var coins int64
	wallet, err := h.store.Wallet(ctx, v.ViewerID)
	switch {
	case err == nil:
		coins = wallet.Gold
	case !errors.Is(err, ledger.ErrNotFound): // an unknown wallet holds 0 points
		return answer{Code: http.StatusInternalServerError, Message: "system error", outcome: callback.Error, err: err}, &v
	}
	return answer{Code: http.StatusOK, Data: json.RawMessage(h.cfg.Scale.Points(coins)), outcome: callback.OK}, &v
}

// donate answers a donation, and the validated donation when it got that far.
func (h *handler) donate(r *http.Request) (answer, *Donation) {
	params, err := ReadParams(r, true)
	if err == nil {
		err = h.donationParams.checkNames(params)
	}
	if err != nil {
		return unprocessable(err), nil
	}
	if a, ok := h.authenticate(params); !ok {
		return a, nil
	}
	d, err := ValidateDonation(params, h.cfg.Scale)
	if err == nil {
		// Before anything is looked up or debited: a re-split copy of a
		// donation must not even replay another reading's answer.
		err = h.donationParams.unique(SignedString(params), h.fieldOK)
	}
	if err != nil {
		return unprocessable(err), nil
	}
	ctx, cancel := callback.DBContext(r.Context(), h.cfg.DBTimeout)
	defer cancel()
	// A donation executed by a build that keyed on the received parameters
	// replays, fresh or late. This cannot see a copy that an older build is
	// executing at this very moment (a rolling upgrade): upgrade by stopping
	// the older builds first.
	oldKey := ledger.DebitKey{Platform: Platform, AppID: d.AppID, RequestID: hex.EncodeToString(d.oldDigest[:])}
	if res, err := h.store.RecordedFor(ctx, d.ViewerID, oldKey, d.oldDigest); !errors.Is(err, ledger.ErrNotFound) {
		return h.result(res, err), &d
	}
	key := ledger.DebitKey{Platform: Platform, AppID: d.AppID, RequestID: d.RequestID()}
	if a, ok := h.fresh(d.TS); !ok {
		// A late copy of a donation executed in time still gets its answer.
		res, err := h.store.RecordedFor(ctx, d.ViewerID, key, d.Digest)
		if errors.Is(err, ledger.ErrNotFound) {
			return a, &d
		}
		return h.result(res, err), &d
	}
	res, err := h.store.Debit(ctx, ledger.Debit{
		Key:         key,
		UserID:      d.ViewerID,
		Gold:        d.Coins,
		Fingerprint: d.Digest,
		// Kept past the whole window in which a copy can be accepted.
		ExpiresAt: d.TS.Add(2 * h.cfg.MaxSkew),
		Details:   d.Details(),
		Gift:      d.Gift(),
	})
	a := h.result(res, err)
	if a.outcome == callback.PriceRefused {
		a.Message = h.refusal(res, d)
	}
	return a, &d
}

// authenticate checks appId and the sign before anything else in params is
// trusted.
func (h *handler) authenticate(params map[string]string) (answer, bool) {
	for _, f := range []string{"appId", "sign"} {
		if params[f] == "" {
			return unprocessable(&FieldError{Field: f, Reason: "required"}), false
		}
	}
	// An unknown appId and a wrong sign answer alike: which apps exist is
	// nobody's business.
	secrets, ok := h.cfg.Apps[params["appId"]]
	if !ok || !Verify(params, params["sign"], secrets) {
		return answer{Code: http.StatusForbidden, Message: "invalid signature", outcome: callback.BadSign}, false
	}
	return answer{}, true
}

// fieldOK reports whether value would pass as name's in a callback, alone:
// what unique counts readings with. An appId must also be one of the
// configured apps (whose secret the sign must still match).
func (h *handler) fieldOK(name, value string) bool {
	if _, ok := h.cfg.Apps[value]; name == "appId" && !ok {
		return false
	}
	return checkField(name, value, h.cfg.Scale) == nil
}

// fresh refuses a ts more than MaxSkew away from now with 403, never 400,
// which Polyv reads as "insufficient points".
func (h *handler) fresh(ts time.Time) (answer, bool) {
	if d := h.cfg.Now().Sub(ts); d > h.cfg.MaxSkew || d < -h.cfg.MaxSkew {
		return answer{Code: http.StatusForbidden, Message: "ts: more than " + h.cfg.MaxSkew.String() + " from giftd's clock",
			outcome: callback.Expired}, false
	}
	return answer{}, true
}

// result maps the ledger's answer to Polyv's.
func (h *handler) result(res ledger.DebitResult, err error) answer {
	a := answer{outcome: callback.OutcomeOf(res, err)}
	switch {
	case err != nil:
		// ErrRequestReused (outcome conflict) cannot happen: the key and the
		// fingerprint are the same digest of the signed string, so every copy
		// under a key replays, however its parameters were split. It is
		// answered and logged as a system error.
		a.Code, a.Message, a.err = http.StatusInternalServerError, "system error", err
	case res.Status == ledger.Refused:
		a.Code = http.StatusUnprocessableEntity
	case res.Status == ledger.PolicyRefused:
		// Also the replay of one. 403, never 400, which Polyv reads as
		// "insufficient points" (docs/safeguards.md).
		a.Code = http.StatusForbidden
		a.Message = callback.PolicyMessage(res, func(n int64) string { return h.cfg.Scale.Points(n) + " points" })
	case res.Status == ledger.Insufficient:
		// Also the replay of one: it stays 400 whatever the wallet holds now.
		a.Code, a.Message = http.StatusBadRequest, "insufficient points"
	default:
		a.Code, a.Data = http.StatusOK, json.RawMessage(h.cfg.Scale.Points(res.Balance))
	}
	return a
}

// refusal is the 422 message of a donation the price check refused: what
// the catalogue expected (docs/economy.md). count = goodPrice × goodNum was
// checked before, so the price per item is what can differ.
func (h *handler) refusal(res ledger.DebitResult, d Donation) string {
	switch res.Refusal {
	case ledger.RefusedUnknownGift:
		return fmt.Sprintf("goodName: %q is not in the catalogue", d.GoodName)
	case ledger.RefusedInactiveGift:
		return fmt.Sprintf("goodName: %q is inactive in the catalogue", d.GoodName)
	}
	return fmt.Sprintf("goodPrice: want %s (the catalogue's price of %q), got %s",
		h.cfg.Scale.Points(res.Price), d.GoodName, d.GoodPrice)
}

func unprocessable(err error) answer {
	return answer{Code: http.StatusUnprocessableEntity, Message: err.Error(), outcome: callback.BadRequest}
}
