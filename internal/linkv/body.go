package linkv

import (
	"cmp"
	"crypto/md5"
	"encoding/hex"
	"net/url"
	"slices"
)

// Field is one name and value of a LinkV callback form.
type Field struct{ Name, Value string }

// AppendSignedBody appends to dst a callback body as LinkV sends it: fields
// form-encoded in name order, then sign, computed by the rule of Sign over
// every field (form "all", docs/linkv.md §2). It sorts fields in place. It
// is Sign for callers that build many bodies (the load generator) or want
// the exact bytes (giftd dev's printed example): no map, one pass.
func AppendSignedBody(dst []byte, fields []Field, secret string) []byte {
	slices.SortFunc(fields, func(a, b Field) int { return cmp.Compare(a.Name, b.Name) })
	var scratch [512]byte
	plain := scratch[:0]
	for _, f := range fields {
		if f.Value == "" || f.Name == "sign" {
			continue
		}
		plain = append(append(append(append(plain, f.Name...), '='), f.Value...), '&')
		dst = append(append(append(append(dst, url.QueryEscape(f.Name)...), '='), url.QueryEscape(f.Value)...), '&')
	}
	sum := md5.Sum(append(append(plain, "key="...), secret...))
	return hex.AppendEncode(append(dst, "sign="...), sum[:])
}
