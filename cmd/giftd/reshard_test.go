package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/linkv"
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
	if !errors.As(err, &se) || se.name != "GIFTD_PARTITION_URLS" || !strings.Contains(se.problem, "1 URLs, but the proxy routes over 1 partitions") {
		t.Fatalf("reshard without new partitions: %v; want a settings error naming GIFTD_PARTITION_URLS and both counts", err)
	}
	// One variable, as giftd serve takes the cluster: the old partition,
	// then the new one.
	env["GIFTD_PARTITION_URLS"] = withSecret(l.PartitionURLs[0]) + " " + withSecret(newURL)
	env["GIFTD_EARNINGS_HOLD"] = "1h"
	out.Reset()
	errOut.Reset()
	var started time.Time
	if err := proxy.QueryRow(ctx, `SELECT now()`).Scan(&started); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"giftd", "reshard"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("reshard: %v\n%s", err, errOut.String())
	}
	// The earnings hold reached the split: the time a gift must be younger
	// than for its earnings to be held, recorded on the old partition.
	var young time.Time
	old, err := pgx.Connect(ctx, l.PartitionURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close(ctx)
	if err := old.QueryRow(ctx, `SELECT young_after FROM giftd_reshard_presplit WHERE partitions = 2`).Scan(&young); err != nil ||
		young.Before(started.Add(-time.Hour)) || young.After(time.Now().Add(-time.Hour+time.Minute)) {
		t.Errorf("young_after %v, %v; want the command's start less GIFTD_EARNINGS_HOLD (1h), after %v", young, err, started.Add(-time.Hour))
	}
	for _, want := range []string{"partition 0: writes of the users moving to partition 1 paused ",
		"configuration: every partition held partition 0's (nothing drifted",
		"partition 0 (", "partition 1 (", "forgot 1 wallets", "proxy: 2 partitions registered in cluster giftd",
		"audit of the 2 partitions:", "credits OK", "keys OK", "configuration OK"} {
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
	// Run again with the same settings, the proxy routing over both: only
	// the forget is left, and nothing is left to forget.
	out.Reset()
	if err := run(ctx, []string{"giftd", "reshard"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("reshard again: %v\n%s", err, errOut.String())
	}
	if strings.Contains(out.String(), "paused") || strings.Count(out.String(), "forgot 0 wallets") != 2 {
		t.Errorf("reshard again printed\n%s\nwant no pause and 0 wallets forgotten on each of 2 partitions", out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"giftd", "audit"}, getenv, &out, &errOut); err != nil {
		t.Errorf("audit after the resharding: %v\n%s", err, out.String())
	}
	const note = "NOTE a reshard to 2 partitions split this partition but has not forgotten the rows it gave away yet"
	if strings.Contains(out.String(), note) {
		t.Errorf("audit after the resharding printed\n%s\nwith %q", out.String(), note)
	}
	// Partition 0 as a run stopped before its forget leaves it (the rows
	// aside: internal/partition's TestReshard_AuditsBetweenTheSwitchAndTheForgetAsAfter
	// has them): its fence of 2 still there. The audit passes and says so;
	// the run again forgets, and the note goes.
	if _, err := old.Exec(ctx, `INSERT INTO giftd_reshard_fence (partitions) VALUES (2)`); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(ctx, []string{"giftd", "audit"}, getenv, &out, &errOut); err != nil || strings.Count(out.String(), note) != 1 ||
		!strings.Contains(out.String(), "run giftd reshard again") {
		t.Errorf("audit of a partition not forgotten: %v\n%s\nwant it OK with %q once", err, out.String(), note)
	}
	if err := run(ctx, []string{"giftd", "reshard"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("reshard again: %v\n%s", err, errOut.String())
	}
	out.Reset()
	if err := run(ctx, []string{"giftd", "audit"}, getenv, &out, &errOut); err != nil || strings.Contains(out.String(), note) {
		t.Errorf("audit after the run again: %v\n%s\nwant it OK without %q", err, out.String(), note)
	}
	if n := partition.For("u1", 2); n != 1 {
		t.Fatalf("u1 is placed on %d of 2; the test expects 1", n)
	}
	// A wallet that parts from its entries: the run again (only step 4 and
	// the audits are left) fails before the forget, naming the wallet.
	moved, err := pgx.Connect(ctx, newURL)
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close(ctx)
	if _, err := moved.Exec(ctx, `UPDATE wallets SET gold = gold + 1 WHERE user_id = 'u1'`); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = run(ctx, []string{"giftd", "reshard"}, getenv, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "nothing forgotten") || !strings.Contains(out.String(), "u1") {
		t.Errorf("reshard run again over a wallet one gold above its entries: %v\n%s\nwant the audit's failure naming u1", err, out.String())
	}
}

// TestRun_ReshardAuditsBeforeItForgets: a moving user's wallet parted from
// its entries before giftd reshard (a fault the copy carries over) stops
// the run after the switch, before the forget: its old partition still
// holds the user's rows, the only other copy of them, and says so. Once
// the wallet is repaired, the run again forgets them.
func TestRun_ReshardAuditsBeforeItForgets(t *testing.T) {
	ctx := context.Background()
	l, _, old, newURL := withAPartedMover(ctx, t)
	env := map[string]string{"GIFTD_PROXY_URL": l.ProxyURL, "GIFTD_PARTITION_URLS": l.PartitionURLs[0] + " " + newURL}
	getenv := func(k string) string { return env[k] }
	wallets := func(c *pgx.Conn) (n int) {
		t.Helper()
		if err := c.QueryRow(ctx, `SELECT count(*) FROM wallets WHERE user_id = 'u1'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var out, errOut bytes.Buffer
	err := run(ctx, []string{"giftd", "reshard"}, getenv, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "switched to 2 partitions, nothing forgotten") ||
		!strings.Contains(out.String(), "audit of the 2 partitions before the forget:") || !strings.Contains(out.String(), "u1") ||
		strings.Contains(out.String(), "forgot ") {
		t.Fatalf("reshard over a moving wallet one gold above its entries: %v\n%s\nwant the audit before the forget failing, naming u1, nothing forgotten", err, out.String())
	}
	if n := wallets(old); n != 1 {
		t.Errorf("old partition 0 holds %d wallets of u1 after the failed check; want 1 (not forgotten)", n)
	}
	moved, err := pgx.Connect(ctx, newURL)
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close(ctx)
	if _, err := moved.Exec(ctx, `UPDATE wallets SET gold = gold - 1 WHERE user_id = 'u1'`); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(ctx, []string{"giftd", "reshard"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("reshard again once repaired: %v\n%s%s", err, out.String(), errOut.String())
	}
	if n := wallets(old); n != 0 || !strings.Contains(out.String(), "partition 0 (") || !strings.Contains(out.String(), "forgot 1 wallets") {
		t.Errorf("after the run again old partition 0 holds %d wallets of u1 (want 0), printed\n%s", n, out.String())
	}
}

// withAPartedMover returns a cluster of 1 partition holding u1 (placed on
// partition 1 of 2) and a (on 0), 5 gold each, u1's wallet one gold above
// its entries: a fault a reshard's copy carries over; connections to its
// proxy and its partition, and an empty database to reshard onto.
func withAPartedMover(ctx context.Context, t *testing.T) (l partition.Layout, proxy, old *pgx.Conn, newURL string) {
	t.Helper()
	l = pgtest.Partitioned(t, 1)
	if partition.For("u1", 2) != 1 || partition.For("a", 2) != 0 {
		t.Fatal("the test expects u1 placed on partition 1 of 2, a on 0")
	}
	var err error
	if proxy, err = pgx.Connect(ctx, l.ProxyURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close(context.Background()) })
	for _, u := range []string{"u1", "a"} {
		if _, err := proxy.Exec(ctx, `SELECT * FROM giftd_topup($1, 5, $2, '')`, u, "k-"+u); err != nil {
			t.Fatal(err)
		}
	}
	if old, err = pgx.Connect(ctx, l.PartitionURLs[0]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { old.Close(context.Background()) })
	if _, err := old.Exec(ctx, `UPDATE wallets SET gold = gold + 1 WHERE user_id = 'u1'`); err != nil {
		t.Fatal(err)
	}
	return l, proxy, old, pgtest.EmptyDatabase(t)
}

// TestRun_ServeRecordsTheSwitchOfAStoppedReshard: a giftd reshard 1 → 2
// stopped after the proxy's switch, before its forget (the check before it
// failing on a wallet parted from its entries), and the switch's record
// then taken off both partitions: a run stopped between the switch and
// that record. The wallet totals run on every partition count each wallet
// twice (both partitions hold them all) until giftd serve, given both
// URLs, records the switch on both partitions itself; then once.
func TestRun_ServeRecordsTheSwitchOfAStoppedReshard(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, proxy, old, newURL := withAPartedMover(ctx, t)
	env := map[string]string{"GIFTD_PROXY_URL": l.ProxyURL, "GIFTD_PARTITION_URLS": l.PartitionURLs[0] + " " + newURL}
	getenv := func(k string) string { return env[k] }
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"giftd", "reshard"}, getenv, &out, &errOut); err == nil ||
		!strings.Contains(err.Error(), "switched to 2 partitions, nothing forgotten") {
		t.Fatalf("reshard over a moving wallet one gold above its entries: %v\n%s; want it stopped before the forget", err, out.String())
	}
	moved, err := pgx.Connect(ctx, newURL)
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close(ctx)
	// As a run killed right after the switch leaves them: the switch not
	// recorded, configuration changes refused (step 4 re-enables them
	// first).
	for _, c := range []*pgx.Conn{old, moved} {
		for _, q := range []string{`DELETE FROM giftd_reshard_switched`,
			`ALTER TABLE gift_catalogue ENABLE TRIGGER giftd_reshard_config_fence`} {
			if _, err := c.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
	}
	var pgErr *pgconn.PgError
	if _, err := old.Exec(ctx, `INSERT INTO gift_catalogue (platform, gift_id, name, price, share_bp) VALUES ('linkv', 'x', 'X', 1, 0)`); !errors.As(err, &pgErr) || pgErr.Code != "GD003" {
		t.Fatalf("a catalogue write with the switch not recorded: %v; want refused with GD003", err)
	}
	wallets := func() (n int64) {
		t.Helper()
		if err := proxy.QueryRow(ctx, `SELECT sum(wallets)::bigint FROM giftd_wallet_totals()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := wallets(); n != 4 {
		t.Fatalf("wallet totals, the switch not recorded: %d; want 4 (each wallet on both partitions)", n)
	}

	srv := startServe(t, map[string]string{"DATABASE_URL": "postgres://unused@127.0.0.1:1/unused",
		"GIFTD_PROXY_URL": l.ProxyURL, "GIFTD_PARTITION_URLS": env["GIFTD_PARTITION_URLS"]})
	for n := wallets(); n != 2; n = wallets() {
		select {
		case <-ctx.Done():
			t.Fatalf("wallet totals with serve running: %d; want 2\n%s", n, srv.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !strings.Contains(srv.logs.String(), "recorded the proxy's switch") {
		t.Errorf("serve's log does not say it recorded the switch:\n%s", srv.logs.String())
	}
	// The switch recorded, configuration changes are taken again, on both
	// partitions, without the run again.
	if code, m := adminCall(t, srv.admin, http.MethodPost, "/admin/v1/gifts/linkv", e2eToken,
		`{"gift_id":"rose","name":"Rose","price":10,"share_bp":5000}`); code != http.StatusCreated {
		t.Errorf("a gift created once serve recorded the switch: %d %v; want 201", code, m)
	}
	if n := giftOnEachPartition(ctx, t, []string{l.PartitionURLs[0], newURL}, "rose"); n != [4]int{1, 1} {
		t.Errorf("the gift is on the partitions %v times; want once on each of 2", n)
	}
	if err := srv.stop(t); err != nil {
		t.Errorf("serve: %v", err)
	}

	// The run again, once the wallet is repaired, forgets.
	if _, err := moved.Exec(ctx, `UPDATE wallets SET gold = gold - 1 WHERE user_id = 'u1'`); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(ctx, []string{"giftd", "reshard"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("reshard again: %v\n%s%s", err, out.String(), errOut.String())
	}
	if n := wallets(); n != 2 {
		t.Errorf("wallet totals after the forget: %d; want 2", n)
	}
}

// TestRun_ReshardRefusesAnUnclearCluster: giftd reshard given URLs of
// another count than twice (or once) the proxy's, or both forms of the
// cluster at once, does nothing and names the variable.
func TestRun_ReshardRefusesAnUnclearCluster(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 1)
	// Never reached: each case is refused before any partition is.
	other := func(name string) string { return "postgres://postgres@127.0.0.1:1/" + name }
	for _, c := range []struct {
		name       string
		env        map[string]string
		variable   string
		mentioning string
	}{
		{"four URLs for a proxy routing over one", map[string]string{
			"GIFTD_PARTITION_URLS": strings.Join([]string{l.PartitionURLs[0], other("a"), other("b"), other("c")}, " ")},
			"GIFTD_PARTITION_URLS", "4 URLs, but the proxy routes over 1 partitions"},
		{"all the URLs and the new ones too", map[string]string{
			"GIFTD_PARTITION_URLS": l.PartitionURLs[0] + " " + other("a"), "GIFTD_NEW_PARTITION_URLS": other("a")},
			"GIFTD_NEW_PARTITION_URLS", "1 URLs, with 2 in GIFTD_PARTITION_URLS"},
		{"the new ones as the proxy reaches them alone", map[string]string{
			"GIFTD_PARTITION_URLS": l.PartitionURLs[0] + " " + other("a"), "GIFTD_PROXY_PARTITION_URLS": other("p0") + " " + other("pa"),
			"GIFTD_NEW_PROXY_PARTITION_URLS": other("pa")},
			"GIFTD_NEW_PROXY_PARTITION_URLS", "set without GIFTD_NEW_PARTITION_URLS"},
		{"a drain timeout that is not a duration", map[string]string{
			"GIFTD_PARTITION_URLS": l.PartitionURLs[0] + " " + other("a"), "GIFTD_RESHARD_DRAIN_TIMEOUT": "ten"},
			"GIFTD_RESHARD_DRAIN_TIMEOUT", `must be a duration of at least 100ms like 2s or 2400h, got "ten"`},
		{"a drain timeout longer than the pause may be", map[string]string{
			"GIFTD_PARTITION_URLS": l.PartitionURLs[0] + " " + other("a"), "GIFTD_RESHARD_DRAIN_TIMEOUT": "5m"},
			"GIFTD_RESHARD_DRAIN_TIMEOUT", "must be at most 2m0s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.env["GIFTD_PROXY_URL"] = l.ProxyURL
			var out, errOut bytes.Buffer
			err := run(ctx, []string{"giftd", "reshard"}, func(k string) string { return c.env[k] }, &out, &errOut)
			var se *settingsError
			if !errors.As(err, &se) || se.name != c.variable || !strings.Contains(se.problem, c.mentioning) {
				t.Errorf("reshard: %v; want a settings error naming %s, saying %q", err, c.variable, c.mentioning)
			}
			if n, err := partition.Routed(ctx, l.ProxyURL); n != 1 || err != nil {
				t.Errorf("the proxy routes over %d partitions, %v; want 1", n, err)
			}
		})
	}
}

// TestRun_ReshardDrainsAsLongAsItIsTold: with a credit pending and its
// lease held by a consumer that never steps, the pause's drain gives up
// after GIFTD_RESHARD_DRAIN_TIMEOUT, saying so, and the run fails with the
// fences lifted and the proxy not switched; once the credit has moved, the
// run again switches.
func TestRun_ReshardDrainsAsLongAsItIsTold(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 1)
	old, err := pgx.Connect(ctx, l.PartitionURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close(ctx)
	for _, q := range []string{
		`INSERT INTO events (type, data) VALUES ('gift.debited', '{"user_id": "u1", "settled": true, "earnings": 5}')`,
		`UPDATE credit_cursor SET lease_owner = 'gone', lease_until = now() + interval '1 hour'`} {
		if _, err := old.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"GIFTD_PROXY_URL": l.ProxyURL, "GIFTD_PARTITION_URLS": l.PartitionURLs[0] + " " + pgtest.EmptyDatabase(t),
		"GIFTD_RESHARD_DRAIN_TIMEOUT": "150ms"}
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"giftd", "reshard"}, func(k string) string { return env[k] }, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "wait for the credit consumer") || !strings.Contains(err.Error(), "150ms at most") {
		t.Fatalf("reshard with a credit no consumer moves: %v; want the drain giving up after 150ms", err)
	}
	var fences int
	if err := old.QueryRow(ctx, `SELECT count(*) FROM giftd_reshard_fence`).Scan(&fences); err != nil || fences != 0 {
		t.Errorf("fences left on partition 0: %d, %v; want 0", fences, err)
	}
	if n, err := partition.Routed(ctx, l.ProxyURL); n != 1 || err != nil {
		t.Errorf("the proxy routes over %d partitions, %v; want 1", n, err)
	}
	// The credit moved (as a consumer would have), the run again goes on.
	if _, err := old.Exec(ctx, `UPDATE credit_cursor SET position = (SELECT max(position) FROM events)`); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(ctx, []string{"giftd", "reshard"}, func(k string) string { return env[k] }, &out, &errOut); err != nil {
		t.Fatalf("reshard again once the credit moved: %v", err)
	}
	if n, err := partition.Routed(ctx, l.ProxyURL); n != 2 || err != nil {
		t.Errorf("the proxy routes over %d partitions after the run again, %v; want 2", n, err)
	}
}

// TestRun_ServeCarriesOnThroughAReshard doubles a cluster of 2 under a
// running giftd serve, with LinkV-like clients posting debits and retrying
// every 500 with the same request: no restart, every acknowledged debit
// once on its user's partition of 4, wallets right, giftd audit clean.
func TestRun_ServeCarriesOnThroughAReshard(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	newURLs := []string{pgtest.EmptyDatabase(t), pgtest.EmptyDatabase(t)}
	srv := startServe(t, map[string]string{
		"DATABASE_URL":         "postgres://unused@127.0.0.1:1/unused",
		"GIFTD_PROXY_URL":      l.ProxyURL,
		"GIFTD_PARTITION_URLS": strings.Join(l.PartitionURLs, " "),
		"GIFTD_BATCH_WINDOW":   "1ms",
		"GIFTD_EARNINGS":       "off",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	users := ofEachPartition("viewer", 4, 2)
	for _, u := range users {
		topUpWallet(t, srv.admin, u, 1_000_000)
	}
	sentTo, acked := debitThroughAReshard(ctx, t, srv, l, newURLs, false, users, func(id, user string, _ int) map[string]string {
		return debitFields(id, user, 1, time.Now().Add(time.Hour).Unix(), e2eSecret)
	})
	// No batch may have failed the check of its wallets' write (main
	// migration 11): under the row locks it cannot fire.
	for _, line := range strings.Split(srv.logs.String(), "\n") {
		if strings.Contains(line, "SQLSTATE GD005") {
			t.Errorf("a debit batch failed its wallet check: %s", line)
		}
	}

	// serve learnt the new count, but has URLs of the 2 it started with
	// only: the alert GiftdPartitionsNotConnected reads both gauges.
	metrics := scrape(t, srv.admin)
	for _, want := range []string{"\ngiftd_partitions 4\n", "\ngiftd_partitions_connected 2\n"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics after the reshard lacks %q", strings.TrimSpace(want))
		}
	}
	// A configuration change would miss partitions 2 and 3: refused, and
	// written nowhere.
	code, m := adminCall(t, srv.admin, http.MethodPost, "/admin/v1/gifts/linkv", e2eToken,
		`{"gift_id":"rose","name":"Rose","price":10,"share_bp":5000}`)
	if e, _ := m["error"].(map[string]any); code != http.StatusServiceUnavailable || e["code"] != "partitions_not_connected" ||
		!strings.Contains(fmt.Sprint(e["message"]), "routes over 4 partitions, this giftd uses 2") {
		t.Errorf("a gift created with 2 partitions of 4 connected: %d %v; want 503 partitions_not_connected naming 4 and 2", code, m)
	}
	after := append(append([]string{}, l.PartitionURLs...), newURLs...)
	if n := giftOnEachPartition(ctx, t, after, "rose"); n != [4]int{} {
		t.Errorf("the refused gift is on the partitions %v times; want on none", n)
	}

	perUser := map[string]int64{}
	for id, u := range sentTo {
		if acked[id] {
			perUser[u]++
		}
	}
	debitsPlaced(t, after, sentTo, func(id string) bool { return acked[id] })
	for _, u := range users {
		code, m := adminCall(t, srv.admin, http.MethodGet, "/admin/v1/wallets/"+u, e2eToken, "")
		if want := float64(1_000_000 - perUser[u]); code != http.StatusOK || m["gold"] != want {
			t.Errorf("wallet of %s: %d %v; want %v gold", u, code, m, want)
			logEntryChain(ctx, t, after, u)
		}
	}
	auditCommand(ctx, t, l.ProxyURL, after)
}

// readFeedPartitioned reads the admin pull feed from cursor after to its end, adding
// each event's id to seen (an id seen before is an error), and returns the
// cursor reached.
func readFeedPartitioned(t *testing.T, admin, after string, seen map[string]bool) string {
	t.Helper()
	for {
		code, m := adminCall(t, admin, http.MethodGet, "/admin/v1/events?limit=500&wait=1&after="+after, e2eToken, "")
		events, _ := m["events"].([]any)
		if code != http.StatusOK {
			t.Fatalf("events after %s: %d %v", after, code, m)
		}
		if len(events) == 0 {
			return after
		}
		for _, e := range events {
			ev, _ := e.(map[string]any)
			id := fmt.Sprint(ev["id"])
			if seen[id] {
				t.Errorf("event %s (partition %v, position %v) read again after %s", id, ev["partition"], ev["position"], after)
			}
			seen[id] = true
		}
		after = fmt.Sprint(m["next_after"])
	}
}

// auditCommand runs giftd audit of the cluster of proxyURL and partitionURLs.
func auditCommand(ctx context.Context, t *testing.T, proxyURL string, partitionURLs []string) {
	t.Helper()
	env := map[string]string{"GIFTD_PROXY_URL": proxyURL, "GIFTD_PARTITION_URLS": strings.Join(partitionURLs, " ")}
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"giftd", "audit"}, func(k string) string { return env[k] }, &out, &errOut); err != nil {
		t.Errorf("audit after the resharding: %v\n%s%s", err, out.String(), errOut.String())
	}
}

// ofEachPartition returns perPartition users named prefix-<i> placed on
// each partition of n.
func ofEachPartition(prefix string, n, perPartition int) []string {
	var users []string
	count := make([]int, n)
	for i := 0; len(users) < n*perPartition; i++ {
		u := fmt.Sprintf("%s-%d", prefix, i)
		if p := partition.For(u, n); count[p] < perPartition {
			count[p]++
			users = append(users, u)
		}
	}
	return users
}

// giftOnEachPartition counts LinkV catalogue gift giftID on each partition
// of urls (4).
func giftOnEachPartition(ctx context.Context, t *testing.T, urls []string, giftID string) (n [4]int) {
	t.Helper()
	for p, u := range urls {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM gift_catalogue WHERE platform = 'linkv' AND gift_id = $1`, giftID).Scan(&n[p]); err != nil {
			t.Error(err)
		}
		conn.Close(ctx)
	}
	return n
}

// TestRun_ServeGrowsOntoTheNewPartitions doubles a cluster of 2 under a
// giftd serve started with the URLs of all 4 partitions, the 2 new ones
// empty databases then (giftd reshard given the same GIFTD_PARTITION_URLS),
// while gifts (earnings on, half to the receiver)
// cross between partitions: serve uses the 2 the proxy routes over, and
// without a restart grows onto the new ones once the proxy routes over
// them. The credit consumer moves the credits to receivers on the new
// partitions and from their senders there, a catalogue change reaches all
// 4, the admin audit reads 4, giftd_partitions_connected becomes 4.
func TestRun_ServeGrowsOntoTheNewPartitions(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	newURLs := []string{pgtest.EmptyDatabase(t), pgtest.EmptyDatabase(t)}
	after := append(append([]string{}, l.PartitionURLs...), newURLs...)
	srv := startServe(t, map[string]string{
		"DATABASE_URL":           "postgres://unused@127.0.0.1:1/unused",
		"GIFTD_PROXY_URL":        l.ProxyURL,
		"GIFTD_PARTITION_URLS":   strings.Join(after, " "),
		"GIFTD_BATCH_WINDOW":     "1ms",
		"GIFTD_DEFAULT_SHARE_BP": "5000",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	metrics := scrape(t, srv.admin)
	for _, want := range []string{"\ngiftd_partitions 2\n", "\ngiftd_partitions_connected 2\n"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics before the reshard lacks %q", strings.TrimSpace(want))
		}
	}
	users := ofEachPartition("viewer", 4, 2)
	receivers := ofEachPartition("host", 4, 1) // receivers[i] on partition i of 4
	for _, u := range users {
		topUpWallet(t, srv.admin, u, 1_000_000)
	}
	// The pull feed read to its end before: its cursor has 2 positions.
	seen := map[string]bool{}
	cursor := "0"
	for len(seen) < len(users) && ctx.Err() == nil {
		cursor = readFeedPartitioned(t, srv.admin, cursor, seen)
	}
	if strings.Count(cursor, ",") != 1 || len(seen) != len(users) {
		t.Fatalf("the feed before the reshard: cursor %q, %d events; want 2 positions, one event per top-up", cursor, len(seen))
	}
	receiverOf := sync.Map{} // request id -> receiver
	sentTo, acked := debitThroughAReshard(ctx, t, srv, l, newURLs, true, users, func(id, user string, k int) map[string]string {
		f := debitFields(id, user, 2, time.Now().Add(time.Hour).Unix(), e2eSecret)
		r := receivers[k%len(receivers)]
		receiverOf.Store(id, r)
		f["reason"] = fmt.Sprintf(`{"gift_id":"7","send_num":1,"resource_id":"room","vtype":"1","receiver_id":%q}`, r)
		delete(f, "sign")
		f["sign"] = linkv.Sign(f, e2eSecret)
		return f
	})
	for _, line := range strings.Split(srv.logs.String(), "\n") {
		if strings.Contains(line, "SQLSTATE GD005") {
			t.Errorf("a debit batch failed its wallet check: %s", line)
		}
	}

	// Without a restart: the new partitions in use.
	for !strings.Contains(scrape(t, srv.admin), "\ngiftd_partitions_connected 4\n") {
		select {
		case <-ctx.Done():
			t.Fatalf("giftd_partitions_connected never 4:\n%s", srv.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !strings.Contains(scrape(t, srv.admin), "\ngiftd_partitions 4\n") {
		t.Errorf("/metrics after the reshard lacks giftd_partitions 4")
	}
	// Every gift's half in its receiver's account on the receiver's
	// partition of 4: the consumer moved the credits to and from the new
	// partitions.
	earned := map[string]int64{}
	for id := range sentTo {
		if !acked[id] {
			t.Errorf("debit %s never acknowledged", id)
		}
		r, _ := receiverOf.Load(id)
		earned[r.(string)]++
	}
	for _, r := range receivers {
		p := partition.For(r, 4)
		conn, err := pgx.Connect(ctx, after[p])
		if err != nil {
			t.Fatal(err)
		}
		for {
			var balance int64
			err := conn.QueryRow(ctx, `SELECT balance FROM earnings_accounts WHERE receiver_id = $1`, r).Scan(&balance)
			if err == nil && balance == earned[r] {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("earnings of %s on partition %d: %d, %v; want %d", r, p, balance, err, earned[r])
			case <-time.After(50 * time.Millisecond):
			}
		}
		conn.Close(ctx)
	}
	// A catalogue change reaches every partition.
	if code, m := adminCall(t, srv.admin, http.MethodPost, "/admin/v1/gifts/linkv", e2eToken,
		`{"gift_id":"rose","name":"Rose","price":10,"share_bp":5000}`); code != http.StatusCreated {
		t.Errorf("create a gift after the reshard: %d %v; want 201", code, m)
	}
	if n := giftOnEachPartition(ctx, t, after, "rose"); n != [4]int{1, 1, 1, 1} {
		t.Errorf("the gift is on the partitions %v times; want once on each", n)
	}
	// The admin audit reads the 4 (once the last credits' second legs are
	// in).
	for {
		code, m := adminCall(t, srv.admin, http.MethodGet, "/admin/v1/audit", e2eToken, "")
		parts, _ := m["partitions"].([]any)
		credits, _ := m["credits"].(map[string]any)
		if code == http.StatusOK && m["ok"] == true && len(parts) == 4 && credits["in_flight_gold"] == float64(0) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("admin audit after the reshard: %d, ok %v, %d partitions, credits %v; want 200, ok, 4, none in flight",
				code, m["ok"], len(parts), credits)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// The cursor of 2 goes on over the 4: the new partitions from their old
	// one's positions, so that no event read before comes again (the moved
	// users' top-ups are on the new partitions now, with their positions).
	before := len(seen)
	for len(seen)-before < len(sentTo) && ctx.Err() == nil {
		cursor = readFeedPartitioned(t, srv.admin, cursor, seen)
	}
	if strings.Count(cursor, ",") != 3 || len(seen)-before < len(sentTo) {
		t.Errorf("the feed after the reshard: cursor %q, %d events more; want 4 positions, at least %d events", cursor, len(seen)-before, len(sentTo))
	}
	auditCommand(ctx, t, l.ProxyURL, after)
}

// TestRun_ServeRefusesFewerPartitionURLsThanTheProxyRoutes: serve given 1
// URL for a proxy routing over 2 partitions does not start, and says why.
func TestRun_ServeRefusesFewerPartitionURLsThanTheProxyRoutes(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	env := map[string]string{"DATABASE_URL": "postgres://unused@127.0.0.1:1/unused", "GIFTD_PROXY_URL": l.ProxyURL,
		"GIFTD_PARTITION_URLS": l.PartitionURLs[0], "GIFTD_HTTP_ADDR": "127.0.0.1:0", "GIFTD_ADMIN_ADDR": "127.0.0.1:0",
		"GIFTD_ADMIN_TOKEN": e2eToken, "GIFTD_LINKV_APPS": "app1:" + e2eSecret}
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"giftd", "serve"}, func(k string) string { return env[k] }, &out, &errOut)
	var se *settingsError
	if !errors.As(err, &se) || se.name != "GIFTD_PARTITION_URLS" || !strings.Contains(se.problem, "1 URLs, but the proxy routes over 2 partitions") {
		t.Errorf("serve with 1 URL of 2 partitions: %v; want a settings error naming GIFTD_PARTITION_URLS and both counts", err)
	}
}

// debitThroughAReshard runs giftd reshard 2 -> 4 (l onto newURLs; with
// oneVariable, given all 4 in GIFTD_PARTITION_URLS, otherwise the 2 new ones
// in GIFTD_NEW_PARTITION_URLS) under the serve srv while a client per user posts LinkV debits (fields of the
// request id, the user and its k-th debit), each retried after a 500 with
// the same request until answered 200: 20 acknowledged per user before,
// 20 after. It returns the request ids sent (id -> user) and acknowledged;
// at the end every debit sent is acknowledged.
func debitThroughAReshard(ctx context.Context, t *testing.T, srv *serving, l partition.Layout, newURLs []string, oneVariable bool, users []string,
	fields func(id, user string, k int) map[string]string) (sentTo map[string]string, acked map[string]bool) {
	t.Helper()
	post := func(f map[string]string) (int, error) {
		form := url.Values{}
		for k, v := range f {
			form.Set(k, v)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+srv.public+"/linkv/debit", strings.NewReader(form.Encode()))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body) //nolint:errcheck // only the status counts
		return resp.StatusCode, nil
	}
	acks := make(chan string, 1<<16) // the user of each acknowledged debit
	stop := make(chan struct{})
	var mu sync.Mutex
	retried := 0
	sentTo, acked = map[string]string{}, map[string]bool{}
	var wg sync.WaitGroup
	for g, u := range users {
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("g%d-%d", g, k)
				f := fields(id, u, k)
				mu.Lock()
				sentTo[id] = u
				mu.Unlock()
				for { // LinkV: a 500 again with the same request
					code, err := post(f)
					if err != nil {
						t.Errorf("debit %s: %v", id, err)
						return
					}
					if code == http.StatusOK {
						mu.Lock()
						acked[id] = true
						mu.Unlock()
						acks <- u
						break
					}
					if code != http.StatusInternalServerError {
						t.Errorf("debit %s: %d; want 200, or 500 to retry", id, code)
						return
					}
					mu.Lock()
					retried++
					mu.Unlock()
				}
			}
		})
	}
	waitAcks := func(n int) {
		t.Helper()
		seen := map[string]int{}
		for left := len(users); left > 0; {
			select {
			case u := <-acks:
				if seen[u]++; seen[u] == n {
					left--
				}
			case <-ctx.Done():
				t.Fatalf("waiting for %d debits of every user: %v", n, ctx.Err())
			}
		}
	}
	waitAcks(20)
	env := map[string]string{"GIFTD_PROXY_URL": l.ProxyURL, "GIFTD_PARTITION_URLS": strings.Join(l.PartitionURLs, " "),
		"GIFTD_NEW_PARTITION_URLS": strings.Join(newURLs, " ")}
	if oneVariable {
		env = map[string]string{"GIFTD_PROXY_URL": l.ProxyURL, "GIFTD_PARTITION_URLS": strings.Join(append(append([]string{}, l.PartitionURLs...), newURLs...), " ")}
	}
	getenv := func(k string) string { return env[k] }
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"giftd", "reshard"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("reshard: %v\n%s", err, errOut.String())
	}
	// Only debits answered after the reshard count: those queued while it
	// ran would otherwise satisfy the wait before any debit met the new
	// routing.
	for drained := false; !drained; {
		select {
		case <-acks:
		default:
			drained = true
		}
	}
	waitAcks(20)
	close(stop)
	go func() { wg.Wait(); close(acks) }()
	for range acks {
	}
	t.Logf("%s%d attempts answered 500 and retried", out.String(), retried)
	return sentTo, acked
}

// logEntryChain logs, on every partition, the entries of user whose
// balance_after does not follow from the entry before theirs and the last
// balance_after: where a wallet and its entries parted.
func logEntryChain(ctx context.Context, t *testing.T, partitions []string, user string) {
	t.Helper()
	for p, u := range partitions {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Error(err)
			continue
		}
		rows, err := conn.Query(ctx, `
			SELECT id, ref, amount, balance_after, created_at, lag(balance_after) OVER (ORDER BY id)
			FROM ledger_entries WHERE user_id = $1 ORDER BY id`, user)
		if err != nil {
			t.Error(err)
			conn.Close(ctx)
			continue
		}
		var last *int64
		for rows.Next() {
			var id, amount, balance int64
			var ref string
			var at time.Time
			var prev *int64
			if err := rows.Scan(&id, &ref, &amount, &balance, &at, &prev); err != nil {
				t.Error(err)
				break
			}
			if prev != nil && *prev+amount != balance {
				t.Logf("partition %d, %s: entry %d (%s, %d) has balance_after %d after %d, at %s",
					p, user, id, ref, amount, balance, *prev, at.Format(time.RFC3339Nano))
			}
			last = &balance
		}
		rows.Close()
		if last != nil {
			t.Logf("partition %d, %s: last balance_after %d", p, user, *last)
		}
		conn.Close(ctx)
	}
}
