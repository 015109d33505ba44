// Command reportbench loads a database with a month of gifts and measures
// the report and leaderboard routes on it (bench/reports,
// docs/benchmarks.md#reports-and-leaderboards). It is a benchmark tool, not
// part of the server, and writes only to the database it is given, which
// must be a fresh, migrated, throwaway one.
//
//	reportbench -db postgres://… -gifts 10000000 -runs 5 -n 200
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/httpapi"
	"giftd/internal/ledger"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "reportbench:", err)
		os.Exit(1)
	}
}

// shape is the data set: gifts over days, most of them in a few hot rooms
// to a few hot receivers from a few whales.
type shape struct {
	gifts, senders, receivers, rooms, catalogue, hotRooms int
	days                                                  int
	hotShare, reversed                                    float64
}

func run(args []string) error {
	fs := flag.NewFlagSet("reportbench", flag.ContinueOnError)
	db := fs.String("db", "", "database URL (a fresh, migrated, throwaway database)")
	var sh shape
	fs.IntVar(&sh.gifts, "gifts", 10_000_000, "gifts to load (0: load nothing, measure what is there)")
	fs.IntVar(&sh.senders, "senders", 50_000, "senders")
	fs.IntVar(&sh.receivers, "receivers", 5_000, "receivers")
	fs.IntVar(&sh.rooms, "rooms", 2_000, "rooms")
	fs.IntVar(&sh.catalogue, "catalogue", 200, "distinct gifts")
	fs.IntVar(&sh.hotRooms, "hot-rooms", 5, "hot rooms")
	fs.IntVar(&sh.days, "days", 30, "days the gifts span, ending now")
	fs.Float64Var(&sh.hotShare, "hot-share", 0.25, "share of the gifts in the hot rooms")
	fs.Float64Var(&sh.reversed, "reversed", 0.001, "share of the gifts reversed")
	runs := fs.Int("runs", 5, "runs of each measurement (the figures are their medians)")
	n := fs.Int("n", 200, "requests per run")
	budget := fs.Duration("max-load", 45*time.Minute, "give up loading after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *db == "" {
		return errors.New("-db is required")
	}
	ctx := context.Background()
	if sh.gifts > 0 {
		lctx, cancel := context.WithTimeout(ctx, *budget)
		err := load(lctx, *db, sh)
		cancel()
		if err != nil {
			return err
		}
	}
	return measure(ctx, *db, sh, *runs, *n)
}

// Names of the data set: room-0 … are the hot rooms, host-i receives most
// of room-i's gifts, fan-0 is the biggest whale.
func roomName(i int) string   { return fmt.Sprint("room-", i) }
func hostName(i int) string   { return fmt.Sprint("host-", i) }
func senderName(i int) string { return fmt.Sprint("fan-", i) }
func giftName(i int) string   { return fmt.Sprint("gift-", i) }
func platformOf(room int) string {
	if room%10 == 9 {
		return "polyv"
	}
	return "linkv"
}

// skewed picks 0…n-1, low values more often (u^k).
func skewed(r *rand.Rand, n int, k float64) int {
	return min(n-1, int(float64(n)*math.Pow(r.Float64(), k)))
}

// load writes wallets, the senders' debit entries, reversals and the
// gifts' rows with COPY, in time order, with every index in place (as a
// live system would have built them), then VACUUM ANALYZE.
func load(ctx context.Context, url string, sh shape) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	// The foreign keys are checked by the real debits; here they would
	// cost a look-up per row. (The loader's connection only.)
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		return fmt.Errorf("session_replication_role (needs a superuser): %w", err)
	}
	var existing int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM gift_entries`).Scan(&existing); err != nil {
		return err
	}
	if existing > 0 {
		return fmt.Errorf("gift_entries already has %d rows: give reportbench a fresh database", existing)
	}
	// giftd dev's demo top-up is in ledger_entries already: ids go after it.
	var base int64
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM ledger_entries`).Scan(&base); err != nil {
		return err
	}
	start := time.Now()
	wallets := make([][]any, sh.senders)
	for i := range wallets {
		wallets[i] = []any{senderName(i), int64(0)}
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"wallets"}, []string{"user_id", "gold"}, pgx.CopyFromRows(wallets)); err != nil {
		return fmt.Errorf("wallets: %w", err)
	}

	// One deterministic stream of gifts, generated twice (once per table)
	// from the same seed, so that nothing is held in memory.
	end := time.Now().Add(-time.Minute)
	first := end.Add(-time.Duration(sh.days) * 24 * time.Hour)
	step := end.Sub(first) / time.Duration(sh.gifts)
	prices := make([]int64, sh.catalogue)
	pr := rand.New(rand.NewPCG(7, 7))
	for i := range prices {
		prices[i] = 1 + int64(math.Pow(pr.Float64(), 3)*5000)
	}
	type g struct {
		id                              int64
		at, reversedAt                  time.Time
		platform, app, sender, receiver string
		room, gift                      string
		count, gold, earnings           int64
	}
	gen := func(yield func(g) error) error {
		r := rand.New(rand.NewPCG(1, 2))
		for i := range sh.gifts {
			x := g{id: int64(i + 1), at: first.Add(time.Duration(i) * step)}
			var room int
			if r.Float64() < sh.hotShare {
				room = r.IntN(sh.hotRooms)
			} else {
				room = sh.hotRooms + skewed(r, sh.rooms-sh.hotRooms, 2)
			}
			x.room, x.platform = roomName(room), platformOf(room)
			x.app = "app-1"
			if x.platform == "polyv" {
				x.app = "pv-1"
			} else if room%2 == 1 {
				x.app = "app-2"
			}
			host := room % sh.receivers
			if r.Float64() < 0.2 {
				host = skewed(r, sh.receivers, 2) // a guest host (PK battles)
			}
			x.receiver = hostName(host)
			x.sender = senderName(skewed(r, sh.senders, 2))
			gift := skewed(r, sh.catalogue, 2)
			x.gift, x.count = giftName(gift), 1
			if r.Float64() < 0.1 {
				x.count = 1 + int64(r.IntN(99))
			}
			x.gold = prices[gift] * x.count
			x.earnings = x.gold / 2 // a share of 5000 basis points
			if r.Float64() < sh.reversed {
				x.reversedAt = x.at.Add(time.Duration(r.Int64N(int64(48 * time.Hour))))
				if x.reversedAt.After(end) {
					x.reversedAt = end
				}
			}
			if err := yield(x); err != nil {
				return err
			}
		}
		return nil
	}
	// copyStream runs COPY with rows from gen, stopping at ctx's deadline.
	copyStream := func(table string, cols []string, row func(g) ([]any, bool)) (int64, error) {
		rows := make(chan []any, 4096)
		genErr := make(chan error, 1)
		gctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			defer close(rows)
			genErr <- gen(func(x g) error {
				vals, ok := row(x)
				if !ok {
					return nil
				}
				select {
				case rows <- vals:
					return nil
				case <-gctx.Done():
					return gctx.Err()
				}
			})
		}()
		var cur []any
		n, err := conn.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromFunc(func() ([]any, error) {
			var ok bool
			cur, ok = <-rows
			if !ok {
				return nil, nil
			}
			return cur, nil
		}))
		cancel()
		for range rows { // let the generator finish
		}
		if gerr := <-genErr; err == nil && gerr != nil && !errors.Is(gerr, context.Canceled) {
			err = gerr
		}
		return n, err
	}
	t0 := time.Now()
	n, err := copyStream("ledger_entries", []string{"id", "user_id", "kind", "amount", "balance_after", "platform", "app_id", "ref", "created_at"},
		func(x g) ([]any, bool) {
			return []any{base + x.id, x.sender, "debit", -x.gold, int64(0), x.platform, x.app, fmt.Sprint("req-", x.id), x.at}, true
		})
	if err != nil {
		return fmt.Errorf("ledger_entries after %d rows: %w", n, err)
	}
	fmt.Printf("load: %d debit entries in %s\n", n, time.Since(t0).Round(time.Second))
	t0 = time.Now()
	n, err = copyStream("ledger_entries", []string{"id", "user_id", "kind", "amount", "balance_after", "platform", "app_id", "ref", "reverses", "created_at"},
		func(x g) ([]any, bool) {
			if x.reversedAt.IsZero() {
				return nil, false
			}
			return []any{base + int64(sh.gifts) + x.id, x.sender, "reversal", x.gold, x.gold, "admin", "", fmt.Sprint("rev-", x.id), base + x.id, x.reversedAt}, true
		})
	if err != nil {
		return fmt.Errorf("reversals after %d rows: %w", n, err)
	}
	fmt.Printf("load: %d reversal entries in %s\n", n, time.Since(t0).Round(time.Second))
	t0 = time.Now()
	n, err = copyStream("gift_entries", []string{"id", "debit_entry", "platform", "app_id", "request_id", "sender_id", "receiver_id",
		"room_id", "gift_id", "count", "gold", "share_bp", "earnings", "house", "house_slot", "created_at"},
		func(x g) ([]any, bool) {
			return []any{x.id, base + x.id, x.platform, x.app, fmt.Sprint("req-", x.id), x.sender, x.receiver, x.room, x.gift,
				x.count, x.gold, 5000, x.earnings, x.gold - x.earnings, int16(x.id % 16), x.at}, true
		})
	if err != nil {
		return fmt.Errorf("gift_entries after %d rows: %w", n, err)
	}
	fmt.Printf("load: %d gifts in %s\n", n, time.Since(t0).Round(time.Second))
	if _, err := conn.Exec(ctx, `SELECT setval('ledger_entries_id_seq', (SELECT max(id) FROM ledger_entries)),
		setval('gift_entries_id_seq', (SELECT max(id) FROM gift_entries))`); err != nil {
		return err
	}
	t0 = time.Now()
	if _, err := conn.Exec(ctx, `VACUUM (ANALYZE) gift_entries, ledger_entries, wallets`); err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	fmt.Printf("load: VACUUM ANALYZE in %s; loaded in %s\n", time.Since(t0).Round(time.Second), time.Since(start).Round(time.Second))
	// What migration 6 costs on this table when not built beforehand with
	// CONCURRENTLY: the build of its widest index, inserts blocked meanwhile.
	t0 = time.Now()
	if _, err := conn.Exec(ctx, `CREATE INDEX reportbench_build ON gift_entries (platform, room_id, created_at)
		INCLUDE (sender_id, receiver_id, gold, earnings, debit_entry)`); err != nil {
		return fmt.Errorf("timed index build: %w", err)
	}
	fmt.Printf("load: building gift_entries_room_board again took %s\n", time.Since(t0).Round(time.Second))
	if _, err := conn.Exec(ctx, `DROP INDEX reportbench_build`); err != nil {
		return err
	}
	var size string
	if err := conn.QueryRow(ctx, `SELECT pg_size_pretty(pg_database_size(current_database()))`).Scan(&size); err == nil {
		fmt.Printf("load: database %s\n", size)
	}
	rows, _ := conn.Query(ctx, `SELECT indexrelname, pg_size_pretty(pg_relation_size(indexrelid)) FROM pg_stat_user_indexes
		WHERE relname IN ('gift_entries', 'ledger_entries') ORDER BY pg_relation_size(indexrelid) DESC`)
	sizes, _ := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var name, size string
		err := r.Scan(&name, &size)
		return name + " " + size, err
	})
	fmt.Printf("load: indexes %s\n", strings.Join(sizes, ", "))
	return nil
}

// measure calls each route n times a run, runs times, through the real
// admin handler on a loopback listener, and prints the medians over runs of
// each run's p50 and p99.
func measure(ctx context.Context, url string, sh shape, runs, n int) error {
	store, err := ledger.Open(ctx, url)
	if err != nil {
		return err
	}
	defer store.Close()
	reg := prometheus.NewRegistry()
	const token = "reportbench-token-0123456789"
	srv := httptest.NewServer(httpapi.NewAdmin(httpapi.Deps{Store: store, AdminToken: token, Metrics: httpapi.NewMetrics(reg),
		Gatherer: reg, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	defer srv.Close()

	// The typical room: the median room by gifts in the last day.
	var typical string
	if err := store.Pool().QueryRow(ctx, `
		SELECT room_id FROM (SELECT room_id, count(*) AS n FROM gift_entries WHERE created_at >= now() - interval '1 day'
		GROUP BY room_id) AS r ORDER BY n LIMIT 1 OFFSET (SELECT count(DISTINCT room_id) / 2 FROM gift_entries
		WHERE created_at >= now() - interval '1 day')`).Scan(&typical); err != nil {
		return fmt.Errorf("find a typical room: %w", err)
	}
	var hotDay, typicalDay, whale, typicalSender int64
	store.Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE room_id = $1), count(*) FILTER (WHERE room_id = $2)
		FROM gift_entries WHERE created_at >= now() - interval '1 day'`, roomName(0), typical).Scan(&hotDay, &typicalDay) //nolint:errcheck // for the printout
	store.Pool().QueryRow(ctx, `SELECT count(*) FROM gift_entries WHERE sender_id = $1`, senderName(0)).Scan(&whale) //nolint:errcheck
	mid := senderName(sh.senders / 2)
	store.Pool().QueryRow(ctx, `SELECT count(*) FROM gift_entries WHERE sender_id = $1`, mid).Scan(&typicalSender) //nolint:errcheck
	fmt.Printf("data: hot room %s %d gifts in the last day, typical room %s %d; whale %s %d gifts, typical sender %s %d\n",
		roomName(0), hotDay, typical, typicalDay, senderName(0), whale, mid, typicalSender)

	day := time.Now().UTC().Add(-24 * time.Hour).Format(time.RFC3339)
	month := time.Now().UTC().Add(-30 * 24 * time.Hour).Format(time.RFC3339)
	plat := platformOf(0)
	typPlat := "linkv"
	if strings.HasSuffix(typical, "9") {
		typPlat = "polyv"
	}
	cases := []struct{ name, path string }{
		{"room leaderboard 24h, hot room, senders", "/admin/v1/rooms/" + plat + "/" + roomName(0) + "/leaderboard/senders"},
		{"room leaderboard 24h, hot room, receivers", "/admin/v1/rooms/" + plat + "/" + roomName(0) + "/leaderboard/receivers"},
		{"room leaderboard 24h, typical room, senders", "/admin/v1/rooms/" + typPlat + "/" + typical + "/leaderboard/senders"},
		{"room leaderboard 24h, typical room, receivers", "/admin/v1/rooms/" + typPlat + "/" + typical + "/leaderboard/receivers"},
		{"room leaderboard 7d, hot room, senders", "/admin/v1/rooms/" + plat + "/" + roomName(0) + "/leaderboard/senders?window=7d"},
		{"receiver report 24h, hot receiver", "/admin/v1/earnings/" + hostName(0) + "/report?from=" + day},
		{"receiver report 30d, hot receiver", "/admin/v1/earnings/" + hostName(0) + "/report?from=" + month},
		{"receiver report 30d, typical receiver", "/admin/v1/earnings/" + hostName(sh.receivers/2) + "/report?from=" + month},
		{"receiver ledger, first page of 50, hot receiver", "/admin/v1/earnings/" + hostName(0) + "/ledger"},
		{"gifts by receiver, one day", "/admin/v1/reports/gifts?group=receiver&from=" + day},
		{"gifts by sender, one day", "/admin/v1/reports/gifts?group=sender&from=" + day},
		{"gifts by room, one day", "/admin/v1/reports/gifts?group=room&from=" + day},
		{"gifts by gift, one day", "/admin/v1/reports/gifts?group=gift&from=" + day},
		{"gifts by sender, one day, CSV of 10000", "/admin/v1/reports/gifts?group=sender&limit=10000&format=csv&from=" + day},
		{"sender lifetime spend, whale", "/admin/v1/senders/" + senderName(0) + "/spend"},
		{"sender lifetime spend, typical sender", "/admin/v1/senders/" + mid + "/spend"},
	}
	fmt.Printf("\n| request | n × runs | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n")
	client := srv.Client()
	for _, c := range cases {
		count := n
		if strings.Contains(c.name, "one day") || strings.Contains(c.name, "30d") || strings.Contains(c.name, "7d") {
			count = max(5, n/10) // the period reports are slower: fewer per run
		}
		var p50s, p99s, maxes []float64
		for range runs {
			var lat []float64
			for range count {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+c.path, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				t := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				lat = append(lat, float64(time.Since(t).Microseconds())/1000)
				if resp.StatusCode != 200 {
					return fmt.Errorf("%s: %d %s", c.path, resp.StatusCode, body)
				}
			}
			slices.Sort(lat)
			p50s = append(p50s, lat[len(lat)/2])
			p99s = append(p99s, lat[min(len(lat)-1, int(math.Ceil(float64(len(lat))*0.99))-1)])
			maxes = append(maxes, lat[len(lat)-1])
		}
		fmt.Printf("| %s | %d × %d | %.1f | %.1f | %.1f |\n", c.name, count, runs, median(p50s), median(p99s), median(maxes))
	}
	// The plan of the hot room's leaderboard, as RoomLeaderboard runs it.
	rows, err := store.Pool().Query(ctx, `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
		SELECT g.sender_id, count(*), sum(g.gold)::bigint, sum(g.earnings)::bigint FROM gift_entries g
		WHERE g.platform = $1 AND g.room_id = $2 AND g.created_at >= now() - interval '24 hours'
		  AND NOT EXISTS (SELECT 1 FROM ledger_entries r WHERE r.reverses = g.debit_entry
			AND r.kind = 'reversal' AND r.created_at >= now() - interval '25 hours')
		GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT 20`, plat, roomName(0))
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	fmt.Printf("\nplan of the hot room's senders:\n  %s\n\n", strings.Join(plan, "\n  "))
	return cached(ctx, store, plat, runs)
}

// cached plays the viewers of the hot room: 8 clients asking for its two
// leaderboards as fast as they can for 10 s, through a handler that keeps
// them GIFTD_LEADERBOARD_CACHE's default 2 s. Every request counts,
// including those that waited for a read.
func cached(ctx context.Context, store *ledger.Store, plat string, runs int) error {
	reg := prometheus.NewRegistry()
	const token = "reportbench-token-0123456789"
	srv := httptest.NewServer(httpapi.NewAdmin(httpapi.Deps{Store: store, AdminToken: token, Metrics: httpapi.NewMetrics(reg),
		Gatherer: reg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), LeaderboardCache: 2 * time.Second}))
	defer srv.Close()
	var reads atomic.Int64
	store.SetTimer(func(op string, _ time.Duration) {
		if op == ledger.OpReport {
			reads.Add(1)
		}
	})
	defer store.SetTimer(nil)
	paths := []string{"/admin/v1/rooms/" + plat + "/" + roomName(0) + "/leaderboard/senders",
		"/admin/v1/rooms/" + plat + "/" + roomName(0) + "/leaderboard/receivers"}
	var p50s, p99s, maxes []float64
	var total int
	for range runs {
		reads.Store(0)
		var mu sync.Mutex
		var lat []float64
		var wg sync.WaitGroup
		deadline := time.Now().Add(10 * time.Second)
		var failed atomic.Value
		for i := range 8 {
			wg.Go(func() {
				var mine []float64
				for n := i; time.Now().Before(deadline); n++ {
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+paths[n%2], nil)
					req.Header.Set("Authorization", "Bearer "+token)
					t := time.Now()
					resp, err := srv.Client().Do(req)
					if err != nil {
						failed.Store(err)
						return
					}
					io.Copy(io.Discard, resp.Body) //nolint:errcheck // timing only
					resp.Body.Close()
					mine = append(mine, float64(time.Since(t).Microseconds())/1000)
					if resp.StatusCode != 200 {
						failed.Store(fmt.Errorf("%s: %d", paths[n%2], resp.StatusCode))
						return
					}
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			return err
		}
		slices.Sort(lat)
		total += len(lat)
		p50s = append(p50s, lat[len(lat)/2])
		p99s = append(p99s, lat[min(len(lat)-1, int(math.Ceil(float64(len(lat))*0.99))-1)])
		maxes = append(maxes, lat[len(lat)-1])
		fmt.Printf("cached run: %d requests, %d database reads\n", len(lat), reads.Load())
	}
	fmt.Printf("| hot room 24h, both leaderboards, 8 clients × 10 s, cache 2 s | %d requests in %d runs | %.2f | %.2f | %.1f |\n",
		total, runs, median(p50s), median(p99s), median(maxes))
	return nil
}

func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}
