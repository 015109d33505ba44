package linkvapi_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"giftd/internal/linkvapi"
	"giftd/internal/linkvapi/linkvfake"
)

const (
	testApp    = "LM6000167049877161121920"
	testSecret = "linkv-secret-never-shown-7f3a"
)

// newPair starts a fake and a client of it with short timeouts and backoff,
// so that a hanging fake costs the test milliseconds.
func newPair(t *testing.T) (*linkvfake.Fake, *linkvapi.Client) {
	t.Helper()
	f := linkvfake.New(t, testApp, testSecret)
	c, err := linkvapi.New(linkvapi.Config{
		BaseURL: f.URL, AppID: testApp, Secret: testSecret,
		Timeout: 100 * time.Millisecond, Attempts: 3, Backoff: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

// calls drains the calls the fake handled so far (each sent before its
// answer is complete, so after a client call returns they are all there).
func calls(f *linkvfake.Fake) []linkvfake.Call {
	var out []linkvfake.Call
	for {
		select {
		case c := <-f.Calls:
			out = append(out, c)
		default:
			return out
		}
	}
}

// waitCalls waits for n calls to have been handled.
func waitCalls(t *testing.T, f *linkvfake.Fake, n int) []linkvfake.Call {
	t.Helper()
	var out []linkvfake.Call
	for len(out) < n {
		select {
		case c := <-f.Calls:
			out = append(out, c)
		case <-time.After(10 * time.Second):
			t.Fatalf("waited for %d calls, got %d", n, len(out))
		}
	}
	return out
}

func TestGetToken_LinksAUserOnce(t *testing.T) {
	f, c := newPair(t)
	ctx := context.Background()
	tok, err := c.GetToken(ctx, "534961119", linkvapi.Profile{Name: "张三", PortraitURI: "https://img.example/a.png", Sex: "0"})
	if err != nil {
		t.Fatal(err)
	}
	if tok.OpenID == "" || tok.Token == "" || tok.UserID != "534961119" {
		t.Fatalf("token %+v", tok)
	}
	again, err := c.GetToken(ctx, "534961119", linkvapi.Profile{})
	if err != nil || again.OpenID != tok.OpenID {
		t.Fatalf("second GetToken: %+v %v, want the same open id %s", again, err, tok.OpenID)
	}
	got := waitCalls(t, f, 2)
	if p := got[0].Params; p["sex"] != "0" || p["name"] != "张三" || p["userId"] != "534961119" {
		t.Errorf("sent %v", p)
	}
	if _, ok := got[1].Params["name"]; ok {
		t.Errorf("an empty profile field was sent: %v", got[1].Params)
	}
}

func TestGetToken_ParameterErrorIs400NotRetried(t *testing.T) {
	f, c := newPair(t)
	_, err := c.GetToken(context.Background(), strings.Repeat("u", 65), linkvapi.Profile{})
	var e *linkvapi.Error
	if !errors.As(err, &e) || e.Status != 400 || e.API != "thGetToken" || e.Uncertain || e.Attempts != 1 {
		t.Fatalf("err %#v, want a certain status 400 of thGetToken after one attempt", err)
	}
	if n := len(calls(f)); n != 1 {
		t.Fatalf("%d calls, want 1 (no retry of a 400)", n)
	}
}

func TestCalls_WrongSecretIs403(t *testing.T) {
	f, _ := newPair(t)
	bad, _ := linkvapi.New(linkvapi.Config{BaseURL: f.URL, AppID: testApp, Secret: "another-secret", Timeout: time.Second})
	_, err := bad.UserTokens(context.Background(), "1")
	var e *linkvapi.Error
	if !errors.As(err, &e) || e.Status != 403 || e.Uncertain {
		t.Fatalf("err %v, want status 403", err)
	}
	if strings.Contains(err.Error(), "another-secret") {
		t.Fatalf("error %q holds the secret", err)
	}
}

func TestCalls_StaleNonceIs403(t *testing.T) {
	f, c := newPair(t)
	f.SetClock(func() time.Time { return time.Now().Add(6 * time.Minute) })
	_, err := c.UserTokens(context.Background(), f.AddUser("u1", "", 5))
	var e *linkvapi.Error
	if !errors.As(err, &e) || e.Status != 403 {
		t.Fatalf("err %v, want 403 for a nonce 6 minutes old", err)
	}
}

func TestUserTokens_StringOrNumberStatusAndBalance(t *testing.T) {
	for _, tt := range []struct {
		name            string
		numeric, liveme bool
	}{{"page", false, false}, {"numbers", true, false}, {"livemeTokens", false, true}, {"both", true, true}} {
		t.Run(tt.name, func(t *testing.T) {
			f, c := newPair(t)
			f.NumericStatus(tt.numeric)
			f.LivemeTokens(tt.liveme)
			n, err := c.UserTokens(context.Background(), f.AddUser("u1", "", 123))
			if err != nil || n != 123 {
				t.Fatalf("UserTokens = %d, %v; want 123", n, err)
			}
		})
	}
}

func TestChangeGold_TakesOnceAndReplays(t *testing.T) {
	f, c := newPair(t)
	open := f.AddUser("u1", "", 100)
	g := linkvapi.GoldChange{OpenID: open, RequestID: linkvapi.RequestID("t", "1"), Type: linkvapi.RemoveGold,
		Value: 60, Expiration: linkvapi.Expiration(time.Now())}
	for range 2 {
		if err := c.ChangeGold(context.Background(), g); err != nil {
			t.Fatal(err)
		}
	}
	if b := f.Balance(open); b != 40 || f.Applied() != 1 {
		t.Fatalf("balance %d after %d changes, want 40 after 1", b, f.Applied())
	}
	g.Value = 61
	err := c.ChangeGold(context.Background(), g)
	var e *linkvapi.Error
	if !errors.As(err, &e) || e.Status != 400 || e.Uncertain {
		t.Fatalf("reused request_id with another value: %v, want 400", err)
	}
	g.RequestID, g.Value = linkvapi.RequestID("t", "2"), 41
	if err := c.ChangeGold(context.Background(), g); !errors.As(err, &e) || e.Status != 400 || f.Balance(open) != 40 {
		t.Fatalf("taking more than the balance: %v, balance %d; want 400 and nothing taken", err, f.Balance(open))
	}
}

// TestCalls_RetryOnlyOn500AndNoAnswer: each fault the client retries, and
// what the retry finds.
func TestCalls_RetryOnlyOn500AndNoAnswer(t *testing.T) {
	for _, fault := range []linkvfake.Fault{linkvfake.Fail500, linkvfake.HTTP500, linkvfake.Hang, linkvfake.Drop} {
		t.Run(faultName(fault), func(t *testing.T) {
			f, c := newPair(t)
			open := f.AddUser("u1", "", 7)
			f.Fail("getUserTokens", fault)
			n, err := c.UserTokens(context.Background(), open)
			if err != nil || n != 7 {
				t.Fatalf("UserTokens = %d, %v after one %s; want 7 on the retry", n, err, faultName(fault))
			}
			if got := waitCalls(t, f, 2); got[0].Fault != fault || got[1].Status != 200 {
				t.Fatalf("calls %+v", got)
			}
		})
	}
}

func TestChangeGold_AppliedThen500IsAppliedOnce(t *testing.T) {
	for _, fault := range []linkvfake.Fault{linkvfake.AppliedThen500, linkvfake.AppliedThenDrop} {
		t.Run(faultName(fault), func(t *testing.T) {
			f, c := newPair(t)
			open := f.AddUser("u1", "", 100)
			f.Fail("changeGold", fault)
			g := linkvapi.GoldChange{OpenID: open, RequestID: linkvapi.RequestID("x"), Type: linkvapi.RemoveGold,
				Value: 30, Expiration: linkvapi.Expiration(time.Now())}
			if err := c.ChangeGold(context.Background(), g); err != nil {
				t.Fatal(err)
			}
			got := waitCalls(t, f, 2)
			if !got[0].Applied || got[1].Applied || got[1].Status != 200 || got[0].RequestID != got[1].RequestID {
				t.Fatalf("calls %+v: want the first applied, the retry replayed with the same request_id", got)
			}
			if got[0].Params["nonce_str"] == got[1].Params["nonce_str"] {
				t.Error("a retry reused its nonce_str; each attempt gets a fresh one")
			}
			if b := f.Balance(open); b != 70 {
				t.Fatalf("balance %d, want 70", b)
			}
		})
	}
}

func TestCalls_GiveUpAfterAttemptsUncertain(t *testing.T) {
	f, c := newPair(t)
	open := f.AddUser("u1", "", 100)
	f.Fail("changeGold", linkvfake.AppliedThen500, linkvfake.Hang, linkvfake.Fail500)
	err := c.ChangeGold(context.Background(), linkvapi.GoldChange{OpenID: open, RequestID: linkvapi.RequestID("y"),
		Type: linkvapi.RemoveGold, Value: 1, Expiration: linkvapi.Expiration(time.Now())})
	var e *linkvapi.Error
	if !errors.As(err, &e) || !e.Uncertain || e.Attempts != 3 || !linkvapi.Uncertain(err) {
		t.Fatalf("err %#v, want uncertain after 3 attempts", err)
	}
	if !strings.Contains(err.Error(), "changeGold") || !strings.Contains(err.Error(), "500") {
		t.Errorf("error %q does not say which API and status", err)
	}
	waitCalls(t, f, 3)
	if f.Balance(open) != 99 {
		t.Fatalf("balance %d, want 99: applied once by the first attempt", f.Balance(open))
	}
}

func TestCalls_HangHitsTheTimeout(t *testing.T) {
	f, c := newPair(t)
	f.Fail("getUserTokens", linkvfake.Hang, linkvfake.Hang, linkvfake.Hang)
	_, err := c.UserTokens(context.Background(), "1")
	var e *linkvapi.Error
	if !errors.As(err, &e) || e.Status != 0 || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err %v, want no answer (timed out)", err)
	}
	waitCalls(t, f, 3)
}

func TestCalls_ContextEndsRetries(t *testing.T) {
	f, _ := newPair(t)
	c, _ := linkvapi.New(linkvapi.Config{BaseURL: f.URL, AppID: testApp, Secret: testSecret,
		Timeout: time.Second, Attempts: 5, Backoff: time.Hour})
	f.Fail("getUserTokens", linkvfake.Fail500)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-f.Calls; cancel() }()
	if _, err := c.UserTokens(ctx, "1"); !linkvapi.Uncertain(err) {
		t.Fatalf("err %v, want an uncertain error once the context ends", err)
	}
}

func TestNew_RefusesBadConfig(t *testing.T) {
	for _, cfg := range []linkvapi.Config{
		{BaseURL: "", AppID: "a", Secret: "s"},
		{BaseURL: "ftp://x", AppID: "a", Secret: "s"},
		{BaseURL: "https://user:pw@x", AppID: "a", Secret: "s"},
		{BaseURL: "https://x", AppID: "", Secret: "s"},
		{BaseURL: "https://x", AppID: "a", Secret: ""},
	} {
		if _, err := linkvapi.New(cfg); err == nil || strings.Contains(err.Error(), "pw") {
			t.Errorf("New(%+v) = %v, want an error without the credentials", cfg.BaseURL, err)
		}
	}
}

func faultName(f linkvfake.Fault) string {
	return map[linkvfake.Fault]string{
		linkvfake.Fail500: "Fail500", linkvfake.HTTP500: "HTTP500", linkvfake.Hang: "Hang", linkvfake.Drop: "Drop",
		linkvfake.AppliedThen500: "AppliedThen500", linkvfake.AppliedThenDrop: "AppliedThenDrop",
	}[f]
}
