package main

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/ledger"
)

// reshardCollector reports, per partition, what a giftd reshard left there
// as the last readiness check read it (ledger.Store.ReshardStates): the
// alerts GiftdReshardFenced and GiftdReshardUnforgotten
// (docs/operations.md). The label is the partition's number, 0..n-1.
type reshardCollector struct {
	states              func() []ledger.ReshardState
	fenced, unforgotten *prometheus.Desc
}

func newReshardCollector(states func() []ledger.ReshardState) *reshardCollector {
	return &reshardCollector{states: states,
		fenced: prometheus.NewDesc("giftd_partition_reshard_fenced",
			"1 while a giftd reshard's fence is up on the partition above its claim (a run stopped inside the pause: its moving users' writes are refused), else 0; read by the readiness probe.",
			[]string{"partition"}, nil),
		unforgotten: prometheus.NewDesc("giftd_partition_reshard_unforgotten",
			"1 while the partition holds rows a giftd reshard moved away and has not forgotten (a run stopped before its step 4), else 0; read by the readiness probe.",
			[]string{"partition"}, nil),
	}
}

func (c *reshardCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.fenced
	ch <- c.unforgotten
}

func (c *reshardCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for i, st := range c.states() {
		p := strconv.Itoa(i)
		ch <- prometheus.MustNewConstMetric(c.fenced, prometheus.GaugeValue, gauge(st.Fenced), p)
		ch <- prometheus.MustNewConstMetric(c.unforgotten, prometheus.GaugeValue, gauge(st.Unforgotten), p)
	}
}
