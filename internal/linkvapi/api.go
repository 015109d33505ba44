package linkvapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Profile is a user's profile for thGetToken. Every field is optional for
// giftd; LinkV needs Name and PortraitURI when it registers a new user.
type Profile struct {
	// AID is the user's device id (the English page marks it required, the
	// Chinese page of 2021 does not list it): sent when set.
	AID         string `json:"aid,omitempty"`
	Name        string `json:"name,omitempty"`
	PortraitURI string `json:"portrait_uri,omitempty"`
	Email       string `json:"email,omitempty"`
	CountryCode string `json:"country_code,omitempty"`
	Birthday    string `json:"birthday,omitempty"`
	// Sex is "-1" unknown, "1" male, "0" female; empty: not sent.
	Sex string `json:"sex,omitempty"`
}

// Token is thGetToken's answer: what the app gives LinkV's SDK.
type Token struct {
	UserID string
	OpenID string // live_open_id
	Token  string // live_token: a credential of the user, never logged
	AID    string
}

// GetToken calls thGetToken for userID and returns its live_open_id and
// live_token. It returns an *Error when LinkV refuses (400 parameter, 403
// sign) or cannot be reached, and an error when the answer lacks openId or
// token.
func (c *Client) GetToken(ctx context.Context, userID string, p Profile) (Token, error) {
	params := map[string]string{
		"userId": userID, "aid": p.AID, "name": p.Name, "portraitUri": p.PortraitURI, "email": p.Email,
		"countryCode": p.CountryCode, "birthday": p.Birthday, "sex": p.Sex,
	}
	data, err := c.call(ctx, "thGetToken", PathGetToken, params)
	if err != nil {
		return Token{}, err
	}
	var d struct {
		Token  string `json:"token"`
		UserID string `json:"userId"`
		AID    string `json:"aid"`
		OpenID string `json:"openId"`
	}
	if err := json.Unmarshal(data, &d); err != nil || d.OpenID == "" || d.Token == "" {
		return Token{}, &Error{API: "thGetToken", Status: 200, Msg: "answer lacks data.openId or data.token"}
	}
	if d.UserID != "" && d.UserID != userID {
		return Token{}, &Error{API: "thGetToken", Status: 200, Msg: "answer is for another userId"}
	}
	return Token{UserID: userID, OpenID: d.OpenID, Token: d.Token, AID: d.AID}, nil
}

// UserTokens calls getUserTokens and returns the coins of the user whose
// live_open_id is openID. The balance is data.tokens (LinkV's page, Go and
// Python SDKs) or data.livemeTokens (its Node and Dart SDKs), a string or a
// number of whole coins.
func (c *Client) UserTokens(ctx context.Context, openID string) (int64, error) {
	data, err := c.call(ctx, "getUserTokens", PathGetUserTokens, map[string]string{"uid": openID})
	if err != nil {
		return 0, err
	}
	var d struct {
		Tokens       json.RawMessage `json:"tokens"`
		LivemeTokens json.RawMessage `json:"livemeTokens"`
	}
	_ = json.Unmarshal(data, &d)
	raw := d.Tokens
	if len(raw) == 0 || string(raw) == "null" {
		raw = d.LivemeTokens
	}
	n, ok := coins(raw)
	if !ok {
		return 0, &Error{API: "getUserTokens", Status: 200, Msg: "answer lacks a whole, non-negative data.tokens"}
	}
	return n, nil
}

// coins reads a balance written as a JSON string of digits or a JSON integer.
func coins(raw json.RawMessage) (int64, bool) {
	s := strings.TrimSpace(string(raw))
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	}
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// Change types of changeGold.
const (
	AddGold    = 1 // 1: 订单增加金币, add coins
	RemoveGold = 2 // 2: 订单删除金币, take coins out
)

// GoldChange is one changeGold call.
type GoldChange struct {
	OpenID string // uid: the user's live_open_id
	// RequestID is LinkV's idempotency key: 32 characters. A replay of the
	// same request is applied once (see RequestID for a derived one).
	RequestID string
	Type      int // AddGold or RemoveGold
	Value     int64
	// Expiration is expriation (spelled so by LinkV), whole unix seconds.
	Expiration int64
	Reason     string
}

// ChangeGold calls changeGold. Its answer carries only status and msg: on
// success exactly Value coins were added or taken (there is no balance in
// the answer). It returns an *Error otherwise; when Uncertain(err), the
// change may have been applied, and a replay of the same RequestID is the
// way to know.
func (c *Client) ChangeGold(ctx context.Context, g GoldChange) error {
	if g.Type != AddGold && g.Type != RemoveGold {
		return errors.New("linkv changeGold: type must be 1 (add) or 2 (take out)")
	}
	if g.Value < 1 || len(g.RequestID) == 0 || g.OpenID == "" || g.Expiration < 1 {
		return errors.New("linkv changeGold: uid, request_id, a positive value and expriation are required")
	}
	_, err := c.call(ctx, "changeGold", PathChangeGold, map[string]string{
		"uid": g.OpenID, "request_id": g.RequestID, "type": strconv.Itoa(g.Type),
		"value": strconv.FormatInt(g.Value, 10), "expriation": strconv.FormatInt(g.Expiration, 10), "reason": g.Reason,
	})
	return err
}

// RequestID derives a 32-hex-digit request_id from parts (e.g. the job, the
// app, the user and a round), so that every retry of one operation, in any
// process, sends the same id and LinkV applies it once.
func RequestID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Expiration is the expriation LinkV's page computes, (time()/86400+91)*86400
// in integers: midnight UTC 91 days after now's day.
func Expiration(now time.Time) int64 {
	return (now.Unix()/86400 + 91) * 86400
}
