package main

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// reshardGauges gathers c's series as "name{partition} value" lines, sorted.
func reshardGauges(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, f := range families {
		for _, m := range f.GetMetric() {
			lines = append(lines, fmt.Sprintf("%s{%s} %g", strings.TrimPrefix(f.GetName(), "giftd_partition_reshard_"),
				m.GetLabel()[0].GetValue(), m.GetGauge().GetValue()))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, " ")
}

// TestReshardCollector_ShowsAReshardFencedOrNotForgotten: the gauges read
// with each partition's readiness show a fence left up above the claim (a
// run stopped inside the pause) and a partition that has not forgotten the
// rows it gave away (a run stopped before step 4), and go back to 0 when
// the fence is lifted and when giftd reshard is run again.
func TestReshardCollector_ShowsAReshardFencedOrNotForgotten(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 1)
	store, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(1, partition.For))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	c := newReshardCollector(store.ReshardStates)
	ready := func(want string) {
		t.Helper()
		if err := store.Ready(ctx); err != nil {
			t.Fatalf("ready: %v", err)
		}
		if got := reshardGauges(t, c); got != want {
			t.Errorf("gauges %q, want %q", got, want)
		}
	}
	if got := reshardGauges(t, c); got != "" {
		t.Errorf("gauges before any readiness check: %q, want none", got)
	}
	ready("fenced{0} 0 unforgotten{0} 0")
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}

	old, err := pgx.Connect(ctx, l.PartitionURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close(ctx)
	// A run killed inside its pause: the fence of 2 up on partition 0 of 1.
	if _, err := old.Exec(ctx, `INSERT INTO giftd_reshard_fence (partitions) VALUES (2)`); err != nil {
		t.Fatal(err)
	}
	ready("fenced{0} 1 unforgotten{0} 0")
	if _, err := old.Exec(ctx, `DELETE FROM giftd_reshard_fence`); err != nil {
		t.Fatal(err)
	}
	ready("fenced{0} 0 unforgotten{0} 0")

	// A reshard 1 → 2, then partition 0 as a run stopped before its forget
	// leaves it (as TestRun_ReshardDoublesTheClusterAndNamesNoSecret): its
	// fence of 2 back.
	if _, err := old.Exec(ctx, `SELECT * FROM giftd_topup('u1', 5, 'k-u1', '')`); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GIFTD_PROXY_URL": l.ProxyURL,
		"GIFTD_PARTITION_URLS": l.PartitionURLs[0] + " " + pgtest.EmptyDatabase(t)}
	getenv := func(k string) string { return env[k] }
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"giftd", "reshard"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("reshard: %v\n%s", err, errOut.String())
	}
	ready("fenced{0} 0 fenced{1} 0 unforgotten{0} 0 unforgotten{1} 0")
	if _, err := old.Exec(ctx, `INSERT INTO giftd_reshard_fence (partitions) VALUES (2)`); err != nil {
		t.Fatal(err)
	}
	ready("fenced{0} 0 fenced{1} 0 unforgotten{0} 1 unforgotten{1} 0")
	if err := run(ctx, []string{"giftd", "reshard"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("reshard again: %v\n%s", err, errOut.String())
	}
	ready("fenced{0} 0 fenced{1} 0 unforgotten{0} 0 unforgotten{1} 0")
}
