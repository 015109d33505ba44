package partition_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// TestMigrate_ASecondProxyJoinsTheCluster puts a second, new proxy in front
// of a running cluster with giftd migrate: it takes the cluster's id, so the
// partitions accept it, and both proxies route every user to the same
// partition. A new proxy given a claimed partition beside an unclaimed
// database takes nothing from the claimed one: it is refused, and the
// unclaimed database is not claimed as that cluster's partition.
func TestMigrate_ASecondProxyJoinsTheCluster(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	second := partition.Layout{ProxyURL: pgtest.EmptyDatabase(t), PartitionURLs: l.PartitionURLs}
	if err := partition.Migrate(ctx, second); err != nil {
		t.Fatalf("Migrate a second proxy: %v", err)
	}
	if a, b := proxyCluster(t, l.ProxyURL), proxyCluster(t, second.ProxyURL); a != b {
		t.Fatalf("cluster ids: first proxy %s, second %s; want one", a, b)
	}
	first, other := connect(t, l.ProxyURL), connect(t, second.ProxyURL)
	for i, user := range []string{"u1", "u2", "demo-user", "用户"} {
		if _, err := topUpThroughProxy(ctx, other, user, int64(i+1), "second-"+user); err != nil {
			t.Fatalf("top-up of %s through the second proxy: %v", user, err)
		}
		var gold int64
		if err := first.QueryRow(ctx, `SELECT gold FROM giftd_wallet($1)`, user).Scan(&gold); err != nil || gold != int64(i+1) {
			t.Errorf("%s through the first proxy: %d, %v; want %d", user, gold, err, i+1)
		}
		var n int
		if err := connect(t, l.PartitionURLs[partition.For(user, 2)]).QueryRow(ctx,
			`SELECT count(*) FROM wallets WHERE user_id = $1`, user).Scan(&n); err != nil || n != 1 {
			t.Errorf("%s is not on partition %d (%d, %v)", user, partition.For(user, 2), n, err)
		}
	}
	// Migrating the second proxy again changes nothing.
	if err := partition.Migrate(ctx, second); err != nil {
		t.Fatalf("Migrate the second proxy again: %v", err)
	}

	fresh := pgtest.EmptyDatabase(t)
	third := partition.Layout{ProxyURL: pgtest.EmptyDatabase(t), PartitionURLs: []string{l.PartitionURLs[0], fresh}}
	if err := partition.Migrate(ctx, third); !errors.Is(err, partition.ErrWrongPartition) {
		t.Fatalf("Migrate a new proxy with a claimed partition and an unclaimed database: %v; want ErrWrongPartition", err)
	}
	if proxyCluster(t, third.ProxyURL) == proxyCluster(t, l.ProxyURL) {
		t.Error("the refused proxy took the cluster's id")
	}
	var claims int
	err := connect(t, fresh).QueryRow(ctx, `SELECT count(*) FROM giftd_partition_identity`).Scan(&claims)
	var pgErr *pgconn.PgError
	if notMigrated := errors.As(err, &pgErr) && pgErr.Code == "42P01"; !notMigrated && (err != nil || claims != 0) {
		t.Errorf("the unclaimed database was claimed (%d claims, %v)", claims, err)
	}
}

func proxyCluster(t *testing.T, proxyURL string) string {
	t.Helper()
	var id string
	if err := connect(t, proxyURL).QueryRow(context.Background(), `SELECT cluster_id::text FROM giftd_cluster`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}
