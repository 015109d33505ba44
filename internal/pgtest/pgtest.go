// Package pgtest gives each test a fresh PostgreSQL database with every
// migration applied. It is for tests only.
//
// The server is the one named by GIFTD_TEST_DATABASE_URL, else by
// DATABASE_URL, else a throwaway server that pgtest starts from the machine's
// PostgreSQL binaries (see package pgcluster), once per test process. If that
// server cannot start, tests that need a database fail when the environment
// variable CI is set, and are skipped, saying why, when it is not.
//
// Per process, pgtest migrates one template database; each URL call copies it
// with CREATE DATABASE … TEMPLATE, which is much faster than migrating anew.
package pgtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/ledger"
	"giftd/internal/pgcluster"
)

// shared is the one server of this test process. It is package state, unlike
// everywhere else in giftd, because go test calls TestMain and the tests as
// plain functions: nothing else could carry it from one to the others.
var shared server

// server is a PostgreSQL server, its migrated template database and an
// admin connection to it.
type server struct {
	mainCalled atomic.Bool
	setupOnce  sync.Once
	closeOnce  sync.Once

	// mu guards everything below, and serialises the admin connection's use:
	// a pgx.Conn is not safe for concurrent use, and PostgreSQL refuses to
	// copy a template for two CREATE DATABASE at once.
	mu       sync.Mutex
	closed   bool
	url      string // the server's URL, as configured or from cluster
	envName  string // the variable url came from, or ""
	cluster  *pgcluster.Cluster
	admin    *pgx.Conn
	template string
	strategy string // CREATE DATABASE's STRATEGY clause, where the server has one
	startErr error  // a throwaway server could not start: skip, or fail under CI
	err      error  // anything else went wrong: fail
	closeErr error
}

// Main runs the package's tests with m.Run, then drops the template database
// (on a configured server) or stops the throwaway server (if it started one),
// and exits with the tests' code, or 1 if cleaning up failed. It cleans up
// too when the process gets SIGINT or SIGTERM. Use it as:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	shared.mainCalled.Store(true)

	// Ctrl-C during go test must not leave a PostgreSQL server behind.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case sig := <-sigs:
			msg := "cleaned up PostgreSQL test databases"
			if err := shared.close(); err != nil {
				msg = err.Error()
			}
			fmt.Fprintf(os.Stderr, "pgtest: %v: %s\n", sig, msg)
			os.Exit(1)
		case <-done:
		}
	}()

	code := m.Run()
	signal.Stop(sigs)
	close(done)
	wg.Wait()
	if err := shared.close(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// URL returns the connection URL of a new database, a copy of the migrated
// template, which is dropped (WITH (FORCE)) when tb's test and its subtests
// end. It fails tb if the package's TestMain does not call Main, or if no
// server is available and CI is set; with no server and no CI it skips tb.
func URL(tb testing.TB) string {
	tb.Helper()
	shared.ready(tb)
	return shared.database(tb, "giftd_t_"+randomHex(), shared.createDatabase)
}

// database makes the database name with create and drops it when tb ends;
// it fails tb if either fails.
func (s *server) database(tb testing.TB, name string, create func(name string) (string, error)) string {
	tb.Helper()
	u, err := create(name)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.dropDatabase(name); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return u
}

// ready sets the server up on first use, and fails or skips tb as URL says
// when there is none.
func (s *server) ready(tb testing.TB) {
	tb.Helper()
	if !s.mainCalled.Load() {
		tb.Fatal("pgtest: the package's TestMain must call pgtest.Main(m), " +
			"which stops the throwaway PostgreSQL after the tests")
	}
	s.setupOnce.Do(s.setup)
	if err := s.startErr; err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("pgtest: %v", err)
		}
		tb.Skipf("pgtest: skipped since CI is not set: %v", err)
	}
	if s.err != nil {
		tb.Fatalf("pgtest: %v", s.err)
	}
}

// setup finds or starts the server and makes the template database; it
// records what went wrong in startErr or err.
func (s *server) setup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.err = errors.New("the test process is shutting down")
		return
	}
	for _, name := range []string{"GIFTD_TEST_DATABASE_URL", "DATABASE_URL"} {
		if v := os.Getenv(name); v != "" {
			s.url, s.envName = v, name
			break
		}
	}
	if s.url == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// wal_level=logical and room for logical replication's workers:
		// giftd reshard copies partitions by it (internal/partition).
		c, err := pgcluster.Start(ctx, pgcluster.Options{Settings: []string{"fsync=off", "full_page_writes=off",
			"wal_level=logical", "max_worker_processes=16", "max_logical_replication_workers=8"}})
		if err != nil {
			s.startErr = fmt.Errorf("no GIFTD_TEST_DATABASE_URL or DATABASE_URL, and could not start a throwaway PostgreSQL: %w", err)
			return
		}
		s.cluster, s.url = c, c.URL
	}
	s.err = s.makeTemplate()
}

// where names the server in errors without printing its URL, which may hold
// a password.
func (s *server) where() string {
	if s.envName != "" {
		return "the server of " + s.envName
	}
	return "the throwaway PostgreSQL"
}

// makeTemplate connects the admin connection and makes and migrates the
// template database. It is called with mu held.
func (s *server) makeTemplate() error {
	name := "giftd_tpl_" + randomHex()
	tplURL, err := databaseURL(s.url, name)
	if err != nil {
		return fmt.Errorf("%s: %w", cmp.Or(s.envName, "the throwaway server's URL"), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The URL's own database serves as the maintenance database: it exists,
	// and the configured role may connect to it.
	s.admin, err = pgx.Connect(ctx, s.url)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", s.where(), err)
	}
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create template database on %s: %w", s.where(), err)
	}
	s.template = name
	var version int
	if err := s.admin.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return fmt.Errorf("read the version of %s: %w", s.where(), err)
	}
	if version >= 150000 {
		s.strategy = " STRATEGY = FILE_COPY"
	}
	if err := ledger.Migrate(tplURL); err != nil {
		return fmt.Errorf("migrate template database %s: %w", name, err)
	}
	return nil
}

// createDatabase copies the template into a new database called name and
// returns its URL. FILE_COPY copies the template's files instead of
// WAL-logging every block (PostgreSQL 15's default): about three times
// faster for a small database like this one.
func (s *server) createDatabase(name string) (string, error) {
	return s.create(name, " TEMPLATE "+pgx.Identifier{s.template}.Sanitize()+s.strategy)
}

// createEmpty creates a database called name without giftd's schema and
// returns its URL.
func (s *server) createEmpty(name string) (string, error) {
	return s.create(name, "")
}

// create runs CREATE DATABASE name with the given clauses and returns the
// new database's URL.
func (s *server) create(name, clauses string) (string, error) {
	u, err := databaseURL(s.url, name)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", errors.New("the test process is shutting down")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+clauses); err != nil {
		return "", fmt.Errorf("create database %s on %s: %w", name, s.where(), err)
	}
	return u, nil
}

// dropDatabase drops the database name, disconnecting whoever still uses it.
func (s *server) dropDatabase(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil // the whole server is going away, or close reports the failure
	}
	return s.drop(name)
}

// drop drops the database name; it is called with mu held.
func (s *server) drop(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sql := "DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"
	if _, err := s.admin.Exec(ctx, sql); err != nil {
		return fmt.Errorf("drop database %s on %s: %w", name, s.where(), err)
	}
	return nil
}

// close drops the template from a configured server, closes the admin
// connection and stops the throwaway server. Calls after the first return
// the first one's error.
func (s *server) close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.closed = true
		var errs []error
		if s.admin != nil {
			if s.cluster == nil && s.template != "" {
				errs = append(errs, s.drop(s.template))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			errs = append(errs, s.admin.Close(ctx))
			cancel()
		}
		if s.cluster != nil {
			errs = append(errs, s.cluster.Stop())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// databaseURL returns serverURL with its path, the database name, replaced by
// name; the query, with sslmode and the like, is kept.
func databaseURL(serverURL, name string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// Neither the error nor the URL is printed: either may hold a password.
		return "", errors.New("the database URL must look like postgres://user:password@host:port/dbname?sslmode=disable")
	}
	u.Path, u.RawPath = "/"+name, ""
	return u.String(), nil
}

// randomHex returns 16 random lowercase hex digits, for database names.
func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails; it crashes the program instead
	return hex.EncodeToString(b)
}

// StoreOptions are the ledger options tests open stores with: the default
// (batching on) unless GIFTD_TEST_BATCH=off, so that the whole suite can run
// in both modes.
func StoreOptions() []ledger.Option {
	if os.Getenv("GIFTD_TEST_BATCH") == "off" {
		return []ledger.Option{ledger.WithBatching(ledger.Batching{MaxBatch: 1})}
	}
	return nil
}
