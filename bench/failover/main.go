// Command failover is giftd's failover run (bench/failover/run; not in CI,
// it takes minutes): a pg_auto_failover formation on loopback — a monitor
// and two data nodes with synchronous replication as pg_auto_failover sets
// it up — one giftd given the formation's multi-host URL, LinkV-like load
// with LinkV's retries, and faults one after another under that load:
// switchover, primary crash, primary loss, standby loss, and primary loss
// after its WAL sender stalled. For each fault it prints what the client saw
// against what the final primary's ledger holds.
//
// It runs only on 127.0.0.1, bounds every loop in count and time, and stops
// what it started; the run script removes its folder.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/ledger"
)

const (
	appID  = "failover-app"
	secret = "failover-secret-0123456789"
	token  = "failover-admin-token-0123456789"
	topUp  = 1_000_000
)

type config struct {
	dir, giftd   string
	label        string
	faults       []string
	workers      int
	wallets      int
	pause        time.Duration
	policy       retryPolicy
	warmup       time.Duration
	settle       time.Duration
	standbyDown  time.Duration
	stall        time.Duration
	primaryExtra time.Duration
	faultTimeout time.Duration
	max          time.Duration
}

func main() {
	var cfg config
	var faults string
	flag.StringVar(&cfg.dir, "dir", "", "work folder (made by the run script, removed by it)")
	flag.StringVar(&cfg.giftd, "giftd", "", "the giftd binary")
	flag.StringVar(&cfg.label, "label", "", "what build of giftd that is, for the report")
	flag.StringVar(&faults, "faults", "switchover,crash,primary-loss,standby-loss,stalled-primary-loss", "faults to run, in order")
	flag.IntVar(&cfg.workers, "workers", 8, "concurrent LinkV callers")
	flag.IntVar(&cfg.wallets, "wallets", 50, "wallets per fault")
	flag.DurationVar(&cfg.pause, "pause", 10*time.Millisecond, "each caller's pause between two debits")
	flag.IntVar(&cfg.policy.Retries, "retries", 3, "retries of a debit answered 500 or not at all (LinkV: up to three)")
	flag.DurationVar(&cfg.policy.Backoff, "backoff", time.Second, "wait before the first retry, doubled for each next one")
	flag.DurationVar(&cfg.policy.Timeout, "attempt-timeout", 10*time.Second, "how long one attempt waits for an answer")
	flag.DurationVar(&cfg.warmup, "warmup", 5*time.Second, "load before each fault")
	flag.DurationVar(&cfg.settle, "settle", 10*time.Second, "load after the formation is healthy again")
	flag.DurationVar(&cfg.standbyDown, "standby-down", 40*time.Second, "how long the standby stays lost")
	flag.DurationVar(&cfg.stall, "stall", 6*time.Second, "stalled-primary-loss: how long the primary's WAL sender stalls before the primary is lost")
	flag.DurationVar(&cfg.primaryExtra, "primary-down", 5*time.Second, "how long the lost primary stays down after its standby took over")
	flag.DurationVar(&cfg.faultTimeout, "fault-timeout", 180*time.Second, "bound on each fault's recovery")
	flag.DurationVar(&cfg.max, "max", 12*time.Minute, "bound on the whole run")
	flag.Parse()
	cfg.faults = strings.Split(faults, ",")
	if cfg.dir == "" || cfg.giftd == "" {
		fmt.Fprintln(os.Stderr, "failover: -dir and -giftd are required (use bench/failover/run)")
		os.Exit(1)
	}
	for _, f := range cfg.faults {
		if _, ok := faultsByName[f]; !ok {
			fmt.Fprintf(os.Stderr, "failover: unknown fault %q (want switchover, crash, primary-loss, standby-loss, stalled-primary-loss)\n", f)
			os.Exit(1)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, cfg.max)
	findings, err := runAll(ctx, cfg)
	cancel()
	stop()
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	case findings:
		os.Exit(3)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05.0"), fmt.Sprintf(format, args...))
}

// phase is one fault under load and what was seen of it.
type phase struct {
	mu                            sync.Mutex // events and faultAt: the watcher writes too
	name                          string
	tag                           string // "3-primary-loss": prefix of its request ids and wallets
	wallets                       []string
	run                           *run
	loadStart, faultAt, healthyAt time.Time
	stopAt, loadEnd               time.Time
	events                        []string
	ready                         int
	unreplicated                  int // commits released without the standby's ack
}

func (p *phase) event(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.mu.Lock()
	if !p.faultAt.IsZero() {
		msg = fmt.Sprintf("+%5.1fs %s", time.Since(p.faultAt).Seconds(), msg)
	}
	p.events = append(p.events, msg)
	p.mu.Unlock()
	logf("%s: %s", p.name, msg)
}

// faulted reports whether the fault has begun.
func (p *phase) faulted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.faultAt.IsZero()
}

func runAll(ctx context.Context, cfg config) (findings bool, err error) {
	start, avgStart := time.Now(), loadAvg()
	c, err := newCluster(cfg.dir, logf)
	if err != nil {
		return false, err
	}
	defer c.stopAll()
	logf("creating the pg_auto_failover formation under %s", c.dir)
	if err := c.create(ctx); err != nil {
		return false, err
	}
	primary, err := c.role(ctx, "primary")
	if err != nil {
		return false, err
	}
	if err := createRole(ctx, primary); err != nil {
		return false, err
	}
	dbURL, err := c.formationURI(ctx, "giftd")
	if err != nil {
		return false, err
	}
	logf("giftd's DATABASE_URL: %s", dbURL)
	settings, _ := c.autoctl(ctx, 30*time.Second, "show", "settings", "--pgdata", c.monitor.pgdata)
	monitorGUCs := monitorSettings(ctx, c)

	g, err := startGiftd(ctx, cfg, dbURL)
	if err != nil {
		return false, err
	}
	defer g.stop()
	for _, a := range []string{g.public, g.admin} {
		_, port, _ := strings.Cut(a, ":")
		n, _ := strconv.Atoi(port)
		c.ports = append(c.ports, n)
	}
	if bad := exposed(c.ports); len(bad) > 0 {
		return false, fmt.Errorf("not on loopback only: %s", strings.Join(bad, "; "))
	}
	// Checked again every 300 ms while the faults run (see watch).
	ctx, cancelRun := context.WithCancelCause(ctx)
	defer cancelRun(nil)
	c.exposedCancel = cancelRun
	store, err := ledger.Open(ctx, dbURL, ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
	if err != nil {
		return false, err
	}
	defer store.Close()

	l := &loader{url: "http://" + g.public + "/linkv/debit", appID: appID, secret: secret,
		policy: cfg.policy, workers: cfg.workers, pause: cfg.pause,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.workers}}}
	var phases []*phase
	for _, name := range cfg.faults {
		fault, ok := faultsByName[name]
		if !ok {
			return false, fmt.Errorf("unknown fault %q (want switchover, crash, primary-loss, standby-loss, stalled-primary-loss)", name)
		}
		p := &phase{name: name, tag: fmt.Sprintf("%d-%s", len(phases)+1, name)}
		phases = append(phases, p)
		if err := runPhase(ctx, cfg, c, g, store, l, p, fault); err != nil {
			if cause := context.Cause(ctx); cause != nil && cause != err {
				err = fmt.Errorf("%w (%w)", err, cause)
			}
			return false, fmt.Errorf("%s: %w", name, err)
		}
	}

	// The verdict: every request against the final primary's ledger.
	if err := c.waitHealthy(ctx, cfg.faultTimeout); err != nil {
		return false, err
	}
	final, err := c.role(ctx, "primary")
	if err != nil {
		return false, err
	}
	rows, findings, err := verify(ctx, final, phases)
	if err != nil {
		return false, err
	}
	lostOutcomes(g.logPath, rows)
	auditCmd := exec.CommandContext(ctx, cfg.giftd, "audit")
	auditCmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
	auditOut, auditErr := auditCmd.CombinedOutput()
	if auditErr != nil {
		findings = true
	}

	report(os.Stdout, reportData{cfg: cfg, phases: phases, rows: rows, final: final, dbURL: dbURL,
		settings: settings, monitorGUCs: monitorGUCs, audit: string(auditOut), auditErr: auditErr,
		elapsed:      time.Since(start),
		loadAvgStart: avgStart, loadAvgAfter: loadAvg()})
	return findings, nil
}

// createRole makes giftd's own login role, owner of the giftd database
// that pg_autoctl created (it replicates to the standby).
func createRole(ctx context.Context, primary *node) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, primary.superURL())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, q := range []string{`CREATE ROLE giftd LOGIN`, `ALTER DATABASE giftd OWNER TO giftd`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

func monitorSettings(ctx context.Context, c *cluster) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.monURI)
	if err != nil {
		return err.Error()
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT name, setting || coalesce(unit, '') FROM pg_settings
		WHERE name LIKE 'pgautofailover.%' AND name NOT LIKE '%enable_sync_wal_log%' ORDER BY name`)
	if err != nil {
		return err.Error()
	}
	var parts []string
	for rows.Next() {
		var n, v string
		if rows.Scan(&n, &v) == nil {
			parts = append(parts, strings.TrimPrefix(n, "pgautofailover.")+"="+v)
		}
	}
	return strings.Join(parts, ", ")
}

// giftd is the one giftd process under test; it is never restarted.
type giftd struct {
	cmd           *exec.Cmd
	public, admin string
	exited        chan struct{}
	logPath       string
}

func startGiftd(ctx context.Context, cfg config, dbURL string) (*giftd, error) {
	pub, err := freePort()
	if err != nil {
		return nil, err
	}
	adm, err := freePort()
	if err != nil {
		return nil, err
	}
	g := &giftd{public: fmt.Sprintf("127.0.0.1:%d", pub), admin: fmt.Sprintf("127.0.0.1:%d", adm),
		logPath: filepath.Join(cfg.dir, "giftd.log")}
	f, err := os.Create(g.logPath)
	if err != nil {
		return nil, err
	}
	g.cmd = exec.Command(cfg.giftd, "serve")
	g.cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "GIFTD_HTTP_ADDR="+g.public, "GIFTD_ADMIN_ADDR="+g.admin,
		"GIFTD_LINKV_APPS="+appID+":"+secret, "GIFTD_ADMIN_TOKEN="+token, "GIFTD_LOG_FORMAT=json")
	g.cmd.Stdout, g.cmd.Stderr = f, f
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := g.cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	g.exited = make(chan struct{})
	go func() { g.cmd.Wait(); f.Close(); close(g.exited) }() //nolint:errcheck // its log tells
	if err := recordPgid(cfg.dir, "giftd", g.cmd.Process.Pid); err != nil {
		g.stop()
		return nil, err
	}
	err = waitFor(ctx, 30*time.Second, "giftd to be ready", func() (bool, error) {
		select {
		case <-g.exited:
			return false, errors.New("giftd exited")
		default:
		}
		return g.readyz() == http.StatusOK, nil
	})
	if err != nil {
		b, _ := os.ReadFile(g.logPath)
		g.stop()
		return nil, fmt.Errorf("%w\n%s", err, lastLines(string(b), 20))
	}
	logf("giftd ready on %s (admin %s)", g.public, g.admin)
	return g, nil
}

func (g *giftd) readyz() int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + g.admin + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// stop: SIGINT (giftd drains), SIGKILL after 20 s.
func (g *giftd) stop() {
	if g.cmd.Process == nil {
		return
	}
	syscall.Kill(-g.cmd.Process.Pid, syscall.SIGINT) //nolint:errcheck // it may be gone
	select {
	case <-g.exited:
	case <-time.After(20 * time.Second):
		syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck // it may be gone
		<-g.exited
	}
}

// runPhase tops up the phase's wallets, starts the load, lets it warm up,
// injects the fault (which returns once the formation is primary +
// secondary again), lets the load settle, and stops it.
func runPhase(ctx context.Context, cfg config, c *cluster, g *giftd, store *ledger.Store, l *loader, p *phase, fault faultFunc) error {
	if err := c.waitHealthy(ctx, cfg.faultTimeout); err != nil {
		return err
	}
	for i := range cfg.wallets {
		p.wallets = append(p.wallets, fmt.Sprintf("fo-%s-w%02d", p.tag, i))
	}
	for _, w := range p.wallets {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := store.TopUp(tctx, ledger.TopUp{UserID: w, Amount: topUp, Key: "seed-" + w})
		cancel()
		if err != nil {
			return fmt.Errorf("top up %s: %w", w, err)
		}
	}
	unreplicatedBefore := c.unreplicated()
	logf("%s: load on (%d callers), fault in %s", p.name, cfg.workers, cfg.warmup)
	stopLoad := make(chan struct{})
	p.loadStart = time.Now()
	r, wait := l.start(ctx, p.tag, p.wallets, stopLoad)
	p.run = r
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { watch(watchCtx, c, g, p); close(watched) }()
	stopAll := func() {
		p.stopAt = time.Now()
		close(stopLoad)
		wait()
		p.loadEnd = time.Now()
		stopWatch()
		<-watched
	}

	select {
	case <-time.After(cfg.warmup):
	case <-ctx.Done():
		stopAll()
		return ctx.Err()
	}
	// The fault strikes a healthy formation: the warm-up may have seen the
	// monitor move (a standby lagging under load makes the primary
	// wait_primary).
	if st, err := c.states(ctx); err != nil || !healthy(st) {
		logf("%s: formation not primary + secondary (%s), waiting before the fault", p.name, describe(st))
		if err := c.waitHealthy(ctx, cfg.faultTimeout); err != nil {
			stopAll()
			return err
		}
	}
	p.mu.Lock()
	p.faultAt = time.Now()
	p.mu.Unlock()
	if err := fault(ctx, cfg, c, p); err != nil {
		stopAll()
		return err
	}
	p.healthyAt = time.Now()
	p.event("formation healthy again")
	select {
	case <-time.After(cfg.settle):
	case <-ctx.Done():
	}
	p.ready = g.readyz()
	p.unreplicated = c.unreplicated() - unreplicatedBefore
	logf("%s: stopping the load (callers finish their debit in hand)", p.name)
	stopAll()
	return ctx.Err()
}

// watch logs every change of the monitor's view, and of giftd's /readyz
// answer, while a phase runs.
func watch(ctx context.Context, c *cluster, g *giftd, p *phase) {
	last, lastReady := "", http.StatusOK
	for ctx.Err() == nil {
		if r := g.readyz(); r != lastReady {
			if p.faulted() {
				p.event("giftd /readyz: %d", r)
			}
			lastReady = r
		}
		if bad := exposed(c.ports); len(bad) > 0 {
			c.exposedCancel(fmt.Errorf("not on loopback only: %s", strings.Join(bad, "; ")))
			return
		}
		if st, err := c.states(ctx); err == nil {
			if d := describe(st); d != last {
				if p.faulted() {
					p.event("monitor: %s", d)
				}
				last = d
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

type faultFunc func(ctx context.Context, cfg config, c *cluster, p *phase) error

var faultsByName = map[string]faultFunc{
	"switchover":           switchover,
	"crash":                primaryCrash,
	"primary-loss":         primaryLoss,
	"standby-loss":         standbyLoss,
	"stalled-primary-loss": stalledPrimaryLoss,
}

// switchover: `pg_autoctl perform switchover`, which waits for it.
func switchover(ctx context.Context, cfg config, c *cluster, p *phase) error {
	before, err := c.role(ctx, "primary")
	if err != nil {
		return err
	}
	p.event("pg_autoctl perform switchover (primary %s)", before.name)
	if _, err := c.autoctl(ctx, cfg.faultTimeout, "perform", "switchover", "--pgdata", c.monitor.pgdata, "--formation", "default"); err != nil {
		return err
	}
	p.event("pg_autoctl perform switchover returned")
	return c.waitHealthy(ctx, cfg.faultTimeout)
}

// primaryCrash: SIGKILL to the primary's postmaster and all its children;
// its pg_autoctl restarts PostgreSQL.
func primaryCrash(ctx context.Context, cfg config, c *cluster, p *phase) error {
	n, err := c.role(ctx, "primary")
	if err != nil {
		return err
	}
	old, err := n.postmaster()
	if err != nil {
		return err
	}
	if err := n.killPostgres(); err != nil {
		return err
	}
	p.event("kill -9 of %s's postmaster and backends (pg_autoctl left to restart it)", n.name)
	if err := waitFor(ctx, cfg.faultTimeout, n.name+"'s postgres to be restarted", func() (bool, error) {
		pid, err := n.postmaster()
		return err == nil && pid != old && n.accepting(ctx), nil
	}); err != nil {
		return err
	}
	p.event("%s's postgres restarted by pg_autoctl, accepting connections", n.name)
	return c.waitHealthy(ctx, cfg.faultTimeout)
}

// primaryLoss: SIGKILL to the primary's pg_autoctl and PostgreSQL, kept
// down until the monitor has promoted the standby (and -primary-down
// more), then `pg_autoctl run` again: it rejoins as the new standby.
func primaryLoss(ctx context.Context, cfg config, c *cluster, p *phase) error {
	n, err := c.role(ctx, "primary")
	if err != nil {
		return err
	}
	n.killAll()
	p.event("kill -9 of %s's pg_autoctl and postgres, kept down", n.name)
	return promoteAndRejoin(ctx, cfg, c, p, n)
}

// stalledPrimaryLoss: the primary's WAL sender stalls (SIGSTOP) for
// -stall, so that its commits reach neither the standby nor its
// acknowledgement (a replication link gone quiet); then the primary is lost
// as in primaryLoss, and the monitor promotes the standby, which lacks
// whatever the primary committed during the stall.
func stalledPrimaryLoss(ctx context.Context, cfg config, c *cluster, p *phase) error {
	n, err := c.role(ctx, "primary")
	if err != nil {
		return err
	}
	// A process stopped at a random instruction may hold a lock: a WAL
	// sender stopped inside SyncRepLock blocks every commit on that LWLock,
	// where no cancel reaches it, which no network stall would do. Then it
	// is resumed and stopped again, a few times at most.
	var ws int
	for try := 1; ; try++ {
		if ws, err = n.walsender(); err != nil {
			return err
		}
		if err := syscall.Kill(ws, syscall.SIGSTOP); err != nil {
			return err
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			syscall.Kill(ws, syscall.SIGCONT) //nolint:errcheck // best effort
			return ctx.Err()
		}
		// Two looks 300 ms apart, so that a passing LWLock wait is not taken
		// for a stuck one.
		locked, err := n.lwlockWaiters(ctx)
		if err == nil && locked > 0 {
			time.Sleep(300 * time.Millisecond)
			locked, err = n.lwlockWaiters(ctx)
		}
		if err == nil && locked == 0 {
			break
		}
		syscall.Kill(ws, syscall.SIGCONT) //nolint:errcheck // it may be gone
		if try == 5 {
			return fmt.Errorf("the stopped WAL sender held a lock that commits wait on, 5 times (last: %d waiters, %v)", locked, err)
		}
		p.event("the stopped walsender held a lock (%d backends on an LWLock): resumed, stopping it again", locked)
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// SIGKILL ends a stopped process too; SIGCONT is only for a failed run.
	defer syscall.Kill(ws, syscall.SIGCONT) //nolint:errcheck // normally gone
	p.event("SIGSTOP to %s's walsender 1 s ago: nothing reaches the standby, commits wait for its acknowledgement", n.name)
	select {
	case <-time.After(max(0, cfg.stall-time.Second)):
	case <-ctx.Done():
		return ctx.Err()
	}
	n.killAll()
	p.event("kill -9 of %s's pg_autoctl and postgres (walsender included), kept down", n.name)
	return promoteAndRejoin(ctx, cfg, c, p, n)
}

// promoteAndRejoin waits for the monitor to promote the node other than
// lost, then, -primary-down later, starts lost's pg_autoctl again and waits
// until it is the new primary's secondary.
func promoteAndRejoin(ctx context.Context, cfg config, c *cluster, p *phase, lost *node) error {
	if err := waitFor(ctx, cfg.faultTimeout, "the standby's promotion", func() (bool, error) {
		st, err := c.states(ctx)
		if err != nil {
			return false, nil
		}
		for _, s := range st {
			if s.name != lost.name && (s.reported == "wait_primary" || s.reported == "primary") {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		return err
	}
	p.event("standby promoted")
	select {
	case <-time.After(cfg.primaryExtra):
	case <-ctx.Done():
		return ctx.Err()
	}
	c.unreplicated()
	if err := c.startDataNode(lost, false); err != nil {
		return err
	}
	p.event("pg_autoctl run for %s again (to rejoin as standby)", lost.name)
	if err := c.waitHealthy(ctx, cfg.faultTimeout); err != nil {
		return c.withLog(lost, err)
	}
	return nil
}

// standbyLoss: SIGKILL to the standby's pg_autoctl and PostgreSQL, kept
// down for -standby-down, then `pg_autoctl run` again.
func standbyLoss(ctx context.Context, cfg config, c *cluster, p *phase) error {
	n, err := c.role(ctx, "secondary")
	if err != nil {
		return err
	}
	n.killAll()
	p.event("kill -9 of %s's pg_autoctl and postgres (the standby), down for %s", n.name, cfg.standbyDown)
	select {
	case <-time.After(cfg.standbyDown):
	case <-ctx.Done():
		return ctx.Err()
	}
	c.unreplicated()
	if err := c.startDataNode(n, false); err != nil {
		return err
	}
	p.event("pg_autoctl run for %s again", n.name)
	if err := c.waitHealthy(ctx, cfg.faultTimeout); err != nil {
		return c.withLog(n, err)
	}
	return nil
}

// row is one fault's line of the verdict.
type row struct {
	requests, oks, lost, doubled, failed, failedDebited, other int
	extraGold                                                  int64
	attempts, s500s, noAnswers                                 int64
	gap                                                        time.Duration
	slow                                                       int     // seconds after the fault with under a tenth of the pre-fault rate of 200s
	rate                                                       float64 // 200s per second before the fault
	gapAt                                                      float64 // seconds after the fault
	firstOK                                                    float64 // first 200 after the fault's worst window, s after the fault
	recovered                                                  bool
	finals                                                     map[int]int
	lostSample                                                 []string
	lostIDs                                                    []string
	lostHow                                                    map[string]int // giftd's logged outcome of the lost 200s
}

// verify reads the final primary's ledger and holds every request the
// client made against it.
func verify(ctx context.Context, final *node, phases []*phase) ([]row, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, final.superURL())
	if err != nil {
		return nil, false, err
	}
	defer conn.Close(context.Background())
	var inRecovery bool
	if err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil || inRecovery {
		return nil, false, fmt.Errorf("%s is not a writable primary (in recovery %t, %v)", final.name, inRecovery, err)
	}
	type entry struct {
		user string
		gold int64
		n    int
	}
	entries := map[string]*entry{}
	rows, err := conn.Query(ctx, `SELECT ref, user_id, -amount FROM ledger_entries
		WHERE kind = 'debit' AND platform = 'linkv' AND app_id = $1`, appID)
	if err != nil {
		return nil, false, err
	}
	for rows.Next() {
		var ref, user string
		var gold int64
		if err := rows.Scan(&ref, &user, &gold); err != nil {
			return nil, false, err
		}
		if e := entries[ref]; e != nil {
			e.n++
		} else {
			entries[ref] = &entry{user, gold, 1}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	balances := map[string]int64{}
	rows, err = conn.Query(ctx, `SELECT user_id, gold FROM wallets WHERE user_id LIKE 'fo-%'`)
	if err != nil {
		return nil, false, err
	}
	for rows.Next() {
		var u string
		var g int64
		if err := rows.Scan(&u, &g); err != nil {
			return nil, false, err
		}
		balances[u] = g
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}

	findings := false
	var out []row
	for _, p := range phases {
		r := row{finals: map[int]int{}}
		if p.run == nil {
			out = append(out, r)
			continue
		}
		debited := map[string]int64{}
		for _, q := range p.run.reqs {
			r.requests++
			e := entries[q.id]
			if e != nil {
				debited[q.user] += q.gold
				if e.n > 1 {
					r.doubled++
				}
			}
			switch {
			case !q.ok.IsZero():
				r.oks++
				if e == nil || e.user != q.user || e.gold != q.gold {
					r.lost++
					r.lostIDs = append(r.lostIDs, q.id)
					if len(r.lostSample) < 5 {
						r.lostSample = append(r.lostSample, fmt.Sprintf("%s (%s, %d gold, sent %s, 200 at %s after %d attempts)",
							q.id, q.user, q.gold, since(q.sent, p.faultAt), since(q.ok, p.faultAt), q.attempts))
					}
				}
			default:
				r.failed++
				r.finals[q.final]++
				if e != nil {
					r.failedDebited++
				}
				if q.final != 0 && q.final != http.StatusInternalServerError {
					r.other++
				}
			}
		}
		for _, w := range p.wallets {
			if extra := topUp - debited[w] - balances[w]; extra > 0 {
				r.extraGold += extra
			}
		}
		r.attempts, r.s500s, r.noAnswers = p.run.attempts.Load(), p.run.s500s.Load(), p.run.noAnswers.Load()
		oks := slices.Clone(p.run.oks)
		slices.SortFunc(oks, func(a, b time.Time) int { return a.Compare(b) })
		cmpTime := func(a, b time.Time) int { return a.Compare(b) }
		count := func(from, to time.Time) int { // 200s in [from, to)
			i, _ := slices.BinarySearchFunc(oks, from, cmpTime)
			j, _ := slices.BinarySearchFunc(oks, to, cmpTime)
			return j - i
		}
		// The window ends when the load was told to stop: after that only
		// the debits in hand finish.
		var at time.Time
		r.gap, at = longestGap(oks, p.loadStart, p.stopAt)
		r.gapAt = max(0, at.Sub(p.faultAt).Seconds())
		r.firstOK = at.Add(r.gap).Sub(p.faultAt).Seconds()
		if warm := p.faultAt.Sub(p.loadStart) - time.Second; warm > 0 {
			r.rate = float64(count(p.loadStart.Add(time.Second), p.faultAt)) / warm.Seconds()
		}
		for t := p.faultAt; !t.Add(time.Second).After(p.stopAt); t = t.Add(time.Second) {
			if float64(count(t, t.Add(time.Second))) < r.rate/10 {
				r.slow++
			}
		}
		// Recovered by itself: 200s again in the last seconds of the load,
		// at more than a tenth of the pre-fault rate; giftd never restarted.
		tail := p.stopAt.Add(-3 * time.Second)
		r.recovered = tail.After(p.healthyAt) && float64(count(tail, p.stopAt)) >= 3*r.rate/10
		if r.lost > 0 || r.doubled > 0 || r.extraGold > 0 {
			findings = true
		}
		out = append(out, r)
	}
	return out, findings, nil
}

// unreplicated counts, in the data nodes' PostgreSQL logs, the commits
// released without the synchronous standby's acknowledgement (PostgreSQL's
// warning "… might not have been replicated to the standby"). pg_rewind and
// pg_basebackup replace a node's log folder with copies of the other's, so
// each log file is counted once, by its first line, at the most it ever
// held; call it before a node rejoins and at the end of each phase.
func (c *cluster) unreplicated() int {
	for _, n := range c.nodes {
		files, _ := filepath.Glob(filepath.Join(n.pgdata, "log", "*"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			first, _, _ := strings.Cut(string(b), "\n")
			key := filepath.Base(f) + "|" + first
			c.seen[key] = max(c.seen[key], strings.Count(string(b), "might not have been replicated"))
		}
	}
	total := 0
	for _, v := range c.seen {
		total += v
	}
	return total
}

// since is t's offset from the fault, as "+1.2s".
func since(t, fault time.Time) string {
	v := math.Round(t.Sub(fault).Seconds()*10) / 10
	if v == 0 {
		v = 0 // not -0
	}
	return fmt.Sprintf("%+.1fs", v)
}

// lostOutcomes reads giftd's log for how it answered each lost request's
// 200: "ok" (the debit executed then) or "replay" (a retry found the
// record of an earlier attempt that giftd had answered 500).
func lostOutcomes(logPath string, rows []row) {
	want := map[string]*row{}
	for i := range rows {
		rows[i].lostHow = map[string]int{}
		for _, id := range rows[i].lostIDs {
			want[id] = &rows[i]
		}
	}
	if len(want) == 0 {
		return
	}
	f, err := os.Open(logPath)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), []byte(`"status":200`)) {
			continue
		}
		var l struct {
			RequestID string `json:"request_id"`
			Outcome   string `json:"outcome"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		if r := want[l.RequestID]; r != nil {
			r.lostHow[l.Outcome]++
		}
	}
}
