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
	var users []string // 2 of each partition of 4
	for i := 0; len(users) < 8; i++ {
		u := fmt.Sprintf("viewer-%d", i)
		n := 0
		for _, v := range users {
			if partition.For(v, 4) == partition.For(u, 4) {
				n++
			}
		}
		if n < 2 {
			users = append(users, u)
		}
	}
	for _, u := range users {
		topUpWallet(t, srv.admin, u, 1_000_000)
	}
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
	sentTo, acked, retried := map[string]string{}, map[string]bool{}, 0
	var wg sync.WaitGroup
	expires := time.Now().Add(time.Hour).Unix()
	for g, u := range users {
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("g%d-%d", g, k)
				f := debitFields(id, u, 1, expires, e2eSecret)
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
	// No batch may have failed the check of its wallets' write (main
	// migration 11): under the row locks it cannot fire.
	for _, line := range strings.Split(srv.logs.String(), "\n") {
		if strings.Contains(line, "SQLSTATE GD005") {
			t.Errorf("a debit batch failed its wallet check: %s", line)
		}
	}

	// serve learnt the new count but still connects to the 2 it started
	// with: the alert GiftdPartitionsNotConnected reads both.
	metrics := scrape(t, srv.admin)
	for _, want := range []string{"\ngiftd_partitions 4\n", "\ngiftd_partitions_connected 2\n"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics after the reshard lacks %q", strings.TrimSpace(want))
		}
	}

	after := append(append([]string{}, l.PartitionURLs...), newURLs...)
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
	env["GIFTD_PARTITION_URLS"] = strings.Join(after, " ")
	out.Reset()
	if err := run(ctx, []string{"giftd", "audit"}, getenv, &out, &errOut); err != nil {
		t.Errorf("audit after the resharding: %v\n%s", err, out.String())
	}
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
