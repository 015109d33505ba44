package linkv

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"slices"

	"giftd/internal/callback"
)

// SignForm names the canonicalisation a matching sign used (docs/linkv.md §2, §2.1):
// the field set it covered (every received field, or the eight fields) and
// how it treated empty values.
type SignForm string

const (
	// SignAllFields is form (a): every received field except sign, empty
	// values dropped (the signature page's prose, LinkV's node-sdk).
	SignAllFields SignForm = "all"
	// SignEightField is form (b): app_id, expriation, gold, nonce, reason,
	// request_id, type and user_id, the fields LinkV's PHP merchant SDK
	// (linkv-io/shop-php-sdk, VerifyDeductionRequest) signs, empty values
	// dropped.
	SignEightField SignForm = "eight"
	// SignAllPHP is every field by the PHP SDK's Util::genSign: values ""
	// and "0" dropped (PHP's empty()), and the "&" after a kept value
	// written unless its key sorts last, so that a dropped last value leaves
	// "…&&key=secret".
	SignAllPHP SignForm = "all-php"
	// SignEightPHP is the eight fields by the PHP SDK's Util::genSign, what
	// its VerifyDeductionRequest checks.
	SignEightPHP SignForm = "eight-php"
	// SignAllKeepEmpty is every field with empty values kept as "k=" (LinkV's
	// go, python, dart and java IM SDKs and the signature page's sample code).
	SignAllKeepEmpty SignForm = "all-keep-empty"
	// SignEightKeepEmpty is the eight fields with empty values kept.
	SignEightKeepEmpty SignForm = "eight-keep-empty"
)

// SignForms returns every form Verify accepts, in the order it prefers them
// when several sign the same string (then the first is reported): forms that
// cover every field first, and today's rule before the SDKs' quirks.
func SignForms() []SignForm {
	forms := signForms()
	return forms[:]
}

func signForms() [6]SignForm {
	return [6]SignForm{SignAllFields, SignEightField, SignAllPHP, SignEightPHP, SignAllKeepEmpty, SignEightKeepEmpty}
}

// emptyRule is how a canonicalisation treats empty values.
type emptyRule uint8

const (
	dropEmpty emptyRule = iota // drop ""
	phpEmpty                   // drop "" and "0", with genSign's separator quirk
	keepEmpty                  // keep "" as "k="
)

// drops reports whether the rule leaves a field with value v out of the
// signed string.
func (r emptyRule) drops(v string) bool {
	switch r {
	case dropEmpty:
		return v == ""
	case phpEmpty:
		return v == "" || v == "0"
	}
	return false
}

// parts returns the field set and empty-value rule of f; ok is false for a
// form that is not one of SignForms.
func (f SignForm) parts() (eight bool, rule emptyRule, ok bool) {
	switch f {
	case SignAllFields:
		return false, dropEmpty, true
	case SignEightField:
		return true, dropEmpty, true
	case SignAllPHP:
		return false, phpEmpty, true
	case SignEightPHP:
		return true, phpEmpty, true
	case SignAllKeepEmpty:
		return false, keepEmpty, true
	case SignEightKeepEmpty:
		return true, keepEmpty, true
	}
	return false, 0, false
}

// Covers reports whether a sign of form f covers the field name holding
// value: whether the request could not have carried another value there
// without breaking the sign. It is false for sign itself, for fields outside
// the eight under an eight-field form, for a value the form drops ("" and,
// under the PHP forms, "0") and for an unknown form.
func (f SignForm) Covers(name, value string) bool {
	eight, rule, ok := f.parts()
	switch {
	case !ok || name == "sign" || rule.drops(value):
		return false
	case eight:
		names := eightFieldNames()
		return slices.Contains(names[:], name)
	}
	return true
}

// eightFieldNames are the fields of the eight-field forms, in byte order.
func eightFieldNames() [8]string {
	return [8]string{"app_id", "expriation", "gold", "nonce", "reason", "request_id", "type", "user_id"}
}

// Sign returns the lowercase hex MD5 signature of fields under secret, as in
// step "3. 计算签名值" of LinkV's signature page (docs/linkv.md §2): drop "sign" and
// the fields whose value is empty, sort the names in byte order, join
// name=value with &, append "&key=" and the secret, and hash. Values are used
// as received (form-decoded), never re-encoded. It is SignAs(SignAllFields, …).
func Sign(fields map[string]string, secret string) string {
	return SignAs(SignAllFields, fields, secret)
}

// SignAs returns the lowercase hex MD5 signature of fields under secret by
// form's canonicalisation (docs/linkv.md §2.1). Under an eight-field form a missing
// field counts as empty, as in the PHP SDK. It returns "" for a form that is
// not one of SignForms; an empty sign never verifies.
func SignAs(form SignForm, fields map[string]string, secret string) string {
	eight, rule, ok := form.parts()
	if !ok {
		return ""
	}
	eightNames := eightFieldNames()
	names := signedNames(fields, eight, eightNames[:])
	b := appendCanonical(nil, names, lookUp(nil, fields, names), rule)
	b = append(b, "key="...)
	b = append(b, secret...)
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

// signedNames returns the names a form signs, sorted: eight when eight is
// set, else every name in fields except sign.
func signedNames(fields map[string]string, eight bool, eightNames []string) []string {
	if eight {
		return eightNames
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		if k != "sign" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return names
}

// appendCanonical appends to b what a sign over names (sorted), whose
// values are values, hashes before "key=<secret>": name=value for each value
// rule keeps, each followed by "&". Under phpEmpty, as in the PHP SDK's
// genSign, the "&" after the value of the last name is not written and one
// "&" is always added at the end, so a dropped last value leaves "&&" before
// "key=".
func appendCanonical(b []byte, names, values []string, rule emptyRule) []byte {
	for i, k := range names {
		v := values[i]
		if rule.drops(v) {
			continue
		}
		b = append(b, k...)
		b = append(b, '=')
		b = append(b, v...)
		if rule != phpEmpty || i != len(names)-1 {
			b = append(b, '&')
		}
	}
	if rule == phpEmpty {
		b = append(b, '&')
	}
	return b
}

// lookUp appends to dst the value in fields of each of names ("" when
// missing).
func lookUp(dst []string, fields map[string]string, names []string) []string {
	for _, k := range names {
		dst = append(dst, fields[k])
	}
	return dst
}

// canonicalSize bounds the length of appendCanonical's output for names and
// values, under any rule.
func canonicalSize(names, values []string) int {
	n := 1 // phpEmpty's final "&"
	for i, k := range names {
		n += len(k) + len(values[i]) + 2
	}
	return n
}

// Verify reports whether sign (32 hex digits, either case) matches fields
// under any of secrets by any of SignForms, and which form matched; when
// several match (they sign the same string) it reports the first in
// SignForms' order. A sign that is not 32 hex digits never matches. Every
// form under every secret is computed and compared in constant time, the
// results ORed, so the answer's timing does not tell which secret or form
// came close; forms that sign the same string for this request are hashed
// once.
func Verify(fields map[string]string, sign string, secrets []string) (SignForm, bool) {
	given, ok := callback.ParseSign(sign)
	if !ok {
		return "", false
	}

	// On the stack for the usual request (some 15 fields). Each value is
	// looked up once, not once per form.
	var allBuf, allValuesBuf [24]string
	all := allBuf[:0]
	for k := range fields {
		if k != "sign" {
			all = append(all, k)
		}
	}
	slices.Sort(all)
	allValues := lookUp(allValuesBuf[:0], fields, all)
	eightArr := eightFieldNames()
	eight := eightArr[:]
	var eightValuesBuf [len(eightArr)]string
	eightValues := lookUp(eightValuesBuf[:0], fields, eight)

	longest := 0
	for _, s := range secrets {
		longest = max(longest, len(s))
	}
	// Each form's canonical string is followed by room for "key=" and the
	// longest secret, so that hashing needs no copy of the canonical part.
	tail := len("key=") + longest
	allSize, eightSize := canonicalSize(all, allValues)+tail, canonicalSize(eight, eightValues)+tail
	// On the stack too for the usual request: 6 forms of a ~350-byte form.
	var scratch [4096]byte
	buf := scratch[:0]
	if need := 3*allSize + 3*eightSize; need > len(scratch) {
		buf = make([]byte, 0, need)
	}

	forms := signForms()
	type span struct{ start, end, same int } // canonical string in buf[start:end]; same is the first form signing it
	var spans [len(forms)]span
	for i, form := range forms {
		isEight, rule, _ := form.parts()
		names, values := all, allValues
		if isEight {
			names, values = eight, eightValues
		}
		start := len(buf)
		buf = appendCanonical(buf, names, values, rule)
		spans[i] = span{start, len(buf), i}
		for j := range i {
			if spans[j].same == j && bytes.Equal(buf[start:], buf[spans[j].start:spans[j].end]) {
				spans[i] = spans[j]
				buf = buf[:start]
				break
			}
		}
		if spans[i].same == i {
			buf = append(buf, "key="...)
			buf = buf[:len(buf)+longest]
		}
	}

	var match [len(forms)]int
	for _, secret := range secrets {
		for i, s := range spans {
			if s.same != i {
				continue
			}
			n := copy(buf[s.end+len("key="):], secret)
			sum := md5.Sum(buf[s.start : s.end+len("key=")+n])
			match[i] |= given.Matches(sum)
		}
	}
	for i, s := range spans {
		if match[s.same] == 1 {
			return forms[i], true
		}
	}
	return "", false
}
