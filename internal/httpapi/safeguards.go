package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"giftd/internal/ledger"
)

// The safeguards' admin routes (docs/safeguards.md): policies per app and
// per user, their history, a user's counters, and the reminders.

// OperatorHeader names the operator who changes a policy; the admin token
// carries no identity. Optional: a change without it is kept as made by
// "unknown".
const OperatorHeader = "X-Giftd-Operator"

const maxOperatorLen = 64

// operator is the request's operator name, "unknown" when the header is
// absent; false (after the 400) when it is not 1-64 printable characters.
func operator(w http.ResponseWriter, r *http.Request) (string, bool) {
	op := r.Header.Get(OperatorHeader)
	if op == "" {
		return "unknown", true
	}
	if len(op) > maxOperatorLen || !storable(op) || strings.ContainsFunc(op, unicode.IsControl) {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("%s: must be 1-%d printable characters", OperatorHeader, maxOperatorLen))
		return "", false
	}
	return op, true
}

// policyKey is the policy a route names: /policies/users/{user_id} or
// /policies/apps/{platform}/{app_id}.
func policyKey(w http.ResponseWriter, r *http.Request, scope string) (ledger.PolicyKey, bool) {
	if scope == ledger.ScopeUser {
		id, ok := pathParam(w, r, "user_id")
		return ledger.PolicyKey{Scope: scope, Subject: id}, ok && validText(w, "user_id", id)
	}
	platform, ok := platformParam(w, r)
	if !ok {
		return ledger.PolicyKey{}, false
	}
	app, ok := pathParam(w, r, "app_id")
	if !ok || !validText(w, "app_id", app) {
		return ledger.PolicyKey{}, false
	}
	return ledger.PolicyKey{Scope: scope, Subject: platform + "/" + app}, true
}

// policyAnswer is a stored policy, and whether policies are enforced at all
// (GIFTD_SAFEGUARDS).
type policyAnswer struct {
	ledger.PolicyRecord
	Enforced bool `json:"enforced"`
}

func writePolicyError(w http.ResponseWriter, log *slog.Logger, err error) {
	switch {
	case errors.Is(err, ledger.ErrBadPolicy):
		// The field and why, without the wrapping.
		msg, prefix := err.Error(), ledger.ErrBadPolicy.Error()+": "
		if i := strings.Index(msg, prefix); i >= 0 {
			msg = msg[i+len(prefix):]
		}
		writeError(w, http.StatusBadRequest, "bad_request", msg)
	case errors.Is(err, ledger.ErrUnknownUser):
		writeError(w, http.StatusNotFound, "unknown_user", "user_id: "+ledger.ErrUnknownUser.Error())
	case errors.Is(err, ledger.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no policy: every value inherits (from the app, then the settings)")
	default:
		writeLedgerError(w, log, err)
	}
}

func handleGetPolicy(store *ledger.Store, log *slog.Logger, scope string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k, ok := policyKey(w, r, scope)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		rec, err := store.GetPolicy(ctx, k)
		if err != nil {
			writePolicyError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, policyAnswer{rec, store.Safeguards().On})
	}
}

func handlePutPolicy(store *ledger.Store, log *slog.Logger, scope string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k, ok := policyKey(w, r, scope)
		if !ok {
			return
		}
		op, ok := operator(w, r)
		// suspended_until as text, so that a malformed one is named.
		var body struct {
			ledger.Policy
			SuspendedUntil *string `json:"suspended_until"`
		}
		if !ok || !decode(w, r, &body) {
			return
		}
		p := body.Policy
		if body.SuspendedUntil != nil {
			t, err := time.Parse(time.RFC3339, *body.SuspendedUntil)
			if err != nil {
				writeError(w, http.StatusBadRequest, "bad_request", "suspended_until: must be an RFC 3339 time like 2026-12-01T00:00:00Z")
				return
			}
			p.SuspendedUntil = &t
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		rec, err := store.PutPolicy(ctx, k, p, op)
		if err != nil {
			writePolicyError(w, log, err)
			return
		}
		log.Info("policy set", "scope", k.Scope, "subject", k.Subject, "operator", op)
		writeJSON(w, http.StatusOK, policyAnswer{rec, store.Safeguards().On})
	}
}

func handleClearPolicy(store *ledger.Store, log *slog.Logger, scope string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k, ok := policyKey(w, r, scope)
		if !ok {
			return
		}
		op, ok := operator(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		if err := store.ClearPolicy(ctx, k, op); err != nil {
			writePolicyError(w, log, err)
			return
		}
		log.Info("policy cleared", "scope", k.Scope, "subject", k.Subject, "operator", op)
		writeJSON(w, http.StatusOK, map[string]string{"scope": k.Scope, "subject": k.Subject, "cleared_by": op})
	}
}

func handlePolicyHistory(store *ledger.Store, log *slog.Logger, scope string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k, ok := policyKey(w, r, scope)
		if !ok {
			return
		}
		limit, ok := limitParam(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		h, err := store.PolicyHistory(ctx, k, limit)
		if errors.Is(err, ledger.ErrNotFound) {
			writeError(w, http.StatusNotFound, "not_found", "no policy change kept for "+k.String())
			return
		}
		if err != nil {
			writePolicyError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"scope": k.Scope, "subject": k.Subject, "changes": h})
	}
}

// limitParam is the ?limit= of r: 1 to maxPageSize, default 100.
func limitParam(w http.ResponseWriter, r *http.Request) (int, bool) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 100, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxPageSize {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("limit: must be an integer from 1 to %d", maxPageSize))
		return 0, false
	}
	return n, true
}

// defaultsAnswer is the settings' side of the policies.
type defaultsAnswer struct {
	Enforced      bool   `json:"enforced"`
	MaxDebit      int64  `json:"max_debit"`
	Cap24h        int64  `json:"cap_24h"`
	CapMonth      int64  `json:"cap_month"`
	RemindDay     int64  `json:"remind_day"`
	CoolingOffS   int64  `json:"cooling_off_s"`
	TimeZone      string `json:"time_zone"`
	EarningsHoldS int64  `json:"earnings_hold_s"`
}

func handlePolicyDefaults(store *ledger.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		g := store.Safeguards()
		writeJSON(w, http.StatusOK, defaultsAnswer{Enforced: g.On, MaxDebit: g.MaxDebit, Cap24h: g.Cap24h, CapMonth: g.CapMonth,
			RemindDay: g.RemindDay, CoolingOffS: int64(g.CoolingOff / time.Second), TimeZone: cmpOr(g.TimeZone, "UTC"),
			EarningsHoldS: int64(g.EarningsHold / time.Second)})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func handleSpending(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathParam(w, r, "user_id")
		if !ok || !validText(w, "user_id", id) {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		sw, err := store.SpendWindowOf(ctx, id)
		if errors.Is(err, ledger.ErrNotFound) {
			writeError(w, http.StatusNotFound, "not_found", "user_id: no spending counted (none since the safeguards were on)")
			return
		}
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, sw)
	}
}

// handleReminders lists reminders written since ?since= (RFC 3339, default
// 24 h ago), of ?user_id= or everyone, oldest first, at most ?limit=.
func handleReminders(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		since := time.Now().Add(-24 * time.Hour)
		if s := q.Get("since"); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				writeError(w, http.StatusBadRequest, "bad_request", "since: must be an RFC 3339 time like 2026-11-30T00:00:00Z")
				return
			}
			since = t
		}
		user := q.Get("user_id")
		if user != "" && !validText(w, "user_id", user) {
			return
		}
		limit, ok := limitParam(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		rs, err := store.Reminders(ctx, user, since, limit)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		if rs == nil {
			rs = []ledger.Reminder{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"reminders": rs})
	}
}
