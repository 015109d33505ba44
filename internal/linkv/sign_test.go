package linkv

import (
	"crypto/md5"
	"encoding/hex"
	"strings"
	"testing"
)

// The vectors of docs/linkv.md §2, computed by an implementation independent of giftd's.
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
// empty field, the second vector of docs/linkv.md §2.
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

// The §2.1 vectors of docs/linkv.md, literally: the document example with one value
// changed, signed by LinkV's own code under each canonicalisation.
func TestSignAs_Section21Vectors(t *testing.T) {
	with := func(k, v string) map[string]string {
		f := vectorFields()
		f[k] = v
		return f
	}
	cases := []struct {
		name   string
		fields map[string]string
		form   SignForm
		want   string
	}{
		{"gold=0, PHP rule", with("gold", "0"), SignAllPHP, "a3b94d75d4ac2a5af17f46bfa196ce2b"},
		{"gold=0, PHP rule, eight fields", with("gold", "0"), SignEightPHP, "a3b94d75d4ac2a5af17f46bfa196ce2b"},
		{"gold=0, drop-empty rule", with("gold", "0"), SignAllFields, "dc33aeeb3536350437f30bc7b9281447"},
		{"user_id=0, PHP rule", with("user_id", "0"), SignAllPHP, "5e790a61d0be6eb23877bff4bebc99aa"},
		{"user_id=0, PHP rule, eight fields", with("user_id", "0"), SignEightPHP, "5e790a61d0be6eb23877bff4bebc99aa"},
		{"user_id=0, drop-empty rule", with("user_id", "0"), SignAllFields, "5b1fdd7c1866ff1bda5d6608ebb8ea4f"},
		{"empty=, keep-empty rule", with("empty", ""), SignAllKeepEmpty, "aedbf576666c462be8cea368763bc3b8"},
		{"empty=, drop-empty rule", with("empty", ""), SignAllFields, "fda4f9769380b93559b4b7d180a606fc"},
		{"empty=, keep-empty rule, eight fields", with("empty", ""), SignEightKeepEmpty, "fda4f9769380b93559b4b7d180a606fc"},
		// §2's vectors under the forms that name them.
		{"document example", vectorFields(), SignAllFields, vectorDocument},
		{"document example, eight fields", vectorFields(), SignEightField, vectorDocument},
		{"with top-level gift fields (a)", vectorFieldsWithGift(), SignAllFields, vectorAll},
		{"with top-level gift fields (b)", vectorFieldsWithGift(), SignEightField, vectorDocument},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := SignAs(c.form, c.fields, vectorSecret); got != c.want {
				t.Errorf("SignAs(%s) = %s, want %s", c.form, got, c.want)
			}
		})
	}
	if got := SignAs("php", vectorFields(), vectorSecret); got != "" {
		t.Errorf("SignAs of an unknown form = %q, want empty", got)
	}
}

// The stringSignTemp texts docs/linkv.md prints, literally.
func TestSignAs_SpecStringSignTemp(t *testing.T) {
	doc := `app_id=LM6000167049877161121920&expriation=1638156748&gold=5&nonce=u06au4x31630294348ha2zeb15&reason={"gift_id":"10620","send_num":1,"resource_id":"16302940574638332063","vtype":"1","receiver_id":"1431136630483329025"}&request_id=bf612c514beb0712816ee60b708acaa6&type=1&user_id=19718472&key=giftd-test-secret`
	userZero := vectorFields()
	userZero["user_id"] = "0"
	withEmpty := vectorFields()
	withEmpty["empty"] = ""
	cases := []struct {
		name   string
		fields map[string]string
		form   SignForm
		want   func(string) bool
		sign   string
	}{
		{"document example (§2)", vectorFields(), SignAllFields, func(s string) bool { return s == doc }, vectorDocument},
		{"document example, PHP rule: no quirk when the last value is kept", vectorFields(), SignAllPHP, func(s string) bool { return s == doc }, vectorDocument},
		{"user_id=0, PHP rule (§2.1)", userZero, SignAllPHP, func(s string) bool {
			return strings.HasSuffix(s, "&request_id=bf612c514beb0712816ee60b708acaa6&type=1&&key=giftd-test-secret")
		}, "5e790a61d0be6eb23877bff4bebc99aa"},
		{"empty=, keep-empty rule (§2.1)", withEmpty, SignAllKeepEmpty, func(s string) bool {
			return strings.HasPrefix(s, "app_id=LM6000167049877161121920&empty=&expriation=1638156748&")
		}, "aedbf576666c462be8cea368763bc3b8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			eight, rule, _ := c.form.parts()
			eightNames := eightFieldNames()
			names := signedNames(c.fields, eight, eightNames[:])
			s := string(appendCanonical(nil, names, lookUp(nil, c.fields, names), rule)) + "key=" + vectorSecret
			if !c.want(s) {
				t.Errorf("stringSignTemp %q", s)
			}
			if sum := md5.Sum([]byte(s)); hex.EncodeToString(sum[:]) != c.sign {
				t.Errorf("md5 %x, want %s", sum, c.sign)
			}
		})
	}
}

// Every vector of §2 and §2.1 verifies, and names its form; where several
// forms sign the same string the first in SignForms' order is named.
func TestVerify_SpecVectors(t *testing.T) {
	with := func(k, v string) map[string]string {
		f := vectorFields()
		f[k] = v
		return f
	}
	cases := []struct {
		name   string
		fields map[string]string
		sign   string
		form   SignForm
	}{
		{"§2 document example", vectorFields(), vectorDocument, SignAllFields},
		{"§2 with gift fields, every field", vectorFieldsWithGift(), vectorAll, SignAllFields},
		{"§2 with gift fields, eight fields", vectorFieldsWithGift(), vectorDocument, SignEightField},
		{"§2.1 gold=0, PHP", with("gold", "0"), "a3b94d75d4ac2a5af17f46bfa196ce2b", SignAllPHP},
		{"§2.1 gold=0, drop-empty", with("gold", "0"), "dc33aeeb3536350437f30bc7b9281447", SignAllFields},
		{"§2.1 user_id=0, PHP", with("user_id", "0"), "5e790a61d0be6eb23877bff4bebc99aa", SignAllPHP},
		{"§2.1 user_id=0, drop-empty", with("user_id", "0"), "5b1fdd7c1866ff1bda5d6608ebb8ea4f", SignAllFields},
		{"§2.1 empty=, keep-empty", with("empty", ""), "aedbf576666c462be8cea368763bc3b8", SignAllKeepEmpty},
		{"§2.1 empty=, drop-empty", with("empty", ""), "fda4f9769380b93559b4b7d180a606fc", SignAllFields},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, sign := range []string{c.sign, strings.ToUpper(c.sign)} {
				if form, ok := Verify(c.fields, sign, []string{"old-secret", vectorSecret}); !ok || form != c.form {
					t.Errorf("Verify(%s) = %q, %t; want %q, true", sign, form, ok, c.form)
				}
			}
			if form, ok := Verify(c.fields, c.sign, []string{"old-secret"}); ok {
				t.Errorf("verified as %s without its secret", form)
			}
		})
	}
}

// A sign made by each form verifies as that form when no earlier form signs
// the same string, under the app's second secret too.
func TestVerify_EveryFormNamed(t *testing.T) {
	cases := []struct {
		form   SignForm
		change func(map[string]string)
	}{
		{SignAllFields, func(map[string]string) {}},
		{SignEightField, func(map[string]string) {}},
		{SignAllPHP, func(m map[string]string) { m["zero"] = "0" }},
		{SignEightPHP, func(m map[string]string) { m["gold"] = "0" }},
		{SignAllKeepEmpty, func(map[string]string) {}}, // vectorFieldsWithGift has empty=
		{SignEightKeepEmpty, func(m map[string]string) { m["nonce"] = "" }},
	}
	if len(cases) != len(SignForms()) {
		t.Fatalf("%d cases for %d forms", len(cases), len(SignForms()))
	}
	for _, c := range cases {
		t.Run(string(c.form), func(t *testing.T) {
			f := vectorFieldsWithGift()
			c.change(f)
			sign := SignAs(c.form, f, "new-secret")
			if form, ok := Verify(f, sign, []string{"old-secret", "new-secret"}); !ok || form != c.form {
				t.Errorf("Verify = %q, %t; want %q, true", form, ok, c.form)
			}
			if form, ok := Verify(f, sign, []string{"old-secret"}); ok {
				t.Errorf("verified as %s under another secret", form)
			}
		})
	}
}

// Signs other LinkV SDKs make and giftd refuses (docs/linkv.md §2.1).
func TestVerify_OtherSDKQuirksRefused(t *testing.T) {
	f := vectorFieldsWithGift()
	f["note"] = "a%41+b é€"
	javaDecoded := vectorFieldsWithGift()
	javaDecoded["note"] = "aA b é€" // URLDecoder.decode of the value
	dartLowBytes := vectorFieldsWithGift()
	dartLowBytes["note"] = "a%41+b \xe9\xac" // low bytes of é (U+00E9) and € (U+20AC)
	var cases []string
	// Only the forms over every field sign note.
	for _, form := range []SignForm{SignAllFields, SignAllPHP, SignAllKeepEmpty} {
		cases = append(cases, SignAs(form, javaDecoded, vectorSecret), SignAs(form, dartLowBytes, vectorSecret))
	}
	// PHP's loose != would find these equal to a digest "0e" + 30 digits.
	cases = append(cases, "0", "0e1", "0e"+strings.Repeat("0", 30), strings.Repeat("0", 32), "0.0", " 0")
	for _, sign := range cases {
		if form, ok := Verify(f, sign, []string{vectorSecret}); ok {
			t.Errorf("sign %q accepted as %s", sign, form)
		}
	}
}

func TestSignForm_Covers(t *testing.T) {
	cases := []struct {
		form        SignForm
		name, value string
		want        bool
	}{
		{SignAllFields, "gift_id", "1", true},
		{SignAllFields, "gift_id", "0", true},
		{SignAllFields, "gift_id", "", false},
		{SignAllFields, "sign", "x", false},
		{SignAllPHP, "gift_id", "1", true},
		{SignAllPHP, "vtype", "0", false},
		{SignAllPHP, "gold", "00", true},
		{SignAllKeepEmpty, "gift_id", "", true},
		{SignAllKeepEmpty, "vtype", "0", true},
		{SignEightField, "gift_id", "1", false},
		{SignEightField, "gold", "5", true},
		{SignEightPHP, "gold", "0", false},
		{SignEightPHP, "reason", "{}", true},
		{SignEightKeepEmpty, "receiver_id", "h", false},
		{SignEightKeepEmpty, "nonce", "", true},
		{"", "gold", "5", false},
		{"other", "gold", "5", false},
	}
	for _, c := range cases {
		if got := c.form.Covers(c.name, c.value); got != c.want {
			t.Errorf("%q.Covers(%s, %q) = %t, want %t", c.form, c.name, c.value, got, c.want)
		}
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

// TestVerify_LargeFormOutgrowsStackBuffer: a form whose canonical strings
// do not fit Verify's stack buffer verifies by every form all the same.
func TestVerify_LargeFormOutgrowsStackBuffer(t *testing.T) {
	f := vectorFieldsWithGift()
	f["reason"] = `{"gift_id":"10620","note":"` + strings.Repeat("x", 3900) + `"}`
	f["extra"] = strings.Repeat("y", 3000)
	f["zero"] = "0"
	f["empty"] = ""
	for _, form := range SignForms() {
		sign := SignAs(form, f, vectorSecret)
		got, ok := Verify(f, sign, []string{"old-secret", vectorSecret})
		if !ok || SignAs(got, f, vectorSecret) != sign {
			t.Errorf("%s sign of a large form: got %q, %t", form, got, ok)
		}
		bad := []byte(sign)
		bad[0] ^= 1
		if _, ok := Verify(f, string(bad), []string{vectorSecret}); ok {
			t.Errorf("%s: a changed sign of a large form verified", form)
		}
	}
}
