package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// cluster is a pg_auto_failover formation on loopback: one monitor and two
// data nodes, each a `pg_autoctl … --run` process (and the postgres it
// starts) in a process group of its own, all under dir.
type cluster struct {
	dir     string // parent of the data folders, owned by the OS user below
	cred    *syscall.Credential
	env     []string
	monitor *node
	nodes   []*node
	monURI  string // the monitor's connection string
	log     func(format string, args ...any)
	seen    map[string]int // see unreplicated
	ports   []int          // every port this run listens on, checked by exposed
	// exposedCancel ends the run when exposed finds a non-loopback listener.
	exposedCancel context.CancelCauseFunc
}

// node is one pg_autoctl service: the monitor or a data node.
type node struct {
	name, pgdata string
	port         int
	cmd          *exec.Cmd
	exited       chan struct{}
	logPath      string
}

// newCluster prepares dir/pg for pg_autoctl. As root it runs everything as
// the postgres OS user, which owns dir/pg; pg_autoctl's config, state and
// runtime files go there too (XDG_*). Only the unix sockets do not:
// pg_autoctl 2.0 starts postgres without -k, so they go to the server's
// default folder (Debian: /var/run/postgresql), one per port; PostgreSQL
// removes them when it stops, and the run script removes those of ours that
// a killed server left.
func newCluster(dir string, logf func(string, ...any)) (*cluster, error) {
	c := &cluster{dir: filepath.Join(dir, "pg"), log: logf, seen: map[string]int{}}
	for _, sub := range []string{"", "config", "data", "run", "logs"} {
		if err := os.MkdirAll(filepath.Join(c.dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs the postgres OS user (Debian's postgresql package makes it): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// The postgres user must reach dir/pg: dir itself is root's 0700.
		if err := os.Chmod(dir, 0o711); err != nil {
			return nil, err
		}
		err = filepath.Walk(c.dir, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Chown(p, uid, gid)
		})
		if err != nil {
			return nil, err
		}
	}
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	c.env = []string{
		"HOME=" + c.dir,
		"XDG_CONFIG_HOME=" + filepath.Join(c.dir, "config"),
		"XDG_DATA_HOME=" + filepath.Join(c.dir, "data"),
		"XDG_RUNTIME_DIR=" + filepath.Join(c.dir, "run"),
		"PG_CONFIG=" + filepath.Join(bin, "pg_config"),
		"PATH=" + bin + ":/usr/bin:/bin",
		"LANG=C.UTF-8",
	}
	return c, nil
}

// pgBinDir is the newest /usr/lib/postgresql/*/bin with pg_ctl and pg_config.
func pgBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestV := "", -1
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err != nil || v <= bestV {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "pg_config")); err != nil {
			continue
		}
		best, bestV = d, v
	}
	if best == "" {
		return "", errors.New("no /usr/lib/postgresql/*/bin with pg_config: apt-get install postgresql")
	}
	return best, nil
}

// command is pg_autoctl (or another program) run as the cluster's OS user,
// in its own process group, from dir/pg.
func (c *cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = c.dir, c.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

// autoctl runs a one-off pg_autoctl command, bounded by timeout, and returns
// its standard output.
func (c *cluster) autoctl(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := c.command(ctx, "pg_autoctl", args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("pg_autoctl %s: %w\n%s", strings.Join(args, " "), err, lastLines(errb.String(), 15))
	}
	return out.String(), nil
}

// start runs `pg_autoctl args…` as n's long-lived service, its output
// appended to n's log, and writes its process group id where the run
// script's clean-up finds it even if this program dies.
func (c *cluster) start(n *node, args ...string) error {
	f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := c.command(context.Background(), "pg_autoctl", args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) { cmd.Wait(); f.Close(); close(exited) }(n.exited) //nolint:errcheck // killed on purpose
	return recordPgid(filepath.Dir(c.dir), n.name, cmd.Process.Pid)
}

// recordPgid notes a process group this program started, for the run
// script's clean-up (dir/pids/NAME.pgid: one id per line).
func recordPgid(dir, name string, pgid int) error {
	if err := os.MkdirAll(filepath.Join(dir, "pids"), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "pids", name+".pgid"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintln(f, pgid)
	return err
}

// recordPort notes a PostgreSQL port of ours in dir/ports, so that the run
// script can remove the unix socket files a killed server leaves.
func recordPort(dir string, port int) error {
	f, err := os.OpenFile(filepath.Join(dir, "ports"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintln(f, port)
	return err
}

func (c *cluster) newNode(name string) (*node, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := recordPort(filepath.Dir(c.dir), port); err != nil {
		return nil, err
	}
	c.ports = append(c.ports, port)
	return &node{name: name, pgdata: filepath.Join(c.dir, name), port: port,
		logPath: filepath.Join(c.dir, "logs", name+".log")}, nil
}

// create makes the monitor and two data nodes and waits until one is
// primary and the other its synchronous secondary.
func (c *cluster) create(ctx context.Context) error {
	var err error
	if c.monitor, err = c.newNode("monitor"); err != nil {
		return err
	}
	common := []string{"--hostname", "127.0.0.1", "--listen", "127.0.0.1", "--auth", "trust", "--no-ssl", "--run"}
	if err := c.start(c.monitor, append([]string{"create", "monitor",
		"--pgdata", c.monitor.pgdata, "--pgport", strconv.Itoa(c.monitor.port)}, common...)...); err != nil {
		return err
	}
	c.monURI = fmt.Sprintf("postgres://autoctl_node@127.0.0.1:%d/pg_auto_failover?sslmode=disable&connect_timeout=3", c.monitor.port)
	if err := waitFor(ctx, 60*time.Second, "the monitor to answer", func() (bool, error) {
		_, err := c.states(ctx)
		return err == nil, nil
	}); err != nil {
		return c.withLog(c.monitor, err)
	}
	c.log("monitor up on 127.0.0.1:%d", c.monitor.port)

	for i := range 2 {
		n, err := c.newNode(fmt.Sprintf("node%d", i+1))
		if err != nil {
			return err
		}
		c.nodes = append(c.nodes, n)
		if err := c.startDataNode(n, true); err != nil {
			return err
		}
		want := "single"
		if i == 1 {
			want = "secondary"
		}
		// pg_autoctl 2.0 runs pg_basebackup without --checkpoint=fast, so
		// the standby waits for a spread checkpoint (minutes); a CHECKPOINT
		// on the primary ends that wait.
		if err := waitFor(ctx, 150*time.Second, n.name+" to be "+want, func() (bool, error) {
			st, err := c.states(ctx)
			if err != nil {
				return false, nil
			}
			for _, s := range st {
				if s.name == n.name && s.reported == want && s.goal == want {
					return true, nil
				}
			}
			if i == 1 {
				c.checkpoint(ctx, c.nodes[0])
			}
			return false, nil
		}); err != nil {
			return c.withLog(n, err)
		}
		c.log("%s up on 127.0.0.1:%d (%s)", n.name, n.port, want)
	}
	return c.waitHealthy(ctx, 60*time.Second)
}

// startDataNode runs a data node's keeper: the first time `create postgres
// --run`, later `run`, which rejoins the formation as the monitor says.
func (c *cluster) startDataNode(n *node, create bool) error {
	if !create {
		return c.start(n, "run", "--pgdata", n.pgdata)
	}
	return c.start(n, "create", "postgres", "--pgdata", n.pgdata, "--pgport", strconv.Itoa(n.port),
		"--name", n.name, "--dbname", "giftd", "--monitor", strings.Replace(c.monURI, "&connect_timeout=3", "", 1),
		"--hostname", "127.0.0.1", "--listen", "127.0.0.1", "--auth", "trust", "--no-ssl", "--run")
}

func (c *cluster) withLog(n *node, err error) error {
	b, _ := os.ReadFile(n.logPath)
	return fmt.Errorf("%w\n--- %s log (last lines) ---\n%s", err, n.name, lastLines(string(b), 25))
}

// nodeState is the monitor's view of one data node.
type nodeState struct {
	name           string
	port           int
	reported, goal string
}

// states asks the monitor for the formation's data nodes.
func (c *cluster) states(ctx context.Context) ([]nodeState, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.monURI)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT nodename, nodeport, reportedstate::text, goalstate::text
		FROM pgautofailover.node WHERE formationid = 'default' ORDER BY nodeid`)
	if err != nil {
		return nil, err
	}
	var out []nodeState
	for rows.Next() {
		var s nodeState
		if err := rows.Scan(&s.name, &s.port, &s.reported, &s.goal); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func describe(st []nodeState) string {
	var parts []string
	for _, s := range st {
		if s.reported == s.goal {
			parts = append(parts, s.name+"="+s.reported)
		} else {
			parts = append(parts, s.name+"="+s.reported+"→"+s.goal)
		}
	}
	return strings.Join(parts, " ")
}

// healthy: one node primary and one secondary, both as assigned.
func healthy(st []nodeState) bool {
	var p, s int
	for _, n := range st {
		switch {
		case n.reported != n.goal:
			return false
		case n.reported == "primary":
			p++
		case n.reported == "secondary":
			s++
		}
	}
	return p == 1 && s == 1 && len(st) == 2
}

// waitHealthy waits until the monitor has shown primary + secondary for a
// second on end.
func (c *cluster) waitHealthy(ctx context.Context, timeout time.Duration) error {
	var last []nodeState
	var since time.Time
	err := waitFor(ctx, timeout, "the formation to be primary + secondary", func() (bool, error) {
		st, err := c.states(ctx)
		if err == nil {
			last = st
		}
		if err != nil || !healthy(st) {
			since = time.Time{}
			return false, nil
		}
		if since.IsZero() {
			since = time.Now()
		}
		return time.Since(since) >= time.Second, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last seen: %s)", err, describe(last))
	}
	return nil
}

// role returns the data node the monitor currently has in the given role:
// "primary" (also wait_primary/single) or "secondary".
func (c *cluster) role(ctx context.Context, role string) (*node, error) {
	st, err := c.states(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range st {
		match := s.goal == "secondary"
		if role == "primary" {
			match = s.goal == "primary" || s.goal == "wait_primary" || s.goal == "single"
		}
		if !match {
			continue
		}
		for _, n := range c.nodes {
			if n.name == s.name {
				return n, nil
			}
		}
	}
	return nil, fmt.Errorf("no %s in %s", role, describe(st))
}

// checkpoint runs CHECKPOINT on n, ignoring errors.
func (c *cluster) checkpoint(ctx context.Context, n *node) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, n.superURL())
	if err != nil {
		return
	}
	defer conn.Close(context.Background())
	conn.Exec(ctx, "CHECKPOINT") //nolint:errcheck // best effort
}

// superURL connects to n's giftd database as the postgres superuser.
func (n *node) superURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/giftd?sslmode=disable&connect_timeout=3", n.port)
}

// formationURI is `pg_autoctl show uri --formation default`, with user
// added: the multi-host URL giftd is given.
func (c *cluster) formationURI(ctx context.Context, user string) (string, error) {
	out, err := c.autoctl(ctx, 30*time.Second, "show", "uri", "--pgdata", c.monitor.pgdata, "--formation", "default")
	if err != nil {
		return "", err
	}
	raw := strings.TrimSpace(out)
	if !strings.HasPrefix(raw, "postgres://") || !strings.Contains(raw, "target_session_attrs=read-write") {
		return "", fmt.Errorf("unexpected formation URI %q", raw)
	}
	return "postgres://" + url.User(user).String() + "@" + strings.TrimPrefix(raw, "postgres://"), nil
}

// postmaster is the pid of n's running postmaster, checked against
// /proc so that a stale pid file cannot name someone else's process.
func (n *node) postmaster() (int, error) {
	b, err := os.ReadFile(filepath.Join(n.pgdata, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		return 0, err
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(n.pgdata)) {
		return 0, fmt.Errorf("postmaster %d of %s is not running", pid, n.name)
	}
	return pid, nil
}

// killPostgres crashes n's PostgreSQL: SIGKILL to the postmaster and every
// child of it at once, as the kernel's OOM killer or a power cut would
// leave it. n's pg_autoctl is left running, to restart it.
func (n *node) killPostgres() error {
	pid, err := n.postmaster()
	if err != nil {
		return err
	}
	for _, p := range append(children(pid), pid) {
		syscall.Kill(p, syscall.SIGKILL) //nolint:errcheck // it may be gone already
	}
	return nil
}

// killAll kills n's pg_autoctl service and its PostgreSQL with SIGKILL
// and waits (bounded) for the service to be gone.
func (n *node) killAll() {
	pm, pmErr := n.postmaster()
	var kids []int
	if pmErr == nil {
		kids = children(pm)
	}
	if n.cmd != nil && n.cmd.Process != nil {
		syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck // it may be gone already
	}
	if pmErr == nil {
		for _, p := range append(kids, pm) {
			syscall.Kill(p, syscall.SIGKILL) //nolint:errcheck // it may be gone already
		}
	}
	if n.exited != nil {
		select {
		case <-n.exited:
		case <-time.After(10 * time.Second):
		}
	}
}

// stop asks n's service to stop (SIGTERM: pg_autoctl stops its postgres
// fast), then kills whatever is left after timeout.
func (n *node) stop(timeout time.Duration) {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	syscall.Kill(-n.cmd.Process.Pid, syscall.SIGTERM) //nolint:errcheck // it may be gone already
	select {
	case <-n.exited:
	case <-time.After(timeout):
	}
	n.killAll()
}

// walsender is the pid of n's WAL sender to its standby (n must be the
// primary, with one standby).
func (n *node) walsender() (int, error) {
	pm, err := n.postmaster()
	if err != nil {
		return 0, err
	}
	for _, p := range children(pm) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		if err == nil && bytes.HasPrefix(b, []byte("postgres: walsender")) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%s has no walsender", n.name)
}

// lwlockWaiters counts n's client backends waiting on an LWLock.
func (n *node) lwlockWaiters(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, n.superURL())
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var count int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND wait_event_type = 'LWLock' AND pid <> pg_backend_pid()`).Scan(&count)
	return count, err
}

// accepting reports whether n's PostgreSQL answers a query.
func (n *node) accepting(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, n.superURL())
	if err != nil {
		return false
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx) == nil
}

// children are the pids whose parent is pid.
func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// stopAll stops every service, data nodes first.
func (c *cluster) stopAll() {
	for _, n := range c.nodes {
		n.stop(15 * time.Second)
	}
	if c.monitor != nil {
		c.monitor.stop(15 * time.Second)
	}
}

// exposed lists the listening TCP sockets on the given ports that are
// bound to anything but loopback (127.0.0.0/8, ::1, ::ffff:127.x), read
// from /proc/net/tcp and tcp6: everything this run starts must listen on
// 127.0.0.1 only.
func exposed(ports []int) []string {
	var out []string
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if b, err := os.ReadFile(file); err == nil {
			out = append(out, exposedIn(string(b), file, ports)...)
		}
	}
	return out
}

// exposedIn is exposed on the text of one /proc/net/tcp* file.
func exposedIn(table, file string, ports []int) []string {
	mine := map[int]bool{}
	for _, p := range ports {
		mine[p] = true
	}
	var out []string
	for _, line := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "0A" { // 0A: LISTEN
			continue
		}
		addr, portHex, ok := strings.Cut(f[1], ":")
		port, err := strconv.ParseInt(portHex, 16, 32)
		if !ok || err != nil || !mine[int(port)] {
			continue
		}
		loopback := len(addr) == 8 && strings.HasSuffix(addr, "7F") || // 127.x.x.x, little-endian
			addr == "00000000000000000000000001000000" || // ::1
			len(addr) == 32 && strings.HasPrefix(addr, "0000000000000000FFFF0000") && strings.HasSuffix(addr, "7F")
		if !loopback {
			out = append(out, fmt.Sprintf("port %d listens on %s (%s)", port, addr, file))
		}
	}
	return out
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls cond every 250 ms until it holds, fails, or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
