// Package e2e tests giftd as real processes on real PostgreSQL: crashes,
// restarts, replicas. Each test is bounded in time and talks to loopback only.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/linkv"
	"giftd/internal/listening"
	"giftd/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	appID  = "e2e-app"
	secret = "e2e-secret-0123456789"
	token  = "e2e-admin-token-0123456789"
)

var (
	buildMu  sync.Mutex
	binaries = map[string]string{}
)

// giftdBinary builds cmd/giftd once per test process.
func giftdBinary(t *testing.T) string { return buildCmd(t, "giftd") }

// buildCmd builds cmd/<name> once per test process and returns its path.
func buildCmd(t *testing.T, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if path, ok := binaries[name]; ok {
		return path
	}
	dir, err := os.MkdirTemp("", "giftd-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if out, err := exec.Command("go", "build", "-o", path, "giftd/cmd/"+name).CombinedOutput(); err != nil {
		t.Fatal(&buildError{err, string(out)})
	}
	binaries[name] = path
	return path
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + e.out }

// server is one giftd process that can be killed and started again. Both
// its listeners are on port 0: each run binds ports the system picks, and
// the test learns them from its "giftd listening" line (never ports found
// free and handed over, which another process may take first), so a
// restarted giftd has new addresses: whatever talks to it asks public and
// admin for each request.
type server struct {
	t      *testing.T
	env    []string
	log    *os.File
	from   int64 // where the current run's log begins
	cmd    *exec.Cmd
	exited chan struct{}

	mu  sync.Mutex
	pub string // the running process's public address, "" until it logged it and once it is killed
	adm string // its admin address, likewise
}

// public is the address of s's public listener now: "" while s is not
// known to listen (a request there fails as one to a stopped giftd would).
func (s *server) public() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pub
}

// admin is the address of s's admin listener now, as public.
func (s *server) admin() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adm
}

func (s *server) setAddrs(public, admin string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pub, s.adm = public, admin
}

// newServer starts a giftd on databaseURL with extra settings and waits
// until it is ready; it is killed when the test ends.
func newServer(t *testing.T, databaseURL string, extra ...string) *server {
	t.Helper()
	s := stoppedServer(t, databaseURL, extra...)
	s.start()
	return s
}

// stoppedServer is a giftd like newServer's, not started yet.
func stoppedServer(t *testing.T, databaseURL string, extra ...string) *server {
	t.Helper()
	log, err := os.Create(filepath.Join(t.TempDir(), "giftd.log"))
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, log: log}
	s.env = append(os.Environ(),
		"DATABASE_URL="+databaseURL,
		"GIFTD_HTTP_ADDR=127.0.0.1:0",
		"GIFTD_ADMIN_ADDR=127.0.0.1:0",
		"GIFTD_LINKV_APPS="+appID+":"+secret,
		"GIFTD_ADMIN_TOKEN="+token,
		// The receiving side on, half to the receiver: the fault tests
		// hold the earnings and the house to exactly-once too (checkBooks).
		"GIFTD_EARNINGS=on",
		"GIFTD_DEFAULT_SHARE_BP=5000",
	)
	s.env = append(s.env, extra...)
	t.Cleanup(func() { s.kill(); log.Close() })
	return s
}

// launch starts s's process without waiting for anything: s has no
// addresses until awaitAddrs read them from this run's log.
func (s *server) launch() {
	s.t.Helper()
	from, err := s.log.Seek(0, io.SeekEnd)
	if err != nil {
		s.t.Fatal(err)
	}
	s.from = from
	s.setAddrs("", "")
	s.cmd = exec.Command(giftdBinary(s.t), "serve")
	s.cmd.Env, s.cmd.Stdout, s.cmd.Stderr = s.env, s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(s.cmd, s.exited) //nolint:errcheck // killed on purpose
}

// awaitAddrs waits until the process launch started has logged the
// addresses it bound ("giftd listening") and makes them s's; it fails the
// test if the process exits first or logs none within a minute.
func (s *server) awaitAddrs() {
	s.t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		if out, err := os.ReadFile(s.log.Name()); err == nil && int64(len(out)) >= s.from {
			if public, admin, ok := listening.Addrs(string(out[s.from:])); ok {
				s.setAddrs(public, admin)
				return
			}
		}
		select {
		case <-s.exited:
			out, _ := os.ReadFile(s.log.Name())
			s.t.Fatalf("giftd exited at start:\n%s", out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	out, _ := os.ReadFile(s.log.Name())
	s.t.Fatalf("giftd logged no addresses within a minute:\n%s", out)
}

// start runs giftd, learns its addresses and waits until it is ready.
func (s *server) start() {
	s.t.Helper()
	s.launch()
	s.awaitAddrs()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if ready(s) == http.StatusOK {
			return
		}
		select {
		case <-s.exited:
			out, _ := os.ReadFile(s.log.Name())
			s.t.Fatalf("giftd exited at start:\n%s", out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.t.Fatal("giftd not ready in 30s")
}

// kill ends giftd with SIGKILL: no shutdown, no cleanup, as a crash would.
func (s *server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL) //nolint:errcheck // it may be gone already
	<-s.exited
	// Its ports are free again, for any process to take: nothing is sent
	// there until it logs new ones.
	s.setAddrs("", "")
}

// signedForm is a LinkV debit of gold from user with the given request id:
// a gift to one of three receivers (host0…host2) of gift 1 (in the
// catalogue seededStore makes, all to the receiver) or gift 2 (not in it:
// GIFTD_DEFAULT_SHARE_BP, all to the house for 1 gold), by the request id.
func signedForm(requestID, user string, gold int64) string {
	last := int(requestID[len(requestID)-1])
	return signedGift(requestID, user, fmt.Sprint("host", last%3), fmt.Sprint(1+last%2), gold)
}

// signedGift is a LinkV debit of gold from user: gift giftID to receiver.
func signedGift(requestID, user, receiver, giftID string, gold int64) string {
	now := time.Now().Unix()
	f := map[string]string{
		"app_id": appID, "request_id": requestID, "user_id": user, "type": "1",
		"nonce":      "abcdefgh" + strconv.FormatInt(now, 10) + "ijklmnop",
		"gold":       strconv.FormatInt(gold, 10),
		"expriation": strconv.FormatInt(now+86400, 10),
		"reason":     `{"gift_id":"` + giftID + `","send_num":1,"resource_id":"room","vtype":"1","receiver_id":"` + receiver + `"}`,
	}
	f["sign"] = linkv.Sign(f, secret)
	v := url.Values{}
	for k, s := range f {
		v.Set(k, s)
	}
	return v.Encode()
}

func waitCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// seededStore opens the ledger at databaseURL (closed when the test ends),
// tops up wallets w0…w<n-1> with gold each, and puts gift 1 in the
// catalogue, all to its receiver (see signedForm).
func seededStore(t *testing.T, ctx context.Context, databaseURL string, n int, gold int64) *ledger.Store {
	t.Helper()
	store, err := ledger.Open(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if _, err := store.CreateGift(ctx, ledger.CatalogueGift{Platform: "linkv", GiftID: "1", Name: "one", Price: 1,
		ShareBP: ledger.MaxShareBP, Active: true}); err != nil {
		t.Fatal(err)
	}
	for w := range n {
		if _, err := store.TopUp(ctx, ledger.TopUp{UserID: fmt.Sprint("w", w), Amount: gold, Key: fmt.Sprint("seed", w)}); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

// waitLog reports whether s's log came to contain text within a minute.
func waitLog(ctx context.Context, s *server, text string) bool {
	return eventually(ctx, time.Minute, func() bool {
		b, err := os.ReadFile(s.log.Name())
		return err == nil && strings.Contains(string(b), text)
	})
}
