// Package polyv is Polyv's (保利威) point-donation protocol: the parameters
// of its points query and donation callbacks, their signature, the answers,
// and the two handlers. It debits the same wallets as every other platform,
// through package ledger.
package polyv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"giftd/internal/callback"
	"giftd/internal/ledger"
)

// FieldError is the refusal of one parameter of a callback; the handler
// answers 422 with Error() as message.
type FieldError = callback.FieldError

const (
	maxGoodNum  = 1_000_000_000 // 10^9
	maxText     = 128           // bytes of goodName and sessionId
	maxAppID    = 64
	maxChannel  = 20 // digits of channelId
	maxScaleExp = 6
)

// ReadParams returns the parameters of a callback: those of its URL query
// (where Polyv puts the configured URL's own parameters) and, with withBody,
// those of its form body. Every one takes part in the sign. It returns a
// *FieldError when the query (Field "query") or the body (Field "body") is
// not valid url-encoding, when a non-empty body is not
// application/x-www-form-urlencoded (Field "content-type") or is larger than
// callback.MaxBodyBytes, or when a name is given more than once, in either place or
// in both (Field = the name).
func ReadParams(r *http.Request, withBody bool) (map[string]string, error) {
	var body []byte
	if withBody {
		var err error
		if body, err = callback.ReadBody(r); err != nil {
			return nil, err
		}
		if len(body) > 0 && !callback.IsForm(r) {
			return nil, callback.NotFormError()
		}
	}
	return callback.ParseFields(r.URL.RawQuery, body)
}

// Scale is how many coins make one Polyv point: a power of ten from 1 to
// 10^6, so that every amount of coins has an exact decimal form in points.
// The zero Scale is 1 coin per point.
type Scale struct{ exp int }

// NewScale returns the scale of coinsPerPoint, or an error when it is not a
// power of ten from 1 to 10^6.
func NewScale(coinsPerPoint int64) (Scale, error) {
	n := int64(1)
	for exp := 0; exp <= maxScaleExp; exp++ {
		if n == coinsPerPoint {
			return Scale{exp}, nil
		}
		n *= 10
	}
	return Scale{}, fmt.Errorf("must be a power of ten from 1 to 1000000, got %d", coinsPerPoint)
}

// CoinsPerPoint returns the scale as a number: 1, 10, … 10^6.
func (s Scale) CoinsPerPoint() int64 {
	n := int64(1)
	for range s.exp {
		n *= 10
	}
	return n
}

// Points returns coins in points, written with exactly as many decimals as
// the scale has zeros (none at scale 1): 1234 coins at scale 100 is "12.34".
func (s Scale) Points(coins int64) string {
	if s.exp == 0 {
		return strconv.FormatInt(coins, 10)
	}
	sign := ""
	if coins < 0 {
		sign, coins = "-", -coins
	}
	digits := strconv.FormatInt(coins, 10)
	if len(digits) <= s.exp {
		digits = strings.Repeat("0", s.exp-len(digits)+1) + digits
	}
	return sign + digits[:len(digits)-s.exp] + "." + digits[len(digits)-s.exp:]
}

// Coins returns the points written in v as coins. v must be a plain decimal:
// digits, optionally a point and more digits (no sign, no exponent, no
// spaces). It returns a *FieldError on field when v is not one, when it is
// not a whole number of coins at this scale, or when it is more than 10^12
// coins.
func (s Scale) Coins(field, v string) (int64, error) {
	whole, frac, dot := strings.Cut(v, ".")
	if !callback.Digits(whole) || dot && !callback.Digits(frac) {
		return 0, &FieldError{Field: field, Reason: "must be a plain decimal like 12.34: digits, optionally a point and digits"}
	}
	if len(frac) > s.exp {
		if strings.Trim(frac[s.exp:], "0") != "" {
			return 0, &FieldError{Field: field, Reason: fmt.Sprintf("not a whole number of coins at %d coins per point", s.CoinsPerPoint())}
		}
		frac = frac[:s.exp]
	}
	frac += strings.Repeat("0", s.exp-len(frac))
	whole = strings.TrimLeft(whole, "0")
	tooBig := &FieldError{Field: field, Reason: fmt.Sprintf("must be at most %s points (10^12 coins)", s.Points(ledger.MaxAmount))}
	// 13 digits times 10^6 stays within uint64; the limit is checked after.
	if len(whole) > 13 {
		return 0, tooBig
	}
	var n uint64
	for _, c := range []byte(whole + frac) {
		n = n*10 + uint64(c-'0')
	}
	if n > ledger.MaxAmount {
		return 0, tooBig
	}
	return int64(n), nil
}

// Viewer is a validated points query: what both callbacks carry.
type Viewer struct {
	AppID, ChannelID, ViewerID, SessionID string
	// TS is the request's time, from its 13-digit millisecond timestamp.
	TS time.Time
}

// ValidateQuery checks the parameters of a points query, except appId
// membership, the sign and the freshness of ts, which the caller checks,
// and returns them. The error is a *FieldError naming the first bad
// parameter.
func ValidateQuery(params map[string]string) (Viewer, error) {
	for _, f := range []string{"appId", "channelId", "viewerId", "ts"} {
		if params[f] == "" {
			return Viewer{}, &FieldError{Field: f, Reason: "required"}
		}
	}
	for _, f := range []string{"appId", "channelId", "viewerId", "ts", "sessionId"} {
		if err := checkField(f, params[f], Scale{}); err != nil {
			return Viewer{}, err
		}
	}
	ms, _ := strconv.ParseInt(params["ts"], 10, 64)
	return Viewer{AppID: params["appId"], ChannelID: params["channelId"], ViewerID: params["viewerId"],
		SessionID: params["sessionId"], TS: time.UnixMilli(ms)}, nil
}

// checkField checks the value of one parameter alone, count and goodPrice
// at scale; a parameter it does not know passes. The error is a
// *FieldError on name. It is the whole check of a value, but for count
// being goodPrice × goodNum, and unique relies on that: it must accept at
// least every value that the validation accepts.
func checkField(name, v string, scale Scale) error {
	switch name {
	case "appId":
		if len(v) > maxAppID || !callback.PrintableASCII(v) {
			return &FieldError{Field: "appId", Reason: "must be at most 64 printable ASCII characters"}
		}
	case "channelId":
		if len(v) > maxChannel || !callback.Digits(v) {
			return &FieldError{Field: "channelId", Reason: "must be an integer of at most 20 digits"}
		}
	case "viewerId":
		if !ledger.ValidUserID(v) {
			return &FieldError{Field: "viewerId", Reason: "must be 1-64 characters of [0-9A-Za-z+=_-]"}
		}
		// Else a points query's viewerIdalice viewerNamebob would also
		// read as viewerId=aliceviewerNamebob (see unique).
		if strings.Contains(v, "viewerName") {
			return &FieldError{Field: "viewerId", Reason: `must not contain "viewerName"`}
		}
	case "ts":
		if len(v) != 13 || !callback.Digits(v) {
			return &FieldError{Field: "ts", Reason: "must be a 13-digit millisecond timestamp"}
		}
	case "sessionId":
		if !text(v) {
			return &FieldError{Field: "sessionId", Reason: "must be at most 128 bytes of UTF-8 text without control characters"}
		}
	case "goodName":
		if !text(v) {
			return &FieldError{Field: "goodName", Reason: "must be 1-128 bytes of UTF-8 text without control characters"}
		}
	case "goodPrice":
		_, err := scale.Coins("goodPrice", v)
		return err
	case "goodNum":
		num, err := strconv.ParseInt(v, 10, 64)
		if !callback.Digits(v) || err != nil || num < 1 || num > maxGoodNum {
			return &FieldError{Field: "goodNum", Reason: "must be an integer from 1 to 10^9"}
		}
	case "count":
		coins, err := scale.Coins("count", v)
		if err != nil {
			return err
		}
		if coins < 1 {
			return &FieldError{Field: "count", Reason: "must be positive"}
		}
	}
	return nil
}

// Donation is a validated donation.
type Donation struct {
	Viewer
	// The gift's parameters as received.
	GoodName, GoodPrice, GoodNum, Count string
	// Coins is count in coins: what the donation debits.
	Coins int64
	// PriceCoins is goodPrice in coins, Num is goodNum.
	PriceCoins, Num int64
	// Digest is the SHA-256 of what the sign covers (see SignedDigest): the
	// donation's idempotency key and its fingerprint.
	Digest [32]byte
	// oldDigest is the key and fingerprint the donation had before Digest
	// (see oldParamsDigest).
	oldDigest [32]byte
}

// ValidateDonation checks the parameters of a donation at scale, except
// appId membership, the sign and the freshness of ts, which the caller
// checks, and returns the donation. The error is a *FieldError naming the
// first bad parameter; count is refused when it is not positive or differs
// from goodPrice × goodNum in coins.
func ValidateDonation(params map[string]string, scale Scale) (Donation, error) {
	v, err := ValidateQuery(params)
	if err != nil {
		return Donation{}, err
	}
	for _, f := range []string{"goodName", "goodPrice", "goodNum", "count"} {
		if params[f] == "" {
			return Donation{}, &FieldError{Field: f, Reason: "required"}
		}
	}
	d := Donation{Viewer: v, GoodName: params["goodName"], GoodPrice: params["goodPrice"],
		GoodNum: params["goodNum"], Count: params["count"], Digest: SignedDigest(params),
		oldDigest: oldParamsDigest(params)}
	for _, f := range []string{"goodName", "goodPrice", "goodNum", "count"} {
		if err := checkField(f, params[f], scale); err != nil {
			return Donation{}, err
		}
	}
	// Checked above: they parse.
	price, _ := scale.Coins("goodPrice", d.GoodPrice)
	num, _ := strconv.ParseInt(d.GoodNum, 10, 64)
	d.Coins, _ = scale.Coins("count", d.Count)
	// Division, not multiplication: price × num can pass int64.
	if d.Coins%num != 0 || d.Coins/num != price {
		return Donation{}, &FieldError{Field: "count", Reason: "differs from goodPrice × goodNum"}
	}
	d.PriceCoins, d.Num = price, num
	return d, nil
}

// RequestID returns the donation's request id in the ledger (the ref of its
// entry, by which an operator reverses it): its Digest in lowercase hex, 64
// digits. Every copy of a donation that carries a valid sign has the same.
func (d Donation) RequestID() string { return hex.EncodeToString(d.Digest[:]) }

// Gift returns the receiving side of the donation (docs/economy.md): no
// receiver (Polyv sends none: the one mapped to the channel, else the
// house), the channel as the room, goodName as the gift, goodNum items at
// goodPrice.
func (d Donation) Gift() ledger.Gift {
	return ledger.Gift{RoomID: d.ChannelID, GiftID: d.GoodName, Count: d.Num, UnitPrice: d.PriceCoins}
}

// Details returns the donation's parameters as stored with its ledger
// entry: channelId, sessionId, goodName, goodPrice, goodNum and count, as
// received.
func (d Donation) Details() map[string]string {
	return map[string]string{
		"channelId": d.ChannelID, "sessionId": d.SessionID, "goodName": d.GoodName,
		"goodPrice": d.GoodPrice, "goodNum": d.GoodNum, "count": d.Count,
	}
}

// SignedDigest returns the SHA-256 of SignedString(params): a donation's
// identity. Polyv sends no request id, and a copy of a signed donation can
// differ from it in every byte the sign does not cover (the sign's letter
// case, empty parameters, the order and place of parameters, how the signed
// string is split into names and values) and still verify; with no secret,
// nothing else can be changed. Keyed on the received parameters, each such
// copy would be a new donation and debit again.
func SignedDigest(params map[string]string) [32]byte {
	return sha256.Sum256([]byte(SignedString(params)))
}

// oldParamsDigest is how builds before SignedDigest keyed a donation: the
// SHA-256 of every received parameter, sign and empty ones included, as
// name=value pairs in name order, query-escaped and joined by &. Their
// records live until the donation's ts plus twice the skew window, and a
// copy of one of those donations must replay it, not debit again; once no
// such build has run for that long, this and its one use can go.
func oldParamsDigest(params map[string]string) [32]byte {
	v := make(url.Values, len(params))
	for k, s := range params {
		v[k] = []string{s}
	}
	return sha256.Sum256([]byte(v.Encode()))
}

// text reports whether s is at most maxText bytes of UTF-8 without control
// characters (empty is text).
func text(s string) bool { return callback.Text(s, maxText) }
