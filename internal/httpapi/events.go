package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/webhook"
)

// maxWait bounds a long poll of the event feed; feedPoll is how often it
// looks for new events meanwhile.
const (
	maxWait  = 30 * time.Second
	feedPoll = 100 * time.Millisecond
)

// handleEvents serves the pull feed (docs/events.md): the events after
// position after, in order, only final ones; with wait, it holds the
// request until there is one or wait has passed.
func handleEvents(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		after, limit, wait := int64(0), 100, time.Duration(0)
		var cursor []int64 // partitioned: one position per partition
		if n := store.Partitions(); n > 0 {
			c, ok := parseCursor(q.Get("after"), n)
			if !ok {
				writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf(
					"after: partitioned, a cursor of %d positions (0 or more) separated by commas, one per partition, as next_after gives it; or 0", n))
				return
			}
			cursor = c
		} else if s := q.Get("after"); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				writeError(w, http.StatusBadRequest, "bad_request", "after: must be a position, 0 or more")
				return
			}
			after = n
		}
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > maxPageSize {
				writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("limit: must be an integer from 1 to %d", maxPageSize))
				return
			}
			limit = n
		}
		if s := q.Get("wait"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 || time.Duration(n)*time.Second > maxWait {
				writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("wait: must be whole seconds from 0 to %d", int(maxWait.Seconds())))
				return
			}
			wait = time.Duration(n) * time.Second
		}
		// A long poll outlasts the listener's write timeout.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + adminTimeout + time.Second))
		deadline := time.Now().Add(wait)
		tick := time.NewTicker(feedPoll)
		defer tick.Stop()
		for {
			if cursor != nil {
				ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
				page, err := store.EventsPartitioned(ctx, cursor, limit)
				cancel()
				if err != nil {
					writeLedgerError(w, log, err)
					return
				}
				if len(page.Events) > 0 || !time.Now().Before(deadline) {
					if page.Events == nil {
						page.Events = []ledger.Event{}
					}
					if page.Unavailable == nil {
						page.Unavailable = []int{}
					}
					writeJSON(w, http.StatusOK, map[string]any{"events": page.Events, "next_after": formatCursor(page.Next),
						"horizon": page.Horizons, "unavailable": page.Unavailable})
					return
				}
				select {
				case <-r.Context().Done():
					return
				case <-tick.C:
				}
				continue
			}
			ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
			events, upTo, err := store.Events(ctx, after, limit)
			cancel()
			if err != nil {
				writeLedgerError(w, log, err)
				return
			}
			if len(events) > 0 || !time.Now().Before(deadline) {
				next := after
				if len(events) > 0 {
					next = events[len(events)-1].Position
				}
				if events == nil {
					events = []ledger.Event{}
				}
				writeJSON(w, http.StatusOK, map[string]any{"events": events, "next_after": next, "horizon": upTo})
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	}
}

// parseCursor reads the partitioned feed's cursor: n positions separated
// by commas ("" or "0": all 0), or n/2^k of them from before a reshard.
func parseCursor(s string, n int) ([]int64, bool) {
	if s == "" || s == "0" {
		return make([]int64, n), true
	}
	fields := strings.Split(s, ",")
	// A cursor from before giftd reshard doubled the partitions (fewer
	// positions, n a multiple) goes on: ledger.EventsPartitioned extends it.
	if len(fields) > n || n%len(fields) != 0 {
		return nil, false
	}
	out := make([]int64, len(fields))
	for i, f := range fields {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil || v < 0 {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

func formatCursor(c []int64) string {
	parts := make([]string, len(c))
	for i, v := range c {
		parts[i] = strconv.FormatInt(v, 10)
	}
	return strings.Join(parts, ",")
}

// endpointAnswer is an endpoint as the admin API shows it: never its
// secrets, except Secret right after it was made.
type endpointAnswer struct {
	ledger.Endpoint
	Secrets int    `json:"secrets"`
	Secret  string `json:"secret,omitempty"`
	// Warning: partitioned, the change reached some partitions only.
	Warning string `json:"warning,omitempty"`
}

// partlyMade answers a new secret's change that reached partition 0 but
// not every partition (ledger.ErrPartlyApplied) with 202, the endpoint,
// its secret and a warning: an error answer would lose the secret, which
// is shown only once and already signs partition 0's deliveries. It
// reports whether it answered.
func partlyMade(w http.ResponseWriter, log *slog.Logger, err error, e ledger.Endpoint, secret string) bool {
	if !errors.Is(err, ledger.ErrPartlyApplied) || e.ID == "" {
		return false
	}
	log.Warn("webhook endpoint changed on some partitions only", "endpoint", e.ID, "error", err.Error())
	a := answerEndpoint(e, secret)
	a.Warning = err.Error()
	writeJSON(w, http.StatusAccepted, a)
	return true
}

func answerEndpoint(e ledger.Endpoint, secret string) endpointAnswer {
	return endpointAnswer{Endpoint: e, Secrets: len(e.Secrets), Secret: secret}
}

type endpointBody struct {
	URL         *string   `json:"url"`
	Description *string   `json:"description"`
	EventTypes  *[]string `json:"event_types"`
	Enabled     *bool     `json:"enabled"`
}

// check validates b; create requires a URL.
func (b endpointBody) check(w http.ResponseWriter, allowPrivate, create bool) bool {
	if b.URL == nil && create {
		writeError(w, http.StatusBadRequest, "bad_request", "url: required")
		return false
	}
	if b.URL != nil {
		if err := webhook.CheckURL(*b.URL, allowPrivate); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "url: "+err.Error())
			return false
		}
	}
	if b.Description != nil && (len(*b.Description) > maxNoteLen || !storable(*b.Description)) {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("description: at most %d bytes of UTF-8", maxNoteLen))
		return false
	}
	if b.EventTypes != nil {
		for _, t := range *b.EventTypes {
			if !slices.Contains(ledger.EventTypes(), t) {
				writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("event_types: %q is not one of %v", t, ledger.EventTypes()))
				return false
			}
		}
	}
	return true
}

func endpointParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, ok := pathParam(w, r, "endpoint_id")
	if ok && (id == "" || len(id) > maxIDLen || !storable(id)) {
		writeError(w, http.StatusBadRequest, "bad_request", "endpoint_id: not an endpoint id")
		return "", false
	}
	return id, ok
}

func handleWebhooks(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		eps, err := store.Endpoints(ctx)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		out := make([]endpointAnswer, len(eps))
		for i, e := range eps {
			out[i] = answerEndpoint(e, "")
		}
		writeJSON(w, http.StatusOK, map[string]any{"endpoints": out})
	}
}

func handleCreateWebhook(store *ledger.Store, log *slog.Logger, allowPrivate bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var b endpointBody
		if !decode(w, r, &b) || !b.check(w, allowPrivate, true) {
			return
		}
		id := make([]byte, 8)
		rand.Read(id) //nolint:errcheck // never fails
		e := ledger.Endpoint{ID: "ep_" + hex.EncodeToString(id), URL: *b.URL, EventTypes: []string{}, Enabled: true,
			Secrets: []string{webhook.NewSecret()}}
		if b.Description != nil {
			e.Description = *b.Description
		}
		if b.EventTypes != nil {
			e.EventTypes = *b.EventTypes
		}
		if b.Enabled != nil {
			e.Enabled = *b.Enabled
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		created, err := store.CreateEndpoint(ctx, e)
		if partlyMade(w, log, err, created, e.Secrets[0]) {
			return
		}
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		log.Info("webhook endpoint created", "endpoint", created.ID, "cursor", created.Cursor)
		writeJSON(w, http.StatusCreated, answerEndpoint(created, e.Secrets[0]))
	}
}

func handleWebhook(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := endpointParam(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		e, err := store.Endpoint(ctx, id)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, answerEndpoint(e, ""))
	}
}

func handleUpdateWebhook(store *ledger.Store, log *slog.Logger, allowPrivate bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := endpointParam(w, r)
		var b endpointBody
		if !ok || !decode(w, r, &b) || !b.check(w, allowPrivate, false) {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		e, err := store.UpdateEndpoint(ctx, id, ledger.EndpointChange{URL: b.URL, Description: b.Description,
			EventTypes: b.EventTypes, Enabled: b.Enabled})
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		log.Info("webhook endpoint changed", "endpoint", id)
		writeJSON(w, http.StatusOK, answerEndpoint(e, ""))
	}
}

func handleDeleteWebhook(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := endpointParam(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		if err := store.DeleteEndpoint(ctx, id); err != nil {
			writeLedgerError(w, log, err)
			return
		}
		log.Info("webhook endpoint deleted", "endpoint", id)
		w.WriteHeader(http.StatusNoContent)
	}
}

// handleWebhookSecret rotates an endpoint's secret: add makes a new one,
// which signs from now on beside the previous ones; otherwise only the
// newest is kept.
func handleWebhookSecret(store *ledger.Store, log *slog.Logger, add bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := endpointParam(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		var e ledger.Endpoint
		var err error
		secret := ""
		if add {
			secret = webhook.NewSecret()
			e, err = store.AddSecret(ctx, id, secret)
		} else {
			e, err = store.DropOldSecrets(ctx, id)
		}
		if add && partlyMade(w, log, err, e, secret) {
			return
		}
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		log.Info("webhook endpoint secrets", "endpoint", id, "added", add, "secrets", len(e.Secrets))
		writeJSON(w, http.StatusOK, answerEndpoint(e, secret))
	}
}

func handleRedeliver(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := endpointParam(w, r)
		var b struct {
			FromPosition json.RawMessage `json:"from_position"`
			// Partitioned: the partition whose position from_position is.
			Partition *int `json:"partition"`
		}
		if !ok || (r.ContentLength != 0 && !decode(w, r, &b)) {
			return
		}
		var from int64
		if b.FromPosition != nil {
			var err error
			if from, err = parseInt(b.FromPosition, 1, 1<<62, "a position"); err != nil {
				writeError(w, http.StatusBadRequest, "bad_request", "from_position: "+err.Error())
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		part := -1
		if b.Partition != nil {
			part = *b.Partition
		}
		if n := store.Partitions(); n > 0 && from > 0 && (part < 0 || part >= n) {
			writeError(w, http.StatusBadRequest, "bad_request",
				fmt.Sprintf("partition: partitioned, from_position is one partition's: give partition, 0 to %d", n-1))
			return
		}
		e, err := store.RedeliverOn(ctx, id, from, part)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		log.Info("webhook endpoint redelivers", "endpoint", id, "from_position", from, "cursor", e.Cursor)
		writeJSON(w, http.StatusOK, answerEndpoint(e, ""))
	}
}
