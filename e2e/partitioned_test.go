package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/credits"
	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgcluster"
)

// The partitioned fault suite (docs/scale-out.md#faults-partitioned): a
// proxy and two partitions, each a PostgreSQL server of its own, giftd
// built and run as processes in partitioned mode, and LinkV-like clients
// whose every gift goes to a receiver on the other partition, so that
// cross-partition credits flow all the time.

// startPostgres starts a throwaway PostgreSQL server of its own (fsync
// off, plus settings), stopped when the test ends. Without server binaries
// the test fails under CI and is skipped otherwise.
func startPostgres(t *testing.T, ctx context.Context, settings ...string) *pgcluster.Cluster {
	t.Helper()
	c, err := pgcluster.Start(ctx, pgcluster.Options{Settings: append([]string{"fsync=off"}, settings...)})
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() }) //nolint:errcheck // best effort
	return c
}

// requirePLProxy fails the test under CI, and skips it otherwise, when the
// server of serverURL has no PL/Proxy (Debian: postgresql-15-plproxy).
func requirePLProxy(t *testing.T, ctx context.Context, serverURL string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_available_extensions WHERE name = 'plproxy'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the server has no plproxy extension (apt-get install postgresql-15-plproxy)")
		}
		t.Skip("the server has no plproxy extension (apt-get install postgresql-15-plproxy); skipped since CI is not set")
	}
}

// A cluster is a partitioned giftd's databases, migrated by `giftd migrate`
// and seeded: gift 1 in every partition's catalogue (all to the receiver),
// senders' wallets topped up on their partitions.
type cluster struct {
	layout partition.Layout
	env    []string        // the layout as giftd's settings
	stores []*ledger.Store // one per partition, direct, for the checks
	proxy  *pgcluster.Cluster
	// senders[p] are wallets placed on partition p; receivers[p] a receiver
	// placed on p.
	senders   [][]string
	receivers []string
}

// senderGold is each sender's gold: enough that no gift of the suite is
// refused for want of it.
const senderGold = 1_000_000

// newCluster migrates the layout l (proxy is the proxy's server, for
// restarts) with `giftd migrate up`, as an operator would, and seeds it.
func newCluster(t *testing.T, ctx context.Context, proxy *pgcluster.Cluster, l partition.Layout) *cluster {
	t.Helper()
	c := &cluster{layout: l, proxy: proxy, env: []string{
		"GIFTD_PROXY_URL=" + l.ProxyURL,
		"GIFTD_PARTITION_URLS=" + strings.Join(l.PartitionURLs, " "),
	}}
	if len(l.ProxyPartitionURLs) > 0 {
		c.env = append(c.env, "GIFTD_PROXY_PARTITION_URLS="+strings.Join(l.ProxyPartitionURLs, " "))
	}
	cmd := exec.CommandContext(ctx, giftdBinary(t), "migrate", "up")
	cmd.Env = append(os.Environ(), c.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("giftd migrate up partitioned: %v\n%s", err, out)
	}
	n := len(l.PartitionURLs)
	c.senders, c.receivers = make([][]string, n), make([]string, n)
	for i := 0; len(c.senders[0]) < 4 || len(c.senders[n-1]) < 4; i++ {
		u := fmt.Sprint("w", i)
		c.senders[partition.For(u, n)] = append(c.senders[partition.For(u, n)], u)
	}
	for i := 0; c.receivers[0] == "" || c.receivers[n-1] == ""; i++ {
		r := fmt.Sprint("host", i)
		if p := partition.For(r, n); c.receivers[p] == "" {
			c.receivers[p] = r
		}
	}
	for p, u := range l.PartitionURLs {
		store, err := ledger.Open(ctx, u, ledger.WithMaxConns(4))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(store.Close)
		c.stores = append(c.stores, store)
		if _, err := store.CreateGift(ctx, ledger.CatalogueGift{Platform: "linkv", GiftID: "1", Name: "one", Price: 1,
			ShareBP: ledger.MaxShareBP, Active: true}); err != nil {
			t.Fatalf("partition %d: %v", p, err)
		}
		for _, w := range c.senders[p] {
			if _, err := store.TopUp(ctx, ledger.TopUp{UserID: w, Amount: senderGold, Key: "seed-" + w}); err != nil {
				t.Fatalf("partition %d: %v", p, err)
			}
		}
	}
	return c
}

// replica is a giftd serve process of the cluster, not started yet.
func (c *cluster) replica(t *testing.T) *server {
	t.Helper()
	// DATABASE_URL is ignored in partitioned mode: nothing may reach it.
	return stoppedServer(t, "postgres://unused@127.0.0.1:1/unused", append(c.env, "GIFTD_MIGRATE=false")...)
}

// gift is a request id's gift of 1 gold from a sender of partition p, at
// random, to the receiver on the next partition.
func (c *cluster) gift(id string, p int) *request {
	r := &request{id: id, user: c.senders[p][rand.IntN(len(c.senders[p]))]}
	r.body = signedGift(r.id, r.user, c.receivers[(p+1)%len(c.receivers)], "1", 1)
	return r
}

// A giftLoad is LinkV-like clients sending gifts of 1 gold from the
// cluster's senders to a receiver on the other partition, each request
// retried on 500 or no answer with the same request_id and sign, to a
// replica picked at random each time, until stop.
type giftLoad struct {
	c        *cluster
	replicas []*server
	client   linkvClient
	stopped  atomic.Bool
	wg       sync.WaitGroup
	// acked[p] counts the 200s of senders placed on p; inflight[p] their
	// requests sent and not answered yet.
	acked, inflight []atomic.Int64

	mu   sync.Mutex
	reqs []*request
}

// load starts clients sending gifts, as many for each partition's senders;
// the request ids start with phase.
// They stop when t ends, if stop was not called before (a failed fault
// must not leave load running into the next).
func (c *cluster) load(t *testing.T, ctx context.Context, phase string, replicas []*server, clients int) *giftLoad {
	g := &giftLoad{c: c, replicas: replicas, client: linkvClient{&http.Client{Timeout: 10 * time.Second}},
		acked: make([]atomic.Int64, len(c.senders)), inflight: make([]atomic.Int64, len(c.senders))}
	t.Cleanup(func() { g.stop() })
	pick := func() *server { return replicas[rand.IntN(len(replicas))] }
	for k := range clients {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			// Each client sends for the senders of one partition: a client
			// retrying a gift of a partition that is down must not hold up
			// the gifts of the others (LinkV's requests are independent).
			p := k % len(c.senders)
			for i := 0; !g.stopped.Load() && ctx.Err() == nil; i++ {
				r := c.gift(fmt.Sprintf("%s-%02d-%05d", phase, k, i), p)
				g.mu.Lock()
				g.reqs = append(g.reqs, r)
				g.mu.Unlock()
				g.inflight[p].Add(1)
				r.final, r.got200 = g.client.sendTo(ctx, pick, r.body)
				g.inflight[p].Add(-1)
				if r.got200 {
					g.acked[p].Add(1)
				}
			}
		}()
	}
	return g
}

// more waits until senders of the partitions parts (all when none) have
// had n more requests acknowledged than now, and fails t when that takes
// past a minute and a half.
func (g *giftLoad) more(t *testing.T, ctx context.Context, n int64, what string, parts ...int) {
	t.Helper()
	if len(parts) == 0 {
		for p := range g.acked {
			parts = append(parts, p)
		}
	}
	sum := func() (s int64) {
		for _, p := range parts {
			s += g.acked[p].Load()
		}
		return s
	}
	since := sum()
	if !eventually(ctx, 90*time.Second, func() bool { return sum() >= since+n }) {
		t.Fatalf("%s: %d requests of partitions %v acknowledged in 90s, want %d", what, sum()-since, parts, n)
	}
}

// stop stops the clients, waits until each has its final answer, and
// returns every request sent.
func (g *giftLoad) stop() []*request {
	g.stopped.Store(true)
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reqs
}

// check holds the cluster to the suite's promises once the load has
// stopped: every credit moved (within a minute: a dead consumer's lease
// runs out in 10 s), every request debited once if acknowledged and at most
// once anyway, each on its sender's partition, no receiver's earnings left
// in transit, the books of all partitions together conserved, and the real
// `giftd audit` partitioned clean.
func (c *cluster) check(t *testing.T, ctx context.Context, reqs []*request) {
	t.Helper()
	var r credits.Report
	var err error
	moved := eventually(ctx, time.Minute, func() bool {
		r, err = credits.Audit(ctx, c.stores)
		return err == nil && r.InFlight == 0
	})
	if !moved || !r.OK() {
		t.Errorf("credits not all moved within a minute: %+v, %v", r, err)
	}
	user := make(map[string]string, len(reqs))
	for _, q := range reqs {
		user[q.id] = q.user
	}
	all := map[string]int{}
	for p, s := range c.stores {
		for ref, n := range countDebits(t, ctx, s.Pool()) {
			if u, ok := user[ref]; ok && partition.For(u, len(c.stores)) != p {
				t.Errorf("%s of %s debited on partition %d, not its own", ref, u, p)
			}
			all[ref] += n
		}
		rows, err := s.Pool().Query(ctx, `SELECT receiver_id, balance FROM earnings_accounts WHERE balance <> 0`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var recv string
			var balance int64
			if err := rows.Scan(&recv, &balance); err != nil {
				t.Fatal(err)
			}
			if partition.For(recv, len(c.stores)) != p {
				t.Errorf("partition %d still holds %d of %s's earnings in transit", p, balance, recv)
			}
		}
		rows.Close()
	}
	checkEntries(t, all, reqs)
	checkBooks(t, ctx, c.stores...)
	out := runAudit(t, c.env...)
	if !strings.Contains(out, "credits OK") || !strings.Contains(out, " 0 in flight") {
		t.Errorf("giftd audit partitioned: not clean, or credits in flight:\n%s", out)
	}
	t.Logf("credits: %d moved (%d gold)", r.Moved, r.MovedGold)
}

// leaseHolder returns the process id of the giftd whose credit consumer
// holds partition p's lease (0 when none).
func (c *cluster) leaseHolder(t *testing.T, ctx context.Context, p int) int {
	t.Helper()
	var owner *string
	if err := c.stores[p].Pool().QueryRow(ctx, `SELECT lease_owner FROM credit_cursor WHERE lease_until > now()`).Scan(&owner); err != nil && err != pgx.ErrNoRows {
		t.Fatal(err)
	}
	if owner == nil {
		return 0
	}
	// host/pid/random (cmd/giftd's consumerOwner).
	f := strings.Split(*owner, "/")
	if len(f) < 3 {
		t.Fatalf("lease owner %q: want host/pid/random", *owner)
	}
	pid, _ := strconv.Atoi(f[len(f)-2])
	return pid
}

// TestPartitioned_FaultsUnderLoad runs two giftd replicas on a proxy and
// two partitions, each its own server, under LinkV-like load whose every
// gift credits a receiver on the other partition, through four faults in
// turn: every giftd killed with SIGKILL and started again; partition 1's
// server killed mid-batch (its postmaster and backends, SIGKILL) while
// partition 0's users must go on being debited, then started again; the
// replica holding a credit consumer's lease killed; the proxy crashed and
// restarted. After each: nothing lost, nothing doubled, every credit moved,
// every partition's books and the real `giftd audit` partitioned clean.
func TestPartitioned_FaultsUnderLoad(t *testing.T) {
	ctx := waitCtx(t, 8*time.Minute)
	proxy := startPostgres(t, ctx)
	requirePLProxy(t, ctx, proxy.URL)
	parts := []*pgcluster.Cluster{startPostgres(t, ctx), startPostgres(t, ctx)}
	c := newCluster(t, ctx, proxy, partition.Layout{ProxyURL: proxy.URL, PartitionURLs: []string{parts[0].URL, parts[1].URL}})
	replicas := []*server{c.replica(t), c.replica(t)}
	startAgainTogether(t, replicas)
	const clients = 8

	t.Run("giftd killed", func(t *testing.T) {
		g := c.load(t, ctx, "kill", replicas, clients)
		for round := range 2 {
			g.more(t, ctx, 100, fmt.Sprint("before kill ", round+1))
			for _, s := range replicas {
				s.kill()
			}
			startAgainTogether(t, replicas)
		}
		g.more(t, ctx, 100, "after the last restart")
		c.check(t, ctx, g.stop())
		showErrors(t, replicas)
	})

	t.Run("partition server killed mid-batch", func(t *testing.T) {
		g := c.load(t, ctx, "part", replicas, clients)
		g.more(t, ctx, 100, "before the kill", 1)
		inflight := g.inflight[1].Load()
		if err := parts[1].Kill(); err != nil {
			t.Fatal(err)
		}
		t.Logf("partition 1 killed with %d of its senders' requests in flight", inflight)
		restarted := false
		t.Cleanup(func() { // the next faults need it, even if this one fails
			if !restarted {
				parts[1].StartAgain(ctx) //nolint:errcheck // best effort
			}
		})
		// Partition 1 is down: its users' gifts get 500s and are retried;
		// partition 0's must go on.
		down := g.acked[1].Load()
		g.more(t, ctx, 200, "partition 0 while partition 1 is down", 0)
		// …and giftd stays ready: taken out of the load balancer, every
		// replica would fail partition 0's users too. A check can still
		// time out on a loaded machine (readiness has a second), so each
		// replica must answer 200 again while partition 1 is down, not at
		// the first probe.
		for i, s := range replicas {
			code := ready(s)
			for deadline := time.Now().Add(30 * time.Second); code != http.StatusOK && time.Now().Before(deadline); code = ready(s) {
				time.Sleep(100 * time.Millisecond)
			}
			if code != http.StatusOK {
				t.Errorf("replica %d: /readyz %d for 30 s while partition 1 is down; want 200", i, code)
			}
		}
		if err := parts[1].StartAgain(ctx); err != nil {
			t.Fatal(err)
		}
		restarted = true
		t.Logf("partition 1's senders: %d acknowledged while it was down (answers in flight when it was killed)", g.acked[1].Load()-down)
		g.more(t, ctx, 100, "partition 1 after its restart", 1)
		c.check(t, ctx, g.stop())
		showErrors(t, replicas)
	})

	t.Run("credit consumer's lease holder killed", func(t *testing.T) {
		g := c.load(t, ctx, "lease", replicas, clients)
		g.more(t, ctx, 100, "before the kill")
		var holder, other *server
		var pid int
		if !eventually(ctx, 30*time.Second, func() bool {
			pid = c.leaseHolder(t, ctx, 0)
			for i, s := range replicas {
				if s.cmd.Process.Pid == pid {
					holder, other = s, replicas[1-i]
				}
			}
			return holder != nil
		}) {
			t.Fatalf("no replica holds partition 0's credit lease (holder pid %d)", pid)
		}
		holder.kill()
		// The other replica's consumer takes over once the lease runs out,
		// and moves what the dead one left, while gifts go on.
		if !eventually(ctx, time.Minute, func() bool { return c.leaseHolder(t, ctx, 0) == other.cmd.Process.Pid }) {
			t.Fatalf("the surviving replica never took partition 0's credit lease")
		}
		g.more(t, ctx, 100, "after the takeover")
		holder.start()
		c.check(t, ctx, g.stop())
		showErrors(t, replicas)
	})

	t.Run("proxy restarted", func(t *testing.T) {
		g := c.load(t, ctx, "proxy", replicas, clients)
		g.more(t, ctx, 100, "before the restart")
		if err := proxy.Restart(ctx, "immediate", 0); err != nil {
			t.Fatal(err)
		}
		g.more(t, ctx, 200, "after the restart")
		c.check(t, ctx, g.stop())
		showErrors(t, replicas)
	})
}

// showErrors logs the last warnings and errors of the replicas' logs when
// t has failed, to say why.
func showErrors(t *testing.T, replicas []*server) {
	t.Helper()
	if !t.Failed() {
		return
	}
	for i, s := range replicas {
		b, _ := os.ReadFile(s.log.Name())
		var lines []string
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
				lines = append(lines, line)
			}
		}
		t.Logf("replica %d: %d warnings and errors, the last:\n%s", i, len(lines), strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
}

// TestPartitioned_PartitionFailsOverToItsSyncStandby makes partition 1 a
// primary with a synchronous standby, registered for the proxy (and giftd)
// as one multi-host URL, the primary first, with
// target_session_attrs=read-write. Under load the primary's server is
// killed and the standby promoted: PL/Proxy's libpq must find the new
// primary by itself, partition 1's users be debited again, and no
// acknowledged debit be lost.
func TestPartitioned_PartitionFailsOverToItsSyncStandby(t *testing.T) {
	ctx := waitCtx(t, 5*time.Minute)
	proxy := startPostgres(t, ctx)
	requirePLProxy(t, ctx, proxy.URL)
	p0 := startPostgres(t, ctx)
	const standbyName = "giftd_p1_standby"
	primary := startPostgres(t, ctx, "synchronous_standby_names="+standbyName)
	standby, err := pgcluster.StartStandby(ctx, primary, standbyName, "", pgcluster.Options{Settings: []string{"fsync=off"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standby.Stop() }) //nolint:errcheck // best effort
	if !eventually(ctx, 30*time.Second, func() bool { return syncState(ctx, primary.URL, standbyName) == "sync" }) {
		t.Fatalf("standby %s never became synchronous", standbyName)
	}
	p1 := mustParse(t, primary.URL)
	p1.Host += "," + mustParse(t, standby.URL).Host
	q := p1.Query()
	q.Set("target_session_attrs", "read-write")
	p1.RawQuery = q.Encode()
	c := newCluster(t, ctx, proxy, partition.Layout{ProxyURL: proxy.URL, PartitionURLs: []string{p0.URL, p1.String()}})
	replicas := []*server{c.replica(t)}
	startAgainTogether(t, replicas)

	g := c.load(t, ctx, "ha", replicas, 8)
	g.more(t, ctx, 100, "before the failover", 1)
	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	g.more(t, ctx, 100, "partition 1 on its promoted standby", 1)
	c.check(t, ctx, g.stop())
	showErrors(t, replicas)
}

// TestPartitioned_ThroughPgBouncer puts each partition behind a PgBouncer
// in transaction pooling, registered for the proxy with
// GIFTD_PROXY_PARTITION_URLS (giftd's own consumer and migrations go
// direct): PL/Proxy's connection per proxy backend per partition shares a
// few server connections. Copies of every request sent at once to two
// replicas must get the same answer, never a 500, and debit once; then,
// under load, both PgBouncers are killed and started again: their users'
// gifts fail meanwhile, are retried, and nothing is lost or doubled.
func TestPartitioned_ThroughPgBouncer(t *testing.T) {
	ctx := waitCtx(t, 5*time.Minute)
	proxy := startPostgres(t, ctx)
	requirePLProxy(t, ctx, proxy.URL)
	parts := []*pgcluster.Cluster{startPostgres(t, ctx), startPostgres(t, ctx)}
	bouncers := []*pgBouncer{newPgBouncer(t, parts[0].URL, "transaction"), newPgBouncer(t, parts[1].URL, "transaction")}
	c := newCluster(t, ctx, proxy, partition.Layout{ProxyURL: proxy.URL,
		PartitionURLs:      []string{parts[0].URL, parts[1].URL},
		ProxyPartitionURLs: []string{bouncers[0].url, bouncers[1].url}})
	replicas := []*server{c.replica(t), c.replica(t)}
	startAgainTogether(t, replicas)

	races := make([]*request, 200)
	for i := range races {
		races[i] = c.gift(fmt.Sprintf("race-%04d", i), i%2)
	}
	sendTwiceEach(t, ctx, replicas, races)

	g := c.load(t, ctx, "bouncer", replicas, 8)
	g.more(t, ctx, 100, "before the PgBouncers' restart")
	for _, b := range bouncers {
		b.kill()
	}
	for _, b := range bouncers {
		b.start()
	}
	g.more(t, ctx, 200, "after the PgBouncers' restart")
	c.check(t, ctx, append(races, g.stop()...))
	showErrors(t, replicas)
}
