package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"unicode"

	"giftd/internal/ledger"
	"giftd/internal/linkv"
	"giftd/internal/polyv"
)

// The economy's admin routes (docs/economy.md): the gift catalogue, Polyv
// channels' receivers, receivers' earnings and their payouts.

const (
	maxTextLen = 128 // gift ids, names, receiver ids: LinkV's gift fields and Polyv's goodName are at most 128 bytes
	maxChannel = 20  // digits of a Polyv channelId
	maxPrice   = ledger.MaxAmount
)

// validText checks a gift id, name or receiver id: 1-128 bytes of UTF-8
// without control characters, as the callbacks accept them.
func validText(w http.ResponseWriter, field, v string) bool {
	if v == "" || len(v) > maxTextLen || !storable(v) || strings.ContainsFunc(v, unicode.IsControl) {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("%s: must be 1-%d bytes of UTF-8 text without control characters", field, maxTextLen))
		return false
	}
	return true
}

// platformParam is the {platform} of r's path, linkv or polyv.
func platformParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	p, ok := pathParam(w, r, "platform")
	if ok && p != linkv.Platform && p != polyv.Platform {
		writeError(w, http.StatusBadRequest, "bad_request", "platform: must be linkv or polyv")
		return "", false
	}
	return p, ok
}

// giftPath is the {platform} and {gift_id} of r's path.
func giftPath(w http.ResponseWriter, r *http.Request) (platform, giftID string, ok bool) {
	if platform, ok = platformParam(w, r); !ok {
		return "", "", false
	}
	if giftID, ok = pathParam(w, r, "gift_id"); !ok || !validText(w, "gift_id", giftID) {
		return "", "", false
	}
	return platform, giftID, true
}

// parseInt accepts a JSON integer from lo to hi: not a string, a float or an exponent.
func parseInt(raw json.RawMessage, lo, hi int64, what string) (int64, error) {
	bad := fmt.Errorf("must be a JSON integer from %d to %s", lo, what)
	if len(raw) == 0 {
		return 0, errors.New("required")
	}
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, bad
		}
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, bad
	}
	return n, nil
}

// giftBody is a catalogue gift's fields in a create or an update; absent
// fields are empty (RawMessage) or nil.
type giftBody struct {
	GiftID  string          `json:"gift_id"`
	Name    *string         `json:"name"`
	Price   json.RawMessage `json:"price"`
	ShareBP json.RawMessage `json:"share_bp"`
	Active  *bool           `json:"active"`
}

// change checks the body's fields and returns them as a change; on failure
// it writes the 400 and returns false.
func (b giftBody) change(w http.ResponseWriter) (ledger.GiftChange, bool) {
	var c ledger.GiftChange
	if b.Name != nil {
		if !validText(w, "name", *b.Name) {
			return c, false
		}
		c.Name = b.Name
	}
	if len(b.Price) > 0 {
		n, err := parseInt(b.Price, 0, maxPrice, "10^12 (coins per item)")
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "price: "+err.Error())
			return c, false
		}
		c.Price = &n
	}
	if len(b.ShareBP) > 0 {
		n, err := parseInt(b.ShareBP, 0, ledger.MaxShareBP, "10000 (basis points)")
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "share_bp: "+err.Error())
			return c, false
		}
		share := int(n)
		c.ShareBP = &share
	}
	c.Active = b.Active
	return c, true
}

func handleGifts(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		platform := r.URL.Query().Get("platform")
		if platform != "" && platform != linkv.Platform && platform != polyv.Platform {
			writeError(w, http.StatusBadRequest, "bad_request", "platform: must be linkv or polyv (or absent: every platform)")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		gifts, err := store.Gifts(ctx, platform)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"gifts": gifts})
	}
}

func handleCreateGift(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body giftBody
		platform, ok := platformParam(w, r)
		if !ok || !decode(w, r, &body) || !validText(w, "gift_id", body.GiftID) {
			return
		}
		if body.Name == nil {
			writeError(w, http.StatusBadRequest, "bad_request", "name: required")
			return
		}
		if len(body.Price) == 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "price: required")
			return
		}
		c, ok := body.change(w)
		if !ok {
			return
		}
		g := ledger.CatalogueGift{Platform: platform, GiftID: body.GiftID, Name: *c.Name, Price: *c.Price,
			ShareBP: store.Economy().DefaultShareBP, Active: true}
		if c.ShareBP != nil {
			g.ShareBP = *c.ShareBP
		}
		if c.Active != nil {
			g.Active = *c.Active
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		created, err := store.CreateGift(ctx, g)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		log.Info("catalogue gift created", "platform", platform, "gift_id", g.GiftID, "price", g.Price, "share_bp", g.ShareBP, "active", g.Active)
		writeJSON(w, http.StatusCreated, created)
	}
}

func handleGift(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		platform, giftID, ok := giftPath(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		versions, err := store.GiftHistory(ctx, platform, giftID)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"gift": versions[0], "versions": versions})
	}
}

// handleUpdateGift applies a change (PATCH), or deactivates the gift
// (deactivate set: POST …/deactivate).
func handleUpdateGift(store *ledger.Store, log *slog.Logger, deactivate bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		platform, giftID, ok := giftPath(w, r)
		if !ok {
			return
		}
		var c ledger.GiftChange
		if deactivate {
			off := false
			c.Active = &off
		} else {
			var body struct {
				Name    *string         `json:"name"`
				Price   json.RawMessage `json:"price"`
				ShareBP json.RawMessage `json:"share_bp"`
				Active  *bool           `json:"active"`
			}
			if !decode(w, r, &body) {
				return
			}
			if c, ok = (giftBody{Name: body.Name, Price: body.Price, ShareBP: body.ShareBP, Active: body.Active}).change(w); !ok {
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		g, err := store.UpdateGift(ctx, platform, giftID, c)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		log.Info("catalogue gift updated", "platform", platform, "gift_id", giftID, "version", g.Version,
			"price", g.Price, "share_bp", g.ShareBP, "active", g.Active)
		writeJSON(w, http.StatusOK, g)
	}
}

// channelParam is the {channel_id} of r's path: a Polyv channelId.
func channelParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, ok := pathParam(w, r, "channel_id")
	if !ok {
		return "", false
	}
	if id == "" || len(id) > maxChannel || strings.Trim(id, "0123456789") != "" {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("channel_id: must be an integer of at most %d digits, as Polyv's channelId", maxChannel))
		return "", false
	}
	return id, true
}

type channelAnswer struct {
	ChannelID  string  `json:"channel_id"`
	ReceiverID *string `json:"receiver_id"`
	UpdatedAt  any     `json:"updated_at,omitempty"`
}

func handleChannels(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		rooms, err := store.RoomReceivers(ctx, polyv.Platform)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		out := make([]channelAnswer, len(rooms))
		for i, m := range rooms {
			out[i] = channelAnswer{ChannelID: m.RoomID, ReceiverID: &m.ReceiverID, UpdatedAt: m.UpdatedAt}
		}
		writeJSON(w, http.StatusOK, map[string]any{"channels": out})
	}
}

func handleSetChannelReceiver(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			ReceiverID string `json:"receiver_id"`
		}
		channel, ok := channelParam(w, r)
		if !ok || !decode(w, r, &body) || !validText(w, "receiver_id", body.ReceiverID) {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		m, err := store.SetRoomReceiver(ctx, polyv.Platform, channel, body.ReceiverID)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		log.Info("polyv channel receiver set", "channel_id", channel, "receiver_id", m.ReceiverID)
		writeJSON(w, http.StatusOK, channelAnswer{ChannelID: channel, ReceiverID: &m.ReceiverID, UpdatedAt: m.UpdatedAt})
	}
}

func handleRemoveChannelReceiver(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		channel, ok := channelParam(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		if err := store.RemoveRoomReceiver(ctx, polyv.Platform, channel); err != nil {
			writeLedgerError(w, log, err)
			return
		}
		log.Info("polyv channel receiver removed", "channel_id", channel)
		writeJSON(w, http.StatusOK, channelAnswer{ChannelID: channel})
	}
}

// receiverParam is the {receiver_id} of r's path.
func receiverParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, ok := pathParam(w, r, "receiver_id")
	return id, ok && validText(w, "receiver_id", id)
}

func handleEarnings(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		receiver, ok := receiverParam(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		a, err := store.Earnings(ctx, receiver)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, a)
	}
}

func handlePayout(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		receiver, ok := receiverParam(w, r)
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
		p, err := store.Payout(ctx, ledger.Payout{ReceiverID: receiver, Amount: amount, Key: body.IdempotencyKey, Note: body.Note})
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		log.Info("payout", "receiver_id", receiver, "amount", amount, "recovered", p.Recovered, "balance", p.Balance,
			"entry_id", p.EntryID, "replay", p.Replay)
		writeJSON(w, http.StatusOK, p)
	}
}
