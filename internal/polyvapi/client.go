// Package polyvapi is giftd's client of Polyv's live API for point-donation
// settings (docs/polyv.md; docs/platform-apis.md): update-point,
// get-point-setting, update-point-enabled and get-point-enabled under
// /live/v3/channel/donate/. Every call carries appId, a 13-digit
// millisecond timestamp and sign in the URL, signed by Polyv's rule
// (polyv.Sign); update-point's settings go as a JSON body, which the sign
// does not cover.
package polyvapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"giftd/internal/polyv"
)

// DefaultBaseURL is Polyv's API host (HTTPS, which Polyv recommends).
const DefaultBaseURL = "https://api.polyv.net"

// The paths of the donation settings API.
const (
	PathUpdatePoint        = "/live/v3/channel/donate/update-point"
	PathGetPointSetting    = "/live/v3/channel/donate/get-point-setting"
	PathUpdatePointEnabled = "/live/v3/channel/donate/update-point-enabled"
	PathGetPointEnabled    = "/live/v3/channel/donate/get-point-enabled"
)

// Defaults of Config.
const (
	DefaultTimeout  = 5 * time.Second
	DefaultAttempts = 3
	DefaultBackoff  = 200 * time.Millisecond
	maxAnswer       = 1 << 20
)

// Config says where and as whom the client calls.
type Config struct {
	BaseURL string // "": DefaultBaseURL
	// AppID and Secret are the Polyv account's API appId and appSecret. The
	// secret only signs; it is never sent, logged or put in an error.
	AppID, Secret string
	Timeout       time.Duration // per attempt (0: DefaultTimeout)
	Attempts      int           // at most (0: DefaultAttempts)
	Backoff       time.Duration // before the second attempt, doubled after (0: DefaultBackoff)
	HTTPClient    *http.Client
	Now           func() time.Time
}

// Client calls Polyv's donation settings API. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base string
}

// New returns a client of cfg, or an error when the base URL is not an
// absolute http(s) URL or the app id or secret is missing.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return nil, errors.New("polyv api: base URL must be an absolute http(s) URL without query or credentials")
	}
	if cfg.AppID == "" || cfg.Secret == "" {
		return nil, errors.New("polyv api: app id and secret are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = DefaultAttempts
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{cfg: cfg, base: strings.TrimSuffix(u.String(), "/")}, nil
}

// Error is a call Polyv did not answer with code 200. It never holds the
// secret, the sign or the URL (which carries the sign).
type Error struct {
	API      string // e.g. "update-point"
	Code     int    // Polyv's code, or the HTTP status; 0 when no answer came
	Message  string
	Attempts int
	// Uncertain: code 500 or no answer; the setting may or may not be saved.
	Uncertain bool
}

func (e *Error) Error() string {
	if e.Code == 0 {
		return fmt.Sprintf("polyv %s: no answer after %d attempt(s): %s", e.API, e.Attempts, e.Message)
	}
	return fmt.Sprintf("polyv %s: code %d: %s", e.API, e.Code, e.Message)
}

// answer is Polyv's answer body.
type answer struct {
	Code    int             `json:"code"`
	Status  string          `json:"status"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// call sends method path with params (plus appId, timestamp and sign) in
// the URL and body (JSON) if not nil, and returns data of a code-200
// answer. It retries on code 500 and on no answer: every call of this
// package sets or reads a setting, so a repeat is harmless.
func (c *Client) call(ctx context.Context, api, method, path string, params map[string]string, body any) (json.RawMessage, error) {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return nil, fmt.Errorf("polyv %s: encode body: %w", api, err)
		}
	}
	wait := c.cfg.Backoff
	for attempt := 1; ; attempt++ {
		data, err := c.once(ctx, api, method, path, params, raw)
		if err == nil {
			return data, nil
		}
		err.Attempts = attempt
		if !err.Uncertain || attempt >= c.cfg.Attempts {
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			err.Message += "; gave up: " + ctx.Err().Error()
			return nil, err
		case <-t.C:
		}
		wait *= 2
	}
}

// Query is the signed query string of one attempt: params, appId and a
// fresh timestamp, and sign over them all (polyv.Sign).
func (c *Client) Query(params map[string]string, now time.Time) url.Values {
	p := make(map[string]string, len(params)+2)
	for k, v := range params {
		if v != "" {
			p[k] = v
		}
	}
	p["appId"] = c.cfg.AppID
	p["timestamp"] = strconv.FormatInt(now.UnixMilli(), 10)
	q := url.Values{}
	for k, v := range p {
		q.Set(k, v)
	}
	q.Set("sign", polyv.Sign(p, c.cfg.Secret))
	return q
}

func (c *Client) once(ctx context.Context, api, method, path string, params map[string]string, body []byte) (json.RawMessage, *Error) {
	u := c.base + path + "?" + c.Query(params, c.cfg.Now()).Encode()
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, method, u, rd)
	if err != nil {
		return nil, &Error{API: api, Message: "build request"}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		// *url.Error quotes the URL, sign included: keep only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		msg := err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			msg = "timed out"
		}
		return nil, &Error{API: api, Message: msg, Uncertain: true}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, &Error{API: api, Message: "reading the answer failed", Uncertain: true}
	}
	var a answer
	if jerr := json.Unmarshal(b, &a); jerr != nil || a.Code == 0 {
		switch {
		case resp.StatusCode == http.StatusInternalServerError:
			return nil, &Error{API: api, Code: 500, Message: "HTTP 500", Uncertain: true}
		case resp.StatusCode >= 502 && resp.StatusCode <= 504:
			return nil, &Error{API: api, Message: fmt.Sprintf("HTTP %d from a gateway", resp.StatusCode), Uncertain: true}
		}
		return nil, &Error{API: api, Code: resp.StatusCode, Message: "answer is not Polyv's JSON", Uncertain: resp.StatusCode == http.StatusOK}
	}
	switch {
	case a.Code == http.StatusInternalServerError:
		return nil, &Error{API: api, Code: a.Code, Message: a.Message, Uncertain: true}
	case a.Code != http.StatusOK:
		return nil, &Error{API: api, Code: a.Code, Message: a.Message}
	}
	return a.Data, nil
}
