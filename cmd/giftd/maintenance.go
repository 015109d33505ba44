package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/credits"
	"giftd/internal/ledger"
	"giftd/internal/partition"
)

// readyProbeInterval is how often serve checks readiness by itself, so that
// giftd_ready is fresh between /readyz calls: one trivial query.
const readyProbeInterval = 5 * time.Second

// growInterval is how often serve looks whether the proxy routes over more
// partitions than it uses: while GIFTD_PARTITION_URLS lists more than are
// in use, one query of the proxy's count; otherwise an atomic read.
const growInterval = time.Second

// growPartitions takes into use, until ctx ends, the direct pools of the
// partitions a giftd reshard adds, once the proxy routes over them and each
// claims its place (ledger.Store.GrowPartitionStores), and gives them to
// the credit consumer; webhook delivery, the admin API and the
// configuration's copies read them from the store. It also records the
// proxy's switch on each partition in use where a giftd reshard stopped
// before recording it (ledger.Store.RecordReshardSwitches: from the
// readiness probe's reading of each partition, so within about 5 s). A
// failure (a claim that does not match, fewer URLs than partitions, a
// record not written) is logged when it changes, and tried again.
func growPartitions(ctx context.Context, store *ledger.Store, consumer *credits.Consumer, log *slog.Logger, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastRecord := "", ""
	for {
		before := len(store.PartitionStores())
		n, err := store.GrowPartitionStores(ctx)
		if n > before {
			log.Info("partitions in use", "partitions", n, "routed", store.Partitions())
			consumer.Grow(store.PartitionStores())
		}
		msg := ""
		if err != nil && ctx.Err() == nil {
			msg = err.Error()
		}
		if msg != "" && msg != last {
			log.Warn("partitions not in use", "in_use", n, "routed", store.Partitions(), "err", msg)
		}
		last = msg
		wrote, err := store.RecordReshardSwitches(ctx)
		if len(wrote) > 0 {
			log.Info("recorded the proxy's switch where giftd reshard had not yet (a run stopped after its switch: run it again)",
				"partitions", wrote, "routed", store.Partitions())
		}
		msg = ""
		if err != nil && ctx.Err() == nil {
			msg = err.Error()
		}
		if msg != "" && msg != lastRecord {
			log.Warn("reshard switch not recorded", "err", msg)
		}
		lastRecord = msg
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// openForOps opens DATABASE_URL for a one-off command: no batching, since
// such a command never debits, and the safeguards' settings, for the
// earnings hold of the export. It returns the database settings too.
func openForOps(ctx context.Context, getenv func(string) string) (*ledger.Store, settings, error) {
	var s settings
	if err := readDatabase(getenv, &s); err != nil {
		return nil, s, err
	}
	if err := requireDatabase(s); err != nil {
		return nil, s, err
	}
	if err := readPolicies(getenv, &s); err != nil {
		return nil, s, err
	}
	store, err := ledger.Open(ctx, s.DatabaseURL, ledger.WithBatching(ledger.Batching{MaxBatch: 1}), ledger.WithSafeguards(s.Safeguards))
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
	var ps settings
	if err := readPartitions(getenv, &ps); err != nil {
		return err
	}
	if ps.Partitioned.ProxyURL != "" {
		l, err := routedLayout(ctx, ps.Partitioned)
		if err != nil {
			return err
		}
		return auditPartitioned(ctx, l, getenv, stdout)
	}
	store, _, err := openForOps(ctx, getenv)
	if err != nil {
		return err
	}
	defer store.Close()
	return printAudit(ctx, store, stdout)
}

// auditPartitioned is giftd audit in partitioned mode: each partition's own
// audit, on a direct connection, then the cross-partition credits
// (credits.Audit: each moved once each way, every one behind its source's
// cursor moved, the earnings taken = moved + in flight), the keys (none on
// two partitions) and the configuration.
func auditPartitioned(ctx context.Context, l partition.Layout, getenv func(string) string, stdout io.Writer) error {
	var s settings
	if err := readPolicies(getenv, &s); err != nil {
		return err
	}
	var parts []*ledger.Store
	var failed []error
	for i, u := range l.PartitionURLs {
		p, err := ledger.Open(ctx, u, ledger.WithBatching(ledger.Batching{MaxBatch: 1}), ledger.WithSafeguards(s.Safeguards))
		if err != nil {
			return fmt.Errorf("partition %d: %w", i, err)
		}
		defer p.Close()
		parts = append(parts, p)
		fmt.Fprintf(stdout, "partition %d (%s):\n", i, partition.Where(u))
		if err := printAudit(ctx, p, stdout); err != nil {
			failed = append(failed, fmt.Errorf("partition %d: %w", i, err))
		}
	}
	r, err := credits.Audit(ctx, parts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cross-partition credits: %d in the outboxes, %d gold: %d moved (%d gold), %d in flight (%d gold)\n",
		r.Credits, r.Taken, r.Moved, r.MovedGold, r.InFlight, r.InFlightGold)
	fmt.Fprintf(stdout, "reversals' claw-backs: %d, %d pending\n", r.Clawbacks, r.ClawbacksPending)
	for _, p := range r.Problems {
		fmt.Fprintf(stdout, "  MISMATCH %s\n", p)
	}
	for _, p := range r.NotSwitched {
		fmt.Fprintf(stdout, "  NOT SWITCHED %s\n", p)
	}
	if len(r.NotSwitched) > 0 {
		failed = append(failed, fmt.Errorf("cross-partition credits: not audited, %d partitions claimed among another count (giftd reshard not switched)", len(r.NotSwitched)))
	} else if !r.OK() {
		failed = append(failed, fmt.Errorf("cross-partition credits: %d problems", len(r.Problems)))
	} else {
		fmt.Fprintln(stdout, "credits OK: each moved once each way, every one behind its cursor moved, taken = moved + in flight")
	}
	// Every idempotency key on one partition only, as one server's unique
	// indexes would have it (docs/scale-out.md#keys-across-partitions).
	reused, n, err := ledger.ReusedKeys(ctx, parts, 100)
	if err != nil {
		return err
	}
	for _, k := range reused {
		fmt.Fprintf(stdout, "  REUSED %s\n", k)
	}
	if n > 0 {
		if n > len(reused) {
			fmt.Fprintf(stdout, "  … and more (first %d shown)\n", len(reused))
		}
		failed = append(failed, fmt.Errorf("keys: %d found on more than one partition", n))
	} else {
		fmt.Fprintln(stdout, "keys OK: no debit, top-up, reversal or payout key on more than one partition")
	}
	// The configuration every debit reads, the same on every partition
	// (docs/scale-out.md#configuration-on-every-partition).
	drift, err := ledger.ConfigDriftOf(ctx, parts, nil)
	if err != nil {
		return err
	}
	var copied, policies []ledger.Drift
	for _, d := range drift {
		if d.Kind == ledger.ConfigUserPolicies {
			policies = append(policies, d)
		} else {
			copied = append(copied, d)
		}
	}
	if len(copied) > 0 {
		fmt.Fprintf(stdout, "  DRIFT %s (POST /admin/v1/config/sync copies partition 0's again)\n", ledger.DriftText(copied))
	}
	if len(policies) > 0 {
		// Written through the proxy on every partition, no home to copy
		// from: a write that reached some partitions only (one was down).
		fmt.Fprintf(stdout, "  DRIFT %s (users' policies: put each policy below again, "+
			"PUT or DELETE /admin/v1/policies/users/{user_id} writes it on every partition)\n", ledger.DriftText(policies))
		users, n, err := ledger.UserPolicyDivergences(ctx, parts, 100)
		if err != nil {
			return err
		}
		for _, u := range users {
			fmt.Fprintf(stdout, "  POLICY user %s: partitions %v differ from partition 0\n", u.Subject, u.Differs)
		}
		if n > len(users) {
			fmt.Fprintf(stdout, "  … and more (first %d shown)\n", len(users))
		}
	}
	if len(drift) > 0 {
		failed = append(failed, fmt.Errorf("configuration: %d partitions and kinds differ from partition 0", len(drift)))
	} else {
		fmt.Fprintln(stdout, "configuration OK: the catalogue, rooms' receivers, apps' and users' policies and webhook endpoints are the same on every partition")
	}
	return errors.Join(failed...)
}

// printAudit runs store's audit and prints it; an error when it fails.
func printAudit(ctx context.Context, store *ledger.Store, stdout io.Writer) error {
	r, err := store.Audit(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "audit at %s: %d wallets, %d ledger entries, %d gold in all\n",
		r.CheckedAt.Format(time.RFC3339), r.Wallets, r.Entries, r.TotalGold)
	fmt.Fprintf(stdout, "  %d settled gifts (%d unassigned: all to the house), %d unsettled debits (earnings off)\n",
		r.Gifts, r.Unassigned, r.Unsettled)
	fmt.Fprintf(stdout, "  %d earnings accounts: %d earnings, %d owed by receivers; house %d\n",
		r.EarningsAccounts, r.TotalEarnings, r.TotalOwed, r.House)
	if r.ReshardNotForgotten > 0 {
		fmt.Fprintf(stdout, "  NOTE a reshard to %d partitions split this partition but has not forgotten the rows it gave away yet: "+
			"they are left out of this audit; run giftd reshard again (docs/scale-out.md#the-audit-between-the-switch-and-the-forget)\n",
			r.ReshardNotForgotten)
	}
	for _, f := range r.Findings {
		problem := "balance differs from its entries"
		switch {
		case f.Account == "gift":
			problem = "its three sides do not balance"
		case f.Gold < 0:
			problem = "negative balance"
		}
		fmt.Fprintf(stdout, "  MISMATCH %s %s: balance %d, ledger sum %d (%s)\n", f.Account, f.UserID, f.Gold, f.LedgerSum, problem)
	}
	if !r.OK() {
		if shown := int64(len(r.Findings)); shown < r.Mismatched+r.Negative+r.Unbalanced {
			fmt.Fprintf(stdout, "  … and more (first %d shown)\n", shown)
		}
		return fmt.Errorf("audit failed: %d accounts differ from their entries, %d are negative, %d gifts do not balance",
			r.Mismatched, r.Negative, r.Unbalanced)
	}
	fmt.Fprintln(stdout, "audit OK: every balance (wallets, earnings, receivables, house) equals the sum of its entries; none is negative; every gift balances")
	return nil
}

// runEarnings writes, as CSV on stdout, every receiver's earnings over the
// period [-from, -to) and what was payable at its end (docs/economy.md):
// the finance team's export.
func runEarnings(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("earnings", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fromS := fs.String("from", "", "start of the period, inclusive: 2026-11-01 or RFC 3339 (required)")
	toS := fs.String("to", "", "end of the period, exclusive: 2026-12-01 or RFC 3339 (default: now)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	from, err := parseTime(*fromS)
	if err != nil {
		return fmt.Errorf("earnings: -from: %w", err)
	}
	to := time.Now()
	if *toS != "" {
		if to, err = parseTime(*toS); err != nil {
			return fmt.Errorf("earnings: -to: %w", err)
		}
	}
	if !from.Before(to) {
		return errors.New("earnings: -from must be before -to")
	}
	store, _, err := openForOps(ctx, getenv)
	if err != nil {
		return err
	}
	defer store.Close()
	rows, err := store.EarningsPeriod(ctx, from, to)
	if err != nil {
		return err
	}
	w := csv.NewWriter(stdout)
	w.Write([]string{"receiver_id", "period_from", "period_to", "gifts", "earned", "taken_back", "shortfall", //nolint:errcheck // w.Error below
		"recovered", "paid_out", "balance_at_end", "owed_at_end", "payable_at_end", "maturing_at_end"})
	f, t := from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339)
	for _, r := range rows {
		w.Write(append([]string{r.ReceiverID, f, t}, formatInts(r.Gifts, r.Earned, r.TakenBack, r.Shortfall, //nolint:errcheck // w.Error below
			r.Recovered, r.PaidOut, r.Balance, r.Owed, r.Payable, r.Maturing)...))
	}
	w.Flush()
	return w.Error()
}

// parseTime reads a date (UTC midnight) or an RFC 3339 time.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("required")
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a date like 2026-11-01 nor an RFC 3339 time", s)
	}
	return t, nil
}

func formatInts(ns ...int64) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = strconv.FormatInt(n, 10)
	}
	return out
}

// runPrune deletes, once, the debit records that expired more than
// GIFTD_PRUNE_MARGIN (or -margin) ago, as serve does in the background.
func runPrune(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var ps settings
	if err := readPartitions(getenv, &ps); err != nil {
		return err
	}
	var stores []*ledger.Store
	var names []string
	var s settings
	if ps.Partitioned.ProxyURL != "" {
		// Each partition's own records and events, on a direct connection
		// (docs/scale-out.md#reminders-pruning-partitioned); DATABASE_URL unused.
		if err := readDatabase(getenv, &s); err != nil {
			return err
		}
		l, err := routedLayout(ctx, ps.Partitioned)
		if err != nil {
			return err
		}
		for i, u := range l.PartitionURLs {
			p, err := ledger.Open(ctx, u, ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
			if err != nil {
				return fmt.Errorf("partition %d: %w", i, err)
			}
			defer p.Close()
			stores = append(stores, p)
			names = append(names, fmt.Sprintf("partition %d (%s): ", i, partition.Where(u)))
		}
	} else {
		store, opsSettings, err := openForOps(ctx, getenv)
		if err != nil {
			return err
		}
		defer store.Close()
		stores, names, s = []*ledger.Store{store}, []string{""}, opsSettings
	}
	if err := readEvents(getenv, &s); err != nil {
		return err
	}
	fs := flag.NewFlagSet("prune", flag.ContinueOnError)
	fs.SetOutput(stderr)
	margin := fs.Duration("margin", s.PruneMargin, "keep records until this long after their expiry (GIFTD_PRUNE_MARGIN)")
	retention := fs.Duration("retention", s.EventsRetention, "keep delivered events this long (GIFTD_EVENTS_RETENTION)")
	batch := fs.Int("batch", ledger.DefaultPruneBatch, "rows deleted per statement")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *margin < 0 || *retention < 0 || *batch < 1 {
		return errors.New("prune: -margin and -retention must not be negative, -batch at least 1")
	}
	var failed []error
	for i, store := range stores {
		cutoff := time.Now().Add(-*margin)
		n, err := store.PruneRequests(ctx, cutoff, *batch)
		fmt.Fprintf(stdout, "%spruned %d debit request records that expired before %s (the ledger is never pruned)\n",
			names[i], n, cutoff.UTC().Format(time.RFC3339))
		if err != nil {
			failed = append(failed, fmt.Errorf("%s%w", names[i], err))
			continue
		}
		before := time.Now().Add(-*retention)
		n, err = store.PruneEvents(ctx, before, *batch)
		fmt.Fprintf(stdout, "%spruned %d events created before %s that every webhook endpoint has passed (undelivered ones are kept)\n",
			names[i], n, before.UTC().Format(time.RFC3339))
		if err != nil {
			failed = append(failed, fmt.Errorf("%s%w", names[i], err))
		}
	}
	return errors.Join(failed...)
}

// pruneMetrics count what the background pruning did.
type pruneMetrics struct {
	pruned prometheus.Counter
	events prometheus.Counter
	errors prometheus.Counter
}

func newPruneMetrics(reg prometheus.Registerer) pruneMetrics {
	m := pruneMetrics{
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "giftd_debit_requests_pruned_total",
			Help: "Expired debit request records deleted by the background pruning.",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "giftd_events_pruned_total",
			Help: "Delivered events older than GIFTD_EVENTS_RETENTION deleted by the background pruning.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "giftd_prune_errors_total",
			Help: "Background pruning rounds that failed.",
		}),
	}
	reg.MustRegister(m.pruned, m.events, m.errors)
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
		if err == nil {
			var e int64
			e, err = store.PruneEvents(ctx, time.Now().Add(-s.EventsRetention), ledger.DefaultPruneBatch)
			m.events.Add(float64(e))
		}
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
