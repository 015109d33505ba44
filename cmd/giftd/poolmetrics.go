package main

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// poolCollector exports a pgxpool's statistics as giftd_db_pool_*. It
// lives here, where the pool is made, so that httpapi need not know pgx.
type poolCollector struct {
	pool  *pgxpool.Pool
	descs map[string]*prometheus.Desc
}

func newPoolCollector(pool *pgxpool.Pool) *poolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("giftd_db_pool_"+name, help, nil, nil)
	}
	return &poolCollector{pool: pool, descs: map[string]*prometheus.Desc{
		"acquired":       d("acquired_connections", "Connections in use."),
		"idle":           d("idle_connections", "Idle connections."),
		"total":          d("total_connections", "Open connections."),
		"max":            d("max_connections", "Largest pool size allowed."),
		"acquires":       d("acquires_total", "Connections acquired from the pool."),
		"empty":          d("empty_acquires_total", "Acquires that had to wait for or open a connection."),
		"canceled":       d("canceled_acquires_total", "Acquires cancelled by their context."),
		"acquire_wait":   d("acquire_wait_seconds_total", "Total time spent waiting to acquire a connection."),
		"new_conns":      d("new_connections_total", "Connections opened."),
		"lifetime_close": d("max_lifetime_destroys_total", "Connections closed for reaching their maximum lifetime."),
	}}
}

// Describe implements prometheus.Collector.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	g := func(key string, v float64) {
		ch <- prometheus.MustNewConstMetric(c.descs[key], prometheus.GaugeValue, v)
	}
	n := func(key string, v float64) {
		ch <- prometheus.MustNewConstMetric(c.descs[key], prometheus.CounterValue, v)
	}
	g("acquired", float64(s.AcquiredConns()))
	g("idle", float64(s.IdleConns()))
	g("total", float64(s.TotalConns()))
	g("max", float64(s.MaxConns()))
	n("acquires", float64(s.AcquireCount()))
	n("empty", float64(s.EmptyAcquireCount()))
	n("canceled", float64(s.CanceledAcquireCount()))
	n("acquire_wait", s.AcquireDuration().Seconds())
	n("new_conns", float64(s.NewConnsCount()))
	n("lifetime_close", float64(s.MaxLifetimeDestroyCount()))
}
