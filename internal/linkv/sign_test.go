package linkv

import (
	"crypto/md5"
	"encoding/hex"
	"strings"
	"testing"
)

// The spec's vectors (§2), computed by an implementation independent of giftd's.
const (
	vectorSecret   = "giftd-test-secret"
	vectorDocument = "fda4f9769380b93559b4b7d180a606fc" // the document example; also form (b) of the second vector
	vectorAll      = "ecda1164bcf679197fd33ab1f05a0100" // the example plus top-level gift fields, form (a)
)

// vectorFields is the document's example request without its sign.
func vectorFields() map[string]string {
	return map[string]string{
		"app_id":     "LM6000167049877161121920",
		"expriation": "1638156748",
		"gold":       "5",
		"nonce":      "u06au4x31630294348ha2zeb15",
		"reason":     `{"gift_id":"10620","send_num":1,"resource_id":"16302940574638332063","vtype":"1","receiver_id":"1431136630483329025"}`,
		"request_id": "bf612c514beb0712816ee60b708acaa6",
		"type":       "1",
		"user_id":    "19718472",
	}
}

// vectorFieldsWithGift is vectorFields plus the top-level gift fields and an
// empty field, the spec's second vector.
func vectorFieldsWithGift() map[string]string {
	f := vectorFields()
	for k, v := range map[string]string{"gift_id": "10620", "send_num": "1", "receiver_id": "1431136630483329025",
		"vtype": "1", "resource_id": "16302940574638332063", "empty": ""} {
		f[k] = v
	}
	return f
}

// onlyEight keeps the fields of form (b).
func onlyEight(f map[string]string) map[string]string {
	out := map[string]string{}
	for _, k := range eightFieldNames() {
		if v, ok := f[k]; ok {
			out[k] = v
		}
	}
	return out
}

func TestSign_SpecVectors(t *testing.T) {
	cases := []struct {
		name   string
		fields map[string]string
		want   string
	}{
		{"document example", vectorFields(), vectorDocument},
		{"with top-level gift fields, every field (a)", vectorFieldsWithGift(), vectorAll},
		{"with top-level gift fields, eight fields (b)", onlyEight(vectorFieldsWithGift()), vectorDocument},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Sign(c.fields, vectorSecret); got != c.want {
				t.Errorf("Sign = %s, want %s", got, c.want)
			}
		})
	}
}

func TestSign_IgnoresSignAndEmptyValues(t *testing.T) {
	f := vectorFields()
	f["sign"] = "whatever"
	f["blank"] = ""
	f["also_blank"] = ""
	if got := Sign(f, vectorSecret); got != vectorDocument {
		t.Errorf("Sign = %s, want %s: sign and empty fields must not be signed", got, vectorDocument)
	}
}

func TestSign_SortsNamesByByteOrderWithValuesAsGiven(t *testing.T) {
	// Byte order puts "B" and "Z" before "a"; values are not re-encoded.
	f := map[string]string{"a": "1", "Z": "x y&z", "B": "é"}
	sum := md5.Sum([]byte("B=é&Z=x y&z&a=1&key=s"))
	if got, want := Sign(f, "s"), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	withGift := vectorFieldsWithGift()
	tampered := vectorFieldsWithGift()
	tampered["gold"] = "6"
	cases := []struct {
		name    string
		fields  map[string]string
		sign    string
		secrets []string
		form    SignForm
		ok      bool
	}{
		{"document example: both forms are one string, all reported", vectorFields(), vectorDocument, []string{vectorSecret}, SignAllFields, true},
		{"every field (a)", withGift, vectorAll, []string{vectorSecret}, SignAllFields, true},
		{"eight fields (b)", withGift, vectorDocument, []string{vectorSecret}, SignEightField, true},
		{"uppercase hex (a)", withGift, strings.ToUpper(vectorAll), []string{vectorSecret}, SignAllFields, true},
		{"uppercase hex (b)", withGift, strings.ToUpper(vectorDocument), []string{vectorSecret}, SignEightField, true},
		{"second secret (a)", withGift, vectorAll, []string{"old-secret", vectorSecret}, SignAllFields, true},
		{"second secret (b)", withGift, vectorDocument, []string{"old-secret", vectorSecret}, SignEightField, true},
		{"gold tampered 5 to 6 (a)", tampered, vectorAll, []string{vectorSecret}, "", false},
		{"gold tampered 5 to 6 (b)", tampered, vectorDocument, []string{vectorSecret}, "", false},
		{"wrong secret", withGift, vectorAll, []string{"other"}, "", false},
		{"no secrets", withGift, vectorAll, nil, "", false},
		{"31 hex digits", withGift, vectorAll[:31], []string{vectorSecret}, "", false},
		{"33 characters", withGift, vectorAll + "0", []string{vectorSecret}, "", false},
		{"64 hex digits", withGift, vectorAll + vectorAll, []string{vectorSecret}, "", false},
		{"not hex", withGift, strings.Repeat("z", 32), []string{vectorSecret}, "", false},
		{"one non-hex digit", withGift, vectorAll[:31] + "g", []string{vectorSecret}, "", false},
		{"empty sign", withGift, "", []string{vectorSecret}, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			form, ok := Verify(c.fields, c.sign, c.secrets)
			if form != c.form || ok != c.ok {
				t.Errorf("Verify = %q, %t; want %q, %t", form, ok, c.form, c.ok)
			}
		})
	}
}

func TestVerify_AnyChangedSignedFieldRefused(t *testing.T) {
	for k := range vectorFields() {
		t.Run(k, func(t *testing.T) {
			f := vectorFieldsWithGift()
			f[k] += "x"
			for _, sign := range []string{vectorAll, vectorDocument} {
				if form, ok := Verify(f, sign, []string{vectorSecret}); ok {
					t.Errorf("changed %s accepted as form %s", k, form)
				}
			}
		})
	}
	// Top-level gift fields are covered by form (a) only; Validate makes
	// them agree with the signed reason.
	f := vectorFieldsWithGift()
	f["gift_id"] = "999"
	if _, ok := Verify(f, vectorAll, []string{vectorSecret}); ok {
		t.Error("changed top-level gift_id accepted under form (a)")
	}
}

// BenchmarkVerify measures the hot path's signature check: every variant
// under every secret of the app.
func BenchmarkVerify(b *testing.B) {
	cases := []struct {
		name    string
		fields  map[string]string
		sign    string
		secrets []string
	}{
		{"document example, one secret", vectorFields(), vectorDocument, []string{vectorSecret}},
		{"with gift fields, eight-field sign, two secrets", vectorFieldsWithGift(), vectorDocument, []string{"old-secret", vectorSecret}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if _, ok := Verify(c.fields, c.sign, c.secrets); !ok {
					b.Fatal("refused")
				}
			}
		})
	}
}
