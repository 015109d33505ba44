// Package linkvfake is a fake of LinkV's server API for tests
// (docs/linkv-server-api.md), written from LinkV's pages: thGetToken,
// getUserTokens and changeGold, each a signed form POST. It checks what
// LinkV checks (app_id, the sign by docs/linkv.md §2, nonce_str's shape and
// its timestamp no older than 5 minutes, the required parameters), keeps
// wallets per live_open_id, applies a changeGold request_id once, and can be
// told to fail: answer 500 before or after applying, hang, or drop the
// connection. Tests wait on its Calls channel, never on the clock.
package linkvfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/linkv"
	"giftd/internal/linkvapi"
)

// Fault is what the fake does instead of answering normally.
type Fault int

const (
	// None answers normally.
	None Fault = iota
	// Fail500 answers status 500 without doing anything.
	Fail500
	// AppliedThen500 does the call's work (a changeGold is applied), then
	// answers status 500 as if it had failed.
	AppliedThen500
	// Hang never answers until the client gives up (or the fake closes).
	Hang
	// Drop closes the connection without an answer, before doing anything.
	Drop
	// AppliedThenDrop applies the call, then closes the connection.
	AppliedThenDrop
	// HTTP500 answers HTTP 500 with a non-JSON body, doing nothing.
	HTTP500
)

// Call is one request the fake received, sent on Calls after it is handled.
type Call struct {
	API       string // "thGetToken", "getUserTokens", "changeGold"
	Params    map[string]string
	Status    int // the status answered; 0 when none was (Hang, Drop)
	Fault     Fault
	Applied   bool // a changeGold that changed a wallet by this call
	RequestID string
}

// change is an applied changeGold, remembered by request_id.
type change struct {
	params map[string]string
}

// Fake is LinkV's server API on an httptest server.
type Fake struct {
	URL string
	// Calls receives every handled call (buffered; tests read it to wait
	// for events).
	Calls chan Call

	srv    *httptest.Server
	appID  string
	secret string

	mu         sync.Mutex
	now        func() time.Time
	numeric    bool              // status as a JSON number instead of a string
	liveme     bool              // balance as data.livemeTokens instead of data.tokens
	users      map[string]string // userId -> openId
	tokens     map[string]string // userId -> token
	wallets    map[string]int64  // openId -> coins
	changes    map[string]change // request_id -> the applied changeGold
	faults     map[string][]Fault
	nextOpenID int
	hung       chan struct{}
}

// New starts a fake for one app and closes it when the test ends.
func New(tb interface{ Cleanup(func()) }, appID, secret string) *Fake {
	f := &Fake{
		Calls: make(chan Call, 4096), appID: appID, secret: secret, now: time.Now,
		users: map[string]string{}, tokens: map[string]string{}, wallets: map[string]int64{},
		changes: map[string]change{}, faults: map[string][]Fault{}, nextOpenID: 115213496111983232,
		hung: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc(linkvapi.PathGetToken, f.handle("thGetToken", f.getToken))
	mux.HandleFunc(linkvapi.PathGetUserTokens, f.handle("getUserTokens", f.getUserTokens))
	mux.HandleFunc(linkvapi.PathChangeGold, f.handle("changeGold", f.changeGold))
	f.srv = httptest.NewServer(mux)
	f.URL = f.srv.URL
	tb.Cleanup(f.Close)
	return f
}

// Close releases hanging calls and stops the server.
func (f *Fake) Close() {
	f.mu.Lock()
	select {
	case <-f.hung:
	default:
		close(f.hung)
	}
	f.mu.Unlock()
	f.srv.CloseClientConnections()
	f.srv.Close()
}

// SetClock sets the fake's clock, against which nonce_str is checked.
func (f *Fake) SetClock(now func() time.Time) { f.mu.Lock(); f.now = now; f.mu.Unlock() }

// NumericStatus makes answers write status as a JSON number (200) rather
// than as LinkV's examples do, a string ("200").
func (f *Fake) NumericStatus(on bool) { f.mu.Lock(); f.numeric = on; f.mu.Unlock() }

// LivemeTokens makes getUserTokens answer data.livemeTokens (a number), as
// LinkV's Node and Dart SDKs read it, instead of data.tokens.
func (f *Fake) LivemeTokens(on bool) { f.mu.Lock(); f.liveme = on; f.mu.Unlock() }

// AddUser registers userID with openID (or a made-up one when empty) and a
// balance, as if the app had linked it before; it returns the open id.
func (f *Fake) AddUser(userID, openID string, coins int64) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if openID == "" {
		openID = f.newOpenIDLocked()
	}
	f.users[userID] = openID
	f.tokens[userID] = "tok-" + openID
	f.wallets[openID] = coins
	return openID
}

// SetBalance sets the coins of openID (a user's balance changing on LinkV's side).
func (f *Fake) SetBalance(openID string, coins int64) {
	f.mu.Lock()
	f.wallets[openID] = coins
	f.mu.Unlock()
}

// Balance returns the coins of openID.
func (f *Fake) Balance(openID string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wallets[openID]
}

// Applied returns how many changeGold requests were applied.
func (f *Fake) Applied() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.changes) }

// Fail queues faults for the next calls of api, one per call, in order.
func (f *Fake) Fail(api string, faults ...Fault) {
	f.mu.Lock()
	f.faults[api] = append(f.faults[api], faults...)
	f.mu.Unlock()
}

func (f *Fake) newOpenIDLocked() string {
	f.nextOpenID++
	return strconv.Itoa(f.nextOpenID)
}

// reply is a handler's answer: status and msg, and data when not nil.
type reply struct {
	status int
	msg    string
	data   any
}

type apiFunc func(p map[string]string) reply

// handle checks what every call of LinkV's API must carry, applies a queued
// fault, and calls fn.
func (f *Fake) handle(api string, fn apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		fault := None
		if q := f.faults[api]; len(q) > 0 {
			fault, f.faults[api] = q[0], q[1:]
		}
		f.mu.Unlock()
		call := Call{API: api, Fault: fault}
		defer func() { f.Calls <- call }()

		switch fault {
		case Hang:
			// Read the body first: only then does net/http watch the
			// connection and end r.Context() when the client hangs up.
			io.Copy(io.Discard, r.Body) //nolint:errcheck // any end will do
			select {
			case <-r.Context().Done():
			case <-f.hung:
			}
			return
		case Drop:
			drop(w)
			return
		case Fail500:
			f.write(w, reply{status: 500, msg: "system error"})
			call.Status = 500
			return
		case HTTP500:
			http.Error(w, "internal server error", http.StatusInternalServerError)
			call.Status = 500
			return
		}
		if r.Method != http.MethodPost {
			f.write(w, reply{status: 400, msg: "method not allowed"})
			call.Status = 400
			return
		}
		if err := r.ParseForm(); err != nil || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			f.write(w, reply{status: 400, msg: "param error"})
			call.Status = 400
			return
		}
		p := map[string]string{}
		for k, vs := range r.PostForm {
			p[k] = vs[0]
		}
		call.Params = p
		call.RequestID = p["request_id"]
		if rep, ok := f.check(p); !ok {
			f.write(w, rep)
			call.Status = rep.status
			return
		}
		f.mu.Lock()
		applied := len(f.changes)
		rep := fn(p)
		call.Applied = len(f.changes) > applied
		f.mu.Unlock()
		switch fault {
		case AppliedThen500:
			f.write(w, reply{status: 500, msg: "system error"})
			call.Status = 500
		case AppliedThenDrop:
			drop(w)
		default:
			f.write(w, rep)
			call.Status = rep.status
		}
	}
}

// check is LinkV's common checks: app_id, nonce_str and sign.
func (f *Fake) check(p map[string]string) (reply, bool) {
	for _, k := range []string{"app_id", "nonce_str", "sign"} {
		if p[k] == "" {
			return reply{status: 400, msg: "param error: " + k}, false
		}
	}
	if p["app_id"] != f.appID {
		return reply{status: 403, msg: "sign err"}, false
	}
	// The sign first: nothing below may leak what a wrong sign covered.
	// LinkV's own SDKs (Go, Python) keep empty values in the signed string;
	// a client that never sends one signs the same under every rule.
	if linkv.SignAs(linkv.SignAllKeepEmpty, p, f.secret) != p["sign"] {
		return reply{status: 403, msg: "sign err"}, false
	}
	n := p["nonce_str"]
	if len(n) != 26 || !alnum(n[:8]) || !alnum(n[18:]) {
		return reply{status: 400, msg: "param error: nonce_str"}, false
	}
	ts, err := strconv.ParseInt(n[8:18], 10, 64)
	f.mu.Lock()
	now := f.now()
	f.mu.Unlock()
	if err != nil || now.Sub(time.Unix(ts, 0)) > 5*time.Minute || time.Unix(ts, 0).Sub(now) > 5*time.Minute {
		return reply{status: 403, msg: "sign expired"}, false
	}
	return reply{}, true
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// getToken registers userId on first use and answers its openId and token.
// Called with f.mu held.
func (f *Fake) getToken(p map[string]string) reply {
	u := p["userId"]
	if u == "" {
		return reply{status: 400, msg: "param error: userId", data: []any{}}
	}
	if !ledger.ValidUserID(u) {
		return reply{status: 400, msg: "param length error: userId", data: []any{}}
	}
	if len(p["name"]) > 128 || len(p["portraitUri"]) > 1024 {
		return reply{status: 400, msg: "param length error", data: []any{}}
	}
	if s, ok := p["sex"]; ok && s != "-1" && s != "0" && s != "1" {
		return reply{status: 400, msg: "param error: sex", data: []any{}}
	}
	open, ok := f.users[u]
	if !ok {
		open = f.newOpenIDLocked()
		f.users[u] = open
		f.tokens[u] = "tok-" + open
		f.wallets[open] = 0
	}
	return reply{status: 200, data: map[string]string{
		"token": f.tokens[u], "userId": u, "aid": p["aid"], "openId": open,
	}}
}

// getUserTokens answers the balance of uid. Called with f.mu held.
func (f *Fake) getUserTokens(p map[string]string) reply {
	coins, ok := f.wallets[p["uid"]]
	if p["uid"] == "" || !ok {
		return reply{status: 400, msg: "param error: uid"}
	}
	if f.liveme {
		return reply{status: 200, data: map[string]int64{"livemeTokens": coins}}
	}
	return reply{status: 200, data: map[string]string{"tokens": strconv.FormatInt(coins, 10)}}
}

// changeGold adds or takes value coins once per request_id: a replay with
// the same parameters answers 200 again without applying, one with other
// parameters is 400. Taking more than the balance is 400 (LinkV's page
// names no code for it; giftd treats any status but 200 and 500 as "not
// applied"). Called with f.mu held.
func (f *Fake) changeGold(p map[string]string) reply {
	for _, k := range []string{"uid", "request_id", "type", "value", "expriation"} {
		if p[k] == "" {
			return reply{status: 400, msg: "param error: " + k}
		}
	}
	if len(p["request_id"]) != 32 {
		return reply{status: 400, msg: "param length error: request_id"}
	}
	value, err := strconv.ParseInt(p["value"], 10, 64)
	if err != nil || value < 1 {
		return reply{status: 400, msg: "param error: value"}
	}
	if _, err := strconv.ParseInt(p["expriation"], 10, 64); err != nil {
		return reply{status: 400, msg: "param error: expriation"}
	}
	if prev, ok := f.changes[p["request_id"]]; ok {
		for _, k := range []string{"uid", "type", "value"} {
			if prev.params[k] != p[k] {
				return reply{status: 400, msg: "request_id repeat"}
			}
		}
		return reply{status: 200}
	}
	bal, ok := f.wallets[p["uid"]]
	if !ok {
		return reply{status: 400, msg: "param error: uid"}
	}
	switch p["type"] {
	case "1":
		bal += value
	case "2":
		if bal < value {
			return reply{status: 400, msg: "gold not enough"}
		}
		bal -= value
	default:
		return reply{status: 400, msg: "param error: type"}
	}
	f.wallets[p["uid"]] = bal
	f.changes[p["request_id"]] = change{params: p}
	return reply{status: 200}
}

// write answers rep as LinkV does: HTTP 200 and the status in the body.
func (f *Fake) write(w http.ResponseWriter, rep reply) {
	f.mu.Lock()
	numeric := f.numeric
	f.mu.Unlock()
	body := map[string]any{"msg": rep.msg}
	if numeric {
		body["status"] = rep.status
	} else {
		body["status"] = strconv.Itoa(rep.status)
	}
	if rep.data != nil {
		body["data"] = rep.data
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(body); err != nil {
		panic(fmt.Sprint("linkvfake: encode: ", err))
	}
}

// drop closes the connection without an answer.
func drop(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("linkvfake: cannot hijack")
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		conn.Close()
	}
}
