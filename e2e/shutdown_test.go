package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/ledger"
	"giftd/internal/pgtest"
)

// TestShutdown_SIGTERMMidBurstLosesNoAnsweredDebit sends SIGTERM to a real
// giftd in the middle of a burst of debits, while one debit is held in
// flight by a client that sends half its body before the signal and the rest
// after giftd has closed its listeners. giftd must turn /readyz to 503 on
// both listeners first while it still serves, then stop accepting, finish
// the debits in flight, and exit 0; afterwards every debit that got a 200 is
// in the ledger, and none that got another answer or no answer is.
func TestShutdown_SIGTERMMidBurstLosesNoAnsweredDebit(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := waitCtx(t, 2*time.Minute)
	store, err := ledger.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for user, gold := range map[string]int64{"busy": 1_000_000, "held": 100} {
		if _, err := store.TopUp(ctx, ledger.TopUp{UserID: user, Amount: gold, Key: "seed-" + user}); err != nil {
			t.Fatal(err)
		}
	}
	const delay = 3 * time.Second // long enough to see both probes turn 503 on a slow machine
	srv := newServer(t, dbURL, "GIFTD_SHUTDOWN_DELAY="+delay.String(), "GIFTD_SHUTDOWN_TIMEOUT=15s")

	// The held debit: its headers and half its body now, the rest later.
	heldBody := signedForm("term-held", "held", 7)
	heldConn, err := net.Dial("tcp", srv.public())
	if err != nil {
		t.Fatal(err)
	}
	defer heldConn.Close()
	fmt.Fprintf(heldConn, "POST /linkv/debit HTTP/1.1\r\nHost: giftd\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s",
		len(heldBody), heldBody[:len(heldBody)/2])

	type result struct {
		id          string
		status      int // 0: no answer
		afterSignal bool
	}
	var (
		mu       sync.Mutex
		results  []result
		signaled atomic.Bool
		seq      atomic.Int64
	)
	send := func(client *http.Client, user string) int {
		id := fmt.Sprintf("term-%05d", seq.Add(1))
		after := signaled.Load()
		status := 0
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+srv.public()+"/linkv/debit",
			strings.NewReader(signedForm(id, user, 1)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body) //nolint:errcheck // only the status matters
			resp.Body.Close()
			status = resp.StatusCode
		}
		mu.Lock()
		results = append(results, result{id, status, after})
		mu.Unlock()
		return status
	}

	var wg sync.WaitGroup
	// The burst: each worker sends one debit after another on a keep-alive
	// connection, until giftd stops answering.
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for ctx.Err() == nil {
				if send(client, "busy") == 0 && signaled.Load() {
					return
				}
			}
		}()
	}

	// SIGTERM once the burst is being served.
	served := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(results)
	}
	if !eventually(ctx, time.Minute, func() bool { return served() >= 50 }) {
		t.Fatalf("only %d debits answered before SIGTERM", served())
	}
	signaled.Store(true)
	sigAt := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// During the delay giftd still serves, but both probes say 503 before
	// the listeners close.
	probe := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, addr := range []string{srv.public(), srv.admin()} {
		got := 0
		eventually(ctx, 30*time.Second, func() bool {
			resp, err := probe.Get("http://" + addr + "/readyz")
			if err != nil {
				return true // closed: too late to see the drain
			}
			resp.Body.Close()
			got = resp.StatusCode
			return got == http.StatusServiceUnavailable
		})
		if got != http.StatusServiceUnavailable {
			t.Errorf("%s/readyz answered %d (0: closed) while draining, want 503", addr, got)
		}
	}

	// Once the listeners have closed, the held debit is still in flight:
	// its body arrives now, and it must be executed and answered.
	if !waitLog(ctx, srv, `"msg":"shutting down"`) {
		t.Fatal(`giftd never logged "shutting down" after SIGTERM`)
	}
	for _, addr := range []string{srv.public(), srv.admin()} {
		if !eventually(ctx, 30*time.Second, func() bool {
			resp, err := probe.Get("http://" + addr + "/healthz")
			if err == nil {
				resp.Body.Close()
			}
			return err != nil
		}) {
			t.Errorf("%s still accepts connections %s after SIGTERM (delay %s)", addr, time.Since(sigAt).Round(time.Millisecond), delay)
		}
	}
	heldConn.SetDeadline(time.Now().Add(20 * time.Second)) //nolint:errcheck // a net.Conn from Dial
	if _, err := io.WriteString(heldConn, heldBody[len(heldBody)/2:]); err != nil {
		t.Fatalf("the held debit's connection was closed under it: %v", err)
	}
	heldStatus := 0
	if resp, err := http.ReadResponse(bufio.NewReader(heldConn), nil); err == nil {
		resp.Body.Close()
		heldStatus = resp.StatusCode
	}
	mu.Lock()
	results = append(results, result{"term-held", heldStatus, false})
	mu.Unlock()
	if heldStatus != http.StatusOK {
		t.Errorf("the debit in flight across the listeners' close answered %d (0: none), want 200", heldStatus)
	}

	select {
	case <-srv.exited:
	case <-time.After(time.Minute):
		t.Fatal("giftd did not exit within a minute of SIGTERM")
	}
	if code := srv.cmd.ProcessState.ExitCode(); code != 0 {
		log, _ := os.ReadFile(srv.log.Name())
		t.Errorf("giftd exited with %d after SIGTERM, want 0; log:\n%s", code, log)
	}
	wg.Wait()

	debited := map[string]bool{}
	rows, err := store.Pool().Query(ctx, `SELECT ref FROM ledger_entries WHERE kind = 'debit'`)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		debited[r] = true
	}
	counts := map[int]int{}
	servedAfter := 0
	for _, r := range results {
		counts[r.status]++
		switch {
		case r.status == http.StatusOK && !debited[r.id]:
			t.Errorf("%s answered 200 but is not in the ledger", r.id)
		case r.status != http.StatusOK && debited[r.id]:
			t.Errorf("%s answered %d (0: no answer) but is in the ledger", r.id, r.status)
		}
		if r.status == http.StatusOK && r.afterSignal {
			servedAfter++
		}
		delete(debited, r.id)
	}
	for id := range debited {
		t.Errorf("%s is in the ledger but was never sent", id)
	}
	if counts[http.StatusOK] == 0 || counts[0] == 0 {
		t.Errorf("answers %v: want 200s before the shutdown and unanswered requests after it", counts)
	}
	if servedAfter == 0 {
		t.Error("no debit sent after SIGTERM was answered 200: giftd stopped serving before the delay ended")
	}
	log, _ := os.ReadFile(srv.log.Name())
	for _, want := range []string{`"msg":"shutting down"`, `"msg":"stopped"`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("giftd's log lacks %s", want)
		}
	}
	t.Logf("answers by status (0: none): %v; answered 200 after SIGTERM: %d", counts, servedAfter)
	checkBooks(t, ctx, store)
}
