package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/pgtest"
)

// cutProxy sits between giftd and PostgreSQL. When armed, it lets a debit
// statement run and commit, then cuts the connection before giftd reads
// the answer: the commit's outcome is unknown to giftd.
type cutProxy struct {
	ln     net.Listener
	target string
	armed  atomic.Int32 // cuts still to make
	cuts   atomic.Int32 // cuts made
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); io.Copy(server, client); server.Close() }() //nolint:errcheck // ends with the connection
		go func() { defer p.wg.Done(); p.relay(server, client); client.Close(); server.Close() }()
	}
}

// relay copies PostgreSQL's messages to giftd. A data row of nine columns
// is giftd_debit_gifts's answer (migration 7's columns); the CommandComplete after it is sent once the
// statement has run, and PostgreSQL commits it before it answers Sync. An
// armed proxy drops the connection right there.
func (p *cutProxy) relay(server, client net.Conn) {
	var header [5]byte
	sawDebitRow := false
	for {
		if _, err := io.ReadFull(server, header[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(header[1:])) - 4
		body := make([]byte, n)
		if _, err := io.ReadFull(server, body); err != nil {
			return
		}
		switch header[0] {
		case 'D':
			sawDebitRow = len(body) >= 2 && binary.BigEndian.Uint16(body) == 9
		case 'C':
			if sawDebitRow && p.armed.Load() > 0 && p.armed.Add(-1) >= 0 {
				// Let PostgreSQL finish the commit it is doing, then vanish.
				time.Sleep(20 * time.Millisecond)
				p.cuts.Add(1)
				return
			}
			sawDebitRow = false
		}
		if _, err := client.Write(append(header[:], body...)); err != nil {
			return
		}
	}
}

func (p *cutProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestCommitUnknown_RetryReplaysInsteadOfDebitingTwice cuts giftd's
// database connection after PostgreSQL committed a debit but before giftd
// learnt it. giftd answers 500; LinkV's retry must find the committed debit
// and replay it, never debit again.
func TestCommitUnknown_RetryReplaysInsteadOfDebitingTwice(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := waitCtx(t, time.Minute)
	store, err := ledger.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.TopUp(ctx, ledger.TopUp{UserID: "viewer", Amount: 1000, Key: "seed"}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateGift(ctx, ledger.CatalogueGift{Platform: "linkv", GiftID: "1", Name: "one", Price: 1,
		ShareBP: ledger.MaxShareBP, Active: true}); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	srv := newServer(t, u.String())

	post := func(body string) (int, string) {
		resp, err := http.Post("http://"+srv.public()+"/linkv/debit", "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// One debit, its commit cut.
	body := signedForm("unknown-1", "viewer", 10)
	proxy.armed.Store(1)
	code, answer := post(body)
	if proxy.cuts.Load() != 1 || code != http.StatusInternalServerError {
		t.Fatalf("cut %d times, answered %d %s; want one cut and a 500", proxy.cuts.Load(), code, answer)
	}
	if w, _ := store.Wallet(ctx, "viewer"); w.Gold != 990 {
		t.Fatalf("balance %d after the cut: the fault did not hit after the commit", w.Gold)
	}
	code, answer = post(body)
	if code != http.StatusOK || !strings.Contains(answer, `"gold":990`) {
		t.Errorf("retry answered %d %s, want the committed debit replayed (gold 990)", code, answer)
	}

	// A burst with cuts along the way: every request retried until final.
	proxy.armed.Store(5)
	var wg sync.WaitGroup
	reqs := make([]*request, 200)
	client := linkvClient{&http.Client{Timeout: 5 * time.Second}}
	for i := range reqs {
		reqs[i] = &request{id: fmt.Sprintf("burst-%03d", i), user: "viewer"}
		reqs[i].body = signedForm(reqs[i].id, "viewer", 1)
		wg.Add(1)
		go func(r *request) {
			defer wg.Done()
			r.final, r.got200 = client.send(ctx, srv, r.body)
		}(reqs[i])
	}
	wg.Wait()
	if proxy.cuts.Load() < 2 {
		t.Errorf("only %d cuts happened in the burst", proxy.cuts.Load())
	}
	checkRequests(t, ctx, store, append(reqs, &request{id: "unknown-1", final: 200, got200: true}))
	checkBooks(t, ctx, store)
	if w, _ := store.Wallet(ctx, "viewer"); w.Gold != 790 {
		t.Errorf("balance %d, want 790 (1000 − 10 − 200)", w.Gold)
	}
}
