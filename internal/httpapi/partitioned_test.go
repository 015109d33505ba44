package httpapi_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/httpapi"
	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// newPartitionedEnv is newEnv on a partitioned giftd (a proxy and two
// partitions, pgtest.Partitioned), with the direct stores of each partition
// that serve gives the audit, and leaderboards cached for cache.
func newPartitionedEnv(t *testing.T, cache time.Duration, opts ...ledger.Option) (*env, partition.Layout) {
	t.Helper()
	l := pgtest.Partitioned(t, 2)
	store, err := ledger.Open(context.Background(), l.ProxyURL, append([]ledger.Option{ledger.WithPartitions(2, partition.For)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	var parts []*ledger.Store
	for _, u := range l.PartitionURLs {
		p, err := ledger.Open(context.Background(), u, ledger.WithBatching(ledger.Batching{MaxBatch: 1}), ledger.WithMaxConns(3))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		parts = append(parts, p)
	}
	reg := prometheus.NewRegistry()
	deps := httpapi.Deps{Store: store, AdminToken: token, Metrics: httpapi.NewMetrics(reg), Gatherer: reg,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), LeaderboardCache: cache,
		Partitions: func() []*ledger.Store { return parts }}
	e := &env{store: store, reg: reg, admin: httptest.NewServer(httpapi.NewAdmin(deps)), public: httptest.NewServer(httpapi.NewPublic(deps))}
	t.Cleanup(e.admin.Close)
	t.Cleanup(e.public.Close)
	return e, l
}

// sansIDs drops from an answer what each database numbers or times for
// itself: times, gift entry ids, cursors (kept as present or not).
func sansIDs(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, v := range x {
			switch k {
			case "from", "to", "created_at", "updated_at", "gift_entry", "checked_at":
				// Times and ids of each database.
			case "next_before":
				out[k] = v != nil
			default:
				out[k] = sansIDs(v)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, v := range x {
			out[i] = sansIDs(v)
		}
		return out
	}
	return v
}

// TestReports_PartitionedAnswersAsOneServer sends the same gifts through
// the debit to giftd on one database and to giftd on two partitions (no
// credit consumer runs: every foreign receiver's earnings stay in transit),
// then the same report, leaderboard, spend and earnings requests to both:
// the answers are the same JSON, less times and ids.
func TestReports_PartitionedAnswersAsOneServer(t *testing.T) {
	shares := ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 4000})
	one := newEnv(t, shares)
	parted, _ := newPartitionedEnv(t, 0, shares)
	users := make([][]string, 2)
	for i := 0; len(users[0]) < 4 || len(users[1]) < 4; i++ {
		u := fmt.Sprintf("fan-%d", i)
		users[partition.For(u, 2)] = append(users[partition.For(u, 2)], u)
	}
	senders := append(append([]string{}, users[0]...), users[1]...)
	receivers := []string{users[0][3], users[1][3], "=host"}
	for i := range 40 {
		req := fmt.Sprintf("g%02d", i)
		sender, receiver := senders[i%6], receivers[i%3]
		room, gift := []string{"r1", "+r2"}[i%2], []string{"rose", "car"}[i%5%2]
		gold := int64(10 * (1 + i%4))
		for _, e := range []*env{one, parted} {
			giveGift(t, e, req, sender, receiver, room, gift, gold)
		}
	}
	paths := []string{
		"/admin/v1/reports/gifts?group=receiver", "/admin/v1/reports/gifts?group=sender&limit=2",
		"/admin/v1/reports/gifts?group=sender&limit=2&offset=2", "/admin/v1/reports/gifts?group=room",
		"/admin/v1/reports/gifts?group=gift&platform=linkv", "/admin/v1/reports/gifts?group=gift&app_id=other",
		"/admin/v1/reports/gifts?group=receiver&format=csv", "/admin/v1/reports/gifts?group=sender&limit=3&format=csv",
		"/admin/v1/rooms/linkv/r1/leaderboard/senders", "/admin/v1/rooms/linkv/r1/leaderboard/senders?limit=2&window=1h",
		"/admin/v1/rooms/linkv/%2Br2/leaderboard/receivers", "/admin/v1/rooms/linkv/r1/leaderboard/receivers?limit=1",
		"/admin/v1/rooms/linkv/r1/leaderboard/senders?format=csv&display=true",
		"/admin/v1/rooms/linkv/%2Br2/leaderboard/receivers?format=csv",
		"/admin/v1/rooms/polyv/r1/leaderboard/senders",
	}
	for _, u := range append(senders, "nobody") {
		paths = append(paths, "/admin/v1/senders/"+url.PathEscape(u)+"/spend")
	}
	period := "?from=" + time.Now().UTC().Add(-24*time.Hour).Format(time.DateOnly) +
		"&to=" + time.Now().UTC().Add(24*time.Hour).Format(time.DateOnly)
	for _, u := range append(receivers, "nobody") {
		u = url.PathEscape(u)
		paths = append(paths, "/admin/v1/earnings/"+u, "/admin/v1/earnings/"+u+"/report",
			"/admin/v1/earnings/"+u+"/report"+period+"&format=csv", "/admin/v1/earnings/"+u+"/ledger?limit=100")
	}
	for _, path := range paths {
		if strings.Contains(path, "csv") {
			_, want := getCSV(t, one, path)
			if _, got := getCSV(t, parted, path); !reflect.DeepEqual(got, want) {
				t.Errorf("%s:\n%q\none server:\n%q", path, got, want)
			}
			continue
		}
		want, got := one.adm(t, http.MethodGet, path, ""), parted.adm(t, http.MethodGet, path, "")
		if got.code != want.code {
			t.Errorf("%s: %d %s; one server: %d %s", path, got.code, got.raw, want.code, want.raw)
			continue
		}
		if !reflect.DeepEqual(sansIDs(got.m), sansIDs(want.m)) {
			t.Errorf("%s:\n%s\none server:\n%s", path, got.raw, want.raw)
		}
	}
	// A receiver's ledger in pages of 3, put end to end, is the one page.
	for _, r := range receivers {
		base := "/admin/v1/earnings/" + url.PathEscape(r) + "/ledger"
		whole := parted.adm(t, http.MethodGet, base+"?limit=100", "")
		var paged []any
		for path := base + "?limit=3"; ; {
			a := parted.adm(t, http.MethodGet, path, "")
			entries, _ := a.m["entries"].([]any)
			paged = append(paged, entries...)
			next, ok := a.m["next_before"].(string)
			if !ok || len(paged) > 100 {
				break
			}
			path = base + "?limit=3&before=" + url.QueryEscape(next)
		}
		if !reflect.DeepEqual(paged, whole.m["entries"]) {
			t.Errorf("%s in pages of 3: %d entries, whole %s", base, len(paged), whole.raw)
		}
	}
}

// TestReports_PartitionDownAnswers503AndTheCacheStillServes: with a
// partition down, every read of all partitions answers a retryable 503
// naming neither the partition's address nor its database, a read of one
// user on the other partition answers, and a leaderboard read before the
// partition went down is answered from the cache.
func TestReports_PartitionDownAnswers503AndTheCacheStillServes(t *testing.T) {
	e, l := newPartitionedEnv(t, time.Hour)
	users := make([][]string, 2)
	for i := 0; len(users[0]) < 1 || len(users[1]) < 1; i++ {
		u := fmt.Sprintf("fan-%d", i)
		users[partition.For(u, 2)] = append(users[partition.For(u, 2)], u)
	}
	giveGift(t, e, "g1", users[0][0], "host", "r1", "rose", 10)
	giveGift(t, e, "g2", users[1][0], "host", "r1", "rose", 20)
	cached := e.adm(t, http.MethodGet, "/admin/v1/rooms/linkv/r1/leaderboard/senders", "")
	if senders, _ := cached.m["senders"].([]any); cached.code != 200 || len(senders) != 2 {
		t.Fatalf("leaderboard: %d %s", cached.code, cached.raw)
	}
	pgtest.StopPartition(t, l.PartitionURLs[1])
	defer pgtest.StartPartition(t, l.PartitionURLs[1])
	for _, path := range []string{
		"/admin/v1/reports/gifts?group=sender", "/admin/v1/rooms/linkv/r1/leaderboard/receivers",
		"/admin/v1/rooms/linkv/r1/leaderboard/senders?limit=5", "/admin/v1/earnings/host",
		"/admin/v1/earnings/host/report", "/admin/v1/earnings/host/ledger", "/admin/v1/audit",
		"/admin/v1/senders/" + users[1][0] + "/spend",
	} {
		a := e.adm(t, http.MethodGet, path, "")
		if a.code != http.StatusServiceUnavailable || a.errCode() != "partition_unavailable" || a.hdr.Get("Retry-After") == "" {
			t.Errorf("%s with partition 1 down: %d %s; want 503 partition_unavailable with Retry-After", path, a.code, a.raw)
		}
		u, _ := url.Parse(l.PartitionURLs[1])
		if strings.Contains(a.raw, u.Port()) || strings.Contains(a.raw, strings.TrimPrefix(u.Path, "/")) {
			t.Errorf("%s: the answer names the partition: %s", path, a.raw)
		}
	}
	if a := e.adm(t, http.MethodGet, "/admin/v1/senders/"+users[0][0]+"/spend", ""); a.code != 200 || a.m["gold"] != float64(10) {
		t.Errorf("spend of a user of partition 0: %d %s", a.code, a.raw)
	}
	if a := e.adm(t, http.MethodGet, "/admin/v1/rooms/linkv/r1/leaderboard/senders", ""); a.code != 200 || a.raw != cached.raw {
		t.Errorf("cached leaderboard: %d %s; want %s", a.code, a.raw, cached.raw)
	}
	pgtest.StartPartition(t, l.PartitionURLs[1])
	// A failed read is not cached: the partition back, it answers.
	if a := e.adm(t, http.MethodGet, "/admin/v1/rooms/linkv/r1/leaderboard/senders?limit=5", ""); a.code != 200 {
		t.Errorf("leaderboard after the partition is back: %d %s", a.code, a.raw)
	}
	if a := e.adm(t, http.MethodGet, "/admin/v1/audit", ""); a.code != 200 || a.m["ok"] != true || a.m["wallets"] != float64(2) ||
		!strings.Contains(a.raw, `"keys":{"ok":true,"reused":0,"keys":[]}`) {
		t.Errorf("audit after the partition is back: %d %s", a.code, a.raw)
	}
	// A request id debited for a user of each partition: the audit says so.
	for i, u := range []string{users[0][0], users[1][0]} {
		if _, err := e.store.TopUp(context.Background(), ledger.TopUp{UserID: u, Amount: 5, Key: fmt.Sprintf("dup-%d", i)}); err != nil {
			t.Fatal(err)
		}
		res, err := e.store.Debit(context.Background(), ledger.Debit{
			Key: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: "dup"}, UserID: u, Gold: 5,
			Fingerprint: sha256.Sum256([]byte(u)), ExpiresAt: time.Now().Add(time.Hour)})
		if err != nil || res.Status != ledger.Debited {
			t.Fatalf("debit dup of %s: %+v, %v", u, res, err)
		}
	}
	if a := e.adm(t, http.MethodGet, "/admin/v1/audit", ""); a.code != 200 || a.m["ok"] != false ||
		!strings.Contains(a.raw, `"keys":{"ok":false,"reused":1,"keys":["debit key linkv/app/dup on partitions 0, 1"]}`) {
		t.Errorf("audit with a request id on both partitions: %d %s", a.code, a.raw)
	}
}
