package main

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"giftd/internal/pgtest"
)

// TestPoolCollector_ExportsThePoolsStatistics: every statistic is one
// series, named giftd_db_pool_*, and the pool's size shows.
func TestPoolCollector_ExportsThePoolsStatistics(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), pgtest.URL(t)+"&pool_max_conns=3")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	c := newPoolCollector(pool)
	if n := testutil.CollectAndCount(c); n != 10 {
		t.Errorf("%d series, want 10", n)
	}
	want := "# HELP giftd_db_pool_max_connections Largest pool size allowed.\n# TYPE giftd_db_pool_max_connections gauge\ngiftd_db_pool_max_connections 3\n"
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "giftd_db_pool_max_connections"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
