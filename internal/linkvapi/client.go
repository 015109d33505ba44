// Package linkvapi is giftd's client of LinkV's server API (docs/linkv-server-api.md):
// thGetToken (account linking), getUserTokens and changeGold (LinkV's
// wallet). It signs every call by LinkV's rule (linkv.Sign, docs/linkv.md §2),
// POSTs forms, reads answers whose status is a string or a number, and
// retries only what may be retried: a status 500 and no answer at all.
package linkvapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"giftd/internal/linkv"
)

// The paths of LinkV's server API, below the base URL.
const (
	PathGetToken      = "/open/v0/thGetToken"
	PathGetUserTokens = "/open/finanv0/getUserTokens"
	PathChangeGold    = "/open/finanv0/changeGold"
)

// Defaults of Config.
const (
	DefaultTimeout  = 5 * time.Second
	DefaultAttempts = 3
	DefaultBackoff  = 200 * time.Millisecond
	// maxAnswer bounds the body read from LinkV.
	maxAnswer = 1 << 20
)

// Config says where and as whom the client calls.
type Config struct {
	// BaseURL is LinkV's API host, e.g. https://api.example-linkv.host; the
	// paths above are appended to it.
	BaseURL string
	// AppID and Secret are the app's live_app_id and decrypted
	// live_app_secret. The secret only ever signs; it is never sent, logged
	// or put in an error.
	AppID, Secret string
	// Timeout bounds each attempt (0: DefaultTimeout).
	Timeout time.Duration
	// Attempts is how many times a call is sent at most (0: DefaultAttempts).
	Attempts int
	// Backoff is the wait before the second attempt, doubled before each
	// further one (0: DefaultBackoff).
	Backoff time.Duration
	// HTTPClient, if set, sends the requests (its own Timeout is left as is).
	HTTPClient *http.Client
	// Now, if set, is the clock of nonce_str.
	Now func() time.Time
}

// Client calls LinkV's server API. It is safe for concurrent use.
type Client struct {
	base     string
	appID    string
	secret   string
	timeout  time.Duration
	attempts int
	backoff  time.Duration
	http     *http.Client
	now      func() time.Time
}

// New returns a client of cfg; it returns an error when the base URL is not
// an absolute http(s) URL or the app id or secret is missing.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return nil, errors.New("linkv api: base URL must be an absolute http(s) URL without query or credentials")
	}
	if cfg.AppID == "" || cfg.Secret == "" {
		return nil, errors.New("linkv api: app id and secret are required")
	}
	c := &Client{
		base: strings.TrimSuffix(u.String(), "/"), appID: cfg.AppID, secret: cfg.Secret,
		timeout: cfg.Timeout, attempts: cfg.Attempts, backoff: cfg.Backoff, http: cfg.HTTPClient, now: cfg.Now,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.attempts <= 0 {
		c.attempts = DefaultAttempts
	}
	if c.backoff <= 0 {
		c.backoff = DefaultBackoff
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// AppID is the app the client calls as.
func (c *Client) AppID() string { return c.appID }

// Error is a call that did not succeed: LinkV answered a status other than
// 200, or did not answer in a way that can be read. It never holds the
// secret or the sign.
type Error struct {
	// API is the call's name, e.g. "changeGold".
	API string
	// Status is LinkV's status (the body's, or the HTTP status when the
	// body has none); 0 when no answer came.
	Status int
	// Msg is LinkV's msg, or what went wrong on the way.
	Msg string
	// Attempts is how many times the call was sent.
	Attempts int
	// Uncertain is true when the outcome is unknown: the last attempt got
	// status 500, no answer, or an answer that could not be read. A call
	// that changes something (changeGold) may then have been applied, and
	// only a replay of the same request_id tells.
	Uncertain bool
}

func (e *Error) Error() string {
	switch {
	case e.Status == 0:
		return fmt.Sprintf("linkv %s: no answer after %d attempt(s): %s", e.API, e.Attempts, e.Msg)
	case e.Msg == "":
		return fmt.Sprintf("linkv %s: status %d", e.API, e.Status)
	}
	return fmt.Sprintf("linkv %s: status %d: %s", e.API, e.Status, e.Msg)
}

// Uncertain reports whether err leaves the outcome of a call unknown (see
// Error.Uncertain). A context ended while waiting is uncertain too.
func Uncertain(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Uncertain
	}
	return err != nil
}

// answer is LinkV's answer body: status is a string ("200") in LinkV's
// examples and in its Go SDK, a number elsewhere; data an object, or [] on
// some errors.
type answer struct {
	Status json.RawMessage `json:"status"`
	Msg    string          `json:"msg"`
	Data   json.RawMessage `json:"data"`
}

// status reads a status written as a JSON number or a string of digits.
func status(raw json.RawMessage) (int, bool) {
	s := strings.TrimSpace(string(raw))
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// call POSTs params (plus app_id, a fresh nonce_str and sign on each
// attempt) to path and returns data of a status-200 answer. It retries on
// status 500 (HTTP or body) and on no answer, at most c.attempts times with
// a doubling backoff, and never once ctx is done.
func (c *Client) call(ctx context.Context, api, path string, params map[string]string) (json.RawMessage, error) {
	wait := c.backoff
	var last *Error
	for attempt := 1; ; attempt++ {
		data, err := c.once(ctx, api, path, params)
		if err == nil {
			return data, nil
		}
		err.Attempts = attempt
		last = err
		if !err.Uncertain || (err.Status != 0 && err.Status != http.StatusInternalServerError) || attempt >= c.attempts {
			return nil, last
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			last.Msg += "; gave up: " + ctx.Err().Error()
			return nil, last
		case <-t.C:
		}
		wait *= 2
	}
}

// once sends one attempt.
func (c *Client) once(ctx context.Context, api, path string, params map[string]string) (json.RawMessage, *Error) {
	form := c.form(params, Nonce(c.now()))
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, c.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, &Error{API: api, Msg: "build request: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &Error{API: api, Msg: transportMessage(err), Uncertain: true}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, &Error{API: api, Msg: "reading the answer: " + transportMessage(err), Uncertain: true}
	}
	switch {
	case resp.StatusCode == http.StatusInternalServerError:
		return nil, &Error{API: api, Status: resp.StatusCode, Msg: "HTTP 500", Uncertain: true}
	case resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable ||
		resp.StatusCode == http.StatusGatewayTimeout:
		// A proxy's answer: LinkV itself did not answer.
		return nil, &Error{API: api, Msg: fmt.Sprintf("HTTP %d from a gateway", resp.StatusCode), Uncertain: true}
	case resp.StatusCode != http.StatusOK:
		return nil, &Error{API: api, Status: resp.StatusCode, Msg: fmt.Sprintf("HTTP %d", resp.StatusCode)}
	}
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, &Error{API: api, Status: resp.StatusCode, Msg: "answer is not LinkV's JSON", Uncertain: true}
	}
	st, ok := status(a.Status)
	switch {
	case !ok:
		return nil, &Error{API: api, Status: resp.StatusCode, Msg: "answer has no readable status", Uncertain: true}
	case st == http.StatusInternalServerError:
		return nil, &Error{API: api, Status: st, Msg: a.Msg, Uncertain: true}
	case st != http.StatusOK:
		return nil, &Error{API: api, Status: st, Msg: a.Msg}
	}
	return a.Data, nil
}

// form is the signed form of one attempt: params without empty values (LinkV's
// signers disagree on those, docs/linkv-server-api.md), app_id, nonce_str and
// sign by linkv.Sign (docs/linkv.md §2).
func (c *Client) form(params map[string]string, nonce string) url.Values {
	fields := make(map[string]string, len(params)+3)
	for k, v := range params {
		if v != "" {
			fields[k] = v
		}
	}
	fields["app_id"] = c.appID
	fields["nonce_str"] = nonce
	form := url.Values{}
	for k, v := range fields {
		form.Set(k, v)
	}
	form.Set("sign", linkv.Sign(fields, c.secret))
	return form
}

// transportMessage describes a transport error without the URL that
// *url.Error quotes (the base URL is not secret, but the message is shorter
// and the same whatever the host).
func transportMessage(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return err.Error()
}

const nonceAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Nonce returns a nonce_str of LinkV's shape: 8 random [0-9A-Za-z], the
// 10-digit seconds timestamp of now, 8 random [0-9A-Za-z].
func Nonce(now time.Time) string {
	var b [16]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand.Read never fails
	out := make([]byte, 0, 26)
	for _, x := range b[:8] {
		out = append(out, nonceAlphabet[int(x)%len(nonceAlphabet)])
	}
	out = strconv.AppendInt(out, now.Unix(), 10)
	for _, x := range b[8:] {
		out = append(out, nonceAlphabet[int(x)%len(nonceAlphabet)])
	}
	return string(out)
}
