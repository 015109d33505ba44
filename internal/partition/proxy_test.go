package partition_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
	"giftd/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func connect(t *testing.T, databaseURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// placementIDs are user ids of every kind: ASCII, non-ASCII in one to four
// UTF-8 bytes, combining marks, the empty id, a space, long ones, and random
// ones.
func placementIDs() []string {
	ids := []string{"", " ", "a", "A", "demo-user", "u1", "u2", "user-0001", "用户", "ユーザー", "пользователь",
		"é", "e\u0301", "🎁", "👩‍👩‍👧", "\u00a0", "\t\n", "tab\there", "quote'\"\\", "%_*",
		strings.Repeat("x", 10000), strings.Repeat("礼", 3000), strings.Repeat("🎁", 1000)}
	r := rand.New(rand.NewPCG(20, 20))
	for range 2000 {
		n := r.IntN(40)
		var b strings.Builder
		for range n {
			var c rune
			switch r.IntN(4) {
			case 0:
				c = rune(0x20 + r.IntN(0x5f))
			case 1:
				c = rune(0x80 + r.IntN(0x780))
			case 2:
				c = rune(0x800 + r.IntN(0xd000))
			default:
				c = rune(0x10000 + r.IntN(0x100000))
			}
			if !utf8.ValidRune(c) {
				c = 'z'
			}
			b.WriteRune(c)
		}
		ids = append(ids, b.String())
	}
	return ids
}

func TestPlacement_GoAgreesWithSQL(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	for _, db := range []struct{ name, url string }{{"proxy", l.ProxyURL}, {"partition 1", l.PartitionURLs[1]}} {
		t.Run(db.name, func(t *testing.T) { placementAgrees(t, db.url) })
	}
}

// TestPlacement_InlinedOnAPartition plans a partition's check of a batch's
// users (as giftd_check_users makes it) and finds giftd_placement's body in
// the plan, not a call of it: PostgreSQL inlines it (partition migration
// 16; as migration 3 declared it, IMMUTABLE around a STABLE convert_to, it
// was called once per user).
func TestPlacement_InlinedOnAPartition(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	var plan string
	if err := connect(t, l.PartitionURLs[1]).QueryRow(context.Background(),
		`EXPLAIN (VERBOSE, FORMAT JSON) SELECT count(*) FROM unnest($1::text[]) AS u WHERE giftd_placement(u) & 1 <> 1`,
		[]string{"u1", "u2"}).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plan, "giftd_placement") || !strings.Contains(plan, "sha256") {
		t.Errorf("giftd_placement is not inlined on a partition:\n%s", plan)
	}
}

// placementAgrees compares giftd_placement on the database of databaseURL
// (the proxy's, or its copy on a partition, partition migration 3, which
// checks a debit batch's users) with partition.Placement.
func placementAgrees(t *testing.T, databaseURL string) {
	ids := placementIDs()
	rows, err := connect(t, databaseURL).Query(context.Background(),
		`SELECT giftd_placement(id) FROM unnest($1::text[]) WITH ORDINALITY AS t (id, n) ORDER BY n`, ids)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ids) {
		t.Fatalf("%d placements for %d ids", len(got), len(ids))
	}
	bad := 0
	for i, id := range ids {
		if want := partition.Placement(id); got[i] != want {
			bad++
			if bad <= 5 {
				t.Errorf("giftd_placement(%q) = %d in SQL, %d in Go", id[:min(len(id), 40)], got[i], want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d ids placed differently", bad, len(ids))
	}
}

// usersOn returns n user ids that partition.For places on partition p of
// parts.
func usersOn(p, parts, n int) []string {
	var ids []string
	for i := 0; len(ids) < n; i++ {
		if id := fmt.Sprintf("user-%d", i); partition.For(id, parts) == p {
			ids = append(ids, id)
		}
	}
	return ids
}

type topUpResult struct {
	EntryID, Balance int64
	Replay           bool
}

func topUpThroughProxy(ctx context.Context, proxy *pgx.Conn, user string, amount int64, key string) (topUpResult, error) {
	var r topUpResult
	err := proxy.QueryRow(ctx, `SELECT entry_id, balance, replay FROM giftd_topup($1, $2, $3, $4)`,
		user, amount, key, "test").Scan(&r.EntryID, &r.Balance, &r.Replay)
	return r, err
}

func TestProxy_TopUpLandsOnThePartitionGoPlacementSays(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	proxy := connect(t, l.ProxyURL)
	parts := []*pgx.Conn{connect(t, l.PartitionURLs[0]), connect(t, l.PartitionURLs[1])}

	for p := range 2 {
		for i, user := range usersOn(p, 2, 3) {
			t.Run(fmt.Sprintf("partition%d/%s", p, user), func(t *testing.T) {
				amount := int64(100*(p+1) + i)
				key := "topup-" + user
				r, err := topUpThroughProxy(ctx, proxy, user, amount, key)
				if err != nil {
					t.Fatal(err)
				}
				if r.Balance != amount || r.Replay {
					t.Errorf("top-up answered balance %d, replay %t; want %d, false", r.Balance, r.Replay, amount)
				}
				for q, conn := range parts {
					var gold, entries, events int64
					err := conn.QueryRow(ctx, `
						SELECT coalesce((SELECT gold FROM wallets WHERE user_id = $1), -1),
						       (SELECT count(*) FROM ledger_entries WHERE user_id = $1 AND kind = 'topup' AND ref = $2),
						       (SELECT count(*) FROM events WHERE type = 'wallet.topped_up' AND data->>'user_id' = $1)`,
						user, key).Scan(&gold, &entries, &events)
					if err != nil {
						t.Fatal(err)
					}
					switch {
					case q == p && (gold != amount || entries != 1 || events != 1):
						t.Errorf("partition %d (Go's placement): gold %d, %d entries, %d events; want %d, 1, 1", q, gold, entries, events, amount)
					case q != p && (gold != -1 || entries != 0 || events != 0):
						t.Errorf("partition %d (not Go's placement) has the user: gold %d, %d entries, %d events", q, gold, entries, events)
					}
				}

				var id string
				var gold int64
				if err := proxy.QueryRow(ctx, `SELECT user_id, gold FROM giftd_wallet($1)`, user).Scan(&id, &gold); err != nil {
					t.Fatalf("look-up through the proxy: %v", err)
				}
				if id != user || gold != amount {
					t.Errorf("look-up through the proxy: %s has %d; want %s with %d", id, gold, user, amount)
				}

				again, err := topUpThroughProxy(ctx, proxy, user, amount, key)
				if err != nil {
					t.Fatal(err)
				}
				if again != (topUpResult{r.EntryID, r.Balance, true}) {
					t.Errorf("the same top-up again answered %+v; want the first one's %+v as a replay", again, r)
				}
				_, err = topUpThroughProxy(ctx, proxy, user, amount+1, key)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
					t.Errorf("the key again with another amount: %v; want a unique violation", err)
				}
			})
		}
	}

	var n int
	if err := proxy.QueryRow(ctx, `SELECT count(*) FROM giftd_wallet('nobody')`).Scan(&n); err != nil || n != 0 {
		t.Errorf("look-up of a user without a wallet: %d rows, %v; want none", n, err)
	}
}

func TestProxy_RunOnAllSumsEveryPartition(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	proxy := connect(t, l.ProxyURL)
	var wantWallets, wantGold int64
	for p := range 2 {
		for i, user := range usersOn(p, 2, 2+p) {
			amount := int64(1000*(p+1) + i)
			if _, err := topUpThroughProxy(ctx, proxy, user, amount, "k-"+user); err != nil {
				t.Fatal(err)
			}
			wantWallets++
			wantGold += amount
		}
	}
	var rows, wallets, gold int64
	err := proxy.QueryRow(ctx, `SELECT count(*), sum(wallets)::bigint, sum(gold)::bigint FROM giftd_wallet_totals()`).
		Scan(&rows, &wallets, &gold)
	if err != nil {
		t.Fatal(err)
	}
	if rows != 2 || wallets != wantWallets || gold != wantGold {
		t.Errorf("RUN ON ALL: %d rows, %d wallets, %d gold; want 2 rows (one per partition), %d wallets, %d gold",
			rows, wallets, gold, wantWallets, wantGold)
	}
	// Each partition's row is its own.
	for p, u := range l.PartitionURLs {
		var n int64
		if err := connect(t, u).QueryRow(ctx, `SELECT count(*) FROM wallets`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != int64(2+p) {
			t.Errorf("partition %d holds %d wallets; want %d", p, n, 2+p)
		}
	}
}

// withPassword is u with the password pw (the test server trusts every
// local connection and never asks for it).
func withPassword(t *testing.T, u, pw string) string {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	parsed.User = url.UserPassword(parsed.User.Username(), pw)
	return parsed.String()
}

func TestProxy_PartitionDownFailsItsUsersOnlyAndNamesNoSecret(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	const secret = "pl-proxy-secret-7f3a"
	var withSecret []string
	for _, u := range l.PartitionURLs {
		withSecret = append(withSecret, withPassword(t, u, secret))
	}
	if err := partition.Register(ctx, l.ProxyURL, withSecret); err != nil {
		t.Fatal(err)
	}
	proxy := connect(t, l.ProxyURL)
	up, down := usersOn(0, 2, 1)[0], usersOn(1, 2, 1)[0]
	for _, user := range []string{up, down} {
		if _, err := topUpThroughProxy(ctx, proxy, user, 10, "first-"+user); err != nil {
			t.Fatalf("before the outage, through the connection strings with a password: %v", err)
		}
	}

	pgtest.StopPartition(t, l.PartitionURLs[1])
	// The first call finds its connection ended, the next cannot connect:
	// both fail, and neither says the password.
	for i := range 2 {
		_, err := topUpThroughProxy(ctx, proxy, down, 10, fmt.Sprintf("down-%d", i))
		if err == nil {
			t.Fatalf("call %d: a top-up for a user of the stopped partition succeeded", i)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			t.Fatalf("call %d: %v; want PostgreSQL's error", i, err)
		}
		whole := strings.Join([]string{err.Error(), pgErr.Message, pgErr.Detail, pgErr.Hint, pgErr.Where, pgErr.InternalQuery}, "\n")
		if strings.Contains(whole, secret) {
			t.Errorf("call %d: the error names the partition's password: %s", i, whole)
		}
		t.Logf("call %d: %v", i, err)
		if _, err := proxy.Exec(ctx, `SELECT 1`); err != nil {
			t.Fatalf("the proxy's session broke with the partition: %v", err)
		}
	}
	if _, err := topUpThroughProxy(ctx, proxy, up, 10, "during-"+up); err != nil {
		t.Errorf("a user of the partition still up: %v", err)
	}
	if _, err := proxy.Exec(ctx, `SELECT * FROM giftd_wallet_totals()`); err == nil {
		t.Errorf("RUN ON ALL with a partition down succeeded")
	}

	pgtest.StartPartition(t, l.PartitionURLs[1])
	r, err := topUpThroughProxy(ctx, proxy, down, 10, "after-"+down)
	if err != nil {
		t.Fatalf("after the partition came back: %v", err)
	}
	if r.Balance != 20 {
		t.Errorf("after the outage the user has %d; want 20 (no failed top-up applied)", r.Balance)
	}
}

func TestRegister_RefusesAnotherPartitionCount(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	four := append(append([]string{}, l.PartitionURLs...), l.PartitionURLs...)
	err := partition.Register(ctx, l.ProxyURL, four)
	if !errors.Is(err, partition.ErrPartitionCountChanged) {
		t.Fatalf("registering 4 partitions over 2: %v; want ErrPartitionCountChanged", err)
	}
	var n int
	if err := connect(t, l.ProxyURL).QueryRow(ctx, `SELECT count(*) FROM plproxy.get_cluster_partitions('giftd')`).Scan(&n); err != nil || n != 2 {
		t.Errorf("after the refusal the proxy has %d partitions (%v); want 2", n, err)
	}
}

func TestMigrate_AgainChangesNothing(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	proxy := connect(t, l.ProxyURL)
	version := func() int {
		var v int
		if err := proxy.QueryRow(ctx, `SELECT plproxy.get_cluster_version('giftd')`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := version()
	if err := partition.Migrate(ctx, l); err != nil {
		t.Fatal(err)
	}
	if after := version(); after != before {
		t.Errorf("cluster version %d → %d: a migration with nothing to do made PL/Proxy reload", before, after)
	}
	vs, err := partition.Versions(l)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint{"main": latest(t, migrations.FS, "."), "partition": latest(t, migrations.PartitionFS, "partition"),
		"proxy": latest(t, migrations.ProxyFS, "proxy")}
	if len(vs) != 5 {
		t.Errorf("%d versions; want 5 (two sets on each of 2 partitions, one on the proxy)", len(vs))
	}
	for _, v := range vs {
		if v.Dirty || v.Version != want[v.Set.String()] {
			t.Errorf("%s %s: %s migrations at version %d (dirty %t)", v.Role, v.Where, v.Set, v.Version, v.Dirty)
		}
	}
}

// TestTopUpFunction_WritesWhatStoreTopUpWrites holds the partition's
// giftd_topup to internal/ledger's Store.TopUp: the same entry and event.
func TestTopUpFunction_WritesWhatStoreTopUpWrites(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	store, err := ledger.Open(ctx, l.PartitionURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	viaGo, err := store.TopUp(ctx, ledger.TopUp{UserID: "same", Amount: 42, Key: "k1", Note: "a note"})
	if err != nil {
		t.Fatal(err)
	}
	other := connect(t, l.PartitionURLs[1])
	var viaSQL topUpResult
	if err := other.QueryRow(ctx, `SELECT entry_id, balance, replay FROM giftd_topup('same', 42, 'k1', 'a note')`).
		Scan(&viaSQL.EntryID, &viaSQL.Balance, &viaSQL.Replay); err != nil {
		t.Fatal(err)
	}
	if viaSQL.Balance != viaGo.Balance || viaSQL.Replay != viaGo.Replay {
		t.Errorf("giftd_topup answered %+v; Store.TopUp %+v", viaSQL, viaGo)
	}
	rows := func(conn *pgx.Conn) string {
		var s string
		err := conn.QueryRow(ctx, `
			SELECT (SELECT jsonb_agg(jsonb_build_object('user_id', user_id, 'kind', kind, 'amount', amount,
			            'balance_after', balance_after, 'platform', platform, 'app_id', app_id, 'ref', ref,
			            'reverses', reverses, 'details', details)) FROM ledger_entries)::text
			    || ' ' || (SELECT jsonb_agg(jsonb_build_object('type', type, 'data', data - 'entry_id')) FROM events)::text
			    || ' ' || (SELECT jsonb_agg(jsonb_build_object('user_id', user_id, 'gold', gold)) FROM wallets)::text`).Scan(&s)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if a, b := rows(connect(t, l.PartitionURLs[0])), rows(other); a != b {
		t.Errorf("Store.TopUp wrote\n%s\ngiftd_topup wrote\n%s", a, b)
	}
}

// latest is the newest version among the up migrations of fsys's folder dir.
func latest(t *testing.T, fsys fs.FS, dir string) uint {
	t.Helper()
	names, err := fs.Glob(fsys, path.Join(dir, "*.up.sql"))
	if err != nil || len(names) == 0 {
		t.Fatalf("migrations in %s: %v, %v", dir, names, err)
	}
	var v uint
	for _, name := range names {
		n, err := strconv.ParseUint(strings.SplitN(path.Base(name), "_", 2)[0], 10, 32)
		if err != nil {
			t.Fatalf("migration %s: %v", name, err)
		}
		v = max(v, uint(n))
	}
	return v
}

// ups is how many up migrations dir has: the numbers may have gaps.
func ups(t *testing.T, fsys fs.FS, dir string) int {
	t.Helper()
	names, err := fs.Glob(fsys, path.Join(dir, "*.up.sql"))
	if err != nil || len(names) == 0 {
		t.Fatalf("migrations in %s: %v, %v", dir, names, err)
	}
	return len(names)
}

// TestMigrations_DownAndUpAgain runs every down migration of the proxy and
// partition sets, then migrates again: the cluster routes as before.
func TestMigrations_DownAndUpAgain(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	proxySet := ledger.WithMigrationSet(ledger.ProxyMigrations())
	for range ups(t, migrations.ProxyFS, "proxy") {
		if err := ledger.MigrateDown(l.ProxyURL, proxySet); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range l.PartitionURLs {
		for range ups(t, migrations.PartitionFS, "partition") {
			if err := ledger.MigrateDown(u, ledger.WithMigrationSet(ledger.PartitionMigrations())); err != nil {
				t.Fatal(err)
			}
		}
	}
	if v, _, err := ledger.MigrationVersion(l.ProxyURL, proxySet); err != nil || v != 0 {
		t.Fatalf("proxy set after every down: version %d, %v; want 0", v, err)
	}
	var left []string
	err := connect(t, l.ProxyURL).QueryRow(ctx, `
		SELECT array(SELECT 'extension ' || extname FROM pg_extension WHERE extname = 'plproxy'
		       UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE proname LIKE 'giftd%' OR proname LIKE 'get_cluster%'
		       UNION ALL SELECT 'relation ' || relname FROM pg_class WHERE relname LIKE 'giftd_%' AND relname NOT LIKE 'giftd_proxy_migrations%')`).Scan(&left)
	if err != nil || len(left) != 0 {
		t.Errorf("after every down the proxy keeps %v (%v); want nothing", left, err)
	}
	if err := partition.Migrate(ctx, l); err != nil {
		t.Fatal(err)
	}
	if _, err := topUpThroughProxy(ctx, connect(t, l.ProxyURL), "u1", 3, "again"); err != nil {
		t.Errorf("top-up after down and up again: %v", err)
	}
}

// registered is the proxy's registration as it stands.
func registered(t *testing.T, proxyURL string) []string {
	t.Helper()
	rows, err := connect(t, proxyURL).Query(context.Background(), `SELECT connstr FROM giftd_partitions ORDER BY partition`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestMigrate_RefusesPartitionsOfAnotherOrderOrCluster(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	other := pgtest.Partitioned(t, 2)
	before := registered(t, l.ProxyURL)
	for name, bad := range map[string]partition.Layout{
		"swapped":           {ProxyURL: l.ProxyURL, PartitionURLs: []string{l.PartitionURLs[1], l.PartitionURLs[0]}},
		"another cluster's": {ProxyURL: l.ProxyURL, PartitionURLs: []string{l.PartitionURLs[0], other.PartitionURLs[1]}},
		"swapped for the proxy only": {ProxyURL: l.ProxyURL, PartitionURLs: l.PartitionURLs,
			ProxyPartitionURLs: []string{l.PartitionURLs[1], l.PartitionURLs[0]}},
	} {
		t.Run(name, func(t *testing.T) {
			err := partition.Migrate(ctx, bad)
			if !errors.Is(err, partition.ErrWrongPartition) {
				t.Fatalf("Migrate: %v; want ErrWrongPartition", err)
			}
			t.Logf("Migrate: %v", err)
			if after := registered(t, l.ProxyURL); !slices.Equal(after, before) {
				t.Errorf("the refused migration changed the registration")
			}
		})
	}
	// The proxy still routes as Go places.
	proxy := connect(t, l.ProxyURL)
	for _, user := range []string{"u1", "u2"} {
		if _, err := topUpThroughProxy(ctx, proxy, user, 1, "after-"+user); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := connect(t, l.PartitionURLs[partition.For(user, 2)]).QueryRow(ctx,
			`SELECT count(*) FROM wallets WHERE user_id = $1`, user).Scan(&n); err != nil || n != 1 {
			t.Errorf("%s is not on partition %d after the refusals (%d, %v)", user, partition.For(user, 2), n, err)
		}
	}
}
