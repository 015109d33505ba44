package pgcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestStart_ServesQueriesAndStopCleansUp(t *testing.T) {
	if _, err := FindBinaries(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Settings: []string{"fsync=off"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })

	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	var one int
	var fsync string
	err = conn.QueryRow(ctx, "SELECT 1, current_setting('fsync')").Scan(&one, &fsync)
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if one != 1 || fsync != "off" {
		t.Errorf("SELECT 1, fsync = %d, %q; want 1, \"off\"", one, fsync)
	}

	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := os.Stat(c.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("folder %s after Stop: %v; want it gone", c.dir, err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port))
	if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		nc.Close()
		t.Errorf("port %d still accepts connections after Stop", c.port)
	}
}

func TestFindBinaries_PicksHighestVersion(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"9.6", "15", "12", "beta"} {
		bin := filepath.Join(root, v, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"initdb", "pg_ctl"} {
			if err := os.WriteFile(filepath.Join(bin, name), nil, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	notOnPath := func(string) (string, error) { return "", errors.New("not found") }

	got, err := findBinaries(notOnPath, filepath.Join(root, "*", "bin"))
	if want := filepath.Join(root, "15", "bin"); err != nil || got != want {
		t.Errorf("findBinaries = %q, %v; want %q", got, err, want)
	}

	_, err = findBinaries(notOnPath, filepath.Join(t.TempDir(), "*", "bin"))
	if !errors.Is(err, ErrNoBinaries) || !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Errorf("findBinaries with nothing installed: %v; want ErrNoBinaries saying what to install", err)
	}
}

func TestStartStandby_StreamsAndPromotes(t *testing.T) {
	if _, err := FindBinaries(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	primary, err := Start(ctx, Options{Settings: []string{"fsync=off", "synchronous_standby_names=pgc_standby"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = primary.Stop() })
	standby, err := StartStandby(ctx, primary, "pgc_standby", "", Options{Settings: []string{"fsync=off"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = standby.Stop() })

	// With the standby synchronous, a commit returns once the standby has it.
	exec := func(url, sql string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(primary.URL, "CREATE TABLE t AS SELECT 42 AS x")
	var state string
	conn, err := pgx.Connect(ctx, primary.URL)
	if err != nil {
		t.Fatal(err)
	}
	err = conn.QueryRow(ctx, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'pgc_standby'").Scan(&state)
	conn.Close(ctx)
	if err != nil || state != "sync" {
		t.Fatalf("standby's sync_state = %q, %v; want sync", state, err)
	}

	if err := primary.Crash(); err != nil {
		t.Fatal(err)
	}
	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	exec(standby.URL, "INSERT INTO t VALUES (43)")
	conn, err = pgx.Connect(ctx, standby.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var sum int
	if err := conn.QueryRow(ctx, "SELECT sum(x) FROM t").Scan(&sum); err != nil || sum != 85 {
		t.Errorf("sum on the promoted standby = %d, %v; want 85", sum, err)
	}
}

// TestStart_ServerEndsWithItsOwner kills a process that started a server,
// with SIGKILL, so that it cleans nothing up (as a test binary panicking at
// its timeout does not): the server's watchdog must stop the server and
// remove its folder.
func TestStart_ServerEndsWithItsOwner(t *testing.T) {
	if os.Getenv("PGCLUSTER_TEST_OWNER") != "" {
		ownAServer()
		return
	}
	if _, err := FindBinaries(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	owner := exec.Command(os.Args[0], "-test.run=^TestStart_ServerEndsWithItsOwner$")
	owner.Env = append(os.Environ(), "PGCLUSTER_TEST_OWNER=1")
	out, err := owner.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	owner.Stderr = os.Stderr
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	var dir string
	var pid int
	for sc := bufio.NewScanner(out); sc.Scan(); {
		if _, err := fmt.Sscanf(sc.Text(), "owner: %s %d", &dir, &pid); err == nil {
			break
		}
	}
	if dir == "" || pid == 0 {
		_ = owner.Process.Kill()
		_ = owner.Wait()
		t.Fatal("the owner process gave no server")
	}
	if gone(pid) {
		t.Fatalf("postmaster %d not running before its owner is killed", pid)
	}
	if err := owner.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = owner.Wait()
	// The watchdog's work is an event of its own: poll for it, for as long
	// as pg_ctl stop may take on a slow machine.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		_, statErr := os.Stat(dir)
		if gone(pid) && errors.Is(statErr, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after its owner was killed: postmaster %d gone %v, folder %s: %v", pid, gone(pid), dir, statErr)
		}
	}
}

// ownAServer is the owner process of TestStart_ServerEndsWithItsOwner: it
// starts a server, says where, and waits to be killed.
func ownAServer() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Settings: []string{"fsync=off"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pid, err := c.postmasterPID()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("owner: %s %d\n", c.dir, pid)
	time.Sleep(time.Hour)
}

// TestKill_EndsEveryProcessAndStartAgainRecovers kills a server with an
// open session (a backend the postmaster started), then starts it again: it
// must come back on the same URL with what was committed.
func TestKill_EndsEveryProcessAndStartAgainRecovers(t *testing.T) {
	if _, err := FindBinaries(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Settings: []string{"fsync=off"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	pid, err := c.postmasterPID()
	if err != nil || pid == 0 {
		t.Fatalf("postmaster pid: %d, %v", pid, err)
	}
	kids := childrenOf(pid)
	if len(kids) == 0 {
		t.Fatal("the postmaster has no child processes to kill")
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(kids, pid) {
		if !gone(p) {
			t.Errorf("process %d alive after Kill", p)
		}
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("a session of the killed server still answers")
	}
	if err := c.StartAgain(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close(context.Background())
	var n int
	if err := again.QueryRow(ctx, `SELECT n FROM kept`).Scan(&n); err != nil || n != 42 {
		t.Errorf("after StartAgain: %d, %v; want the committed 42", n, err)
	}
}
