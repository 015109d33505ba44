package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/linkvapi"
	"giftd/internal/platforms"
	"giftd/internal/polyvapi"
)

// Platforms are the platform API clients behind the admin API's platform
// routes (docs/platform-apis.md); a nil client answers 503 not_configured.
type Platforms struct {
	LinkV *linkvapi.Client
	Polyv *polyvapi.Client
	// PolyvQueryURL and PolyvUpdateURL are the URLs the donation settings
	// register when the request names none (GIFTD_PUBLIC_URL + paths).
	PolyvQueryURL, PolyvUpdateURL string
}

const (
	// maxMoveUsers bounds the users of one admin wallet-move call; the
	// giftd-platform command takes any number.
	maxMoveUsers = 100
	// platformJobTime is how long a platform job's answer may take to
	// write: the partner may be slow, and every step is recorded, so a
	// cut-off call resumes when repeated.
	platformJobTime = 10 * time.Minute
)

// allowLongAnswer lifts the listener's write deadline for this request.
func allowLongAnswer(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(platformJobTime))
}

func notConfigured(w http.ResponseWriter, setting string) {
	writeError(w, http.StatusServiceUnavailable, "not_configured", "this platform API is off: set "+setting)
}

// writePlatformError answers a partner's refusal or silence as 502,
// saying which call and status (never a secret), and anything else as the
// ledger's errors are answered.
func writePlatformError(w http.ResponseWriter, log *slog.Logger, err error) {
	var le *linkvapi.Error
	var pe *polyvapi.Error
	switch {
	case errors.As(err, &le) && le.Uncertain, errors.As(err, &pe) && pe.Uncertain:
		writeError(w, http.StatusBadGateway, "platform_unavailable", err.Error())
	case errors.As(err, &le), errors.As(err, &pe):
		writeError(w, http.StatusBadGateway, "platform_refused", err.Error())
	default:
		writeLedgerError(w, log, err)
	}
}

// handleLinkAccount links a user to LinkV (thGetToken) and answers its
// live_open_id and live_token, which the app gives LinkV's SDK.
func handleLinkAccount(store *ledger.Store, p Platforms, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p.LinkV == nil {
			notConfigured(w, "GIFTD_LINKV_API_URL and GIFTD_LINKV_API_APP")
			return
		}
		userID, ok := userIDParam(w, r)
		var body linkvapi.Profile
		if !ok || (r.ContentLength != 0 && !decode(w, r, &body)) {
			return
		}
		for _, f := range []string{body.AID, body.Name, body.PortraitURI, body.Email, body.CountryCode, body.Birthday} {
			if len(f) > 1024 || !storable(f) {
				writeError(w, http.StatusBadRequest, "bad_request", "profile fields must be at most 1024 bytes of UTF-8 text without NUL")
				return
			}
		}
		if body.Sex != "" && body.Sex != "-1" && body.Sex != "0" && body.Sex != "1" {
			writeError(w, http.StatusBadRequest, "bad_request", "sex: must be -1 (unknown), 0 (female) or 1 (male)")
			return
		}
		tok, err := platforms.LinkAccount(r.Context(), p.LinkV, store, userID, body)
		if err != nil {
			log.Warn("linkv account link failed", "user_id", userID, "error", err.Error())
			writePlatformError(w, log, err)
			return
		}
		// Never the token: it is the user's credential.
		log.Info("linkv account linked", "user_id", userID, "live_open_id", tok.OpenID)
		writeJSON(w, http.StatusOK, map[string]string{"user_id": userID, "live_open_id": tok.OpenID, "live_token": tok.Token})
	}
}

// handleLinkedAccount answers the live_open_id giftd saved for a user.
func handleLinkedAccount(store *ledger.Store, p Platforms, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p.LinkV == nil {
			notConfigured(w, "GIFTD_LINKV_API_URL and GIFTD_LINKV_API_APP")
			return
		}
		userID, ok := userIDParam(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		open, err := store.LinkVOpenID(ctx, p.LinkV.AppID(), userID)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"user_id": userID, "live_open_id": open})
	}
}

// handleWalletMoves moves users' coins out of LinkV's wallet (or, with
// dry_run, reads them) and answers the run's summary.
func handleWalletMoves(store *ledger.Store, p Platforms, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p.LinkV == nil {
			notConfigured(w, "GIFTD_LINKV_API_URL and GIFTD_LINKV_API_APP")
			return
		}
		var body struct {
			Users  []platforms.MoveUser `json:"users"`
			DryRun bool                 `json:"dry_run"`
		}
		if !decode(w, r, &body) {
			return
		}
		if len(body.Users) == 0 || len(body.Users) > maxMoveUsers {
			writeError(w, http.StatusBadRequest, "bad_request", "users: must list 1-100 users (giftd-platform linkv-move takes any number)")
			return
		}
		seen := map[string]bool{}
		for _, u := range body.Users {
			if !ledger.ValidUserID(u.UserID) || seen[u.UserID] {
				writeError(w, http.StatusBadRequest, "bad_request", "users[].user_id: each 1-64 characters of [0-9A-Za-z+=_-], listed once")
				return
			}
			if len(u.OpenID) > 128 || !storable(u.OpenID) {
				writeError(w, http.StatusBadRequest, "bad_request", "users[].live_open_id: at most 128 bytes of UTF-8 text without NUL")
				return
			}
			seen[u.UserID] = true
		}
		allowLongAnswer(w)
		m := platforms.Mover{LinkV: p.LinkV, Store: store, Log: log}
		sum := m.Move(r.Context(), body.Users, body.DryRun)
		log.Info("linkv wallet move run", "users", sum.Users, "coins", sum.Coins, "dry_run", sum.DryRun, "ok", sum.OK())
		writeJSON(w, http.StatusOK, struct {
			OK bool `json:"ok"`
			platforms.MoveSummary
		}{sum.OK(), sum})
	}
}

// handleWalletMove answers one user's recorded step.
func handleWalletMove(store *ledger.Store, p Platforms, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p.LinkV == nil {
			notConfigured(w, "GIFTD_LINKV_API_URL and GIFTD_LINKV_API_APP")
			return
		}
		userID, ok := userIDParam(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		mv, err := store.WalletMove(ctx, p.LinkV.AppID(), userID)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, mv)
	}
}

// handlePolyvDonations sets Polyv's point donations up for giftd and
// answers what the channels read back as.
func handlePolyvDonations(p Platforms, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p.Polyv == nil {
			notConfigured(w, "GIFTD_POLYV_API_APP")
			return
		}
		var s platforms.DonationSetup
		if !decode(w, r, &s) {
			return
		}
		if len(s.Channels) == 0 || len(s.Channels) > maxMoveUsers {
			writeError(w, http.StatusBadRequest, "bad_request", "channels: must list 1-100 channel ids")
			return
		}
		for _, ch := range s.Channels {
			if ch == "" || len(ch) > 20 || !onlyDigits(ch) {
				writeError(w, http.StatusBadRequest, "bad_request", "channels[]: each a Polyv channel id (digits)")
				return
			}
		}
		if s.QueryPointURL == "" {
			s.QueryPointURL = p.PolyvQueryURL
		}
		if s.UpdatePointURL == "" {
			s.UpdatePointURL = p.PolyvUpdateURL
		}
		if s.QueryPointURL == "" || s.UpdatePointURL == "" {
			writeError(w, http.StatusBadRequest, "bad_request", "query_point_url, update_point_url: required when GIFTD_PUBLIC_URL is unset")
			return
		}
		for i, g := range s.Goods {
			if err := g.Check(); err != nil {
				writeError(w, http.StatusBadRequest, "bad_request", "goods["+strconv.Itoa(i)+"]: "+err.Error())
				return
			}
		}
		allowLongAnswer(w)
		rep := platforms.SetUpDonations(r.Context(), p.Polyv, s)
		log.Info("polyv donation settings", "channels", len(s.Channels), "ok", rep.OK, "error", rep.Error)
		writeJSON(w, http.StatusOK, rep)
	}
}

func onlyDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
