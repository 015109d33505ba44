package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/partition"
)

// runReshard is giftd reshard (docs/scale-out.md#resharding-n--2n): the
// cluster of GIFTD_PROXY_URL doubled, under load, onto new databases
// (reshardingOf: the second half of GIFTD_PARTITION_URLS, or
// GIFTD_NEW_PARTITION_URLS), keeping GIFTD_EARNINGS_HOLD for the earnings
// it moves. It prints each old partition's pause, whether the partitions'
// configuration had drifted (and was levelled from partition 0's) and what
// each partition forgot, then audits the 2n partitions as giftd audit does,
// failing when the audit does; run again after a failure, it carries on.
func runReshard(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) != 0 {
		return errors.New("usage: giftd reshard (settings from the environment, see docs/scale-out.md#resharding-n--2n)")
	}
	var s settings
	if err := readDatabase(getenv, &s); err != nil {
		return err
	}
	if err := readPartitions(getenv, &s); err != nil {
		return err
	}
	// The earnings hold as giftd serve reads it: the split keeps it for the
	// gifts younger than it (partition migration 19).
	if err := readPolicies(getenv, &s); err != nil {
		return err
	}
	if s.Partitioned.ProxyURL == "" {
		return &settingsError{"GIFTD_PROXY_URL", "required by giftd reshard, with GIFTD_PARTITION_URLS: the partitions' URLs, the old ones then the new ones"}
	}
	drain, err := drainTimeout(getenv)
	if err != nil {
		return err
	}
	r, err := reshardingOf(ctx, getenv, s.Partitioned)
	if err != nil {
		return err
	}
	r.DrainTimeout = drain
	r.Log = newLogger("text", stderr)
	r.EarningsHold = s.Safeguards.EarningsHold
	// The audit before the forget: a moved user's rows wrong on the new
	// partition stop the run while its old partition still holds them.
	r.BeforeForget = func(ctx context.Context) error {
		fmt.Fprintf(stdout, "audit of the %d partitions before the forget:\n", 2*len(r.Layout.PartitionURLs))
		return auditPartitioned(ctx, r.After(), getenv, stdout)
	}
	rep, err := partition.Reshard(ctx, r, ledger.WithLockWait(s.MigrateLockWait), ledger.WithMigrateLog(newLogger("text", stderr), 0))
	for i, p := range rep.Pauses {
		fmt.Fprintf(stdout, "partition %d: writes of the users moving to partition %d paused %s\n",
			i, i+len(r.Layout.PartitionURLs), p.Round(time.Millisecond))
	}
	if err != nil {
		return err
	}
	if len(rep.ConfigDrift) == 0 {
		fmt.Fprintf(stdout, "configuration: every partition held partition 0's (nothing drifted, nothing copied)\n")
	} else {
		fmt.Fprintf(stdout, "configuration: copied partition 0's to every partition (%d keys), it had drifted: %s\n",
			rep.ConfigSync.Keys, ledger.DriftText(rep.ConfigDrift))
	}
	if len(rep.PolicyDrift) > 0 {
		fmt.Fprintf(stdout, "users' policies: DRIFT %s (not copied: put each differing policy again, "+
			"PUT /admin/v1/policies/users/{user_id} writes it on every partition)\n", ledger.DriftText(rep.PolicyDrift))
	}
	for p, n := range rep.Forgotten {
		fmt.Fprintf(stdout, "partition %d (%s): forgot %d wallets it no longer owns\n", p, partition.Where(r.After().PartitionURLs[p]), n)
	}
	fmt.Fprintf(stdout, "proxy: %d partitions registered in cluster %s; giftd serve replicas whose GIFTD_PARTITION_URLS "+
		"lists all %d (the old partitions' URLs then the new ones', as giftd reshard takes them) use them within about a second; "+
		"give that GIFTD_PARTITION_URLS to every other replica, and to giftd's other commands, with a restart\n",
		rep.Partitions, partition.ClusterName, rep.Partitions)
	// The audit an operator is told to run after a reshard, run here so that
	// it is never forgotten: every partition's, the credits, the keys and the
	// configuration across the 2n.
	fmt.Fprintf(stdout, "audit of the %d partitions:\n", rep.Partitions)
	if err := auditPartitioned(ctx, r.After(), getenv, stdout); err != nil {
		return fmt.Errorf("the reshard is done (a run again only audits again), but the audit after it fails: %w", err)
	}
	return nil
}

// maxDrainTimeout bounds GIFTD_RESHARD_DRAIN_TIMEOUT: the moving users'
// writes, and with the economy every gift of the old partitions, are
// refused while the pause waits.
const maxDrainTimeout = 2 * time.Minute

// drainTimeout is GIFTD_RESHARD_DRAIN_TIMEOUT: how long the pause waits for
// the credit consumer to move the credits of the old count before the run
// fails and lifts the fences.
func drainTimeout(getenv func(string) string) (time.Duration, error) {
	var d time.Duration
	err := durations(getenv, []durationSetting{{"GIFTD_RESHARD_DRAIN_TIMEOUT", "10s", 100 * time.Millisecond, &d}})
	if err == nil && d > maxDrainTimeout {
		err = &settingsError{"GIFTD_RESHARD_DRAIN_TIMEOUT", fmt.Sprintf("must be at most %s (the pause refuses the moving users' "+
			"writes while it waits), got %s", maxDrainTimeout, d)}
	}
	return d, err
}

// reshardingOf is giftd reshard's cluster, in one of two forms:
// GIFTD_PARTITION_URLS listing all 2n partitions, the n the proxy routes
// over then the n new ones, as giftd serve's replicas take them
// (partition.ReshardingOf splits it by the proxy's count; likewise
// GIFTD_PROXY_PARTITION_URLS); or, with GIFTD_NEW_PARTITION_URLS set, the
// n old in GIFTD_PARTITION_URLS and the n new there (and
// GIFTD_NEW_PROXY_PARTITION_URLS). Mixing the two is a settings error.
func reshardingOf(ctx context.Context, getenv func(string) string, l partition.Layout) (partition.Resharding, error) {
	newURLs := strings.Fields(getenv("GIFTD_NEW_PARTITION_URLS"))
	newProxyURLs := strings.Fields(getenv("GIFTD_NEW_PROXY_PARTITION_URLS"))
	const forms = "either GIFTD_PARTITION_URLS listing all 2n partitions (the n the proxy routes over, then the n new ones) " +
		"and GIFTD_NEW_PARTITION_URLS unset, or the n old ones there and the n new ones in GIFTD_NEW_PARTITION_URLS"
	if len(newURLs) == 0 {
		if len(newProxyURLs) != 0 {
			return partition.Resharding{}, &settingsError{"GIFTD_NEW_PROXY_PARTITION_URLS",
				"set without GIFTD_NEW_PARTITION_URLS: give the new partitions as the proxy reaches them in GIFTD_PROXY_PARTITION_URLS, " +
					"after the old ones, or set both GIFTD_NEW_ variables (" + forms + ")"}
		}
		r, err := partition.ReshardingOf(ctx, l)
		var le *partition.LayoutError
		switch {
		case errors.As(err, &le):
			name := map[string]string{"PartitionURLs": "GIFTD_PARTITION_URLS", "ProxyPartitionURLs": "GIFTD_PROXY_PARTITION_URLS"}[le.Field]
			return r, &settingsError{name, le.Problem + " (giftd reshard takes " + forms + ")"}
		case err != nil:
			return r, fmt.Errorf("GIFTD_PROXY_URL: %w", err)
		}
		return r, nil
	}
	if len(l.PartitionURLs) != len(newURLs) {
		return partition.Resharding{}, &settingsError{"GIFTD_NEW_PARTITION_URLS", fmt.Sprintf(
			"%d URLs, with %d in GIFTD_PARTITION_URLS: giftd reshard takes %s", len(newURLs), len(l.PartitionURLs), forms)}
	}
	r := partition.Resharding{Layout: l, NewPartitionURLs: newURLs, NewProxyPartitionURLs: newProxyURLs}
	if err := r.Check(); err != nil {
		var le *partition.LayoutError
		if !errors.As(err, &le) {
			return r, err
		}
		name := map[string]string{"NewPartitionURLs": "GIFTD_NEW_PARTITION_URLS",
			"NewProxyPartitionURLs": "GIFTD_NEW_PROXY_PARTITION_URLS",
			"PartitionURLs":         "GIFTD_PARTITION_URLS and GIFTD_NEW_PARTITION_URLS",
			"ProxyPartitionURLs":    "GIFTD_PROXY_PARTITION_URLS and GIFTD_NEW_PROXY_PARTITION_URLS"}[le.Field]
		return r, &settingsError{name, le.Problem + " (GIFTD_NEW_PARTITION_URLS: one new empty database " +
			"per partition, partition n + i's at position i, separated by spaces)"}
	}
	return r, nil
}
