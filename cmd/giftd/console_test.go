package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"giftd/internal/linkv"
	"giftd/internal/pgtest"
)

var updateScreenshots = flag.Bool("update-screenshots", false,
	"write the console test's screenshots to docs/console/")

// chromium finds the browser for the console tests: GIFTD_CHROMIUM, or
// Debian's chromium. Without one the test is skipped, saying so, except
// under CI, where it fails: a green CI must have driven a real browser.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("GIFTD_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no Chromium (set GIFTD_CHROMIUM or apt-get install chromium; .ci/run installs it)")
	}
	t.Skip("no Chromium: apt-get install chromium, or set GIFTD_CHROMIUM")
	return ""
}

// browser starts a headless Chromium with a fresh profile, with the flags a
// closed network needs (no background connections), and returns a tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromium(t)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800))
	ctx, cancelTab := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	return ctx
}

// page is a console tab under test: its actions fail the test.
type page struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	urls     []string // every URL the tab requested
	problems []string // exceptions, CSP violations, console errors
}

func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		// What the page shows in its result lines, to tell a lost click
		// from an answer the test did not expect.
		shown, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll('[id$="-result"]'))
			.map(e => e.id + '=' + JSON.stringify(e.className + ': ' + e.textContent)).join(' ')`))
		p.t.Fatalf("%s: %v (problems in the page: %v; result lines: %s)", what, err, p.problems, shown)
	}
}

func (p *page) text(id string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Text(chromedp.ID(id)))
	if err != nil {
		p.t.Fatalf("text of #%s: %v", id, err)
	}
	return s
}

func (p *page) eval(js string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		p.t.Fatalf("%s: %v", js, err)
	}
	return s
}

// until waits for a JavaScript condition to hold in the page (polled on
// animation frames: it waits for the page, not for a fixed time).
func until(js string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[bool](js, chromedp.WithPollingTimeout(20*time.Second))(ctx, t)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", js, err)
		}
		return nil
	})
}

// clickTwice clicks sel twice in a row, as a double click does (two
// clicks, then dblclick), without waiting in between.
func clickTwice(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		node, err := clickNode(ctx, t, sel)
		if err != nil {
			return err
		}
		// The second may find the button already gone (the first click's
		// handler hid it): then it cannot be clicked twice, which is the point.
		_, err = chromedp.MouseClickNode(node, chromedp.ClickCount(2))(ctx, t)
		if errors.Is(err, chromedp.ErrInvalidDimensions) {
			return nil
		}
		return err
	})
}

// click clicks the first visible node of sel once.
func click(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := clickNode(ctx, t, sel)
		return err
	})
}

// clickNode clicks the first visible node of sel and returns it. A node
// being laid out or re-rendered has no box for a moment (chromedp's
// ErrInvalidDimensions), so it is looked up again until it has one: the
// click lands exactly once.
func clickNode(ctx context.Context, t *chromedp.Target, sel string) (*chromedp.Node, error) {
	for try := 0; ; try++ {
		nodes, err := chromedp.Nodes(chromedp.CSS(sel), chromedp.NodeVisible)(ctx, t)
		if err != nil {
			return nil, err
		}
		_, err = chromedp.MouseClickNode(nodes[0], chromedp.ClickCount(1))(ctx, t)
		if err == nil {
			return nodes[0], nil
		}
		if !errors.Is(err, chromedp.ErrInvalidDimensions) || try == 100 {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// shot takes a full-page screenshot, checks it is a PNG, and with
// -update-screenshots keeps it as docs/console/name.png.
func (p *page) shot(name string) {
	p.t.Helper()
	p.do("scroll to the top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	buf, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(buf))
	if err != nil || cfg.Width < 300 || cfg.Height < 300 {
		p.t.Fatalf("screenshot %s: %dx%d, %v", name, cfg.Width, cfg.Height, err)
	}
	if *updateScreenshots {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "console", name+".png"), buf, 0o644); err != nil {
			p.t.Fatal(err)
		}
	}
}

const (
	consoleToken = "console-admin-token-0123456789"
	consoleApp   = "app1"
)

// TestConsole_InABrowser drives the operator console in a headless
// Chromium against giftd itself (run, serve) on a real PostgreSQL: sign-in
// with a wrong token then the right one, the Now page, a room's
// leaderboards, a top-up (double clicked, then submitted again: one entry),
// a debit found and reversed, the reversal in the ledger, a gift added to
// the catalogue (double clicked: one) and renamed, a signed gift of it, its
// receiver's earnings and a payout (double clicked: one), a stale payout
// refused with the API's 422, a Polyv channel mapped, the gift added again
// (the API's 409) and deactivated, the audit, the language switch and a
// phone-sized screen. Any exception, CSP violation or console error in the
// page fails it (but the expected 401, 409 and 422), and so does the token
// in any URL or in giftd's log.
func TestConsole_InABrowser(t *testing.T) {
	ctx := browser(t)
	env := map[string]string{
		"DATABASE_URL":      pgtest.URL(t),
		"GIFTD_HTTP_ADDR":   "127.0.0.1:0",
		"GIFTD_ADMIN_ADDR":  "127.0.0.1:0",
		"GIFTD_ADMIN_TOKEN": consoleToken,
		"GIFTD_LINKV_APPS":  consoleApp + ":" + e2eSecret,
		"GIFTD_LOG_FORMAT":  "text",
	}
	gctx, stop := context.WithCancel(context.Background())
	var logs syncBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- run(gctx, []string{"giftd", "serve"}, func(k string) string { return env[k] }, io.Discard, &logs)
	}()
	t.Cleanup(func() {
		stop()
		if err := <-errc; err != nil {
			t.Errorf("giftd: %v", err)
		}
		if strings.Contains(logs.String(), consoleToken) {
			t.Error("the admin token is in giftd's log")
		}
	})
	public, admin := boundAddrs(t, &logs, errc)
	waitHealthy(t, "http://"+admin, errc)

	// adminCall calls the admin API as curl would: the status and the body.
	adminCall := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+admin+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+consoleToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// gift sends a signed LinkV gift debit of gold from user.
	gift := func(requestID, user string, gold int, reason string) {
		t.Helper()
		now := time.Now().Unix()
		f := map[string]string{
			"app_id": consoleApp, "request_id": requestID, "nonce": "abcdefgh" + strconv.FormatInt(now, 10) + "ijklmnop",
			"user_id": user, "gold": strconv.Itoa(gold), "expriation": strconv.FormatInt(now+86400, 10), "type": "1",
			"reason": reason,
		}
		f["sign"] = linkv.Sign(f, e2eSecret)
		form := url.Values{}
		for k, v := range f {
			form.Set(k, v)
		}
		resp, err := http.PostForm("http://"+public+"/linkv/debit", form)
		if err != nil {
			t.Fatalf("debit %s: %v", requestID, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"status":200`) {
			t.Fatalf("debit %s: %d %s", requestID, resp.StatusCode, b)
		}
	}

	// Wallets with 50 and 100 gold, and one LinkV debit of 20 from the first.
	if code, body := adminCall(http.MethodPost, "/admin/v1/wallets/viewer-1/topups", `{"amount":50,"idempotency_key":"seed"}`); code != 200 {
		t.Fatalf("seed top-up: %d %s", code, body)
	}
	if code, body := adminCall(http.MethodPost, "/admin/v1/wallets/viewer-2/topups", `{"amount":100,"idempotency_key":"seed-2"}`); code != 200 {
		t.Fatalf("seed top-up: %d %s", code, body)
	}
	gift("req-gift-1", "viewer-1", 20, `{"gift_id":"10620","send_num":2,"resource_id":"room-9","vtype":"1","receiver_id":"host-7"}`)

	p := &page{t: t, ctx: ctx}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		if ev, ok := ev.(*network.EventRequestWillBeSent); ok {
			p.mu.Lock()
			p.urls = append(p.urls, ev.Request.URL)
			p.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// The wrong token's 401, the gift added twice's 409 and the
			// stale payout's 422 are logged by the browser as failed
			// resources; those are expected.
			expected := strings.Contains(m.Text, "status of 401") || strings.Contains(m.Text, "status of 409") ||
				strings.Contains(m.Text, "status of 422")
			if m.IsException() || m.Source == "security" || m.Type == "error" && !expected {
				p.mu.Lock()
				p.problems = append(p.problems, m.String())
				p.mu.Unlock()
			}
		}
	}()
	base := "http://" + admin + "/console/"

	// Sign in: a wrong token is refused with the API's own message.
	p.do("open the console", chromedp.EmulateViewport(1280, 800), chromedp.Navigate(base),
		chromedp.WaitVisible(chromedp.ID("token")))
	p.shot("signin")
	p.do("wrong token", chromedp.SendKeys(chromedp.ID("token"), "not-the-token-0123456789"),
		click("#signin-submit"), chromedp.WaitVisible(chromedp.ID("signin-error")))
	if msg := p.text("signin-error"); !strings.Contains(msg, "missing or wrong bearer token") {
		t.Errorf("wrong token: %q, want the API's refusal", msg)
	}
	if s := p.eval(`String(sessionStorage.length) + location.href`); s != "0"+base {
		t.Errorf("after a wrong token: sessionStorage length and URL %q", s)
	}
	p.do("sign in", chromedp.Clear(chromedp.ID("token")), chromedp.SendKeys(chromedp.ID("token"), consoleToken),
		click("#signin-submit"), chromedp.WaitVisible(chromedp.ID("page-now")))

	// Now: the debit above is counted; rates appear after two samples.
	p.do("now page", until(`document.querySelector('#now-outcomes tbody').textContent.includes('linkvok')`),
		until(`document.getElementById('now-ok').textContent !== '—'`),
		until(`document.querySelector('#now-forms tbody').rows.length > 0`),
		until(`document.getElementById('now-ready').classList.contains('good')`))
	if s := p.text("now-pool"); !strings.Contains(s, "max") && !strings.Contains(s, "上限") {
		t.Errorf("pool: %q", s)
	}
	p.shot("now")

	// Leaderboards: the room's gift, its sender (linked to the wallet page)
	// and its receiver, over the last 24 hours.
	p.do("leaderboards", click("#nav-leaderboards"), chromedp.WaitVisible(chromedp.ID("board-room")),
		chromedp.SendKeys(chromedp.ID("board-room"), "room-9"), click("#board-find button"),
		chromedp.WaitVisible(chromedp.ID("board-view")),
		until(`document.querySelector('#board-senders tbody').textContent.includes('viewer-1')`))
	if s := p.text("board-senders"); !strings.Contains(s, "viewer-1") || !strings.Contains(s, "20") {
		t.Errorf("senders: %q", s)
	}
	if s := p.text("board-receivers"); !strings.Contains(s, "host-7") {
		t.Errorf("receivers: %q", s)
	}
	if n := p.eval(`String(document.querySelectorAll('#board-senders a[href^="#/wallet?user=viewer-1"]').length)`); n != "1" {
		t.Errorf("links from the senders to their wallets: %s, want 1", n)
	}
	p.shot("leaderboards")

	// Wallet: find the user, top up 100 with a double click, then submit
	// the same form again: one entry, balance 30 + 100.
	p.do("wallet", click("#nav-wallet"), chromedp.WaitVisible(chromedp.ID("wallet-user")),
		chromedp.SendKeys(chromedp.ID("wallet-user"), "viewer-1"), click("#wallet-find button"),
		until(`document.getElementById('wallet-balance').textContent === '30'`),
		// The safeguards card: safeguards off here, and the debit of 20 not
		// counted.
		until(`document.getElementById('safe-policy').textContent.includes('GIFTD_SAFEGUARDS=off')`))
	key := p.text("topup-key")
	if !strings.HasPrefix(key, "console-") {
		t.Fatalf("top-up key %q", key)
	}
	p.do("top up", chromedp.SendKeys(chromedp.ID("topup-amount"), "100"),
		chromedp.SendKeys(chromedp.ID("topup-note"), "console test"), clickTwice("#topup-submit"),
		until(`document.getElementById('wallet-balance').textContent === '130'`),
		until(`!document.getElementById('topup-submit').disabled`),
		click("#topup-submit"),
		until(`!document.getElementById('topup-submit').disabled && document.getElementById('topup-result').textContent.includes('#')`))
	if n := p.eval(`String([...document.querySelectorAll('#ledger tbody tr')].filter(r => r.textContent.includes('` + key + `')).length)`); n != "1" {
		t.Errorf("ledger rows with the top-up's key: %s, want 1", n)
	}
	if b := p.text("wallet-balance"); b != "130" {
		t.Errorf("balance after the top-up submitted three times: %s, want 130", b)
	}
	p.shot("wallet")

	// Debit: from the ledger's link to the debit; reverse it (confirm
	// double clicked), and see the reversal.
	p.do("debit", click(`#ledger a[href*="req-gift-1"]`),
		chromedp.WaitVisible(chromedp.ID("debit-view")), chromedp.WaitVisible(chromedp.ID("reverse-open")))
	if s := p.text("debit-asked"); !strings.Contains(s, "10620") || !strings.Contains(s, "viewer-1") {
		t.Errorf("asked: %q", s)
	}
	if s := p.text("debit-answered"); !strings.Contains(s, "200") {
		t.Errorf("answered: %q", s)
	}
	p.do("reverse", click("#reverse-open"), chromedp.WaitVisible(chromedp.ID("reverse")),
		chromedp.SendKeys(chromedp.ID("reverse-reason"), "gift did not show"), clickTwice("#reverse-submit"),
		chromedp.WaitVisible(chromedp.ID("debit-reversed")))
	if s := p.text("debit-reversed"); !strings.Contains(s, "gift did not show") {
		t.Errorf("reversal: %q", s)
	}
	p.shot("debit")

	// The reversal in the wallet's ledger, and the balance back.
	p.do("ledger", click(`#debit-asked a[href*="wallet"]`),
		until(`document.getElementById('wallet-balance').textContent === '150'`),
		until(`document.querySelectorAll('#ledger tr.kind-reversal').length === 1`))

	// Gifts: add a gift to the catalogue (confirmation double clicked: one
	// gift, version 1), see it listed, rename it (version 2), its history.
	p.do("gifts", click("#nav-gifts"), chromedp.WaitVisible(chromedp.ID("gifts-new")),
		click("#gifts-new"), chromedp.WaitVisible(chromedp.ID("gift-form")),
		chromedp.SetValue(chromedp.ID("gift-platform"), "linkv"),
		chromedp.SendKeys(chromedp.ID("gift-id"), "20001"), chromedp.SendKeys(chromedp.ID("gift-name"), "玫瑰"),
		chromedp.SendKeys(chromedp.ID("gift-price"), "10"), chromedp.SendKeys(chromedp.ID("gift-share"), "6000"),
		click("#gift-next"), chromedp.WaitVisible(chromedp.ID("gift-confirm")))
	if s := p.text("gift-confirm-what"); !strings.Contains(s, "20001") || !strings.Contains(s, "60.00%") {
		t.Errorf("confirmation of the new gift: %q", s)
	}
	p.do("create the gift", clickTwice("#gift-confirm-submit"),
		until(`document.querySelector('#gifts tr[data-gift="linkv:20001"]') !== null`),
		until(`!document.getElementById('gift-result').hidden`))
	if s, c := p.text("gift-result"), p.eval(`document.getElementById('gift-result').className`); c != "ok" || !strings.Contains(s, "1") {
		t.Errorf("after creating the gift (double click): %q (%s), want version 1 and no error", s, c)
	}
	if s := p.eval(`document.querySelector('#gifts tr[data-gift="linkv:20001"]').textContent`); !strings.Contains(s, "玫瑰") || !strings.Contains(s, "60.00%") {
		t.Errorf("the gift's row: %q", s)
	}
	p.do("rename the gift", click(`#gifts tr[data-gift="linkv:20001"] button[data-act="edit"]`),
		chromedp.WaitVisible(chromedp.ID("gift-form")), chromedp.SetValue(chromedp.ID("gift-name"), "红玫瑰"),
		click("#gift-next"),
		chromedp.WaitVisible(chromedp.ID("gift-confirm")), click("#gift-confirm-submit"),
		until(`document.querySelector('#gifts tr[data-gift="linkv:20001"]').textContent.includes('红玫瑰')`),
		click(`#gifts tr[data-gift="linkv:20001"] a.history`),
		chromedp.WaitVisible(chromedp.ID("gift-history")),
		until(`document.querySelectorAll('#gift-versions tbody tr').length === 2`))
	if s := p.eval(`[...document.querySelectorAll('#gift-versions tbody tr')].map(r => r.cells[0].textContent + ' ' + r.cells[1].textContent).join(', ')`); s != "2 红玫瑰, 1 玫瑰" {
		t.Errorf("versions: %q, want 2 红玫瑰, 1 玫瑰", s)
	}
	p.shot("gifts")

	// A signed gift of it: 3 × 10 gold from viewer-2 to host-8, whose share
	// of 60% is 18.
	gift("req-gift-2", "viewer-2", 30, `{"gift_id":"20001","send_num":3,"resource_id":"room-9","vtype":"1","receiver_id":"host-8"}`)

	// Receivers: host-8 among the last 24 hours' receivers; their earnings,
	// report and ledger; a payout of 10 (confirmation double clicked: one
	// payout); then one over what is payable by now, refused by the API
	// with its 422 as it says it.
	p.do("receivers", click("#nav-receivers"), chromedp.WaitVisible(chromedp.ID("recv-id")),
		until(`document.querySelector('#recv-top a[href*="host-8"]') !== null`),
		click(`#recv-top a[href*="host-8"]`), chromedp.WaitVisible(chromedp.ID("recv-view")),
		until(`document.getElementById('recv-payable').textContent === '18'`),
		until(`document.querySelectorAll('#recv-ledger tr.kind-gift').length === 1`),
		until(`document.getElementById('recv-report').textContent.includes('18')`))
	key = p.text("payout-key")
	if !strings.HasPrefix(key, "console-pay-") {
		t.Fatalf("payout key %q", key)
	}
	p.do("pay out", chromedp.SendKeys(chromedp.ID("payout-amount"), "10"), chromedp.SendKeys(chromedp.ID("payout-note"), "November"),
		click("#payout-open"), chromedp.WaitVisible(chromedp.ID("payout-confirm")),
		clickTwice("#payout-submit"),
		until(`document.getElementById('recv-payable').textContent === '8'`),
		until(`document.getElementById('payout-result').className === 'ok'`),
		until(`document.querySelectorAll('#recv-ledger tr.kind-payout').length === 1`))
	if s := p.text("recv-balance"); s != "8" {
		t.Errorf("balance after paying 10 of 18: %s", s)
	}
	if code, body := adminCall(http.MethodGet, "/admin/v1/earnings/host-8/ledger", ""); code != 200 || strings.Count(body, `"kind":"payout"`) != 1 || !strings.Contains(body, key) {
		t.Errorf("payouts in host-8's ledger after a double click: %d %s, want one with key %s", code, body, key)
	}
	// Over the payable: refused in the page without a call.
	p.do("pay out too much", chromedp.SetValue(chromedp.ID("payout-amount"), "9"),
		click("#payout-open"), until(`document.getElementById('payout-result').className === 'error'`))
	if p.eval(`String(document.getElementById('payout-confirm').hidden)`) != "true" {
		t.Error("the confirmation opened for an amount over the payable")
	}
	// Paid elsewhere meanwhile: the page still says 8, the API says 3.
	if code, body := adminCall(http.MethodPost, "/admin/v1/earnings/host-8/payouts", `{"amount":5,"idempotency_key":"finance-1"}`); code != 200 {
		t.Fatalf("payout by the API: %d %s", code, body)
	}
	p.do("pay out a stale amount", click("#payout-newkey"),
		chromedp.SetValue(chromedp.ID("payout-amount"), "6"),
		click("#payout-open"), chromedp.WaitVisible(chromedp.ID("payout-confirm")),
		click("#payout-submit"),
		until(`document.getElementById('payout-result').textContent.includes('insufficient_earnings')`),
		until(`document.getElementById('recv-payable').textContent === '3'`),
		until(`document.querySelectorAll('#recv-ledger tr.kind-payout').length === 2`),
		// The refusal is shown once the account has been read again.
		until(`!document.getElementById('payout-result').hidden`))
	if s := p.text("payout-result"); !strings.HasPrefix(s, "422 insufficient_earnings: ") {
		t.Errorf("the API's refusal: %q", s)
	}

	// Polyv: map a channel to host-8.
	p.do("map a channel", chromedp.SendKeys(chromedp.ID("chan-id"), "2114561"), chromedp.SendKeys(chromedp.ID("chan-receiver"), "host-8"),
		click("#chan-open"), chromedp.WaitVisible(chromedp.ID("chan-confirm")),
		click("#chan-submit"),
		until(`document.querySelector('#channels tr[data-channel="2114561"]') !== null`))
	if code, body := adminCall(http.MethodGet, "/admin/v1/polyv/channels", ""); code != 200 || !strings.Contains(body, `"receiver_id":"host-8"`) {
		t.Errorf("channels: %d %s", code, body)
	}
	p.shot("receivers")

	// Gifts again: the same id added twice is the API's 409; deactivate
	// it (version 3).
	p.do("gift exists", click("#nav-gifts"), chromedp.WaitVisible(chromedp.ID("gifts-new")),
		until(`document.querySelector('#gifts tr[data-gift="linkv:20001"]') !== null`),
		click("#gifts-new"), chromedp.WaitVisible(chromedp.ID("gift-form")),
		chromedp.SetValue(chromedp.ID("gift-platform"), "linkv"), chromedp.SetValue(chromedp.ID("gift-id"), "20001"),
		chromedp.SetValue(chromedp.ID("gift-name"), "again"), chromedp.SetValue(chromedp.ID("gift-price"), "1"),
		click("#gift-next"), chromedp.WaitVisible(chromedp.ID("gift-confirm")),
		click("#gift-confirm-submit"),
		until(`document.getElementById('gift-result').className === 'error'`))
	if s := p.text("gift-result"); !strings.HasPrefix(s, "409 gift_exists: ") {
		t.Errorf("a gift added twice: %q, want the API's 409", s)
	}
	p.do("deactivate the gift", click("#gift-confirm-cancel"),
		click(`#gifts tr[data-gift="linkv:20001"] button[data-act="deactivate"]`),
		chromedp.WaitVisible(chromedp.ID("gift-confirm")), click("#gift-confirm-submit"),
		until(`document.querySelector('#gifts tr[data-gift="linkv:20001"]').classList.contains('inactive')`),
		until(`document.querySelector('#gifts tr[data-gift="linkv:20001"] button[data-act="activate"]') !== null`))
	if code, body := adminCall(http.MethodGet, "/admin/v1/gifts/linkv/20001", ""); code != 200 || !strings.Contains(body, `"version":3`) || !strings.Contains(body, `"active":false`) {
		t.Errorf("the gift after deactivation: %d %s", code, body)
	}

	// Audit.
	p.do("audit", click("#nav-audit"), click("#audit-run"),
		chromedp.WaitVisible(chromedp.ID("audit-view")),
		until(`document.getElementById('audit-verdict').classList.contains('good')`))
	p.shot("audit")

	// English, on a phone.
	p.do("english", click("#lang"), until(`document.getElementById('nav-now').textContent === 'Now'`),
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(base+"#/wallet?user=viewer-1"),
		until(`document.getElementById('wallet-balance').textContent === '150'`))
	p.shot("wallet-phone-en")

	// Signing out forgets the token.
	p.do("sign out", click("#signout"), chromedp.WaitVisible(chromedp.ID("token")))
	if n := p.eval(`String(sessionStorage.length)`); n != "0" {
		t.Errorf("after signing out, sessionStorage has %s items", n)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range p.urls {
		if strings.Contains(u, consoleToken) {
			t.Errorf("the token is in a URL: %s", u)
		}
	}
	if len(p.urls) < 10 {
		t.Errorf("saw only %d requests: %v", len(p.urls), p.urls)
	}
	for _, m := range p.problems {
		t.Errorf("in the page: %s", m)
	}
}
