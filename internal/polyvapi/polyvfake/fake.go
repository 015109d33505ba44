// Package polyvfake is a fake of Polyv's point-donation settings API for
// tests, written from Polyv's pages (update-point, get-point-setting,
// update-point-enabled, get-point-enabled): it checks appId, the 13-digit
// timestamp (3 minutes either way), the sign (polyv.Sign, uppercase, over
// the URL's parameters), the parameters and the goods' limits, answers the
// pages' errors, keeps the account's settings and each channel's switch,
// and can be told to answer 500 or hang. Tests wait on Calls.
package polyvfake

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"

	"giftd/internal/polyv"
	"giftd/internal/polyvapi"
)

// MaxGoods is how many goods the fake takes; Polyv's pages name the error
// ("goods over limit") but not the number.
const MaxGoods = 20

// Fault is what the fake does instead of answering normally.
type Fault int

const (
	None    Fault = iota
	Fail500       // answer code 500, change nothing
	Hang          // never answer until the client gives up
)

// Call is one handled request.
type Call struct {
	API   string
	Query map[string]string
	Body  string
	Code  int
	Fault Fault
}

// Fake is Polyv's donation settings API on an httptest server.
type Fake struct {
	URL   string
	Calls chan Call

	srv           *httptest.Server
	appID, secret string

	mu       sync.Mutex
	now      func() time.Time
	setting  polyvapi.PointSetting
	channels map[string]string // channelId -> "Y"/"N"
	faults   map[string][]Fault
	// store, if set, alters what update-point saves (a test's way to make
	// Polyv keep something other than what was sent).
	store func(*polyvapi.PointSetting)
	hung  chan struct{}
}

// New starts a fake for one account, with Polyv's defaults (donation off,
// no URLs, its nine default goods), and closes it when the test ends.
func New(tb interface{ Cleanup(func()) }, appID, secret string) *Fake {
	f := &Fake{
		Calls: make(chan Call, 1024), appID: appID, secret: secret, now: time.Now,
		channels: map[string]string{}, faults: map[string][]Fault{}, hung: make(chan struct{}),
		setting: polyvapi.PointSetting{
			UserID: "edvf2fpec9", DonatePointEnabled: "N", RequestFailTips: "积分异常,请稍后重试",
			PointNotEnoughTips: "积分不足,无法打赏", PointUnit: "点",
			Goods: []polyvapi.Good{{Name: "鲜花", Img: "//livestatic.videocc.net/uploaded/images/webapp/channel/donate/01-flower.png",
				Price: "0.00", Enabled: "Y"}},
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc(polyvapi.PathUpdatePoint, f.handle("update-point", http.MethodPost, f.updatePoint))
	mux.HandleFunc(polyvapi.PathGetPointSetting, f.handle("get-point-setting", http.MethodGet, f.getPointSetting))
	mux.HandleFunc(polyvapi.PathUpdatePointEnabled, f.handle("update-point-enabled", http.MethodPost, f.updatePointEnabled))
	mux.HandleFunc(polyvapi.PathGetPointEnabled, f.handle("get-point-enabled", http.MethodGet, f.getPointEnabled))
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

// AddChannel makes channelID one of the account's channels, its switch off.
func (f *Fake) AddChannel(channelID string) { f.mu.Lock(); f.channels[channelID] = "N"; f.mu.Unlock() }

// Fail queues faults for the next calls of api, in order.
func (f *Fake) Fail(api string, faults ...Fault) {
	f.mu.Lock()
	f.faults[api] = append(f.faults[api], faults...)
	f.mu.Unlock()
}

// AlterStored makes update-point save what fn makes of the sent settings.
func (f *Fake) AlterStored(fn func(*polyvapi.PointSetting)) { f.mu.Lock(); f.store = fn; f.mu.Unlock() }

// Setting returns the account's settings and the channels' switches.
func (f *Fake) Setting() (polyvapi.PointSetting, map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := map[string]string{}
	for k, v := range f.channels {
		ch[k] = v
	}
	return f.setting, ch
}

type reply struct {
	code    int
	message string
	data    any
}

func errReply(code int, msg string) reply { return reply{code: code, message: msg, data: ""} }

func (f *Fake) handle(api, method string, fn func(q map[string]string, body []byte) reply) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		fault := None
		if q := f.faults[api]; len(q) > 0 {
			fault, f.faults[api] = q[0], q[1:]
		}
		f.mu.Unlock()
		call := Call{API: api, Body: string(body), Fault: fault, Query: map[string]string{}}
		for k, v := range r.URL.Query() {
			call.Query[k] = v[0]
		}
		defer func() { f.Calls <- call }()
		var rep reply
		switch {
		case fault == Hang:
			select {
			case <-r.Context().Done():
			case <-f.hung:
			}
			return
		case fault == Fail500:
			rep = errReply(500, "system error")
		case r.Method != method:
			rep = errReply(405, "method not allowed")
		default:
			if rep = f.check(call.Query); rep.code == 0 {
				f.mu.Lock()
				rep = fn(call.Query, body)
				f.mu.Unlock()
			}
		}
		call.Code = rep.code
		status := "success"
		if rep.code != 200 {
			status = "error"
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{ //nolint:errcheck // the client is gone
			"code": rep.code, "status": status, "message": rep.message, "data": rep.data,
		})
	}
}

// check is Polyv's common checks: appId, timestamp, sign.
func (f *Fake) check(q map[string]string) reply {
	switch {
	case q["appId"] == "":
		return errReply(400, "appId is required.")
	case q["appId"] != f.appID:
		return errReply(400, "application not found.")
	}
	ts, err := strconv.ParseInt(q["timestamp"], 10, 64)
	f.mu.Lock()
	now := f.now()
	f.mu.Unlock()
	if err != nil || len(q["timestamp"]) != 13 || now.Sub(time.UnixMilli(ts)).Abs() > 3*time.Minute {
		return errReply(400, "invalid timestamp.")
	}
	if q["sign"] != polyv.Sign(q, f.secret) {
		return errReply(403, "invalid signature.")
	}
	if ch, ok := q["channelId"]; ok {
		if _, err := strconv.ParseUint(ch, 10, 64); err != nil {
			return errReply(400, "param is not digit: "+ch)
		}
	}
	return reply{}
}

// channel checks a channelId parameter against the account's channels.
// Called with f.mu held.
func (f *Fake) channel(q map[string]string) (string, reply, bool) {
	ch := q["channelId"]
	if _, ok := f.channels[ch]; ch != "" && !ok {
		return "", errReply(400, "channel not found."), false
	}
	return ch, reply{}, true
}

func (f *Fake) updatePoint(q map[string]string, body []byte) reply {
	var s polyvapi.PointSetting
	if err := json.Unmarshal(body, &s); err != nil || len(body) == 0 {
		return errReply(400, "param validate error")
	}
	if s.DonatePointEnabled != "" && s.DonatePointEnabled != "Y" && s.DonatePointEnabled != "N" {
		return errReply(400, "param validate error")
	}
	if len(s.Goods) > MaxGoods {
		return errReply(400, "goods over limit")
	}
	for _, g := range s.Goods {
		switch {
		case len([]rune(g.Name)) > polyvapi.MaxGoodName:
			return errReply(400, "goods name over limit")
		case len([]rune(g.Img)) > polyvapi.MaxGoodImg:
			return errReply(400, "goods image length over limit")
		}
		if p, err := g.Price.Float64(); err != nil || p < 0 {
			return errReply(400, "number range error")
		}
	}
	if f.store != nil {
		f.store(&s)
	}
	cur := &f.setting
	for _, kv := range []struct {
		from string
		to   *string
	}{
		{s.DonatePointEnabled, &cur.DonatePointEnabled}, {s.QueryPointURL, &cur.QueryPointURL},
		{s.UpdatePointURL, &cur.UpdatePointURL}, {s.RequestFailTips, &cur.RequestFailTips},
		{s.PointNotEnoughTips, &cur.PointNotEnoughTips}, {s.PointUnit, &cur.PointUnit},
	} {
		if kv.from != "" {
			*kv.to = kv.from
		}
	}
	if s.Goods != nil {
		cur.Goods = s.Goods
	}
	return reply{code: 200, data: ""}
}

func (f *Fake) getPointSetting(q map[string]string, _ []byte) reply {
	ch, rep, ok := f.channel(q)
	if !ok {
		return rep
	}
	s := f.setting
	s.Goods = make([]polyvapi.Good, len(f.setting.Goods))
	for i, g := range f.setting.Goods {
		// Polyv answers prices with two decimals.
		p, _ := g.Price.Float64()
		g.Price = json.Number(strconv.FormatFloat(p, 'f', 2, 64))
		s.Goods[i] = g
	}
	if ch != "" {
		v := f.channels[ch]
		s.ChannelDonatePointEnabled = &v
	}
	out := map[string]any{}
	raw, _ := json.Marshal(s)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()  // keep 5.00 as written
	dec.Decode(&out) //nolint:errcheck // just marshalled
	for _, k := range []string{"queryPointUrl", "updatePointUrl", "channelDonatePointEnabled"} {
		if _, ok := out[k]; !ok {
			out[k] = nil // Polyv answers null, as its example shows
		}
	}
	return reply{code: 200, data: out}
}

func (f *Fake) updatePointEnabled(q map[string]string, _ []byte) reply {
	v := q["donatePointEnabled"]
	if v != "Y" && v != "N" {
		return errReply(400, "param validate error")
	}
	ch, rep, ok := f.channel(q)
	if !ok {
		return rep
	}
	if ch == "" {
		f.setting.DonatePointEnabled = v
		return reply{code: 200, data: ""}
	}
	if v == "Y" && f.setting.DonatePointEnabled != "Y" {
		// "全局积分打赏开关关闭时,如果开启频道的积分打赏,将会返回失败"
		return errReply(400, "global point donate is disabled")
	}
	f.channels[ch] = v
	return reply{code: 200, data: ""}
}

func (f *Fake) getPointEnabled(q map[string]string, _ []byte) reply {
	if q["channelId"] == "" {
		return errReply(400, "param validate error")
	}
	ch, rep, ok := f.channel(q)
	if !ok {
		return rep
	}
	return reply{code: 200, data: polyvapi.PointEnabled{Channel: f.channels[ch], Global: f.setting.DonatePointEnabled}}
}
