package polyvapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Limits of a good that Polyv's update-point page states.
const (
	MaxGoodName = 5   // characters ("不能超过5个字符")
	MaxGoodImg  = 120 // characters
)

// Good is one gift of Polyv's donation settings.
type Good struct {
	Name string `json:"goodName"`
	// Img is the image URL (Polyv's default images are under
	// //livestatic.videocc.net/uploaded/images/webapp/channel/donate/).
	Img string `json:"goodImg"`
	// Price is the price in points, a decimal (Polyv answers it as 5.00).
	Price json.Number `json:"goodPrice"`
	// Enabled is "Y" or "N".
	Enabled string `json:"goodEnabled"`
}

// Check returns why g cannot be sent to Polyv, or nil.
func (g Good) Check() error {
	switch {
	case g.Name == "" || utf8.RuneCountInString(g.Name) > MaxGoodName:
		return fmt.Errorf("good %q: name must be 1-%d characters", g.Name, MaxGoodName)
	case utf8.RuneCountInString(g.Img) > MaxGoodImg:
		return fmt.Errorf("good %q: image URL must be at most %d characters", g.Name, MaxGoodImg)
	case g.Enabled != "Y" && g.Enabled != "N":
		return fmt.Errorf("good %q: enabled must be Y or N", g.Name)
	}
	if p, ok := new(big.Rat).SetString(g.Price.String()); !ok || p.Sign() < 0 || strings.ContainsAny(g.Price.String(), "eE") {
		return fmt.Errorf("good %q: price must be a decimal number of points, at least 0", g.Name)
	}
	return nil
}

// SamePrice reports whether two prices are the same number (5 and 5.00).
func SamePrice(a, b json.Number) bool {
	x, ok1 := new(big.Rat).SetString(a.String())
	y, ok2 := new(big.Rat).SetString(b.String())
	return ok1 && ok2 && x.Cmp(y) == 0
}

// PointSetting is the account's point-donation settings (update-point's
// body, get-point-setting's data). Empty fields are not sent.
type PointSetting struct {
	UserID             string `json:"userId,omitempty"`
	DonatePointEnabled string `json:"donatePointEnabled,omitempty"`
	// ChannelDonatePointEnabled is only answered, for the channel asked:
	// "Y", "N" or null.
	ChannelDonatePointEnabled *string `json:"channelDonatePointEnabled,omitempty"`
	QueryPointURL             string  `json:"queryPointUrl,omitempty"`
	UpdatePointURL            string  `json:"updatePointUrl,omitempty"`
	RequestFailTips           string  `json:"requestFailTips,omitempty"`
	PointNotEnoughTips        string  `json:"pointNotEnoughTips,omitempty"`
	PointUnit                 string  `json:"pointUnit,omitempty"`
	Goods                     []Good  `json:"goods,omitempty"`
}

// UpdatePoint sets the account's point-donation settings (update-point):
// the switch, the two URLs Polyv calls, the tips, the unit and the goods.
// It checks the goods first and returns an error naming the first bad one;
// Polyv's refusals are *Error.
func (c *Client) UpdatePoint(ctx context.Context, s PointSetting) error {
	s.ChannelDonatePointEnabled, s.UserID = nil, ""
	for _, g := range s.Goods {
		if err := g.Check(); err != nil {
			return fmt.Errorf("polyv update-point: %w", err)
		}
	}
	_, err := c.call(ctx, "update-point", http.MethodPost, PathUpdatePoint, nil, s)
	return err
}

// GetPointSetting reads the account's point-donation settings
// (get-point-setting) and, with channelID, that channel's switch.
func (c *Client) GetPointSetting(ctx context.Context, channelID string) (PointSetting, error) {
	data, err := c.call(ctx, "get-point-setting", http.MethodGet, PathGetPointSetting, map[string]string{"channelId": channelID}, nil)
	if err != nil {
		return PointSetting{}, err
	}
	var s PointSetting
	if err := json.Unmarshal(data, &s); err != nil {
		return PointSetting{}, &Error{API: "get-point-setting", Code: 200, Message: "data is not a point setting"}
	}
	return s, nil
}

// SetPointEnabled turns point donation on or off (update-point-enabled) for
// channelID, or for the account when channelID is empty. Polyv refuses to
// turn a channel on while the account's switch is off.
func (c *Client) SetPointEnabled(ctx context.Context, channelID string, on bool) error {
	v := "N"
	if on {
		v = "Y"
	}
	_, err := c.call(ctx, "update-point-enabled", http.MethodPost, PathUpdatePointEnabled,
		map[string]string{"channelId": channelID, "donatePointEnabled": v}, nil)
	return err
}

// PointEnabled is get-point-enabled's answer: the channel's switch and the
// account's.
type PointEnabled struct {
	Channel string `json:"donatePointEnabled"`
	Global  string `json:"globalPointDonateEnabled"`
}

// GetPointEnabled reads channelID's point-donation switch and the
// account's (get-point-enabled).
func (c *Client) GetPointEnabled(ctx context.Context, channelID string) (PointEnabled, error) {
	if channelID == "" {
		return PointEnabled{}, errors.New("polyv get-point-enabled: a channel id is required")
	}
	data, err := c.call(ctx, "get-point-enabled", http.MethodGet, PathGetPointEnabled, map[string]string{"channelId": channelID}, nil)
	if err != nil {
		return PointEnabled{}, err
	}
	var e PointEnabled
	if err := json.Unmarshal(data, &e); err != nil {
		return PointEnabled{}, &Error{API: "get-point-enabled", Code: 200, Message: "data is not a switch"}
	}
	return e, nil
}
