package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/ledger"
	"giftd/internal/linkv"
	"giftd/internal/polyv"
)

const (
	maxKeyLen   = 128
	maxNoteLen  = 1024
	maxIDLen    = 128 // app_id and request_id of a reversal: LinkV's and Polyv's are at most 64
	maxPageSize = 500
)

// adminTimeout bounds the database work of one admin request.
const adminTimeout = 5 * time.Second

type creditAnswer struct {
	UserID  string `json:"user_id"`
	Gold    int64  `json:"gold"`
	EntryID int64  `json:"entry_id"`
}

func handleTopUp(store *ledger.Store, log *slog.Logger, m *Metrics) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		userID, ok := userIDParam(w, r)
		if !ok {
			return
		}
		body, ok := decodeCredit(w, r)
		if !ok {
			return
		}
		amount := body.amount
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		c, err := store.TopUp(ctx, ledger.TopUp{UserID: userID, Amount: amount, Key: body.IdempotencyKey, Note: body.Note})
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		m.countCredit(creditTopUp, c)
		log.Info("top-up", "user_id", userID, "amount", amount, "gold", c.Balance, "entry_id", c.EntryID, "replay", c.Replay)
		writeJSON(w, http.StatusOK, creditAnswer{UserID: c.UserID, Gold: c.Balance, EntryID: c.EntryID})
	}
}

func handleWallet(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		userID, ok := userIDParam(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		wallet, err := store.Wallet(ctx, userID)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"user_id": wallet.UserID, "gold": wallet.Gold, "updated_at": wallet.UpdatedAt.UTC(),
		})
	}
}

func handleLedger(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		userID, ok := userIDParam(w, r)
		if !ok {
			return
		}
		limit, before := 50, int64(0)
		q := r.URL.Query()
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > maxPageSize {
				writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("limit: must be an integer from 1 to %d", maxPageSize))
				return
			}
			limit = n
		}
		if s := q.Get("before"); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 1 {
				writeError(w, http.StatusBadRequest, "bad_request", "before: must be a positive entry id")
				return
			}
			before = n
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		entries, err := store.Entries(ctx, userID, before, limit)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		page := map[string]any{"user_id": userID, "entries": entries, "next_before": nil}
		if len(entries) == limit {
			page["next_before"] = entries[len(entries)-1].ID
		}
		writeJSON(w, http.StatusOK, page)
	}
}

func handleReversal(store *ledger.Store, log *slog.Logger, m *Metrics) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Platform       string `json:"platform"`
			AppID          string `json:"app_id"`
			IdempotencyKey string `json:"idempotency_key"`
			Note           string `json:"note"`
			UserID         string `json:"user_id"`
		}
		requestID, ok := pathParam(w, r, "request_id")
		if !ok || !decode(w, r, &body) || !validKeyAndNote(w, body.IdempotencyKey, body.Note) {
			return
		}
		if body.UserID != "" && !ledger.ValidUserID(body.UserID) {
			writeError(w, http.StatusBadRequest, "bad_request", "user_id: 1-64 characters of [0-9A-Za-z+=_-], or absent")
			return
		}
		if !validID(w, "request_id", requestID) {
			return
		}
		if body.AppID == "" {
			writeError(w, http.StatusBadRequest, "bad_request", "app_id: required")
			return
		}
		if !validID(w, "app_id", body.AppID) {
			return
		}
		if body.Platform == "" {
			body.Platform = linkv.Platform
		}
		if body.Platform != linkv.Platform && body.Platform != polyv.Platform {
			writeError(w, http.StatusBadRequest, "bad_request", "platform: must be linkv (the default) or polyv")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		debit := ledger.DebitKey{Platform: body.Platform, AppID: body.AppID, RequestID: requestID}
		c, err := store.Reverse(ctx, ledger.Reversal{Debit: debit, UserID: body.UserID, Key: body.IdempotencyKey, Note: body.Note})
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		m.countCredit(creditReversal, c)
		log.Info("reversal", "platform", body.Platform, "app_id", body.AppID, "request_id", requestID, "user_id", c.UserID,
			"amount", c.Amount, "gold", c.Balance, "entry_id", c.EntryID, "replay", c.Replay)
		answer := map[string]any{
			"platform": body.Platform, "app_id": body.AppID, "request_id": requestID, "user_id": c.UserID,
			"amount": c.Amount, "gold": c.Balance, "entry_id": c.EntryID,
		}
		if c.Gift != nil {
			answer["gift"] = c.Gift
		}
		writeJSON(w, http.StatusOK, answer)
	}
}

// parseAmount accepts a JSON integer from 1 to 10^12: not a string, not a
// float, not an exponent.
func parseAmount(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 {
		return 0, errors.New("required")
	}
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, errors.New("must be a JSON integer from 1 to 10^12")
		}
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n < 1 || n > ledger.MaxAmount {
		return 0, errors.New("must be a JSON integer from 1 to 10^12")
	}
	return n, nil
}

// decode reads a JSON object into v, refusing unknown fields and trailing
// data; on failure it writes the 400 and returns false.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body: larger than %d bytes", tooBig.Limit))
			return false
		}
		writeError(w, http.StatusBadRequest, "bad_request", "body: "+err.Error())
		return false
	}
	return true
}

// pathParam is the path segment name of r's route, percent-decoded exactly
// once; on failure it writes the 400 and returns false. chi matches the
// escaped path, and so yields escaped segments, when the URL's escaping is
// not the default one (as for %2B, which user ids need for their +);
// otherwise it matches the already decoded path.
func pathParam(w http.ResponseWriter, r *http.Request, name string) (string, bool) {
	v := chi.URLParam(r, name)
	if r.URL.RawPath == "" {
		return v, true
	}
	s, err := url.PathUnescape(v)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", name+": not a valid percent-encoded path segment")
		return "", false
	}
	return s, true
}

// userIDParam is the decoded user_id of r's path, if it is a valid one; if
// not it writes the 400 and returns false.
func userIDParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	userID, ok := pathParam(w, r, "user_id")
	if !ok {
		return "", false
	}
	if !ledger.ValidUserID(userID) {
		writeError(w, http.StatusBadRequest, "bad_request", "user_id: must be 1-64 characters of [0-9A-Za-z+=_-]")
		return "", false
	}
	return userID, true
}

// storable reports whether PostgreSQL can hold s as text (or in jsonb):
// valid UTF-8 without NUL. Anything else it refuses (SQLSTATE 22021,
// 22P05), which would be a 500 that no retry can cure.
func storable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// validID checks a reversal's app_id or request_id: 1-maxIDLen bytes of
// storable text.
func validID(w http.ResponseWriter, field, v string) bool {
	if v == "" || len(v) > maxIDLen || !storable(v) {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("%s: must be 1-%d bytes of UTF-8 text without NUL", field, maxIDLen))
		return false
	}
	return true
}

func validKeyAndNote(w http.ResponseWriter, key, note string) bool {
	switch {
	case key == "" || len(key) > maxKeyLen || !storable(key):
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("idempotency_key: must be 1-%d bytes of UTF-8 text without NUL", maxKeyLen))
	case len(note) > maxNoteLen || !storable(note):
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("note: must be at most %d bytes of UTF-8 text without NUL", maxNoteLen))
	default:
		return true
	}
	return false
}

// writeLedgerError maps the ledger's errors to admin answers. Only what may
// succeed later (the database down or slow) is a 500 that says so.
func writeLedgerError(w http.ResponseWriter, log *slog.Logger, err error) {
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ledger.ErrKeyReused):
		writeError(w, http.StatusConflict, "idempotency_key_reused", err.Error())
	case errors.Is(err, ledger.ErrAlreadyReversed):
		writeError(w, http.StatusConflict, "already_reversed", err.Error())
	case errors.Is(err, ledger.ErrBalanceOverflow):
		writeError(w, http.StatusUnprocessableEntity, "balance_overflow", err.Error())
	case errors.Is(err, ledger.ErrInsufficientEarnings):
		writeError(w, http.StatusUnprocessableEntity, "insufficient_earnings", err.Error())
	case errors.Is(err, ledger.ErrGiftExists):
		writeError(w, http.StatusConflict, "gift_exists", err.Error())
	case errors.Is(err, ledger.ErrPartlyApplied):
		// docs/scale-out.md#configuration-on-every-partition: the message
		// names the partitions by number only.
		log.Warn("configuration change applied on some partitions only", "error", err.Error())
		writeError(w, http.StatusServiceUnavailable, "partly_applied", err.Error())
	case errors.Is(err, ledger.ErrReshardPaused):
		// giftd reshard's pause, under a second or so: the partitions
		// refuse configuration writes until the proxy switches
		// (docs/scale-out.md#resharding-n--2n), the writes of the users
		// and operators' keys it moves (a top-up, a reversal, a payout, a
		// LinkV account link), with earnings on every payout and gift
		// reversal until the economy is split, and earnings accounts'
		// reads once the claims moved. A policy written through the proxy
		// may have reached some partitions: the retry makes them alike.
		// The error, which may carry the proxy's report naming a
		// partition's host, is logged only.
		log.Warn("admin request refused during a reshard's pause", "error", err.Error())
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "reshard_paused",
			"giftd reshard is in its pause (from its fence to the proxy's switch) and refused this request, as it refuses "+
				"configuration changes and the writes of the users it moves until it switches; retry the same request shortly")
	case errors.Is(err, ledger.ErrBadPartition):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, ledger.ErrPartitionsNotConnected):
		// After giftd reshard, before this replica uses the new partitions
		// (or when GIFTD_PARTITION_URLS lists too few): nothing was written.
		log.Warn("admin request: partitions not connected", "error", err.Error())
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "partitions_not_connected", err.Error())
	case errors.Is(err, ledger.ErrNoPartitionStores):
		writeError(w, http.StatusNotImplemented, "not_partitioned", "not available in partitioned mode without GIFTD_PARTITION_URLS reachable from giftd")
	case errors.Is(err, ledger.ErrPartitionUnreachable):
		// PL/Proxy's error names the partition's host and database, never
		// a password; the answer names neither.
		log.Error("admin request: a partition cannot be reached", "error", err.Error())
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "partition_unavailable",
			"a partition of the cluster cannot be reached; try again later (no partial answer is given; a write with the same idempotency key is applied at most once)")
	case errors.Is(err, ledger.ErrTooManyToMerge):
		writeError(w, http.StatusUnprocessableEntity, "too_many_groups", fmt.Sprintf(
			"more than %d groups to sum across partitions: narrow the period, or filter by platform or app_id",
			ledger.MaxMergeRows))
	case errors.Is(err, ledger.ErrCreditInTransit):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "credit_in_transit", err.Error()+"; nothing was written, try again shortly")
	case errors.Is(err, ledger.ErrDebitAmbiguous):
		writeError(w, http.StatusConflict, "ambiguous_debit", err.Error())
	case errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22"):
		// A data exception: a value the checks above let through and
		// PostgreSQL cannot store. The same request would fail again.
		log.Error("admin request refused by the database", "error", err.Error())
		writeError(w, http.StatusBadRequest, "bad_request", "a value in the request cannot be stored: "+pgErr.Message)
	default:
		log.Error("admin request failed", "error", err.Error())
		writeError(w, http.StatusInternalServerError, "internal",
			"database unavailable or too slow; try again later (a top-up or reversal with the same idempotency key is applied at most once)")
	}
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	type detail struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	writeJSON(w, status, map[string]detail{"error": {Code: code, Message: message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":{"code":"internal","message":"encode answer"}}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(buf.Bytes()) //nolint:errcheck // the client is gone
}

// auditTimeout bounds an audit, which reads every wallet and entry.
const auditTimeout = time.Minute

// handleAudit runs the read-only audit: 200 with the report, whose "ok"
// says whether every balance equals its ledger and none is negative.
func handleAudit(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), auditTimeout)
		defer cancel()
		rep, err := store.Audit(ctx)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		if !rep.OK() {
			log.Error("audit failed", "mismatched", rep.Mismatched, "negative", rep.Negative)
		}
		writeJSON(w, http.StatusOK, struct {
			OK bool `json:"ok"`
			ledger.AuditReport
		}{rep.OK(), rep})
	}
}

// creditBody is the body of a top-up or a payout: an amount of gold under
// the operator's idempotency key, with an optional note.
type creditBody struct {
	Amount         json.RawMessage `json:"amount"`
	IdempotencyKey string          `json:"idempotency_key"`
	Note           string          `json:"note"`
	amount         int64
}

// decodeCredit reads and checks a creditBody; if it is bad it writes the
// 400 naming the field and returns false.
func decodeCredit(w http.ResponseWriter, r *http.Request) (creditBody, bool) {
	var body creditBody
	if !decode(w, r, &body) || !validKeyAndNote(w, body.IdempotencyKey, body.Note) {
		return body, false
	}
	var err error
	if body.amount, err = parseAmount(body.Amount); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "amount: "+err.Error())
		return body, false
	}
	return body, true
}
