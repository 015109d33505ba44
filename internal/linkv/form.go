package linkv

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"giftd/internal/callback"
	"giftd/internal/ledger"
)

// FieldError is the refusal of one field of a callback; the handler answers
// 400 with Error() as msg.
type FieldError = callback.FieldError

const (
	// reasonExpired is the FieldError reason of a request past its
	// expriation; the handler counts it as its own outcome.
	reasonExpired = "request expired"

	maxReasonBytes = 4 << 10
	maxSendNum     = 1_000_000_000 // 10^9
	maxGiftValue   = 128           // bytes of each gift field
)

// ReadForm reads the callback's form from r's body, never from its URL query.
// It returns a *FieldError when the content type is not
// application/x-www-form-urlencoded (parameters such as charset are allowed),
// when the body is larger than callback.MaxBodyBytes or not a valid
// url-encoded form (Field "body"), or when a field is given more than once
// (Field = its name).
func ReadForm(r *http.Request) (map[string]string, error) {
	if !callback.IsForm(r) {
		return nil, callback.NotFormError()
	}
	body, err := callback.ReadBody(r)
	if err != nil {
		return nil, err
	}
	return callback.ParseFields("", body)
}

// Request is a validated debit callback.
type Request struct {
	AppID, RequestID, Nonce, UserID string
	Gold                            int64
	Expriation                      time.Time // from the unix seconds field; the request is void after it
	Type                            string
	Reason                          string // the raw JSON text as received
	// The gift fields, as text, from reason or from top-level fields the
	// signature covered.
	GiftID, SendNum, ReceiverID, VType, ResourceID string
}

// Limits are the time rules of validation.
type Limits struct {
	Now time.Time
	// MaxExpiry refuses an expriation later than Now+MaxExpiry.
	MaxExpiry time.Duration
	// NonceMaxAge is the oldest nonce timestamp (see NonceTime) accepted for
	// a new request; 0 turns the check off. Validate does not check it: the
	// handler does, after it has looked for the request's record, so that a
	// late retry of a known request still gets its original answer (docs/linkv.md §2).
	NonceMaxAge time.Duration
}

// giftFieldNames are the gift fields, accepted top-level or inside reason.
func giftFieldNames() [5]string {
	return [5]string{"gift_id", "send_num", "receiver_id", "vtype", "resource_id"}
}

// giftFieldIndex is name's index in giftFieldNames, or -1.
func giftFieldIndex(name string) int {
	switch name {
	case "gift_id":
		return 0
	case "send_num":
		return 1
	case "receiver_id":
		return 2
	case "vtype":
		return 3
	case "resource_id":
		return 4
	}
	return -1
}

// giftValues are the gift fields found in reason, indexed as giftFieldNames.
type giftValues struct {
	value [5]string
	found [5]bool
}

// get returns the value of the gift field name and whether reason had it.
func (g *giftValues) get(name string) (string, bool) {
	i := giftFieldIndex(name)
	if i < 0 {
		return "", false
	}
	return g.value[i], g.found[i]
}

// Validate checks every field rule of docs/linkv.md §1, except app_id membership and
// the signature, which the caller checks first, and returns the request.
// form is the form the signature matched (see Verify): a gift field that
// reason does not carry is taken from the top level only when form covers
// it. The error is a *FieldError naming the first bad field; a request past
// its expriation gets the reason "request expired", and a gift field given
// only at the top level and not covered by form's signature the reason "not
// covered by the signature".
func Validate(fields map[string]string, form SignForm, lim Limits) (Request, error) {
	for _, f := range []string{"app_id", "request_id", "nonce", "user_id", "gold", "expriation", "type", "reason", "sign"} {
		if fields[f] == "" {
			return Request{}, &FieldError{Field: f, Reason: "required"}
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
	case len(r.AppID) > 64 || !callback.PrintableASCII(r.AppID):
		return Request{}, &FieldError{Field: "app_id", Reason: "must be at most 64 printable ASCII characters"}
	case len(r.RequestID) > 64 || !only(r.RequestID, "_-"):
		return Request{}, &FieldError{Field: "request_id", Reason: "must be 1-64 characters of [0-9A-Za-z_-]"}
	case len(r.Nonce) > 64 || !callback.PrintableASCII(r.Nonce):
		return Request{}, &FieldError{Field: "nonce", Reason: "must be 1-64 printable ASCII characters"}
	case !ledger.ValidUserID(r.UserID):
		return Request{}, &FieldError{Field: "user_id", Reason: "must be 1-64 characters of [0-9A-Za-z+=_-]"}
	}

	gold := fields["gold"]
	if !callback.Digits(gold) {
		return Request{}, &FieldError{Field: "gold", Reason: "must be digits only"}
	}
	var ok bool
	if r.Gold, ok = parseDigits(gold, ledger.MaxAmount); !ok {
		return Request{}, &FieldError{Field: "gold", Reason: "must be at most 10^12"}
	}

	exp := fields["expriation"]
	if !callback.Digits(exp) || len(exp) > 12 {
		return Request{}, &FieldError{Field: "expriation", Reason: "must be unix seconds, at most 12 digits"}
	}
	secs, _ := parseDigits(exp, 999_999_999_999)
	r.Expriation = time.Unix(secs, 0)
	if lim.Now.After(r.Expriation) {
		return Request{}, &FieldError{Field: "expriation", Reason: reasonExpired}
	}
	if r.Expriation.After(lim.Now.Add(lim.MaxExpiry)) {
		return Request{}, &FieldError{Field: "expriation", Reason: "more than " + lim.MaxExpiry.String() + " ahead"}
	}

	if r.Type != "1" {
		return Request{}, &FieldError{Field: "type", Reason: "only 1 (gift) is accepted"}
	}

	inReason, err := reasonGiftFields(r.Reason)
	if err != nil {
		return Request{}, err
	}
	gift := [len(inReason.value)]*string{&r.GiftID, &r.SendNum, &r.ReceiverID, &r.VType, &r.ResourceID}
	for i, name := range giftFieldNames() {
		top := fields[name]
		fromReason, inR := inReason.value[i], inReason.found[i]
		v := top
		switch {
		case top != "" && inR && top != fromReason:
			// Under an eight-field form the top-level copy is unsigned;
			// only the signed reason may decide.
			return Request{}, &FieldError{Field: name, Reason: "disagrees with reason"}
		case top == "":
			v = fromReason
		case !inR && !form.Covers(name, top):
			// reason is signed under every form; this copy is not. Refused
			// rather than dropped: §1 requires the field, and the answer
			// tells LinkV why (docs/linkv.md §2.1).
			return Request{}, &FieldError{Field: name, Reason: "not covered by the signature"}
		}
		if v == "" {
			return Request{}, &FieldError{Field: name, Reason: "required"}
		}
		if len(v) > maxGiftValue || !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
			return Request{}, &FieldError{Field: name, Reason: "must be 1-128 bytes of UTF-8 text without control characters"}
		}
		*gift[i] = v
	}
	if n, ok := parseDigits(r.SendNum, maxSendNum); !callback.Digits(r.SendNum) || !ok || n < 1 {
		return Request{}, &FieldError{Field: "send_num", Reason: "must be a positive integer"}
	}
	return r, nil
}

// reasonGiftFields checks that reason is UTF-8 JSON text of at most 4 KiB
// whose top level is an object, and returns the gift fields found in it, as
// text: a JSON string gives its value, a JSON number its literal. Any other
// JSON type, or a gift field given twice, is a *FieldError on
// "reason.<field>" (the first such member in the text); anything else wrong
// is one on "reason".
func reasonGiftFields(reason string) (giftValues, error) {
	switch {
	case len(reason) > maxReasonBytes:
		return giftValues{}, &FieldError{Field: "reason", Reason: fmt.Sprintf("longer than %d bytes", maxReasonBytes)}
	case !utf8.ValidString(reason) || !json.Valid([]byte(reason)):
		return giftValues{}, &FieldError{Field: "reason", Reason: "must be valid JSON"}
	case !strings.HasPrefix(strings.TrimLeft(reason, " \t\r\n"), "{"):
		return giftValues{}, &FieldError{Field: "reason", Reason: "must be a JSON object"}
	}
	// reason is a valid JSON object now: walking its top-level members needs
	// no syntax checks of its own. Decoding a string's escapes cannot fail
	// either; its error is still not ignored.
	notObject := &FieldError{Field: "reason", Reason: "must be a JSON object"}
	var out giftValues
	i := skipSpace(reason, 0) + 1 // past "{"
	for {
		i = skipSpace(reason, i)
		if reason[i] == '}' {
			return out, nil
		}
		keyEnd := skipValue(reason, i)
		key, err := jsonString(reason[i:keyEnd])
		if err != nil {
			return giftValues{}, notObject
		}
		i = skipSpace(reason, keyEnd) + 1 // past ":"
		i = skipSpace(reason, i)
		end := skipValue(reason, i)
		if g := giftFieldIndex(key); g >= 0 {
			// Decoders differ on which copy of a repeated key wins; refuse it.
			if out.found[g] {
				return giftValues{}, &FieldError{Field: "reason." + key, Reason: "given more than once"}
			}
			switch c := reason[i]; {
			case c == '"':
				if out.value[g], err = jsonString(reason[i:end]); err != nil {
					return giftValues{}, notObject
				}
			case c == '-' || '0' <= c && c <= '9':
				out.value[g] = reason[i:end] // the number's literal, never a float
			default:
				return giftValues{}, &FieldError{Field: "reason." + key, Reason: "must be a string or a number"}
			}
			out.found[g] = true
		}
		i = skipSpace(reason, end)
		if reason[i] == ',' {
			i++
		}
	}
}

// skipSpace returns the index of the first byte at or after i in s that is
// not JSON whitespace.
func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value starting at s[i],
// in a text json.Valid accepted.
func skipValue(s string, i int) int {
	depth := 0
	for ; i < len(s); i++ {
		switch s[i] {
		case '"':
			for i++; s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++ // the escaped byte, perhaps a quote
				}
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
			if depth < 0 { // the end of the enclosing object: a scalar ended here
				return i
			}
		case ',', ' ', '\t', '\n', '\r', ':':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

// jsonString returns the text of the JSON string literal q (quotes
// included), from a text json.Valid accepted. Without escapes it is q's
// inside; with them encoding/json decodes it, as it decoded every string
// before this walk existed.
func jsonString(q string) (string, error) {
	if !strings.Contains(q, `\`) {
		return q[1 : len(q)-1], nil
	}
	var s string
	err := json.Unmarshal([]byte(q), &s)
	return s, err
}

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

// parseDigits returns the value of s, a string for which callback.Digits holds,
// and whether it is at most limit. Leading zeros are accepted, any number of
// them ("007" is 7), and a value too big for an int64 is simply above limit.
func parseDigits(s string, limit int64) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > limit {
		return 0, false
	}
	return n, true
}

// NonceTime extracts the unix seconds LinkV embeds in a nonce: 8 random
// characters, the seconds, 8 random characters. ok is false when the nonce
// does not have that shape (the middle is not 1-12 digits).
func NonceTime(nonce string) (t time.Time, ok bool) {
	if len(nonce) < 17 {
		return time.Time{}, false
	}
	mid := nonce[8 : len(nonce)-8]
	if !callback.Digits(mid) || len(mid) > 12 {
		return time.Time{}, false
	}
	secs, _ := parseDigits(mid, 999_999_999_999)
	return time.Unix(secs, 0), true
}

// Fingerprint returns the SHA-256 of the request's business fields (user_id,
// gold, type, gift_id, send_num, receiver_id, vtype, resource_id, reason),
// each prefixed with its length so that no bytes can move from one field to
// the next without changing the hash. Every value it hashes is signed: the
// gift fields come from reason or from top-level fields the sign covered
// (see Validate), so an unsigned copy cannot change it. It leaves out nonce, sign and
// expriation, which a retry may change, and app_id and request_id, the key
// the fingerprint is stored under.
func (r Request) Fingerprint() [32]byte {
	// On the stack for the usual request, and hashed in one call.
	var scratch [512]byte
	var gold [20]byte
	b := appendLenPrefixed(scratch[:0], r.UserID)
	b = appendLenPrefixed(b, strconv.AppendInt(gold[:0], r.Gold, 10))
	for _, v := range [...]string{r.Type, r.GiftID, r.SendNum, r.ReceiverID, r.VType, r.ResourceID, r.Reason} {
		b = appendLenPrefixed(b, v)
	}
	return sha256.Sum256(b)
}

// appendLenPrefixed appends v's length as 8 big-endian bytes, then v.
func appendLenPrefixed[T string | []byte](b []byte, v T) []byte {
	return append(binary.BigEndian.AppendUint64(b, uint64(len(v))), v...)
}

// Gift returns the receiving side of the request (docs/economy.md), all from
// signed data: the receiver, room and gift from reason or signed top-level
// fields (see Validate), and send_num as the count.
func (r Request) Gift() ledger.Gift {
	n, _ := strconv.ParseInt(r.SendNum, 10, 64) // Validate checked it
	return ledger.Gift{ReceiverID: r.ReceiverID, RoomID: r.ResourceID, GiftID: r.GiftID, Count: n}
}

// Details returns the gift's fields as stored with its ledger entry:
// gift_id, send_num, receiver_id, vtype, resource_id, type, and reason (its
// raw JSON text, as a string).
func (r Request) Details() map[string]string {
	return map[string]string{
		"gift_id": r.GiftID, "send_num": r.SendNum, "receiver_id": r.ReceiverID,
		"vtype": r.VType, "resource_id": r.ResourceID, "type": r.Type, "reason": r.Reason,
	}
}
