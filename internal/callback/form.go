package callback

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// FieldError is the refusal of one field (or parameter) of a callback. Each
// platform answers it with its own code (LinkV 400, Polyv 422) and Error()
// as the message.
type FieldError struct{ Field, Reason string }

// Error returns "<field>: <reason>", e.g. "gold: must be digits only".
func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// MaxBodyBytes is the largest callback body accepted (16 KiB).
const MaxBodyBytes = 16 << 10

// ReadBody reads r's body, at most MaxBodyBytes of it. It returns a
// *FieldError on "body" when the body is larger or cannot be read.
func ReadBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	// One byte more than allowed tells "exactly the limit" from "too big".
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, &FieldError{"body", "could not be read"}
	}
	if len(body) > MaxBodyBytes {
		return nil, &FieldError{"body", fmt.Sprintf("larger than %d bytes", MaxBodyBytes)}
	}
	return body, nil
}

// IsForm reports whether r says its body is
// application/x-www-form-urlencoded (parameters such as charset allowed).
func IsForm(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if ct == "application/x-www-form-urlencoded" { // what senders write; parsing it would say the same
		return true
	}
	mediaType, _, err := mime.ParseMediaType(ct)
	return err == nil && mediaType == "application/x-www-form-urlencoded"
}

// NotFormError is the refusal of a body that is not a url-encoded form.
func NotFormError() error {
	return &FieldError{"content-type", "must be application/x-www-form-urlencoded"}
}

// ParseFields returns the fields of a url-encoded query and body together.
// A name given more than once, in either or in both, is refused rather than
// resolved: the signer and giftd could pick different copies. The error is
// a *FieldError on "query" or "body" for bad encoding, or on the repeated
// name (the first in byte order, so the answer is the same every time).
func ParseFields(query string, body []byte) (map[string]string, error) {
	if fields, ok := parseUnique(query, string(body)); ok {
		return fields, nil
	}
	return parseFieldsByValues(query, body)
}

// maxQuickParams bounds the parameters parseUnique reads; more are left to
// url.ParseQuery, whose own limit (GODEBUG urlmaxqueryparams) then decides.
const maxQuickParams = 256

// parseUnique reads query and body in one pass into one map, as
// url.ParseQuery would read them, for the usual request: ok is false, and
// nothing is decided, at the first thing that is not plainly fine (a bad
// escape, a ";", a name given twice, or many parameters), so that
// parseFieldsByValues finds the same error it always did.
func parseUnique(query, body string) (fields map[string]string, ok bool) {
	n := strings.Count(query, "&") + strings.Count(body, "&") + 2
	if n > maxQuickParams {
		return nil, false
	}
	fields = make(map[string]string, n)
	for _, s := range [2]string{query, body} {
		for s != "" {
			var pair string
			pair, s, _ = strings.Cut(s, "&")
			if pair == "" {
				continue
			}
			if strings.IndexByte(pair, ';') >= 0 {
				return nil, false
			}
			k, v, _ := strings.Cut(pair, "=")
			k, err := url.QueryUnescape(k)
			if err != nil {
				return nil, false
			}
			if v, err = url.QueryUnescape(v); err != nil {
				return nil, false
			}
			if _, seen := fields[k]; seen {
				return nil, false
			}
			fields[k] = v
		}
	}
	return fields, true
}

// parseFieldsByValues is ParseFields by url.ParseQuery: every request
// parseUnique declines comes here, and gets its answer (an error, or the
// same fields) from the standard parser.
func parseFieldsByValues(query string, body []byte) (map[string]string, error) {
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, &FieldError{"query", "not a valid url-encoded query"}
	}
	b, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, &FieldError{"body", "not a valid url-encoded form"}
	}
	names := make([]string, 0, len(q)+len(b))
	for k := range q {
		names = append(names, k)
	}
	for k := range b {
		names = append(names, k)
	}
	slices.Sort(names)
	fields := make(map[string]string, len(names))
	for _, k := range names {
		if _, seen := fields[k]; seen || len(q[k])+len(b[k]) > 1 {
			return nil, &FieldError{k, "given more than once"}
		}
		if v, ok := q[k]; ok {
			fields[k] = v[0]
		} else {
			fields[k] = b[k][0]
		}
	}
	return fields, nil
}

// Digits reports whether s is non-empty and holds only ASCII digits: no
// sign, space, point or exponent.
func Digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// PrintableASCII reports whether s holds only bytes 0x20-0x7E.
func PrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Text reports whether s is at most max bytes of UTF-8 without control
// characters (empty is text).
func Text(s string, max int) bool {
	return len(s) <= max && utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

// Sign is a received MD5 signature.
type Sign [md5.Size]byte

// ParseSign reads a sign of 32 hex digits in either case; anything else
// (another length, a non-hex digit) never matches, so ok is false.
func ParseSign(s string) (sign Sign, ok bool) {
	if len(s) != hex.EncodedLen(md5.Size) {
		return Sign{}, false
	}
	_, err := hex.Decode(sign[:], []byte(s))
	return sign, err == nil
}

// Matches compares sum with s in constant time, for a caller that ORs the
// results over every secret (and form) so that timing does not tell which
// one came close: 1 when equal, else 0.
func (s Sign) Matches(sum [md5.Size]byte) int { return subtle.ConstantTimeCompare(sum[:], s[:]) }
