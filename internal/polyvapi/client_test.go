package polyvapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"giftd/internal/polyvapi"
	"giftd/internal/polyvapi/polyvfake"
)

const (
	testApp    = "frlr1zazn3"
	testSecret = "polyv-secret-never-shown-91c2"
)

func newPair(t *testing.T) (*polyvfake.Fake, *polyvapi.Client) {
	t.Helper()
	f := polyvfake.New(t, testApp, testSecret)
	c, err := polyvapi.New(polyvapi.Config{BaseURL: f.URL, AppID: testApp, Secret: testSecret,
		Timeout: 100 * time.Millisecond, Attempts: 3, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

// TestQuery_SignVectors: the signed query against digests computed
// independently (Python: md5(secret + k1v1k2v2… + secret), uppercase).
func TestQuery_SignVectors(t *testing.T) {
	c, err := polyvapi.New(polyvapi.Config{AppID: testApp, Secret: "giftd-polyv-secret"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(1621844038326)
	for _, tt := range []struct {
		params map[string]string
		want   string
	}{
		// giftd-polyv-secret appIdfrlr1zazn3channelId2149710timestamp1621844038326 giftd-polyv-secret
		{map[string]string{"channelId": "2149710"}, "9F20D280CE4AE7ABD6A8B04976004DA1"},
		// An empty parameter is neither sent nor signed.
		{map[string]string{"channelId": ""}, "0BEEC868A790DBB99578086A5F5BCEAB"},
	} {
		q := c.Query(tt.params, at)
		if q.Get("sign") != tt.want || q.Get("timestamp") != "1621844038326" || q.Get("appId") != testApp {
			t.Errorf("Query(%v) = %v, want sign %s", tt.params, q, tt.want)
		}
		if _, ok := q["channelId"]; ok && tt.params["channelId"] == "" {
			t.Errorf("sent an empty channelId")
		}
	}
}

func TestPointSettings_RoundTrip(t *testing.T) {
	f, c := newPair(t)
	f.AddChannel("2149710")
	ctx := context.Background()
	goods := []polyvapi.Good{{Name: "鲜花", Img: "//img/1.png", Price: "5", Enabled: "Y"}, {Name: "跑车", Img: "//img/8.png", Price: "99.9", Enabled: "N"}}
	err := c.UpdatePoint(ctx, polyvapi.PointSetting{DonatePointEnabled: "Y", QueryPointURL: "https://g.example/polyv/points",
		UpdatePointURL: "https://g.example/polyv/points/donate", Goods: goods})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetPointEnabled(ctx, "2149710", true); err != nil {
		t.Fatal(err)
	}
	s, err := c.GetPointSetting(ctx, "2149710")
	if err != nil {
		t.Fatal(err)
	}
	if s.DonatePointEnabled != "Y" || s.ChannelDonatePointEnabled == nil || *s.ChannelDonatePointEnabled != "Y" ||
		s.QueryPointURL != "https://g.example/polyv/points" || len(s.Goods) != 2 || s.Goods[1].Price != "99.90" ||
		!polyvapi.SamePrice(s.Goods[1].Price, "99.9") {
		t.Fatalf("read back %+v", s)
	}
	en, err := c.GetPointEnabled(ctx, "2149710")
	if err != nil || en.Channel != "Y" || en.Global != "Y" {
		t.Fatalf("get-point-enabled %+v %v", en, err)
	}
	// update-point's body is JSON; the sign covers only the URL.
	calls := drain(f)
	if calls[0].API != "update-point" || !strings.Contains(calls[0].Body, `"goodName":"鲜花"`) || calls[0].Query["sign"] == "" {
		t.Errorf("update-point sent %+v", calls[0])
	}
	if calls[1].Query["donatePointEnabled"] != "Y" || calls[1].Query["channelId"] != "2149710" {
		t.Errorf("update-point-enabled sent %v", calls[1].Query)
	}
}

func drain(f *polyvfake.Fake) []polyvfake.Call {
	var out []polyvfake.Call
	for {
		select {
		case c := <-f.Calls:
			out = append(out, c)
		default:
			return out
		}
	}
}

// TestCalls_PolyvsErrors: each error of Polyv's pages, as the client reports it.
func TestCalls_PolyvsErrors(t *testing.T) {
	f, good := newPair(t)
	f.AddChannel("2149710")
	ctx := context.Background()
	client := func(app, secret string) *polyvapi.Client {
		c, err := polyvapi.New(polyvapi.Config{BaseURL: f.URL, AppID: app, Secret: secret, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	stale, _ := polyvapi.New(polyvapi.Config{BaseURL: f.URL, AppID: testApp, Secret: testSecret,
		Now: func() time.Time { return time.Now().Add(-4 * time.Minute) }})
	many := make([]polyvapi.Good, polyvfake.MaxGoods+1)
	for i := range many {
		many[i] = polyvapi.Good{Name: fmt.Sprint("g", i), Price: "1", Enabled: "Y"}
	}
	for _, tt := range []struct {
		name string
		call func() error
		code int
		msg  string
	}{
		{"unknown app", func() error { _, err := client("nope", testSecret).GetPointEnabled(ctx, "2149710"); return err }, 400, "application not found."},
		{"wrong secret", func() error { _, err := client(testApp, "wrong").GetPointEnabled(ctx, "2149710"); return err }, 403, "invalid signature."},
		{"stale timestamp", func() error { _, err := stale.GetPointEnabled(ctx, "2149710"); return err }, 400, "invalid timestamp."},
		{"channel not digits", func() error { _, err := good.GetPointEnabled(ctx, "abc"); return err }, 400, "param is not digit: abc"},
		{"unknown channel", func() error { return good.SetPointEnabled(ctx, "999", true) }, 400, "channel not found."},
		{"channel on, account off", func() error { return good.SetPointEnabled(ctx, "2149710", true) }, 400, "global point donate is disabled"},
		{"goods over limit", func() error { return good.UpdatePoint(ctx, polyvapi.PointSetting{Goods: many}) }, 400, "goods over limit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var e *polyvapi.Error
			if !errors.As(err, &e) || e.Code != tt.code || e.Message != tt.msg || e.Uncertain || e.Attempts != 1 {
				t.Fatalf("err %#v, want code %d %q after one attempt", err, tt.code, tt.msg)
			}
			if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), "sign=") {
				t.Fatalf("error %q holds the secret or the sign", err)
			}
		})
	}
}

// TestFake_GoodsLimits sends goods the client would refuse, signed by hand,
// to see the fake answer Polyv's errors.
func TestFake_GoodsLimits(t *testing.T) {
	f, c := newPair(t)
	for _, tt := range []struct{ body, msg string }{
		{`{"goods":[{"goodName":"六个字的名字","goodImg":"","goodPrice":1,"goodEnabled":"Y"}]}`, "goods name over limit"},
		{`{"goods":[{"goodName":"a","goodImg":"` + strings.Repeat("i", 121) + `","goodPrice":1,"goodEnabled":"Y"}]}`, "goods image length over limit"},
		{`{"goods":[{"goodName":"a","goodImg":"","goodPrice":-1,"goodEnabled":"Y"}]}`, "number range error"},
		{`{"goods":[{"goodName":"a","goodImg":"","goodPrice":"x","goodEnabled":"Y"}]}`, "param validate error"},
		{`not json`, "param validate error"},
	} {
		u := f.URL + polyvapi.PathUpdatePoint + "?" + c.Query(nil, time.Now()).Encode()
		resp, err := http.Post(u, "application/json", strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		var a struct {
			Code    int
			Message string
		}
		json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if a.Code != 400 || a.Message != tt.msg {
			t.Errorf("%s: %+v, want 400 %q", tt.body[:min(40, len(tt.body))], a, tt.msg)
		}
	}
}

func TestGood_CheckBeforeSending(t *testing.T) {
	_, c := newPair(t)
	for _, g := range []polyvapi.Good{
		{Name: "六个字的名字", Price: "1", Enabled: "Y"},
		{Name: "a", Img: strings.Repeat("i", 121), Price: "1", Enabled: "Y"},
		{Name: "a", Price: "-1", Enabled: "Y"},
		{Name: "a", Price: "1e3", Enabled: "Y"},
		{Name: "a", Price: "1", Enabled: "yes"},
	} {
		if err := c.UpdatePoint(context.Background(), polyvapi.PointSetting{Goods: []polyvapi.Good{g}}); err == nil {
			t.Errorf("good %+v accepted", g)
		}
	}
}

func TestCalls_RetryOn500AndHang(t *testing.T) {
	f, c := newPair(t)
	f.AddChannel("1")
	f.Fail("get-point-enabled", polyvfake.Fail500, polyvfake.Hang)
	en, err := c.GetPointEnabled(context.Background(), "1")
	if err != nil || en.Channel != "N" {
		t.Fatalf("%+v %v, want the third attempt to answer", en, err)
	}
	f.Fail("get-point-enabled", polyvfake.Hang, polyvfake.Hang, polyvfake.Fail500)
	_, err = c.GetPointEnabled(context.Background(), "1")
	var e *polyvapi.Error
	if !errors.As(err, &e) || !e.Uncertain || e.Attempts != 3 || e.Code != 500 {
		t.Fatalf("err %#v, want code 500 after 3 attempts", err)
	}
}
