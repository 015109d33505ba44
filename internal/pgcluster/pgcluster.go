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
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
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
	// Dir is the parent of the data folder (Dir/data); the server log and the
	// unix socket go there too. A data folder already initialised there is
	// reused. Empty means a fresh temporary folder, removed by Stop.
	Dir string
	// Settings are extra server settings, each "name=value", passed to the
	// server as -c name=value (e.g. "fsync=off").
	Settings []string
	// Log receives the output of initdb and pg_ctl; nil discards it. The
	// server's own log always goes to server.log in the folder, and its tail
	// is part of every error Start returns after the server was asked to start.
	Log io.Writer
}

// A Cluster is a running throwaway PostgreSQL server. Stop it with Stop.
type Cluster struct {
	// URL connects to the maintenance database as the superuser postgres:
	// postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable.
	URL string

	binDir    string
	dir       string // parent of the data folder
	dataDir   string
	socketDir string
	logPath   string
	port      int
	opts      string // the server options it was started with, for Restart
	log       io.Writer

	removeDir       bool // Start made dir, so Stop removes it
	removeSocketDir bool // Start made socketDir apart from dir

	// osUser runs initdb and pg_ctl when we are root, through runuser or su.
	osUser  string
	runuser string
	su      string

	stopOnce sync.Once
	stopErr  error
}

const (
	// maxSocketDir keeps "<dir>/.s.PGSQL.65535.lock" within the 107 bytes a
	// unix socket path may have.
	maxSocketDir = 80
	startTries   = 5
)

// Start initialises a data folder (unless opts.Dir already holds one), starts
// a server on a free port of 127.0.0.1 and checks that it accepts a
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

// launch starts a server on a data folder that makeData fills unless
// opts.Dir already holds one (see Start).
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
	c := &Cluster{binDir: binDir, log: opts.Log}
	if err := c.chooseOSUser(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()
	if err := c.makeDirs(opts.Dir); err != nil {
		return nil, err
	}
	if err := c.ownDirs(); err != nil {
		return nil, err
	}
	// A data folder made by an earlier start on the same Dir is reused.
	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); err != nil {
		if err := makeData(c, ctx); err != nil {
			return nil, err
		}
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
// SIGKILL to the postmaster), and removes the folder if Start made it. It
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
	if c.removeSocketDir {
		if err := os.RemoveAll(c.socketDir); err != nil {
			errs = append(errs, fmt.Errorf("pgcluster: remove socket folder: %w", err))
		}
	}
	if c.removeDir {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("pgcluster: remove folder: %w", err))
		}
	}
	return errors.Join(errs...)
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
	b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pgcluster: read postmaster.pid: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return fmt.Errorf("pgcluster: postmaster.pid holds no process id: %q", first)
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

// chooseOSUser decides how initdb and pg_ctl run: directly, or as the OS
// user postgres when we are root.
func (c *Cluster) chooseOSUser() error {
	if os.Geteuid() != 0 {
		return nil
	}
	if _, err := user.Lookup("postgres"); err != nil {
		return fmt.Errorf("pgcluster: running as root, and PostgreSQL refuses to run as root, "+
			"but there is no OS user postgres to run it as (create one, or run as another user): %w", err)
	}
	c.osUser = "postgres"
	if p, err := exec.LookPath("runuser"); err == nil {
		c.runuser = p
		return nil
	}
	p, err := exec.LookPath("su")
	if err != nil {
		return fmt.Errorf("pgcluster: running as root, need runuser or su to run PostgreSQL as postgres: %w", err)
	}
	c.su = p
	return nil
}

// makeDirs makes the folder (a short temporary one unless dir is given) and,
// if the folder's path is too long for a unix socket, a short socket folder.
func (c *Cluster) makeDirs(dir string) error {
	if dir == "" {
		d, err := os.MkdirTemp(shortTempBase(), "pgc")
		if err != nil {
			return fmt.Errorf("pgcluster: make temporary folder: %w", err)
		}
		c.dir, c.removeDir = d, true
	} else {
		d, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("pgcluster: folder %q: %w", dir, err)
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("pgcluster: make folder: %w", err)
		}
		c.dir = d
	}
	c.dataDir = filepath.Join(c.dir, "data")
	c.logPath = filepath.Join(c.dir, "server.log")
	c.socketDir = c.dir
	if len(c.socketDir) > maxSocketDir {
		d, err := os.MkdirTemp(shortTempBase(), "pgs")
		if err != nil {
			return fmt.Errorf("pgcluster: make socket folder: %w", err)
		}
		c.socketDir, c.removeSocketDir = d, true
	}
	return nil
}

// shortTempBase is os.TempDir unless that is too long to hold a socket.
func shortTempBase() string {
	if base := os.TempDir(); len(base) <= maxSocketDir-20 {
		return base
	}
	return "/tmp"
}

// ownDirs hands the folders to the OS user postgres when we are root: the
// temporary folders are 0700, and the server must create its data folder,
// log and socket inside them.
func (c *Cluster) ownDirs() error {
	if c.osUser == "" {
		return nil
	}
	u, err := user.Lookup(c.osUser)
	if err != nil {
		return fmt.Errorf("pgcluster: look up OS user %s: %w", c.osUser, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("pgcluster: OS user %s: %w", c.osUser, err)
	}
	for _, dir := range []string{c.dir, c.socketDir} {
		if err := checkReachable(dir, u); err != nil {
			return err
		}
	}
	for _, root := range []string{c.dir, c.socketDir} {
		err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, uid, gid)
		})
		if err != nil {
			return fmt.Errorf("pgcluster: give %s to OS user %s: %w", root, c.osUser, err)
		}
	}
	return nil
}

// checkReachable tells, before initdb says only "Permission denied", that
// an ancestor of dir keeps the OS user u out.
func checkReachable(dir string, u *user.User) error {
	groups, _ := u.GroupIds() // without the list, only the primary group counts
	groups = append(groups, u.Gid)
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		perm := fi.Mode().Perm()
		switch {
		case !ok, perm&0o001 != 0:
		case strconv.Itoa(int(st.Uid)) == u.Uid:
			if perm&0o100 == 0 {
				return unreachable(dir, d, u)
			}
		case slices.Contains(groups, strconv.Itoa(int(st.Gid))):
			if perm&0o010 == 0 {
				return unreachable(dir, d, u)
			}
		default:
			return unreachable(dir, d, u)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func unreachable(dir, blocker string, u *user.User) error {
	return fmt.Errorf("pgcluster: the server runs as OS user %s, which cannot enter %s to reach %s: "+
		"choose a folder it can reach, or leave Dir empty for a temporary one", u.Username, blocker, dir)
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
			"-k", shellQuote(c.socketDir),
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
	if err := c.run(ctx, "pg_ctl", "-D", c.dataDir, "-l", c.logPath, "-w", "-t", "60", "-o", c.opts, "start"); err != nil {
		return fmt.Errorf("pgcluster: restart server: %w", err)
	}
	return c.ping(ctx)
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
// cancelling ctx kills the program and not only runuser or su.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append([]string{c.program(name)}, args...)
	var cmd *exec.Cmd
	switch {
	case c.runuser != "":
		cmd = exec.CommandContext(ctx, c.runuser, append([]string{"-u", c.osUser, "--"}, argv...)...)
	case c.su != "":
		quoted := make([]string, len(argv))
		for i, a := range argv {
			quoted[i] = shellQuote(a)
		}
		cmd = exec.CommandContext(ctx, c.su, c.osUser, "-s", "/bin/sh", "-c", "exec "+strings.Join(quoted, " "))
	default:
		cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	}
	// The postgres user may not be able to enter our working folder.
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
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

// run runs a PostgreSQL program, copying its output to the Log writer; its
// error includes the end of that output.
func (c *Cluster) run(ctx context.Context, name string, args ...string) error {
	var out bytes.Buffer
	w := io.Writer(&out)
	if c.log != nil {
		w = io.MultiWriter(&out, c.log)
	}
	cmd := c.command(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		msg := fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
		if out.Len() > 0 {
			msg = fmt.Errorf("%w\n%s output:\n%s", msg, name, lastLines(out.Bytes(), 20))
		}
		return msg
	}
	return nil
}

// shellQuote quotes s for /bin/sh, which pg_ctl -o and su -c go through.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
