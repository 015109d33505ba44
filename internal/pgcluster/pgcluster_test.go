package pgcluster

import (
	"context"
	"errors"
	"net"
	"os"
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
