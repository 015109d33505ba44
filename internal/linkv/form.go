package linkv

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// FieldError rejects one field of a callback; the handler answers 400 with
// Error() as msg.
type FieldError struct{ Field, Reason string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

const (
	// reasonExpired is the FieldError reason of a request past its expriation.
	reasonExpired = "request expired"
	// MaxBodyBytes is the largest callback body accepted.
	MaxBodyBytes = 16 << 10
	maxReason    = 4 << 10
	maxGold      = 1_000_000_000_000 // 10^12
	maxSendNum   = 1_000_000_000
)

// ReadForm reads the callback's form from r's body (never its URL query): the
// content type must be application/x-www-form-urlencoded, the body at most
// MaxBodyBytes, and no field may be given twice. Errors are *FieldError.
func ReadForm(r *http.Request) (map[string]string, error) {
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "application/x-www-form-urlencoded" {
		return nil, &FieldError{"content-type", "must be application/x-www-form-urlencoded"}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, &FieldError{"body", "could not be read"}
	}
	if len(body) > MaxBodyBytes {
		return nil, &FieldError{"body", fmt.Sprintf("larger than %d bytes", MaxBodyBytes)}
	}
	values, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, &FieldError{"body", "not a valid url-encoded form"}
	}
	fields := make(map[string]string, len(values))
	for k, vs := range values {
		if len(vs) > 1 {
			return nil, &FieldError{k, "given more than once"}
		}
		fields[k] = vs[0]
	}
	return fields, nil
}

// Request is a validated debit callback.
type Request struct {
	AppID, RequestID, Nonce, UserID string
	Gold                            int64
	Expriation                      time.Time // when the request becomes void
	Type                            string
	Reason                          string // the JSON text as received
	GiftID, SendNum, ReceiverID     string // from the top-level fields or from reason
	VType, ResourceID               string
}

// Limits are the time rules of validation.
type Limits struct {
	Now       time.Time
	MaxExpiry time.Duration // refuse an expriation further ahead than Now+MaxExpiry
}

// Validate checks every field rule of spec §1 except app_id membership and
// the signature, which the caller checks first, and returns the request or a
// *FieldError naming the first bad field.
func Validate(fields map[string]string, lim Limits) (Request, error) {
	for _, f := range []string{"app_id", "request_id", "nonce", "user_id", "gold", "expriation", "type", "reason", "sign"} {
		if fields[f] == "" {
			return Request{}, &FieldError{f, "required"}
		}
	}
	r := Request{
		AppID:     fields["app_id"],
		RequestID: fields["request_id"],
		Nonce:     fields["nonce"],
		UserID:    fields["user_id"],
		Type:      fields["type"],
		Reason:    fields["reason"],
	}
	switch {
	case len(r.AppID) > 64 || !printable(r.AppID):
		return Request{}, &FieldError{"app_id", "must be at most 64 printable ASCII characters"}
	case len(r.RequestID) > 64 || !only(r.RequestID, "_-"):
		return Request{}, &FieldError{"request_id", "must be 1-64 characters of [0-9A-Za-z_-]"}
	case len(r.Nonce) > 64 || !printable(r.Nonce):
		return Request{}, &FieldError{"nonce", "must be 1-64 printable ASCII characters"}
	case !ValidUserID(r.UserID):
		return Request{}, &FieldError{"user_id", "must be 1-64 characters of [0-9A-Za-z+=_-]"}
	case r.Type != "1":
		return Request{}, &FieldError{"type", "only 1 (gift) is accepted"}
	}

	gold, ok := parseDigits(fields["gold"], 13)
	if !ok || gold > maxGold {
		return Request{}, &FieldError{"gold", "must be digits only, from 0 to 10^12"}
	}
	r.Gold = gold

	exp, ok := parseDigits(fields["expriation"], 12)
	if !ok {
		return Request{}, &FieldError{"expriation", "must be unix seconds, digits only"}
	}
	r.Expriation = time.Unix(exp, 0)
	if lim.Now.After(r.Expriation) {
		return Request{}, &FieldError{"expriation", reasonExpired}
	}
	if r.Expriation.After(lim.Now.Add(lim.MaxExpiry)) {
		return Request{}, &FieldError{"expriation", "more than " + lim.MaxExpiry.String() + " ahead"}
	}

	if len(r.Reason) > maxReason {
		return Request{}, &FieldError{"reason", fmt.Sprintf("longer than %d bytes", maxReason)}
	}
	inReason, err := reasonFields(r.Reason)
	if err != nil {
		return Request{}, err
	}
	for _, g := range []struct {
		name string
		dst  *string
	}{
		{"gift_id", &r.GiftID}, {"send_num", &r.SendNum}, {"receiver_id", &r.ReceiverID},
		{"vtype", &r.VType}, {"resource_id", &r.ResourceID},
	} {
		top, fromReason := fields[g.name], inReason[g.name]
		v := top
		switch {
		case top != "" && fromReason != "" && top != fromReason:
			return Request{}, &FieldError{g.name, "disagrees with reason"}
		case top == "":
			v = fromReason
		}
		if v == "" {
			return Request{}, &FieldError{g.name, "required, as a field or inside reason"}
		}
		if len(v) > 128 || !utf8.ValidString(v) || strings.ContainsFunc(v, isControl) {
			return Request{}, &FieldError{g.name, "must be 1-128 bytes of text without control characters"}
		}
		*g.dst = v
	}
	if n, ok := parseDigits(r.SendNum, 10); !ok || n < 1 || n > maxSendNum {
		return Request{}, &FieldError{"send_num", "must be a positive integer"}
	}
	return r, nil
}

// reasonFields reads the gift fields out of the reason JSON object, as text:
// a string gives its value, a number its literal.
func reasonFields(reason string) (map[string]string, error) {
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(strings.NewReader(reason))
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, &FieldError{"reason", "must be a JSON object"}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &FieldError{"reason", "must be a JSON object"}
	}
	out := map[string]string{}
	for _, name := range []string{"gift_id", "send_num", "receiver_id", "vtype", "resource_id"} {
		raw, ok := obj[name]
		if !ok {
			continue
		}
		raw = bytes.TrimSpace(raw)
		var s string
		switch {
		case len(raw) > 0 && raw[0] == '"':
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, &FieldError{"reason." + name, "must be a string or a number"}
			}
		case len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9'):
			s = string(raw)
		default:
			return nil, &FieldError{"reason." + name, "must be a string or a number"}
		}
		out[name] = s
	}
	return out, nil
}

// ValidUserID reports whether id follows LinkV's userId rule: 1-64 bytes of
// [0-9A-Za-z+=_-].
func ValidUserID(id string) bool { return len(id) <= 64 && only(id, "+=_-") }

// only reports whether s is non-empty and holds only ASCII letters, digits
// and the given extra characters.
func only(s, extra string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// parseDigits parses a non-empty string of at most maxLen ASCII digits.
func parseDigits(s string, maxLen int) (int64, bool) {
	if s == "" || len(s) > maxLen {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// NonceTime extracts the unix seconds LinkV puts in a nonce between its first
// and last eight random characters; ok is false for any other shape.
func NonceTime(nonce string) (time.Time, bool) {
	if len(nonce) < 17 {
		return time.Time{}, false
	}
	secs, ok := parseDigits(nonce[8:len(nonce)-8], 12)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(secs, 0), true
}

// Fingerprint is the SHA-256 of the request's business fields (user_id, gold,
// type, the gift fields, reason), each length-prefixed so that no two
// different requests share an encoding. It leaves out nonce, sign and
// expriation, which a retry may change, and the key itself.
func (r Request) Fingerprint() [32]byte {
	h := sha256.New()
	var n [8]byte
	for _, v := range []string{r.UserID, strconv.FormatInt(r.Gold, 10), r.Type, r.GiftID, r.SendNum,
		r.ReceiverID, r.VType, r.ResourceID, r.Reason} {
		binary.BigEndian.PutUint64(n[:], uint64(len(v)))
		h.Write(n[:])
		h.Write([]byte(v))
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// Details are the gift's fields as stored with its ledger entry.
func (r Request) Details() map[string]string {
	return map[string]string{
		"type": r.Type, "gift_id": r.GiftID, "send_num": r.SendNum, "receiver_id": r.ReceiverID,
		"vtype": r.VType, "resource_id": r.ResourceID, "reason": r.Reason,
	}
}
