package linkv

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"strings"
)

// SignForm says which field set a matching sign covered (docs/linkv.md §2).
type SignForm string

const (
	// SignAllFields is form (a): every received non-empty field except sign.
	SignAllFields SignForm = "all"
	// SignEightField is form (b): app_id, expriation, gold, nonce, reason,
	// request_id, type and user_id, the fields LinkV's PHP merchant SDK
	// (linkv-io/shop-php-sdk, VerifyDeductionRequest) signs.
	SignEightField SignForm = "eight"
)

// eightFieldNames are the fields of form (b).
func eightFieldNames() []string {
	return []string{"app_id", "expriation", "gold", "nonce", "reason", "request_id", "type", "user_id"}
}

// Sign returns the lowercase hex MD5 signature of fields under secret, as in
// step "3. 计算签名值" of LinkV's signature page (docs/linkv.md §2): drop "sign" and
// the fields whose value is empty, sort the names in byte order, join
// name=value with &, append "&key=" and the secret, and hash. Values are used
// as received (form-decoded), never re-encoded.
func Sign(fields map[string]string, secret string) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sum := digest(fields, names, secret)
	return hex.EncodeToString(sum[:])
}

// digest is the MD5 of Sign over those of names that are in fields.
func digest(fields map[string]string, names []string, secret string) [md5.Size]byte {
	names = slices.Clone(names)
	slices.Sort(names)
	var b strings.Builder
	for _, k := range names {
		v := fields[k]
		if k == "sign" || v == "" {
			continue
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
		b.WriteByte('&')
	}
	b.WriteString("key=")
	b.WriteString(secret)
	return md5.Sum([]byte(b.String()))
}

// Verify reports whether sign (32 hex digits, either case) matches fields
// under any of secrets, computed over every field (form a) or over the eight
// fields of form b, and which form matched; when both match it reports
// SignAllFields. A sign that is not 32 hex digits never matches. Every
// secret is tried and each comparison takes constant time, so the answer's
// timing does not tell which secret came close.
func Verify(fields map[string]string, sign string, secrets []string) (SignForm, bool) {
	var given [md5.Size]byte
	if len(sign) != hex.EncodedLen(md5.Size) {
		return "", false
	}
	if _, err := hex.Decode(given[:], []byte(sign)); err != nil {
		return "", false
	}
	all := make([]string, 0, len(fields))
	for k := range fields {
		all = append(all, k)
	}
	eight := eightFieldNames()
	// When no non-empty field beyond the eight was sent, both forms sign
	// the same string: compute it once.
	same := true
	for k, v := range fields {
		if k != "sign" && v != "" && !slices.Contains(eight, k) {
			same = false
			break
		}
	}
	var allOK, eightOK int
	for _, secret := range secrets {
		a := digest(fields, all, secret)
		allOK |= subtle.ConstantTimeCompare(a[:], given[:])
		if !same {
			e := digest(fields, eight, secret)
			eightOK |= subtle.ConstantTimeCompare(e[:], given[:])
		}
	}
	switch {
	case allOK == 1:
		return SignAllFields, true
	case eightOK == 1:
		return SignEightField, true
	}
	return "", false
}
