// Package pgcluster starts a private, throwaway PostgreSQL server from the
// machine's own server binaries (initdb and pg_ctl), for giftd dev and for
// tests. It listens on a free TCP port of 127.0.0.1 only and trusts every
// local connection, so it must never hold data anyone cares about.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoBinaries is returned, wrapped with what was searched and what to do,
// when FindBinaries finds no initdb and pg_ctl.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries found")

// Options configures Start.
type Options struct {
	// Settings are extra server settings, each "name=value", passed to the
	// server as -c name=value (e.g. "fsync=off").
	Settings []string
}

// A Cluster is a running throwaway PostgreSQL server. Stop it with Stop.
type Cluster struct {
	// URL connects to the maintenance database as the superuser postgres:
	// postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable.
	URL string

	binDir  string
	dir     string // a temporary folder: the data folder, the log and the socket; Stop removes it
	dataDir string
	logPath string
	port    int
	opts    string // the server options it was started with, for Restart

	// asUser runs the PostgreSQL programs as the OS user postgres when we
	// are root (PostgreSQL refuses to run as root); nil: as ourselves.
	asUser *syscall.Credential

	// watchdog is the write end of the pipe the watchdog process reads
	// (see watch); only this process holds it, and never writes to it.
	watchdog *os.File

	stopOnce sync.Once
	stopErr  error
}

const (
	// maxTempBase keeps "<base>/pgcNNNNNNNNNN/.s.PGSQL.65535.lock" within the
	// 107 bytes a unix socket path may have.
	maxTempBase = 60
	startTries  = 5
)

// Start initialises a data folder in a new temporary folder, starts a server on a free port of 127.0.0.1 and checks that it accepts a
// connection. When run as root it runs the server as the OS user postgres,
// since PostgreSQL refuses to run as root. ctx bounds Start only: once Start
// returns, the server runs until Stop. On failure Start stops the server and
// removes what it created; its error wraps ErrNoBinaries when there is no
// server to start, and otherwise includes the failing program's output or the
// tail of the server log.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	return launch(ctx, opts, (*Cluster).initdb)
}

// StartStandby starts a hot standby of primary, with opts as Start takes
// them: a base backup of primary (pg_basebackup), then streaming replication
// from upstream ("host:port"; primary's own address when empty, or a proxy
// in front of it) under the application_name name, which primary's
// synchronous_standby_names can list. Promote makes it a primary. Its errors
// are Start's, and pg_basebackup's output when the backup fails.
func StartStandby(ctx context.Context, primary *Cluster, name, upstream string, opts Options) (*Cluster, error) {
	if upstream == "" {
		upstream = net.JoinHostPort("127.0.0.1", strconv.Itoa(primary.port))
	}
	host, port, err := net.SplitHostPort(upstream)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: standby upstream %q: want host:port", upstream)
	}
	conninfo := fmt.Sprintf("host=%s port=%s user=postgres application_name=%s", host, port, name)
	// The command line outranks the primary_conninfo pg_basebackup -R writes.
	opts.Settings = append([]string{"primary_conninfo=" + conninfo}, opts.Settings...)
	return launch(ctx, opts, func(c *Cluster, ctx context.Context) error {
		return c.basebackup(ctx, primary)
	})
}

// launch starts a server on a data folder that makeData fills.
func launch(ctx context.Context, opts Options, makeData func(*Cluster, context.Context) error) (_ *Cluster, err error) {
	binDir, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	for _, s := range opts.Settings {
		if name, _, ok := strings.Cut(s, "="); !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("pgcluster: setting %q: want name=value", s)
		}
	}
	c := &Cluster{binDir: binDir}
	if c.asUser, err = osUser(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()
	if err := c.makeDir(); err != nil {
		return nil, err
	}
	if err := c.watch(); err != nil {
		return nil, err
	}
	if err := makeData(c, ctx); err != nil {
		return nil, err
	}
	if err := c.start(ctx, opts.Settings); err != nil {
		return nil, err
	}
	if err := c.ping(ctx); err != nil {
		return nil, fmt.Errorf("pgcluster: connect to new server: %w%s", err, c.logTail(0))
	}
	return c, nil
}

// Stop stops the server (pg_ctl stop -m fast, then -m immediate, then
// SIGKILL to the postmaster), and removes its folder. It
// waits at most about a minute, whatever any context says, so a process can
// call it on its way out. Calling it again returns the first call's error.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *Cluster) stop() error {
	var errs []error
	if c.dataDir != "" && c.running() {
		if err := c.pgctlStop("fast", 30*time.Second); err != nil {
			if err := c.pgctlStop("immediate", 15*time.Second); err != nil {
				if kerr := c.killPostmaster(); kerr != nil {
					errs = append(errs, err, kerr)
				}
			}
		}
	}
	if c.dir != "" {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("pgcluster: remove folder: %w", err))
		}
	}
	if c.watchdog != nil {
		// The watchdog finds nothing left to stop or remove, and exits.
		c.watchdog.Close()
	}
	return errors.Join(errs...)
}

// watch starts the cluster's watchdog: a shell, as the user the server runs
// as, that reads a pipe whose write end only this process holds. When this
// process ends without Stop (killed, or a test binary panicking at its
// timeout, which runs no cleanup), the kernel closes that end, the read
// returns, and the watchdog stops the server (-m immediate) and removes its
// folder, so that no throwaway server outlives its owner. Stop closes the end
// itself, after removing the folder: the watchdog then finds nothing to do.
// It runs in a process group of its own, so that a Ctrl-C reaching this
// process's group does not stop it before it is needed.
func (c *Cluster) watch() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("pgcluster: watchdog pipe: %w", err)
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", `read -r _; "$1" -D "$2" -m immediate -w stop >/dev/null 2>&1; rm -rf "$3"`,
		"pgcluster-watchdog", c.program("pg_ctl"), c.dataDir, c.dir)
	cmd.Stdin = r
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.asUser}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("pgcluster: start watchdog: %w", err)
	}
	go cmd.Wait() // reap it when it exits
	c.watchdog = w
	return nil
}

// running reports whether a postmaster.pid says a server may be running.
func (c *Cluster) running() bool {
	_, err := os.Stat(filepath.Join(c.dataDir, "postmaster.pid"))
	return err == nil
}

func (c *Cluster) pgctlStop(mode string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	secs := strconv.Itoa(int(timeout / time.Second))
	if err := c.run(ctx, "pg_ctl", "-D", c.dataDir, "-m", mode, "-w", "-t", secs, "stop"); err != nil {
		return fmt.Errorf("pgcluster: stop server: %w", err)
	}
	return nil
}

// killPostmaster is the last resort when pg_ctl cannot stop the server: the
// backends exit by themselves once they see the postmaster gone.
func (c *Cluster) killPostmaster() error {
	pid, err := c.postmasterPID()
	if err != nil || pid == 0 {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("pgcluster: kill postmaster %d: %w", pid, err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("pgcluster: postmaster %d still alive after SIGKILL", pid)
}

// FindBinaries returns the folder holding PostgreSQL's initdb and pg_ctl:
// the one on PATH if both are there, side by side, else the highest version
// of /usr/lib/postgresql/*/bin (where Debian and Ubuntu put them). Its error
// wraps ErrNoBinaries and says what to install.
func FindBinaries() (dir string, err error) {
	return findBinaries(exec.LookPath, "/usr/lib/postgresql/*/bin")
}

func findBinaries(lookPath func(string) (string, error), pattern string) (string, error) {
	initdb, err1 := lookPath("initdb")
	pgctl, err2 := lookPath("pg_ctl")
	if err1 == nil && err2 == nil && filepath.Dir(initdb) == filepath.Dir(pgctl) {
		return filepath.Dir(initdb), nil
	}
	dirs, _ := filepath.Glob(pattern) // the pattern is constant and valid
	best, bestVersion := "", []int(nil)
	for _, d := range dirs {
		v, ok := parseVersion(filepath.Base(filepath.Dir(d)))
		if !ok || !isExecutable(filepath.Join(d, "initdb")) || !isExecutable(filepath.Join(d, "pg_ctl")) {
			continue
		}
		if best == "" || versionLess(bestVersion, v) {
			best, bestVersion = d, v
		}
	}
	if best == "" {
		return "", fmt.Errorf("%w (looked for initdb and pg_ctl on PATH and in %s): install them "+
			"(Debian/Ubuntu: apt-get install postgresql) or set DATABASE_URL to an existing server",
			ErrNoBinaries, pattern)
	}
	return best, nil
}

// parseVersion parses "15" or "9.6" into its numbers.
func parseVersion(s string) ([]int, bool) {
	var v []int
	for _, part := range strings.Split(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return nil, false
		}
		v = append(v, n)
	}
	return v, true
}

func versionLess(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// osUser is the OS user postgres's credential when we are root, since
// PostgreSQL refuses to run as root; nil otherwise.
func osUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgcluster: running as root, and PostgreSQL refuses to run as root, "+
			"but there is no OS user postgres to run it as (create one, or run as another user): %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pgcluster: OS user postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// makeDir makes the cluster's temporary folder, short enough to hold the
// server's unix socket, and owned by the user the server runs as. As root
// it is made under /tmp, which every user can enter.
func (c *Cluster) makeDir() error {
	base := os.TempDir()
	if c.asUser != nil || len(base) > maxTempBase {
		base = "/tmp"
	}
	d, err := os.MkdirTemp(base, "pgc")
	if err != nil {
		return fmt.Errorf("pgcluster: make temporary folder: %w", err)
	}
	c.dir = d
	c.dataDir = filepath.Join(d, "data")
	c.logPath = filepath.Join(d, "server.log")
	if c.asUser != nil {
		if err := os.Chown(d, int(c.asUser.Uid), int(c.asUser.Gid)); err != nil {
			return fmt.Errorf("pgcluster: give %s to OS user postgres: %w", d, err)
		}
	}
	return nil
}

func (c *Cluster) initdb(ctx context.Context) error {
	args := []string{"-D", c.dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"}
	var help bytes.Buffer
	cmd := c.command(ctx, "initdb", "--help")
	cmd.Stdout = &help
	if err := cmd.Run(); err == nil && strings.Contains(help.String(), "--no-instructions") {
		args = append(args, "--no-instructions")
	}
	if err := c.run(ctx, "initdb", args...); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return nil
}

// basebackup copies primary's data folder into c's, with standby.signal and
// a primary_conninfo (-R): a standby once started.
func (c *Cluster) basebackup(ctx context.Context, primary *Cluster) error {
	err := c.run(ctx, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres",
		"-D", c.dataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return nil
}

// start starts the server, on a new free port each time the port it picked
// was taken meanwhile.
func (c *Cluster) start(ctx context.Context, settings []string) error {
	var err error
	for try := 0; try < startTries; try++ {
		c.port, err = freePort()
		if err != nil {
			return err
		}
		var logStart int64
		if fi, statErr := os.Stat(c.logPath); statErr == nil {
			logStart = fi.Size()
		}
		opts := []string{
			"-p", strconv.Itoa(c.port),
			"-c", "listen_addresses=127.0.0.1",
			"-k", shellQuote(c.dir),
			"-c", "max_connections=200",
		}
		for _, s := range settings {
			opts = append(opts, "-c", shellQuote(s))
		}
		c.opts = strings.Join(opts, " ")
		err = c.run(ctx, "pg_ctl", "-D", c.dataDir, "-l", c.logPath, "-w", "-t", "60", "-o", c.opts, "start")
		if err == nil {
			c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
			return nil
		}
		tail := c.logTail(logStart)
		err = fmt.Errorf("pgcluster: start server on port %d: %w%s", c.port, err, tail)
		if ctx.Err() != nil || (!strings.Contains(tail, "could not bind") && !strings.Contains(tail, "already in use")) {
			return err
		}
		if c.running() {
			// Port taken after the server wrote its pid file: stop before retrying.
			_ = c.pgctlStop("immediate", 10*time.Second)
		}
	}
	return err
}

// Restart stops the server in mode ("fast" or "immediate", the latter a
// crash as far as the database is concerned), waits down, and starts it again
// on the same port: for tests of database outages.
func (c *Cluster) Restart(ctx context.Context, mode string, down time.Duration) error {
	if err := c.pgctlStop(mode, 30*time.Second); err != nil {
		return err
	}
	select {
	case <-time.After(down):
	case <-ctx.Done():
		return ctx.Err()
	}
	return c.StartAgain(ctx)
}

// StartAgain starts a server that Crash or Kill stopped, on the same port
// and with the same settings, and waits until it accepts a connection
// (after its crash recovery).
func (c *Cluster) StartAgain(ctx context.Context) error {
	if err := c.run(ctx, "pg_ctl", "-D", c.dataDir, "-l", c.logPath, "-w", "-t", "60", "-o", c.opts, "start"); err != nil {
		return fmt.Errorf("pgcluster: start server again: %w%s", err, c.logTail(0))
	}
	return c.ping(ctx)
}

// Kill ends the server as a crash of its machine would: SIGKILL to the
// postmaster and to every process it had started, at once, with no
// shutdown of any kind (Crash, by contrast, is PostgreSQL's own immediate
// stop). Committed data survives (the files stay), what was in flight is
// cut. It returns once all of them are gone; StartAgain starts it again.
func (c *Cluster) Kill() error {
	pid, err := c.postmasterPID()
	if err != nil || pid == 0 {
		return err
	}
	// The children first noted, then everything killed: a backend left
	// alive would hold the old shared memory, and PostgreSQL refuses to
	// start again while it does.
	pids := append(childrenOf(pid), pid)
	for _, p := range pids {
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("pgcluster: kill process %d: %w", p, err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		alive := 0
		for _, p := range pids {
			if gone(p) {
				continue
			}
			alive++
		}
		if alive == 0 {
			// A zombie postmaster, until its new parent reaps it, would make
			// the next start refuse the lock files: the server is dead, the
			// files stale, as after a machine's reboot.
			for _, f := range []string{filepath.Join(c.dataDir, "postmaster.pid"), filepath.Join(c.dir, fmt.Sprintf(".s.PGSQL.%d.lock", c.port))} {
				if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("pgcluster: remove the killed server's lock file: %w", err)
				}
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgcluster: %d server processes still alive 10s after SIGKILL", alive)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gone reports whether process pid has exited (a zombie counts: it holds
// no shared memory).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, after, ok := strings.Cut(string(b), ") ")
	return ok && strings.HasPrefix(after, "Z")
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		_, after, ok := strings.Cut(string(b), ") ")
		if f := strings.Fields(after); ok && len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, p)
		}
	}
	return kids
}

// postmasterPID reads the postmaster's process id from postmaster.pid; 0
// when there is none (the server is not running).
func (c *Cluster) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("pgcluster: read postmaster.pid: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pgcluster: postmaster.pid holds no process id: %q", first)
	}
	return pid, nil
}

// Crash stops the server at once (pg_ctl stop -m immediate): no checkpoint,
// and nothing more is sent to standbys. It stays down; Stop still cleans up.
func (c *Cluster) Crash() error {
	return c.pgctlStop("immediate", 30*time.Second)
}

// Promote turns a standby (see StartStandby) into a primary and waits until
// it accepts writes.
func (c *Cluster) Promote(ctx context.Context) error {
	if err := c.run(ctx, "pg_ctl", "-D", c.dataDir, "-w", "-t", "60", "promote"); err != nil {
		return fmt.Errorf("pgcluster: promote: %w%s", err, c.logTail(0))
	}
	return nil
}

func (c *Cluster) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgcluster: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// logTail returns the last lines the server logged from byte offset from on,
// formatted to end an error message, or "" if there are none.
func (c *Cluster) logTail(from int64) string {
	b, err := os.ReadFile(c.logPath)
	if err != nil || int64(len(b)) <= from {
		return ""
	}
	return "\nserver log (" + c.logPath + "):\n" + lastLines(b[from:], 20)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// command returns a command running the PostgreSQL program name, as the OS
// user postgres when we are root. It runs in its own process group so that
// cancelling ctx kills the program and whatever it started.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.program(name), args...)
	// The postgres user may not be able to enter our working folder.
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.asUser}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// program returns the path of the PostgreSQL program name: in the folder of
// initdb and pg_ctl, or, when those are links to the real ones (as in
// /usr/local/bin), beside what pg_ctl links to.
func (c *Cluster) program(name string) string {
	path := filepath.Join(c.binDir, name)
	if isExecutable(path) {
		return path
	}
	if real, err := filepath.EvalSymlinks(filepath.Join(c.binDir, "pg_ctl")); err == nil {
		if p := filepath.Join(filepath.Dir(real), name); isExecutable(p) {
			return p
		}
	}
	return path
}

// run runs a PostgreSQL program; its error includes the end of its output.
func (c *Cluster) run(ctx context.Context, name string, args ...string) error {
	var out bytes.Buffer
	cmd := c.command(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
		if out.Len() > 0 {
			msg = fmt.Errorf("%w\n%s output:\n%s", msg, name, lastLines(out.Bytes(), 20))
		}
		return msg
	}
	return nil
}

// shellQuote quotes s for /bin/sh, which pg_ctl -o goes through.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
