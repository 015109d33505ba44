package main

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

func TestRun_ReshardDoublesTheClusterAndNamesNoSecret(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 1)
	const secret = "reshard-secret-71f0"
	withSecret := func(u string) string {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		// The test server trusts local connections: the password is never asked for.
		parsed.User = url.UserPassword(parsed.User.Username(), secret)
		return parsed.String()
	}
	proxy, err := pgx.Connect(ctx, l.ProxyURL)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close(ctx)
	users := []string{"u1", "u2", "a", "demo-user"} // of 2: 1, 0, 0, 0
	for _, u := range users {
		if _, err := proxy.Exec(ctx, `SELECT * FROM giftd_topup($1, 5, $2, '')`, u, "k-"+u); err != nil {
			t.Fatal(err)
		}
	}
	newURL := pgtest.EmptyDatabase(t)
	env := map[string]string{"GIFTD_PROXY_URL": l.ProxyURL, "GIFTD_PARTITION_URLS": withSecret(l.PartitionURLs[0])}
	getenv := func(k string) string { return env[k] }
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"giftd", "reshard"}, getenv, &out, &errOut)
	var se *settingsError
	if !errors.As(err, &se) || se.name != "GIFTD_NEW_PARTITION_URLS" {
		t.Fatalf("reshard without new partitions: %v; want a settings error naming GIFTD_NEW_PARTITION_URLS", err)
	}
	env["GIFTD_NEW_PARTITION_URLS"] = withSecret(newURL)
	out.Reset()
	errOut.Reset()
	if err := run(ctx, []string{"giftd", "reshard"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("reshard: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"partition 0: writes of the users moving to partition 1 paused ",
		"partition 0 (", "partition 1 (", "forgot 1 wallets", "proxy: 2 partitions registered in cluster giftd"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("reshard printed\n%s\nwithout %q", out.String(), want)
		}
	}
	if strings.Contains(out.String()+errOut.String(), secret) {
		t.Errorf("reshard printed a partition's password:\n%s%s", out.String(), errOut.String())
	}
	// Each wallet through the proxy, now over 2, and on its partition only.
	for _, u := range users {
		var gold int64
		if err := proxy.QueryRow(ctx, `SELECT gold FROM giftd_wallet($1)`, u).Scan(&gold); err != nil || gold != 5 {
			t.Errorf("wallet %s through the proxy: %d, %v; want 5", u, gold, err)
		}
	}
	env["GIFTD_PARTITION_URLS"] = withSecret(l.PartitionURLs[0]) + " " + withSecret(newURL)
	out.Reset()
	if err := run(ctx, []string{"giftd", "audit"}, getenv, &out, &errOut); err != nil {
		t.Errorf("audit after the resharding: %v\n%s", err, out.String())
	}
	if n := partition.For("u1", 2); n != 1 {
		t.Fatalf("u1 is placed on %d of 2; the test expects 1", n)
	}
}
