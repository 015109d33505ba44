package polyv

import (
	"crypto/md5"
	"encoding/hex"
	"slices"
	"strings"

	"giftd/internal/callback"
)

// SignedString returns what Polyv's sign covers, without the secret: every
// non-empty parameter except sign, names sorted in byte order, each name
// followed by its value with no separator (k1v1k2v2…), the bytes as
// received (UTF-8), never re-encoded. It is Polyv's signing rule ("签名生成规
// 则", docs/polyv.md "Signature"), the one place it is written. The docs mark
// the rule to be confirmed against a real Polyv call: if it differs, this
// function is the one to change, and the donation's idempotency key
// (SignedDigest) follows it.
func SignedString(params map[string]string) string {
	names := make([]string, 0, len(params))
	for k, v := range params {
		if k != "sign" && v != "" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString(k)
		b.WriteString(params[k])
	}
	return b.String()
}

// digest is the MD5 of the signed string with the secret at both ends.
func digest(params map[string]string, secret string) [md5.Size]byte {
	return md5.Sum([]byte(secret + SignedString(params) + secret))
}

// Sign returns the uppercase hex MD5 signature of params under secret:
// MD5(secret + k1v1k2v2… + secret) over every non-empty parameter except
// sign, names in byte order.
func Sign(params map[string]string, secret string) string {
	sum := digest(params, secret)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// Verify reports whether sign (32 hex digits, upper or lower case) is the
// signature of params under any of secrets. A sign that is not 32 hex
// digits never matches. Every secret is tried and each comparison takes
// constant time, so the answer's timing does not tell which secret came
// close.
func Verify(params map[string]string, sign string, secrets []string) bool {
	given, ok := callback.ParseSign(sign)
	if !ok {
		return false
	}
	match := 0
	for _, secret := range secrets {
		match |= given.Matches(digest(params, secret))
	}
	return match == 1
}
