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
// cluster of GIFTD_PROXY_URL and GIFTD_PARTITION_URLS doubled onto the new
// databases of GIFTD_NEW_PARTITION_URLS, under load, keeping
// GIFTD_EARNINGS_HOLD for the earnings it moves. It prints each old
// partition's pause and what each partition forgot, then audits the 2n
// partitions as giftd audit does, failing when the audit does; run again
// after a failure, it carries on.
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
		return &settingsError{"GIFTD_PROXY_URL", "required by giftd reshard, with GIFTD_PARTITION_URLS: the cluster as it is registered today"}
	}
	r := partition.Resharding{
		Layout:                s.Partitioned,
		NewPartitionURLs:      strings.Fields(getenv("GIFTD_NEW_PARTITION_URLS")),
		NewProxyPartitionURLs: strings.Fields(getenv("GIFTD_NEW_PROXY_PARTITION_URLS")),
		Log:                   newLogger("text", stderr),
		EarningsHold:          s.Safeguards.EarningsHold,
	}
	if err := r.Check(); err != nil {
		var le *partition.LayoutError
		if !errors.As(err, &le) {
			return err
		}
		name := map[string]string{"NewPartitionURLs": "GIFTD_NEW_PARTITION_URLS",
			"NewProxyPartitionURLs": "GIFTD_NEW_PROXY_PARTITION_URLS",
			"PartitionURLs":         "GIFTD_PARTITION_URLS and GIFTD_NEW_PARTITION_URLS",
			"ProxyPartitionURLs":    "GIFTD_PROXY_PARTITION_URLS and GIFTD_NEW_PROXY_PARTITION_URLS"}[le.Field]
		return &settingsError{name, le.Problem + " (giftd reshard needs GIFTD_NEW_PARTITION_URLS: one new empty database " +
			"per partition, partition n + i's at position i, separated by spaces)"}
	}
	rep, err := partition.Reshard(ctx, r, ledger.WithLockWait(s.MigrateLockWait), ledger.WithMigrateLog(newLogger("text", stderr), 0))
	for i, p := range rep.Pauses {
		fmt.Fprintf(stdout, "partition %d: writes of the users moving to partition %d paused %s\n",
			i, i+len(r.Layout.PartitionURLs), p.Round(time.Millisecond))
	}
	if err != nil {
		return err
	}
	for p, n := range rep.Forgotten {
		fmt.Fprintf(stdout, "partition %d (%s): forgot %d wallets it no longer owns\n", p, partition.Where(r.After().PartitionURLs[p]), n)
	}
	fmt.Fprintf(stdout, "proxy: %d partitions registered in cluster %s; giftd serve replicas given all %d URLs "+
		"(GIFTD_PARTITION_URLS then GIFTD_NEW_PARTITION_URLS) use them within seconds; give them to every other "+
		"replica, and to giftd's other commands, with a restart\n",
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
