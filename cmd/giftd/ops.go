package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/ledger"
)

// readyProbeInterval is how often serve checks readiness by itself, so that
// giftd_ready is fresh between /readyz calls: one trivial query.
const readyProbeInterval = 5 * time.Second

// openForOps opens DATABASE_URL for a one-off command: no batching, since
// such a command never debits. It returns the database settings too.
func openForOps(ctx context.Context, getenv func(string) string) (*ledger.Store, settings, error) {
	var s settings
	if err := readDatabase(getenv, &s); err != nil {
		return nil, s, err
	}
	if err := requireDatabase(s); err != nil {
		return nil, s, err
	}
	store, err := ledger.Open(ctx, s.DatabaseURL, ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
	return store, s, err
}

// runAudit checks every wallet against its ledger and prints a summary; it
// fails on any mismatch or negative balance, so that cron or CI notices.
func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	store, _, err := openForOps(ctx, getenv)
	if err != nil {
		return err
	}
	defer store.Close()
	r, err := store.Audit(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "audit at %s: %d wallets, %d ledger entries, %d gold in all\n",
		r.CheckedAt.Format(time.RFC3339), r.Wallets, r.Entries, r.TotalGold)
	for _, f := range r.Findings {
		problem := "balance differs from its ledger"
		if f.Gold < 0 {
			problem = "negative balance"
		}
		fmt.Fprintf(stdout, "  MISMATCH wallet %s: balance %d, ledger sum %d (%s)\n", f.UserID, f.Gold, f.LedgerSum, problem)
	}
	if !r.OK() {
		if shown := int64(len(r.Findings)); shown < r.Mismatched+r.Negative {
			fmt.Fprintf(stdout, "  … and more (first %d shown)\n", shown)
		}
		return fmt.Errorf("audit failed: %d wallets differ from their ledger, %d are negative", r.Mismatched, r.Negative)
	}
	fmt.Fprintln(stdout, "audit OK: every balance equals the sum of its ledger entries; none is negative")
	return nil
}

// runPrune deletes, once, the debit records that expired more than
// GIFTD_PRUNE_MARGIN (or -margin) ago, as serve does in the background.
func runPrune(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	store, s, err := openForOps(ctx, getenv)
	if err != nil {
		return err
	}
	defer store.Close()
	fs := flag.NewFlagSet("prune", flag.ContinueOnError)
	fs.SetOutput(stderr)
	margin := fs.Duration("margin", s.PruneMargin, "keep records until this long after their expiry (GIFTD_PRUNE_MARGIN)")
	batch := fs.Int("batch", ledger.DefaultPruneBatch, "rows deleted per statement")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *margin < 0 || *batch < 1 {
		return errors.New("prune: -margin must not be negative, -batch at least 1")
	}
	cutoff := time.Now().Add(-*margin)
	n, err := store.PruneRequests(ctx, cutoff, *batch)
	fmt.Fprintf(stdout, "pruned %d debit request records that expired before %s (the ledger is never pruned)\n",
		n, cutoff.UTC().Format(time.RFC3339))
	return err
}

// pruneMetrics count what the background pruning did.
type pruneMetrics struct {
	pruned prometheus.Counter
	errors prometheus.Counter
}

func newPruneMetrics(reg prometheus.Registerer) pruneMetrics {
	m := pruneMetrics{
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "giftd_debit_requests_pruned_total",
			Help: "Expired debit request records deleted by the background pruning.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "giftd_prune_errors_total",
			Help: "Background pruning rounds that failed.",
		}),
	}
	reg.MustRegister(m.pruned, m.errors)
	return m
}

// pruneLoop prunes expired debit records every s.PruneInterval until ctx
// ends. Replicas may all run it: rows one is deleting, the others skip.
func pruneLoop(ctx context.Context, store *ledger.Store, s settings, log *slog.Logger, m pruneMetrics) {
	t := time.NewTicker(s.PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := store.PruneRequests(ctx, time.Now().Add(-s.PruneMargin), ledger.DefaultPruneBatch)
		m.pruned.Add(float64(n))
		switch {
		case err != nil && ctx.Err() == nil:
			m.errors.Inc()
			log.Warn("pruning expired debit records failed", "pruned", n, "error", err.Error())
		case n > 0:
			log.Info("pruned expired debit records", "pruned", n)
		}
	}
}

// runHealthcheck exits 0 when giftd's /readyz answers 200: a probe for
// container images that have no curl (Docker HEALTHCHECK, compose).
func runHealthcheck(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "URL to GET (default: /readyz on GIFTD_ADMIN_ADDR, on loopback)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" {
		_, port, err := net.SplitHostPort(adminAddr(getenv))
		if err != nil {
			return &settingsError{"GIFTD_ADMIN_ADDR", "must be host:port or :port"}
		}
		*url = "http://" + net.JoinHostPort("127.0.0.1", port) + "/readyz"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %d", *url, resp.StatusCode)
	}
	fmt.Fprintf(stdout, "%s: %d\n", *url, resp.StatusCode)
	return nil
}
