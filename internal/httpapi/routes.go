// Package httpapi puts giftd on HTTP: the routes of both listeners, the admin
// API, and the middleware every route shares (metrics, recovery, auth).
package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"giftd/internal/console"
	"giftd/internal/ledger"
)

// Deps is what the listeners need.
type Deps struct {
	Store *ledger.Store
	// Callbacks are every platform's callback routes (LinkV's debit,
	// Polyv's query and donation when it is on), all mounted alike.
	Callbacks []Callback
	// Sources, if set, admits callbacks only from allowed networks.
	Sources *SourceFilter
	// AdminToken authorises /admin/ routes as a bearer token.
	AdminToken string
	Metrics    *Metrics
	// Ready answers /readyz on both listeners; nil: a Readiness of Store's.
	Ready *Readiness
	// Gatherer serves /metrics.
	Gatherer prometheus.Gatherer
	Log      *slog.Logger
	// Platforms are the platform API clients of the admin API's platform
	// routes; a nil client answers 503.
	Platforms Platforms
	// LeaderboardCache is how long a room's leaderboard is answered from
	// memory after it was read (GIFTD_LEADERBOARD_CACHE); 0: read every time.
	LeaderboardCache time.Duration
	// Partitions returns the stores opened on each partition directly, in
	// partition order, in partitioned mode, that are in use now
	// (ledger.Store.PartitionStores): the audit reads each partition's
	// books and the credits between them. Nil: a partitioned Store's audit
	// answers 501.
	Partitions func() []*ledger.Store
	// WebhookAllowPrivate lets webhook endpoints be loopback or private
	// addresses (GIFTD_WEBHOOK_ALLOW_PRIVATE).
	WebhookAllowPrivate bool
}

// Callback is one route of a partner platform's callback on the public
// listener.
type Callback struct {
	// Doc names the route's operation in openapi.json: the path item whose
	// x-giftd-callback is Doc, e.g. "linkv-debit".
	Doc          string
	Method, Path string
	Handler      http.Handler
}

// NewPublic returns the public listener's handler: the platforms'
// callbacks and the health probes their side of the network may see.
func NewPublic(d Deps) http.Handler {
	r := chi.NewRouter()
	r.Use(d.Metrics.instrument("public"), recoverer(d.Log))
	r.MethodNotAllowed(methodNotAllowed(r))
	for _, c := range d.Callbacks {
		r.Method(c.Method, c.Path, d.Sources.Wrap(c.Handler))
	}
	r.Get("/healthz", handleHealthz())
	r.Get("/readyz", handleReadyz(d.readiness()))
	return r
}

// NewAdmin returns the admin listener's handler: the operators' API behind
// the bearer token, and metrics and probes without it.
func NewAdmin(d Deps) http.Handler {
	r := chi.NewRouter()
	r.Use(d.Metrics.instrument("admin"), recoverer(d.Log))
	r.NotFound(notFound)
	r.MethodNotAllowed(methodNotAllowed(r))
	r.Get("/healthz", handleHealthz())
	r.Get("/readyz", handleReadyz(d.readiness()))
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(d.Gatherer, promhttp.HandlerOpts{}))
	r.Get("/openapi.json", handleOpenAPI(d.Callbacks))
	r.Mount("/console", console.Handler()) // the operator console: static files that call /admin/
	r.Route("/admin", func(r chi.Router) {
		r.Use(requireToken(d.AdminToken), limitBody(64<<10))
		r.MethodNotAllowed(methodNotAllowed(r))
		// Every route works partitioned (docs/scale-out.md#the-admin-api-partitioned);
		// those wrapped in parted need the partitions' own connections.
		asIs := func(h http.HandlerFunc) http.HandlerFunc { return h }
		r.Post("/v1/wallets/{user_id}/topups", handleTopUp(d.Store, d.Log, d.Metrics))
		r.Get("/v1/wallets/{user_id}", handleWallet(d.Store, d.Log))
		r.Get("/v1/wallets/{user_id}/ledger", handleLedger(d.Store, d.Log))
		r.Get("/v1/debits/{request_id}", handleDebit(d.Store, d.Log))
		r.Post("/v1/debits/{request_id}/reversal", handleReversal(d.Store, d.Log, d.Metrics))
		r.Get("/v1/audit", d.audit())
		r.Get("/v1/stats", handleStats(d.Gatherer, d.readiness(), d.Callbacks))
		// giftd as the platforms' client (platforms.go, docs/platform-apis.md).
		r.Post("/v1/linkv/accounts/{user_id}", handleLinkAccount(d.Store, d.Platforms, d.Log))
		r.Get("/v1/linkv/accounts/{user_id}", handleLinkedAccount(d.Store, d.Platforms, d.Log))
		r.Post("/v1/linkv/wallet-moves", handleWalletMoves(d.Store, d.Platforms, d.Log))
		r.Get("/v1/linkv/wallet-moves/{user_id}", handleWalletMove(d.Store, d.Platforms, d.Log))
		r.Post("/v1/polyv/donation-settings", handlePolyvDonations(d.Platforms, d.Log))
		// The economy (docs/economy.md).
		// Partitioned, the configuration every debit reads is changed on
		// every partition (config.go, docs/scale-out.md).
		parted := d.partitionAware
		r.Get("/v1/gifts", parted(withDrift(d.Store, ledger.ConfigGifts, handleGifts(d.Store, d.Log))))
		r.Post("/v1/gifts/{platform}", parted(handleCreateGift(d.Store, d.Log)))
		r.Get("/v1/gifts/{platform}/{gift_id}", parted(withDrift(d.Store, ledger.ConfigGifts, handleGift(d.Store, d.Log))))
		r.Patch("/v1/gifts/{platform}/{gift_id}", parted(handleUpdateGift(d.Store, d.Log, false)))
		r.Post("/v1/gifts/{platform}/{gift_id}/deactivate", parted(handleUpdateGift(d.Store, d.Log, true)))
		r.Get("/v1/polyv/channels", parted(withDrift(d.Store, ledger.ConfigRooms, handleChannels(d.Store, d.Log))))
		r.Put("/v1/polyv/channels/{channel_id}/receiver", parted(handleSetChannelReceiver(d.Store, d.Log)))
		r.Delete("/v1/polyv/channels/{channel_id}/receiver", parted(handleRemoveChannelReceiver(d.Store, d.Log)))
		r.Get("/v1/config/drift", parted(handleConfigDrift(d.Store, d.Log)))
		r.Post("/v1/config/sync", parted(handleConfigSync(d.Store, d.Log)))
		r.Get("/v1/earnings/{receiver_id}", handleEarnings(d.Store, d.Log))
		r.Post("/v1/earnings/{receiver_id}/payouts", handlePayout(d.Store, d.Log))
		// Reports and leaderboards (reports.go, docs/economy.md#reports-and-leaderboards).
		// Partitioned, these read every partition (or one user's) and merge
		// (docs/scale-out.md#reads-across-partitions).
		r.Get("/v1/earnings/{receiver_id}/ledger", handleEarningsLedger(d.Store, d.Log))
		r.Get("/v1/earnings/{receiver_id}/report", handleReceiverReport(d.Store, d.Log))
		r.Get("/v1/reports/gifts", handleGiftReport(d.Store, d.Log))
		boards := newBoardCache(d.LeaderboardCache)
		r.Get("/v1/rooms/{platform}/{room_id}/leaderboard/senders", handleLeaderboard(d.Store, d.Log, boards, ledger.Senders))
		r.Get("/v1/rooms/{platform}/{room_id}/leaderboard/receivers", handleLeaderboard(d.Store, d.Log, boards, ledger.Receivers))
		r.Get("/v1/senders/{user_id}/spend", handleSenderSpend(d.Store, d.Log))
		// Events: the pull feed and webhooks (docs/events.md).
		r.Get("/v1/events", parted(handleEvents(d.Store, d.Log)))
		r.Get("/v1/webhooks", parted(withDrift(d.Store, ledger.ConfigWebhooks, handleWebhooks(d.Store, d.Log))))
		r.Post("/v1/webhooks", parted(handleCreateWebhook(d.Store, d.Log, d.WebhookAllowPrivate)))
		r.Get("/v1/webhooks/{endpoint_id}", parted(withDrift(d.Store, ledger.ConfigWebhooks, handleWebhook(d.Store, d.Log))))
		r.Patch("/v1/webhooks/{endpoint_id}", parted(handleUpdateWebhook(d.Store, d.Log, d.WebhookAllowPrivate)))
		r.Delete("/v1/webhooks/{endpoint_id}", parted(handleDeleteWebhook(d.Store, d.Log)))
		r.Post("/v1/webhooks/{endpoint_id}/secrets", parted(handleWebhookSecret(d.Store, d.Log, true)))
		r.Delete("/v1/webhooks/{endpoint_id}/secrets/previous", parted(handleWebhookSecret(d.Store, d.Log, false)))
		r.Post("/v1/webhooks/{endpoint_id}/redeliver", parted(handleRedeliver(d.Store, d.Log)))
		// The spending safeguards (safeguards.go, docs/safeguards.md).
		r.Get("/v1/policies/defaults", handlePolicyDefaults(d.Store))
		for _, p := range []struct {
			scope, path string
			wrap        func(http.HandlerFunc) http.HandlerFunc
			read        func(http.HandlerFunc) http.HandlerFunc
		}{
			// A user's policy is written on every partition, read on theirs.
			{ledger.ScopeUser, "/v1/policies/users/{user_id}", asIs, asIs},
			// An app's policy is configuration every partition holds.
			{ledger.ScopeApp, "/v1/policies/apps/{platform}/{app_id}", parted,
				func(h http.HandlerFunc) http.HandlerFunc {
					return parted(withDrift(d.Store, ledger.ConfigAppPolicies, h))
				}},
		} {
			r.Get(p.path, p.read(handleGetPolicy(d.Store, d.Log, p.scope)))
			r.Put(p.path, p.wrap(handlePutPolicy(d.Store, d.Log, p.scope)))
			r.Delete(p.path, p.wrap(handleClearPolicy(d.Store, d.Log, p.scope)))
			r.Get(p.path+"/history", p.wrap(handlePolicyHistory(d.Store, d.Log, p.scope)))
		}
		r.Get("/v1/spending/{user_id}", handleSpending(d.Store, d.Log))
		r.Get("/v1/reminders", parted(handleReminders(d.Store, d.Log)))
		r.NotFound(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, "not_found", "no such admin route")
		})
	})
	return r
}

// audit is the audit route: the Store's on one server; partitioned, every
// partition's and the credits between them.
func (d Deps) audit() http.HandlerFunc {
	if d.Store != nil && d.Store.Partitions() > 0 {
		if d.Partitions == nil {
			return d.singleServerOnly(nil)
		}
		return handleAuditPartitioned(d.Store, d.Partitions, d.Log)
	}
	return handleAudit(d.Store, d.Log)
}

// singleServerOnly wraps the handler of an admin route that is not
// partition-aware yet: with a partitioned Store it answers 501 and a JSON
// error saying so, instead of reading the proxy (which holds no wallets) or
// one partition as if it were all of them (docs/scale-out.md#what-is-built).
func (d Deps) singleServerOnly(h http.HandlerFunc) http.HandlerFunc {
	if d.Store == nil || d.Store.Partitions() == 0 {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotImplemented, "not_partitioned",
			"not available in partitioned mode yet (docs/scale-out.md#the-admin-api-partitioned)")
	}
}
