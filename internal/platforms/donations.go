package platforms

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"giftd/internal/polyvapi"
)

// GoodsSource gives the goods Polyv's donation settings should list. Today
// FileGoods reads them from a JSON file; giftd's gift catalogue, once it
// exists, plugs in here by implementing it (its prices converted from coins
// to points by GIFTD_POLYV_POINT_SCALE).
type GoodsSource interface {
	PolyvGoods(ctx context.Context) ([]polyvapi.Good, error)
}

// FileGoods reads goods from a JSON file: an array of Polyv's own good
// objects, [{"goodName":"鲜花","goodImg":"//…/01-flower.png","goodPrice":5,"goodEnabled":"Y"}],
// as get-point-setting answers them.
type FileGoods string

// PolyvGoods reads and checks the file's goods.
func (path FileGoods) PolyvGoods(context.Context) ([]polyvapi.Good, error) {
	raw, err := os.ReadFile(string(path))
	if err != nil {
		return nil, fmt.Errorf("goods: %w", err)
	}
	return ParseGoods(raw)
}

// ParseGoods reads a JSON array of goods (unknown fields refused) and
// checks each one.
func ParseGoods(raw []byte) ([]polyvapi.Good, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var goods []polyvapi.Good
	if err := dec.Decode(&goods); err != nil {
		return nil, fmt.Errorf("goods: not a JSON array of {goodName, goodImg, goodPrice, goodEnabled}: %w", err)
	}
	for i := range goods {
		if goods[i].Enabled == "" {
			goods[i].Enabled = "Y"
		}
		if err := goods[i].Check(); err != nil {
			return nil, fmt.Errorf("goods[%d]: %w", i, err)
		}
	}
	return goods, nil
}

// DonationSetup is what SetUpDonations sets.
type DonationSetup struct {
	// Channels are the channels whose point donation is turned on.
	Channels []string `json:"channels"`
	// QueryPointURL and UpdatePointURL are giftd's public URLs of Polyv's
	// two callbacks (docs/polyv.md).
	QueryPointURL  string `json:"query_point_url"`
	UpdatePointURL string `json:"update_point_url"`
	// Goods, when not nil, replace Polyv's goods.
	Goods []polyvapi.Good `json:"goods,omitempty"`
	// Optional texts; empty: left as they are.
	PointUnit          string `json:"point_unit,omitempty"`
	RequestFailTips    string `json:"request_fail_tips,omitempty"`
	PointNotEnoughTips string `json:"point_not_enough_tips,omitempty"`
}

// ChannelReport is what a channel's settings read back as.
type ChannelReport struct {
	ChannelID string `json:"channel_id"`
	// Differences lists every setting Polyv reads back otherwise than set.
	Differences []string `json:"differences"`
	Error       string   `json:"error,omitempty"`
}

// DonationReport is the outcome of SetUpDonations.
type DonationReport struct {
	OK bool `json:"ok"`
	// Error is why the account's settings could not be set (then no
	// channel was touched).
	Error    string          `json:"error,omitempty"`
	Channels []ChannelReport `json:"channels"`
}

// SetUpDonations sets Polyv's point donation up for giftd: the account's
// settings (update-point: donation on, the two URLs, the goods and texts
// given), then each channel's switch (update-point-enabled), then reads
// every channel back (get-point-setting, get-point-enabled) and reports
// each difference. Polyv's update-point is account-wide; a channel's own
// switch only takes effect while the account's is on.
func SetUpDonations(ctx context.Context, c *polyvapi.Client, s DonationSetup) DonationReport {
	rep := DonationReport{Channels: []ChannelReport{}}
	want := polyvapi.PointSetting{
		DonatePointEnabled: "Y", QueryPointURL: s.QueryPointURL, UpdatePointURL: s.UpdatePointURL,
		PointUnit: s.PointUnit, RequestFailTips: s.RequestFailTips, PointNotEnoughTips: s.PointNotEnoughTips,
		Goods: s.Goods,
	}
	if err := c.UpdatePoint(ctx, want); err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.OK = true
	for _, ch := range s.Channels {
		cr := ChannelReport{ChannelID: ch, Differences: []string{}}
		if err := c.SetPointEnabled(ctx, ch, true); err != nil {
			cr.Error = err.Error()
		} else {
			cr.Differences, cr.Error = readBack(ctx, c, ch, want)
		}
		rep.OK = rep.OK && cr.Error == "" && len(cr.Differences) == 0
		rep.Channels = append(rep.Channels, cr)
	}
	return rep
}

// readBack reads channel ch's settings and lists what differs from want.
func readBack(ctx context.Context, c *polyvapi.Client, ch string, want polyvapi.PointSetting) ([]string, string) {
	got, err := c.GetPointSetting(ctx, ch)
	if err != nil {
		return []string{}, err.Error()
	}
	en, err := c.GetPointEnabled(ctx, ch)
	if err != nil {
		return []string{}, err.Error()
	}
	diffs := []string{}
	differ := func(name, got, want string) {
		if want != "" && got != want {
			diffs = append(diffs, fmt.Sprintf("%s: Polyv has %q, want %q", name, got, want))
		}
	}
	channel := ""
	if got.ChannelDonatePointEnabled != nil {
		channel = *got.ChannelDonatePointEnabled
	}
	differ("donatePointEnabled", got.DonatePointEnabled, "Y")
	differ("channelDonatePointEnabled", channel, "Y")
	differ("get-point-enabled donatePointEnabled", en.Channel, "Y")
	differ("get-point-enabled globalPointDonateEnabled", en.Global, "Y")
	differ("queryPointUrl", got.QueryPointURL, want.QueryPointURL)
	differ("updatePointUrl", got.UpdatePointURL, want.UpdatePointURL)
	differ("pointUnit", got.PointUnit, want.PointUnit)
	differ("requestFailTips", got.RequestFailTips, want.RequestFailTips)
	differ("pointNotEnoughTips", got.PointNotEnoughTips, want.PointNotEnoughTips)
	if want.Goods != nil {
		if len(got.Goods) != len(want.Goods) {
			diffs = append(diffs, fmt.Sprintf("goods: Polyv has %d, want %d", len(got.Goods), len(want.Goods)))
		}
		for i := range min(len(got.Goods), len(want.Goods)) {
			g, w := got.Goods[i], want.Goods[i]
			if g.Name != w.Name || g.Img != w.Img || g.Enabled != w.Enabled || !polyvapi.SamePrice(g.Price, w.Price) {
				diffs = append(diffs, fmt.Sprintf("goods[%d]: Polyv has %s, want %s", i, goodString(g), goodString(w)))
			}
		}
	}
	slices.Sort(diffs)
	return diffs, ""
}

func goodString(g polyvapi.Good) string {
	return fmt.Sprintf("%q %s points, image %q, enabled %s", g.Name, g.Price, g.Img, g.Enabled)
}
