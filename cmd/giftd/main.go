// Command giftd is the merchant-side debit server for LinkV's gift
// callbacks. Run "giftd help" for its subcommands.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
	// The safeguards' time zones are IANA names, checked at start: the
	// binary carries the zone database, whatever its image has.
	_ "time/tzdata"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"giftd/internal/callback"
	"giftd/internal/credits"
	"giftd/internal/httpapi"
	"giftd/internal/ledger"
	"giftd/internal/linkv"
	"giftd/internal/linkvapi"
	"giftd/internal/partition"
	"giftd/internal/platforms"
	"giftd/internal/polyv"
	"giftd/internal/polyvapi"
	"giftd/internal/webhook"
)

func main() {
	// giftd's heap is a few megabytes and every millisecond is a viewer's:
	// collect garbage a quarter as often as Go's default unless GOGC says.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "giftd:", err)
		os.Exit(1)
	}
}

const usage = `giftd: the merchant-side debit server for LinkV gift and Polyv point-donation callbacks

Usage:
  giftd serve [-migrate=false]   run the server (settings from the environment, see docs/configuration.md)
  giftd dev                      run it with a throwaway PostgreSQL, a dev app and a demo wallet
  giftd migrate up|down|version  manage the schema (of GIFTD_MIGRATE_DATABASE_URL, else DATABASE_URL; in
                                 partitioned mode of GIFTD_PROXY_URL and every one of GIFTD_PARTITION_URLS)
  giftd reshard                  double a partitioned giftd (GIFTD_PROXY_URL) under load onto new databases:
                                 GIFTD_PARTITION_URLS lists the old partitions then the new (docs/scale-out.md)
  giftd audit                    check every balance against the ledger; exit 1 on any mismatch (partitioned:
                                 every partition, then the cross-partition credits)
  giftd earnings -from DATE [-to DATE]  CSV of every receiver's earnings in the period and payable at its end
  giftd prune                    delete debit records expired more than GIFTD_PRUNE_MARGIN ago, and events
                                 delivered and older than GIFTD_EVENTS_RETENTION
  giftd healthcheck [-url URL]   exit 0 when giftd's /readyz (default: on GIFTD_ADMIN_ADDR) answers 200
`

// run is the whole program; main only gives it the process's surroundings.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return errors.New("no subcommand given")
	}
	switch cmd, rest := args[1], args[2:]; cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stderr)
	case "dev":
		return runDev(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return runMigrate(rest, getenv, stdout, stderr)
	case "audit":
		return runAudit(ctx, rest, getenv, stdout, stderr)
	case "reshard":
		return runReshard(ctx, rest, getenv, stdout, stderr)
	case "prune":
		return runPrune(ctx, rest, getenv, stdout, stderr)
	case "earnings":
		return runEarnings(ctx, rest, getenv, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, rest, getenv, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown subcommand %q", cmd)
	}
}

func runServe(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	s, err := readSettings(getenv)
	if err != nil {
		return err
	}
	if s.Partitioned.ProxyURL == "" {
		// Partitioned mode (GIFTD_PROXY_URL, GIFTD_PARTITION_URLS) needs no
		// DATABASE_URL, and ignores one.
		if err := requireDatabase(s); err != nil {
			return err
		}
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&s.Migrate, "migrate", s.Migrate, "apply pending migrations at start (GIFTD_MIGRATE)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	return serve(ctx, s, newLogger(s.LogFormat, stderr), nil)
}

func runMigrate(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var s settings
	if err := readDatabase(getenv, &s); err != nil {
		return err
	}
	if err := readPartitions(getenv, &s); err != nil {
		return err
	}
	url, wait := s.MigrateDatabaseURL, s.MigrateLockWait
	opts := []ledger.MigrateOption{ledger.WithLockWait(wait), ledger.WithMigrateLog(newLogger("text", stderr), 0)}
	if len(args) != 1 {
		return errors.New("usage: giftd migrate up|down|version")
	}
	if s.Partitioned.ProxyURL != "" {
		return migratePartitioned(args[0], s.Partitioned, opts, stdout)
	}
	if url == "" {
		return &settingsError{"DATABASE_URL", "required (or GIFTD_MIGRATE_DATABASE_URL, or GIFTD_PROXY_URL and GIFTD_PARTITION_URLS)"}
	}
	switch args[0] {
	case "up":
		if err := ledger.Migrate(url, opts...); err != nil {
			return err
		}
	case "down":
		if err := ledger.MigrateDown(url, opts...); err != nil {
			return err
		}
	case "version":
	default:
		return fmt.Errorf("migrate: unknown action %q, want up, down or version", args[0])
	}
	v, dirty, err := ledger.MigrationVersion(url, opts...)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "schema version %d (dirty: %t)\n", v, dirty)
	return nil
}

// migratePartitioned is giftd migrate in partitioned mode
// (docs/scale-out.md#migrating): up migrates every partition and the proxy
// and registers the partitions on the proxy; version reports each set on
// each database. The output names databases by host and name, never with a
// password.
func migratePartitioned(action string, l partition.Layout, opts []ledger.MigrateOption, stdout io.Writer) error {
	// A bound for the registration's connection; the migrations have
	// GIFTD_MIGRATE_LOCK_WAIT's.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if action == "up" || action == "version" {
		var err error
		if l, err = routedLayout(ctx, l); err != nil {
			return err
		}
	}
	switch action {
	case "up":
		if err := partition.Migrate(ctx, l, opts...); err != nil {
			return err
		}
	case "version":
	case "down":
		return errors.New("migrate down: not in partitioned mode; revert one database at a time " +
			"(DATABASE_URL=… giftd migrate down, with GIFTD_PROXY_URL and GIFTD_PARTITION_URLS unset) " +
			"after reading docs/scale-out.md#migrating")
	default:
		return fmt.Errorf("migrate: unknown action %q, want up, down or version", action)
	}
	vs, err := partition.Versions(l, opts...)
	if err != nil {
		return err
	}
	for _, v := range vs {
		fmt.Fprintf(stdout, "%s (%s): %s schema version %d (dirty: %t)\n", v.Role, v.Where, v.Set, v.Version, v.Dirty)
	}
	if action == "up" {
		fmt.Fprintf(stdout, "proxy: %d partitions registered in cluster %s\n", len(l.PartitionURLs), partition.ClusterName)
	}
	return nil
}

// routedLayout is l as the proxy routes over it: GIFTD_PARTITION_URLS may
// list more partitions, the ones a coming giftd reshard adds (all of them
// when the proxy routes over none yet, a new cluster); fewer is a settings
// error.
func routedLayout(ctx context.Context, l partition.Layout) (partition.Layout, error) {
	n, err := partition.Routed(ctx, l.ProxyURL)
	switch {
	case err != nil:
		return l, fmt.Errorf("GIFTD_PROXY_URL: %w", err)
	case n > len(l.PartitionURLs):
		return l, &settingsError{"GIFTD_PARTITION_URLS", fmt.Sprintf("%d URLs, but the proxy routes over %d partitions: "+
			"list every partition's, in partition order", len(l.PartitionURLs), n)}
	case n > 0:
		return l.First(n), nil
	}
	return l, nil
}

func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

// serve runs both listeners, a readiness probe and the pruning of expired
// debit records until ctx ends, then shuts down: /readyz turns 503 (for
// s.ShutdownDelay while giftd still serves), then it stops accepting, lets
// requests in flight finish within s.ShutdownTimeout, and closes the pool.
// onListen, if set, is told the bound addresses.
func serve(ctx context.Context, s settings, log *slog.Logger, onListen func(public, admin string)) error {
	var tlsConfig *tls.Config
	if s.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(s.TLSCert, s.TLSKey)
		if err != nil {
			return &settingsError{"GIFTD_TLS_CERT", "cannot load it with GIFTD_TLS_KEY: " + err.Error()}
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	partitioned := s.Partitioned.ProxyURL != ""
	// routed is the cluster the proxy routes over: GIFTD_PARTITION_URLS may
	// list more, the partitions a coming giftd reshard adds, taken into
	// use once the proxy routes over them (growPartitions).
	routed := s.Partitioned
	if partitioned {
		var err error
		if routed, err = routedLayout(ctx, s.Partitioned); err != nil {
			return err
		}
	}
	switch {
	case s.Migrate && partitioned:
		// What giftd migrate up does: the proxy, every partition, the
		// registration (docs/scale-out.md#migrating); of the partitions
		// the proxy routes over only (all of them in a new cluster).
		log.Info("migrating partitioned", "partitions", len(routed.PartitionURLs), "lock_wait", s.MigrateLockWait.String())
		if err := partition.Migrate(ctx, routed, ledger.WithLockWait(s.MigrateLockWait), ledger.WithMigrateLog(log, 0)); err != nil {
			return err
		}
	case s.Migrate:
		// Migrations may need their own URL: through a transaction pool,
		// golang-migrate's session lock does not hold (see ledger.Migrate).
		log.Info("migrating", "own_url", s.MigrateDatabaseURL != s.DatabaseURL, "lock_wait", s.MigrateLockWait.String())
		if err := ledger.Migrate(s.MigrateDatabaseURL, ledger.WithLockWait(s.MigrateLockWait), ledger.WithMigrateLog(log, 0)); err != nil {
			return err
		}
	}
	dbURL, opts := s.DatabaseURL, []ledger.Option{ledger.WithBatching(s.Batching), ledger.WithEconomy(s.Economy),
		ledger.WithSafeguards(s.Safeguards)}
	if partitioned {
		// giftd talks to the proxy only; each batch goes to one partition
		// (docs/scale-out.md#the-debit-batch).
		dbURL, opts = s.Partitioned.ProxyURL, append(opts, ledger.WithPartitions(len(routed.PartitionURLs), partition.For))
	}
	var parts []*ledger.Store
	if partitioned {
		// Direct pools to each partition: the cross-partition credits, the
		// configuration every partition holds, each partition's webhook
		// delivery and pruning (docs/scale-out.md). Never the debits'. To
		// every URL given, those beyond the routed ones unused until the
		// proxy routes over them (and not connected to before: a pool
		// connects at its first use).
		for i, u := range s.Partitioned.PartitionURLs {
			p, err := ledger.Open(ctx, u, ledger.WithBatching(ledger.Batching{MaxBatch: 1}),
				ledger.WithMaxConns(int32(s.Webhook.Workers+4)))
			if err != nil {
				return fmt.Errorf("GIFTD_PARTITION_URLS: partition %d: %w", i, err)
			}
			defer p.Close()
			parts = append(parts, p)
		}
		opts = append(opts, ledger.WithPartitionStores(parts))
	}
	store, err := ledger.Open(ctx, dbURL, opts...)
	if err != nil {
		return err
	}
	defer store.Close()
	store.SetConfigLog(log)

	reg := prometheus.NewRegistry()
	metrics := httpapi.NewMetrics(reg)
	reg.MustRegister(newPoolCollector(store.Pool()))
	store.SetTimer(metrics.ObserveDB)
	if partitioned {
		// After giftd reshard the proxy routes over more partitions than
		// this replica uses until growPartitions takes the new pools into
		// use, or for good when GIFTD_PARTITION_URLS lists too few: the
		// alert GiftdPartitionsNotConnected.
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "giftd_partitions",
			Help: "Partitions the proxy routes over, as this replica last read it (partitioned mode)."},
			func() float64 { return float64(store.Partitions()) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "giftd_partitions_connected",
			Help: "Partitions this replica uses direct pools to (of GIFTD_PARTITION_URLS, those the proxy routes over whose claims were checked): the credit consumer, configuration copies, events and webhook delivery use them."},
			func() float64 { return float64(len(store.PartitionStores())) }))
		// A giftd reshard stopped inside its pause or before its forget,
		// read with each partition's readiness: the alerts
		// GiftdReshardFenced and GiftdReshardUnforgotten.
		reg.MustRegister(newReshardCollector(store.ReshardStates))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "giftd_debits_awaiting_reshard_switch",
			Help: "Debits a giftd reshard's pause refused (its moving users', and with earnings on every gift on an old partition until its economy is split), waiting now for the proxy's switch to run again where the new count places their user (each at most its callback's GIFTD_DB_TIMEOUT)."},
			func() float64 { return float64(store.AwaitingSwitch()) }))
	}
	ready := httpapi.NewReadiness(reg, store, log)
	calls := callback.NewRecorder(reg, log)
	deps := httpapi.Deps{
		Store: store,
		Callbacks: []httpapi.Callback{{Doc: "linkv-debit", Method: http.MethodPost, Path: s.DebitPath,
			Handler: linkv.NewHandler(store, linkv.Config{
				Apps: s.LinkVApps, MaxExpiry: s.MaxExpiry, NonceMaxAge: s.NonceMaxAge, DBTimeout: s.DBTimeout,
			}, linkv.NewMetrics(reg), calls)}},
		Sources:    httpapi.NewSourceFilter(s.AllowedCIDRs, s.TrustedProxies),
		AdminToken: s.AdminToken,
		Metrics:    metrics,
		Ready:      ready,
		Gatherer:   reg,
		Log:        log,
		// The reports' one setting: how stale a room's leaderboard may be.
		LeaderboardCache:    s.LeaderboardCache,
		WebhookAllowPrivate: s.Webhook.AllowPrivate,
	}
	if deps.Platforms, err = platformClients(s.Platforms); err != nil {
		return err
	}
	if s.PolyvApps != nil {
		pv := polyv.NewHandlers(store, polyv.Config{
			Apps: s.PolyvApps, Scale: s.PolyvScale, MaxSkew: s.PolyvMaxSkew, DBTimeout: s.DBTimeout,
			URLParams: s.PolyvURLParams,
		}, calls)
		deps.Callbacks = append(deps.Callbacks,
			httpapi.Callback{Doc: "polyv-query", Method: http.MethodGet, Path: s.PolyvQueryPath, Handler: pv.Query},
			httpapi.Callback{Doc: "polyv-donate", Method: http.MethodPost, Path: s.PolyvUpdatePath, Handler: pv.Donate})
	}

	var consumer *credits.Consumer
	if partitioned {
		// Cross-partition credits (docs/scale-out.md#cross-partition-credits):
		// read from and applied on each partition directly, on small pools
		// of their own; the admin audit uses them too.
		// growPartitions gives it more when the proxy routes over more.
		consumer = credits.New(store.PartitionStores(), credits.DefaultConfig(consumerOwner()), reg, log)
		// The admin audit reads each partition's books on the same pools
		// (docs/scale-out.md#reads-across-partitions), those in use.
		deps.Partitions = store.PartitionStores
	}

	var deliverer *webhook.Deliverer
	switch {
	case s.Webhooks && partitioned:
		// Each partition's events from its own outbox, on its pool above
		// (docs/events.md#partitioned-mode).
		deliverer = webhook.NewPartitioned(store.PartitionStores, s.Webhook, reg, log)
	case s.Webhooks:
		// Delivery has a pool of its own, so that slow endpoints can never
		// hold the connections debits need.
		delivery, err := ledger.Open(ctx, s.DatabaseURL, ledger.WithBatching(ledger.Batching{MaxBatch: 1}),
			ledger.WithMaxConns(int32(s.Webhook.Workers+2)))
		if err != nil {
			return err
		}
		defer delivery.Close()
		deliverer = webhook.New(delivery, s.Webhook, reg, log)
	}

	publicLn, err := net.Listen("tcp", s.HTTPAddr)
	if err != nil {
		return fmt.Errorf("GIFTD_HTTP_ADDR: %w", err)
	}
	if tlsConfig != nil {
		publicLn = tls.NewListener(publicLn, tlsConfig)
	}
	adminLn, err := net.Listen("tcp", s.AdminAddr)
	if err != nil {
		publicLn.Close()
		return fmt.Errorf("GIFTD_ADMIN_ADDR: %w", err)
	}
	servers := []*http.Server{newServer(httpapi.NewPublic(deps), s), newServer(httpapi.NewAdmin(deps), s)}
	log.Info("giftd listening", "public", publicLn.Addr().String(), "admin", adminLn.Addr().String(),
		"debit_path", s.DebitPath, "apps", len(s.LinkVApps), "polyv_apps", len(s.PolyvApps),
		"earnings", s.Economy.Earnings, "price_check", s.Economy.PriceCheck, "default_share_bp", s.Economy.DefaultShareBP,
		"safeguards", s.Safeguards.On, "safeguards_profile", s.SafeguardsProfile, "webhooks", s.Webhooks,
		"partitions", store.Partitions(), "partition_urls", len(parts))
	if onListen != nil {
		onListen(publicLn.Addr().String(), adminLn.Addr().String())
	}

	g, gctx := errgroup.WithContext(ctx)
	for i, ln := range []net.Listener{publicLn, adminLn} {
		srv := servers[i]
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	g.Go(func() error { ready.Run(gctx, readyProbeInterval); return nil })
	if deliverer != nil {
		g.Go(func() error { deliverer.Run(gctx); return nil })
	}
	if consumer != nil {
		g.Go(func() error { consumer.Run(gctx); return nil })
		g.Go(func() error { growPartitions(gctx, store, consumer, log, growInterval); return nil })
	}
	if s.PruneInterval > 0 {
		g.Go(func() error { pruneLoop(gctx, store, s, log, newPruneMetrics(reg)); return nil })
	}
	g.Go(func() error {
		<-gctx.Done()
		// Not ready first, so that load balancers stop sending traffic while
		// giftd still answers it; then stop accepting and drain.
		ready.Drain()
		log.Info("shutting down", "delay", s.ShutdownDelay.String(), "timeout", s.ShutdownTimeout.String())
		time.Sleep(s.ShutdownDelay)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.ShutdownTimeout)
		defer cancel()
		// Both listeners at once: one draining a slow debit must not keep
		// the other accepting.
		errs := make([]error, len(servers))
		var wg sync.WaitGroup
		for i, srv := range servers {
			wg.Go(func() { errs[i] = srv.Shutdown(sctx) })
		}
		wg.Wait()
		return errors.Join(errs...)
	})
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// newServer bounds every phase of a connection, so that a slow or idle
// client (a slow-loris) cannot hold giftd: headers and body must arrive
// within GIFTD_HTTP_READ_TIMEOUT, the answer may take the database deadline
// plus that, and an idle keep-alive connection is closed after
// GIFTD_HTTP_IDLE_TIMEOUT.
func newServer(h http.Handler, s settings) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.ReadTimeout,
		ReadTimeout:       s.ReadTimeout,
		WriteTimeout:      s.ReadTimeout + s.DBTimeout + 5*time.Second,
		IdleTimeout:       s.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
	}
}

// platformClients makes the admin API's platform API clients of p.
func platformClients(p platforms.Settings) (httpapi.Platforms, error) {
	out := httpapi.Platforms{PolyvQueryURL: p.PolyvQueryURL, PolyvUpdateURL: p.PolyvUpdateURL}
	var err error
	if p.LinkV != nil {
		if out.LinkV, err = linkvapi.New(*p.LinkV); err != nil {
			return out, err
		}
	}
	if p.Polyv != nil {
		if out.Polyv, err = polyvapi.New(*p.Polyv); err != nil {
			return out, err
		}
	}
	return out, nil
}

// consumerOwner names this process in the credit consumer's leases: its
// host, its pid and a random suffix, unique across replicas and restarts.
func consumerOwner() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return fmt.Sprintf("%s/%d/%x", host, os.Getpid(), b)
}
