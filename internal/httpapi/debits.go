package httpapi

import (
	"context"
	"log/slog"
	"net/http"

	"giftd/internal/ledger"
	"giftd/internal/linkv"
	"giftd/internal/polyv"
)

// debitAnswer is GET /admin/v1/debits/{request_id}: what was asked (the
// record's user and gold, the entry's details), what was answered (the
// record's status and balance), the ledger entry and its reversal.
type debitAnswer struct {
	Platform  string              `json:"platform"`
	AppID     string              `json:"app_id"`
	RequestID string              `json:"request_id"`
	UserID    string              `json:"user_id"`
	Record    *ledger.DebitRecord `json:"record"`
	Entry     *ledger.Entry       `json:"entry"`
	Reversal  *ledger.Entry       `json:"reversal"`
}

// handleDebit answers what giftd knows of one debit: 200 with it, 404 when
// nothing is known of it, 400 without a valid app_id or platform.
func handleDebit(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		requestID, ok := pathParam(w, r, "request_id")
		if !ok || !validID(w, "request_id", requestID) {
			return
		}
		q := r.URL.Query()
		appID, platform := q.Get("app_id"), q.Get("platform")
		if appID == "" {
			writeError(w, http.StatusBadRequest, "bad_request", "app_id: required")
			return
		}
		if !validID(w, "app_id", appID) {
			return
		}
		if platform == "" {
			platform = linkv.Platform
		}
		if platform != linkv.Platform && platform != polyv.Platform {
			writeError(w, http.StatusBadRequest, "bad_request", "platform: must be linkv (the default) or polyv")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		v, err := store.FindDebit(ctx, ledger.DebitKey{Platform: platform, AppID: appID, RequestID: requestID})
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		a := debitAnswer{Platform: platform, AppID: appID, RequestID: requestID,
			Record: v.Record, Entry: v.Entry, Reversal: v.Reversal}
		if v.Record != nil {
			a.UserID = v.Record.UserID
		} else {
			a.UserID = v.Entry.UserID
		}
		writeJSON(w, http.StatusOK, a)
	}
}
