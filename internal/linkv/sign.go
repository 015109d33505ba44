package linkv

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"strings"
)

// SignForm says which field set a matching sign covered (spec §2).
type SignForm string

const (
	// SignAllFields is form (a): every received non-empty field except sign.
	SignAllFields SignForm = "all"
	// SignEightField is form (b): the eight fields LinkV's PHP merchant SDK signs.
	SignEightField SignForm = "eight"
)

// eightFields are the fields of form (b), as linkv-io/shop-php-sdk signs them.
var eightFields = []string{"app_id", "expriation", "gold", "nonce", "reason", "request_id", "type", "user_id"}

// Sign returns the lowercase hex MD5 signature of fields under secret, as in
// step "3. 计算签名值" of LinkV's signature page: drop sign and empty values,
// sort the names by byte order, join name=value with &, append
// "&key=<secret>", and hash. Values are used as received, not re-encoded.
func Sign(fields map[string]string, secret string) string {
	sum := digest(fields, nil, secret)
	return hex.EncodeToString(sum[:])
}

// digest is Sign's MD5 over the named fields only (all of them when names is nil).
func digest(fields map[string]string, names []string, secret string) [md5.Size]byte {
	if names == nil {
		for k := range fields {
			names = append(names, k)
		}
	}
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
// under any of secrets, over every field (form a) or over the eight fields
// (form b), and which form matched, preferring SignAllFields. Every candidate
// is computed and compared in constant time.
func Verify(fields map[string]string, sign string, secrets []string) (SignForm, bool) {
	var given [md5.Size]byte
	if len(sign) != hex.EncodedLen(md5.Size) {
		return "", false
	}
	if _, err := hex.Decode(given[:], []byte(sign)); err != nil {
		return "", false
	}
	// When no field beyond the eight is signed, both forms are one string.
	onlyEight := true
	for k, v := range fields {
		if k != "sign" && v != "" && !slices.Contains(eightFields, k) {
			onlyEight = false
			break
		}
	}
	var all, eight int
	for _, secret := range secrets {
		a := digest(fields, nil, secret)
		all |= subtle.ConstantTimeCompare(a[:], given[:])
		if !onlyEight {
			e := digest(fields, eightFields, secret)
			eight |= subtle.ConstantTimeCompare(e[:], given[:])
		}
	}
	switch {
	case all == 1:
		return SignAllFields, true
	case eight == 1:
		return SignEightField, true
	}
	return "", false
}
