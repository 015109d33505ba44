package linkv_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// refSign signs f the way one of LinkV's SDKs does (docs/linkv.md §2.1), written apart
// from giftd's code so that the handler is not checked against itself. rule
// is "drop-empty" (node-sdk, the signature page's prose), "php"
// (shop-php-sdk's Util::genSign) or "keep-empty" (go-sdk and the others);
// eight restricts the fields to the eight VerifyDeductionRequest signs.
func refSign(f map[string]string, secret, rule string, eight bool) string {
	var keys []string
	if eight {
		keys = []string{"app_id", "nonce", "request_id", "user_id", "gold", "expriation", "type", "reason"}
	} else {
		for k := range f {
			if k != "sign" {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	var s strings.Builder
	for i, k := range keys {
		v := f[k]
		switch rule {
		case "keep-empty":
			s.WriteString(k + "=" + v + "&")
		case "drop-empty":
			if v != "" {
				s.WriteString(k + "=" + v + "&")
			}
		case "php":
			// if (!empty($value)) { … if ($index !== count($params)) $signString .= '&'; }
			if v != "" && v != "0" {
				s.WriteString(k + "=" + v)
				if i+1 != len(keys) {
					s.WriteString("&")
				}
			}
		default:
			panic(rule)
		}
	}
	if rule == "php" {
		s.WriteString("&")
	}
	sum := md5.Sum([]byte(s.String() + "key=" + secret))
	return hex.EncodeToString(sum[:])
}

// withGift is docFields with request_id id and the gift fields also at top
// level, agreeing with reason, so that every-field and eight-field signs differ.
func withGift(id string) map[string]string {
	f := docFields()
	f["request_id"] = id
	for k, v := range map[string]string{"gift_id": "10620", "send_num": "1", "receiver_id": "1431136630483329025",
		"vtype": "1", "resource_id": "16302940574638332063"} {
		f[k] = v
	}
	return f
}

// lastLogLine is the fixture's latest log line.
func (f *fixture) lastLogLine() string {
	lines := strings.Split(strings.TrimSpace(f.logs.String()), "\n")
	return lines[len(lines)-1]
}

// signForms is every form giftd_linkv_sign_forms_total counts.
func signForms() []string {
	return []string{"all", "eight", "all-php", "eight-php", "all-keep-empty", "eight-keep-empty"}
}

// The §2.1 vectors of docs/linkv.md, literally, through the handler: each is the
// document's example with one value changed, and each is debited.
func TestDebit_Section21VectorsAccepted(t *testing.T) {
	cases := []struct {
		name        string
		key, value  string
		sign, form  string
		wantBalance int64
	}{
		{"gold=0 signed by the PHP rule", "gold", "0", "a3b94d75d4ac2a5af17f46bfa196ce2b", "all-php", 100},
		{"gold=0 signed dropping empty values", "gold", "0", "dc33aeeb3536350437f30bc7b9281447", "all", 100},
		{"user_id=0 signed by the PHP rule (…&type=1&&key=)", "user_id", "0", "5e790a61d0be6eb23877bff4bebc99aa", "all-php", 95},
		{"user_id=0 signed dropping empty values", "user_id", "0", "5b1fdd7c1866ff1bda5d6608ebb8ea4f", "all", 95},
		{"empty= signed keeping empty values", "empty", "", "aedbf576666c462be8cea368763bc3b8", "all-keep-empty", 95},
		{"empty= signed dropping empty values", "empty", "", "fda4f9769380b93559b4b7d180a606fc", "all", 95},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			user := "19718472"
			if c.key == "user_id" {
				user = c.value
			}
			f.topUp(t, user, 100)
			g := docFields()
			g[c.key] = c.value
			r := f.post(t, "application/x-www-form-urlencoded", encode(g)+"&sign="+c.sign)
			if r.code != 200 || r.body.Data == nil || r.body.Data.Gold != c.wantBalance {
				t.Fatalf("answer %d %s, want 200 gold %d", r.code, r.raw, c.wantBalance)
			}
			if got := counter(f.reg, "giftd_linkv_sign_forms_total", "form", c.form); got != 1 {
				t.Errorf("giftd_linkv_sign_forms_total{form=%q} = %v, want 1", c.form, got)
			}
			if line := f.lastLogLine(); !strings.Contains(line, "sign_form="+c.form+" ") {
				t.Errorf("log line %q does not name sign_form=%s", line, c.form)
			}
		})
	}
}

// A request signed by each accepted variant is authenticated, and the
// metric and the log name that variant; the requests are chosen so that no
// variant earlier in the order signs the same string.
func TestDebit_EverySignVariantAcceptedAndNamed(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "19718472", 100)
	f.topUp(t, "0", 100)
	cases := []struct {
		form, rule string
		eight      bool
		change     func(map[string]string)
		code       int
		msg        string
	}{
		{"all", "drop-empty", false, func(map[string]string) {}, 200, ""},
		{"eight", "drop-empty", true, func(map[string]string) {}, 200, ""},
		{"all-php", "php", false, func(m map[string]string) { m["zero"] = "0" }, 200, ""},
		{"eight-php", "php", true, func(m map[string]string) { m["user_id"] = "0" }, 200, ""},
		{"all-keep-empty", "keep-empty", false, func(m map[string]string) { m["empty"] = "" }, 200, ""},
		// The eight fields are all required: a sign that differs from the
		// eight-field drop-empty sign only by keeping an empty one is
		// authentic but the request is still malformed.
		{"eight-keep-empty", "keep-empty", true, func(m map[string]string) { m["nonce"] = "" }, 400, "nonce: required"},
	}
	for _, c := range cases {
		t.Run(c.form, func(t *testing.T) {
			before := map[string]float64{}
			for _, form := range signForms() {
				before[form] = counter(f.reg, "giftd_linkv_sign_forms_total", "form", form)
			}
			g := withGift("variant-" + c.form)
			c.change(g)
			g["sign"] = refSign(g, testSecret, c.rule, c.eight)
			r := f.post(t, "application/x-www-form-urlencoded", encode(g))
			if r.code != c.code || (c.msg != "" && r.body.Msg != c.msg) {
				t.Fatalf("answer %d %s, want %d %s", r.code, r.raw, c.code, c.msg)
			}
			for _, form := range signForms() {
				want := before[form]
				if form == c.form {
					want++
				}
				if got := counter(f.reg, "giftd_linkv_sign_forms_total", "form", form); got != want {
					t.Errorf("giftd_linkv_sign_forms_total{form=%q} = %v, want %v", form, got, want)
				}
			}
			if line := f.lastLogLine(); !strings.Contains(line, "sign_form="+c.form+" ") {
				t.Errorf("log line %q does not name sign_form=%s", line, c.form)
			}
		})
	}
	if got := f.balance(t, "19718472"); got != 80 {
		t.Errorf("balance %d, want 80 after four debits of 5", got)
	}
	if got := f.balance(t, "0"); got != 95 {
		t.Errorf("balance of user 0 %d, want 95", got)
	}
}

// What other LinkV SDKs do and giftd refuses (docs/linkv.md §2.1): the Java SDK's
// URL-decoding of values, the Dart SDK's hashing of UTF-16 code units' low
// bytes, and PHP's loose != on the sign.
func TestDebit_OtherSDKQuirksRefused(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "19718472", 100)
	type attempt struct {
		name   string
		fields map[string]string
		sign   string
	}
	var cases []attempt
	for _, rule := range []string{"drop-empty", "php", "keep-empty"} {
		// Java: URLDecoder.decode("a%41+b") is "aA b".
		java := withGift("java-" + rule)
		java["note"] = "a%41+b"
		decoded := maps2(java)
		decoded["note"], _ = url.QueryUnescape(java["note"])
		cases = append(cases, attempt{"Java URL-decoded values, " + rule, java, refSign(decoded, testSecret, rule, false)})

		// Dart: the low byte of each UTF-16 code unit: é (U+00E9) → 0xE9, € (U+20AC) → 0xAC.
		dart := withGift("dart-" + rule)
		dart["note"] = "é€"
		low := maps2(dart)
		low["note"] = "\xe9\xac"
		cases = append(cases, attempt{"Dart UTF-16 low bytes, " + rule, dart, refSign(low, testSecret, rule, false)})
	}
	// PHP's loose != compares two numeric strings as numbers: "0e…" equals
	// "0", and a digest of digits only equals any spelling of its number.
	for _, sign := range []string{"0", "0e1", "0e" + strings.Repeat("0", 30), "0E" + strings.Repeat("1", 30),
		strings.Repeat("0", 32), "0.0", " 0", "00000000000000000000000000000000 ", "+0e" + strings.Repeat("9", 29)} {
		cases = append(cases, attempt{"PHP loose compare, sign " + strings.TrimSpace(sign), withGift("loose"), sign})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.post(t, "application/x-www-form-urlencoded", encode(c.fields)+"&sign="+url.QueryEscape(c.sign))
			if r.code != 403 || r.body.Msg != "sign err" {
				t.Errorf("answer %d %s, want 403 sign err", r.code, r.raw)
			}
			if line := f.lastLogLine(); strings.Contains(line, "sign_form=") {
				t.Errorf("a refused request logged a sign form: %q", line)
			}
		})
	}
	if got := f.balance(t, "19718472"); got != 100 || f.debitEntries(t) != 0 {
		t.Errorf("balance %d with %d debits, want 100 and none", got, f.debitEntries(t))
	}
}

func maps2(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Under an eight-field sign the top-level gift fields are not signed: one
// that reason does not carry must not be stored or used (docs/linkv.md §2.1). Under
// an every-field sign it is signed and used.
func TestDebit_UnsignedTopLevelGiftFieldNeverTrusted(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "19718472", 100)
	// reason without gift_id; gift_id only at top level.
	onlyTop := func(id string) map[string]string {
		g := withGift(id)
		g["gift_id"] = "777"
		g["reason"] = `{"send_num":1,"resource_id":"16302940574638332063","vtype":"1","receiver_id":"1431136630483329025"}`
		return g
	}
	refused := []struct {
		name, rule string
		eight      bool
		change     func(map[string]string)
		field      string
	}{
		{"eight", "drop-empty", true, func(map[string]string) {}, "gift_id"},
		{"eight-php", "php", true, func(m map[string]string) { m["gold"] = "0" }, "gift_id"},
		{"eight, PHP rule without a zero", "php", true, func(map[string]string) {}, "gift_id"},
		{"eight, keep-empty rule", "keep-empty", true, func(map[string]string) {}, "gift_id"},
		// The PHP rule drops a "0": a top-level vtype=0 is not signed even
		// under a sign over every field.
		{"all-php, top-level vtype=0", "php", false, func(m map[string]string) {
			m["gift_id"] = "10620"
			m["vtype"] = "0"
			m["reason"] = `{"gift_id":"10620","send_num":1,"resource_id":"16302940574638332063","receiver_id":"1431136630483329025"}`
		}, "vtype"},
	}
	for i, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			g := onlyTop("unsigned-" + string(rune('a'+i)))
			c.change(g)
			g["sign"] = refSign(g, testSecret, c.rule, c.eight)
			r := f.post(t, "application/x-www-form-urlencoded", encode(g))
			if want := c.field + ": not covered by the signature"; r.code != 400 || r.body.Msg != want {
				t.Errorf("answer %d %s, want 400 %q", r.code, r.raw, want)
			}
		})
	}
	if got := f.balance(t, "19718472"); got != 100 || f.debitEntries(t) != 0 {
		t.Fatalf("balance %d with %d debits, want 100 and none", got, f.debitEntries(t))
	}

	// The same request signed over every field: gift_id 777 is authentic.
	for _, rule := range []string{"drop-empty", "php", "keep-empty"} {
		g := onlyTop("signed-" + rule)
		g["sign"] = refSign(g, testSecret, rule, false)
		if r := f.post(t, "application/x-www-form-urlencoded", encode(g)); r.code != 200 {
			t.Errorf("%s over every field: answer %d %s, want 200", rule, r.code, r.raw)
		}
	}
	var stored string
	if err := f.store.Pool().QueryRow(context.Background(),
		`SELECT details->>'gift_id' FROM ledger_entries WHERE ref = 'signed-drop-empty'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != "777" {
		t.Errorf("stored gift_id %q, want 777", stored)
	}
}
