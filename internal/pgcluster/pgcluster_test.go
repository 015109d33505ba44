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
