package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/ledger"
	"giftd/internal/pgcluster"
)

// TestSyncReplication_PrimaryLostAfterStall_KeepsEveryAcknowledgedDebit
// runs giftd on a primary with a synchronous standby, then cuts the standby
// off (a partition: nothing more reaches it, no acknowledgement comes back)
// while LinkV-like clients send debits, each retried up to three times on
// 500. A commit waiting for the standby past GIFTD_DB_TIMEOUT is cancelled
// and PostgreSQL commits it on the primary alone; its retry must not be
// answered 200 from that record. Then the primary is lost (stopped at
// once, the standby still cut off), the standby is promoted, and every
// debit ever answered 200 must be in its ledger.
func TestSyncReplication_PrimaryLostAfterStall_KeepsEveryAcknowledgedDebit(t *testing.T) {
	ctx := waitCtx(t, 2*time.Minute)
	const standbyName = "giftd_standby"
	primary, err := pgcluster.Start(ctx, pgcluster.Options{
		Settings: []string{"fsync=off", "synchronous_standby_names=" + standbyName},
	})
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { primary.Stop() }) //nolint:errcheck // best effort
	u, err := url.Parse(primary.URL)
	if err != nil {
		t.Fatal(err)
	}
	link := newPauseProxy(t, u.Host)
	standby, err := pgcluster.StartStandby(ctx, primary, standbyName, link.addr(), pgcluster.Options{Settings: []string{"fsync=off"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standby.Stop() }) //nolint:errcheck // best effort
	if !eventually(ctx, 30*time.Second, func() bool { return syncState(ctx, primary.URL, standbyName) == "sync" }) {
		t.Fatalf("standby %s never became synchronous", standbyName)
	}

	if err := ledger.Migrate(primary.URL); err != nil {
		t.Fatal(err)
	}
	const wallets = 8
	seededStore(t, ctx, primary.URL, wallets, 1000)
	srv := newServer(t, primary.URL, "GIFTD_DB_TIMEOUT=500ms")
	client := &http.Client{Timeout: 10 * time.Second}

	// Before the partition: debits commit on both servers.
	before := newRequests("before", 24, wallets)
	sendAll(ctx, t, client, srv, before)
	// A partition: after pause returns, no byte passes either way. Debits
	// get 500s; then it heals, the standby catches up, and the same
	// requests, sent again, are answered from their records.
	link.pause()
	healed := newRequests("healed", 8, wallets)
	sendAll(ctx, t, client, srv, healed)
	link.resume()
	if !eventually(ctx, 30*time.Second, func() bool { return caughtUp(ctx, primary.URL, standbyName) }) {
		t.Fatalf("standby %s did not catch up after the partition healed", standbyName)
	}
	sendAll(ctx, t, client, srv, healed)
	for _, r := range healed {
		if r.final != http.StatusOK {
			t.Errorf("%s: %d once the standby caught up; want 200", r.id, r.final)
		}
	}
	// Another partition, and this time the primary is lost during it.
	link.pause()
	during := newRequests("during", 16, wallets)
	sendAll(ctx, t, client, srv, during)
	// The primary is lost with what only it had; the standby takes over.
	if err := primary.Crash(); err != nil {
		t.Fatal(err)
	}
	link.cut()
	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}

	entries := debitEntries(t, ctx, standby.URL)
	lost, doubled, acked := 0, 0, map[string]int{}
	for _, r := range append(append(before, healed...), during...) {
		phase, _, _ := strings.Cut(r.id, "-")
		e := entries[r.id]
		if r.got200 {
			acked[phase]++
			if e == 0 {
				lost++
				t.Errorf("%s was answered 200 but is not in the promoted standby's ledger", r.id)
			}
		}
		if e > 1 {
			doubled++
			t.Errorf("%s debited %d times", r.id, e)
		}
	}
	for _, r := range during {
		if r.attempts < 2 && r.got200 {
			t.Errorf("%s was answered 200 at once while the standby was cut off: the partition did not take", r.id)
		}
	}
	if acked["before"] == 0 {
		t.Errorf("no debit was acknowledged before the partition: the set-up does not work")
	}
	t.Logf("acknowledged: before the partitions %d/%d, after the first healed %d/%d, during the second %d/%d; "+
		"lost on failover %d, doubled %d", acked["before"], len(before), acked["healed"], len(healed),
		acked["during"], len(during), lost, doubled)
	auditPasses(t, standby.URL)
}

// syncState is the sync_state the primary reports for the standby, or "".
func syncState(ctx context.Context, primaryURL, name string) string {
	conn, err := pgx.Connect(ctx, primaryURL)
	if err != nil {
		return ""
	}
	defer conn.Close(context.Background())
	var state string
	_ = conn.QueryRow(ctx, `SELECT sync_state FROM pg_stat_replication WHERE application_name = $1`, name).Scan(&state)
	return state
}

// caughtUp reports whether the standby has flushed all the WAL the primary
// has written.
func caughtUp(ctx context.Context, primaryURL, name string) bool {
	conn, err := pgx.Connect(ctx, primaryURL)
	if err != nil {
		return false
	}
	defer conn.Close(context.Background())
	var ok bool
	err = conn.QueryRow(ctx, `SELECT flush_lsn >= pg_current_wal_lsn() FROM pg_stat_replication WHERE application_name = $1`, name).Scan(&ok)
	return err == nil && ok
}

// debitEntries counts the debit entries of each request id in the ledger at dbURL.
func debitEntries(t *testing.T, ctx context.Context, dbURL string) map[string]int {
	t.Helper()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	return countDebits(t, ctx, conn)
}

// A querier is a pgx connection or pool.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// countDebits counts the debit entries of each request id in q's ledger.
func countDebits(t *testing.T, ctx context.Context, q querier) map[string]int {
	t.Helper()
	rows, err := q.Query(ctx, `SELECT ref, count(*) FROM ledger_entries WHERE kind = 'debit' GROUP BY ref`)
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string]int{}
	for rows.Next() {
		var ref string
		var n int
		if err := rows.Scan(&ref, &n); err != nil {
			t.Fatal(err)
		}
		entries[ref] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return entries
}

// sdkAttempts is how often LinkV's SDK sends one request: once, and again
// up to three times while the answer is 500.
const sdkAttempts = 4

type sdkRequest struct {
	id, body string
	final    int // the last answer, 0 when none came
	got200   bool
	attempts int
}

// newRequests makes n debits of 1 gold, spread over wallets w0…
func newRequests(phase string, n, wallets int) []*sdkRequest {
	reqs := make([]*sdkRequest, n)
	for i := range reqs {
		id := fmt.Sprintf("%s-%03d", phase, i)
		reqs[i] = &sdkRequest{id: id, body: signedForm(id, fmt.Sprint("w", i%wallets), 1)}
	}
	return reqs
}

// sendAll sends every request, up to sixteen at a time, each as LinkV's SDK
// does, and returns once every one has its final answer.
func sendAll(ctx context.Context, t *testing.T, client *http.Client, s *server, reqs []*sdkRequest) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(16, len(reqs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(reqs)); i = next.Add(1) - 1 {
				r := reqs[i]
				for attempt := 0; attempt < sdkAttempts && ctx.Err() == nil; attempt++ {
					r.attempts++
					r.final = post(ctx, client, s, r.body)
					r.got200 = r.got200 || r.final == http.StatusOK
					if r.final != http.StatusInternalServerError {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal(ctx.Err())
	}
}

// pauseProxy stands between the standby and the primary. Paused, it passes
// nothing either way (what it has read it holds); cut, it drops what it
// holds and closes everything, so the standby never gets the WAL written
// while it was paused.
type pauseProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu       sync.Mutex
	changed  *sync.Cond
	paused   bool
	closed   bool
	inflight int // writes under way
	conns    []net.Conn
}

func newPauseProxy(t *testing.T, target string) *pauseProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pauseProxy{ln: ln, target: target}
	p.changed = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.cut)
	return p
}

func (p *pauseProxy) addr() string { return p.ln.Addr().String() }

func (p *pauseProxy) accept() {
	defer p.wg.Done()
	for {
		a, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			a.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			a.Close()
			b.Close()
			return
		}
		p.conns = append(p.conns, a, b)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.relay(a, b)
		go p.relay(b, a)
	}
}

// relay copies src to dst, each chunk only while the proxy is not paused.
func (p *pauseProxy) relay(src, dst net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.enter() {
				return
			}
			_, werr := dst.Write(buf[:n])
			p.leave()
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// enter waits while paused; false once cut.
func (p *pauseProxy) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.paused && !p.closed {
		p.changed.Wait()
	}
	if p.closed {
		return false
	}
	p.inflight++
	return true
}

func (p *pauseProxy) leave() {
	p.mu.Lock()
	p.inflight--
	p.changed.Broadcast()
	p.mu.Unlock()
}

// pause returns once no write is under way: from then on nothing passes.
func (p *pauseProxy) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = true
	for p.inflight > 0 {
		p.changed.Wait()
	}
}

// resume lets everything held and everything after it pass again.
func (p *pauseProxy) resume() {
	p.mu.Lock()
	p.paused = false
	p.changed.Broadcast()
	p.mu.Unlock()
}

// cut closes the listener and every connection, dropping what was held.
func (p *pauseProxy) cut() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.changed.Broadcast()
	conns := p.conns
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}
