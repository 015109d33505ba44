package linkv

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"giftd/internal/callback"
)

const formType = "application/x-www-form-urlencoded"

func TestReadForm(t *testing.T) {
	cases := []struct {
		name, contentType, body string
		want                    map[string]string // when accepted
		field, reason           string            // when refused; reason "" = any
	}{
		{name: "plain", contentType: formType, body: "a=1&b=x+y%26z", want: map[string]string{"a": "1", "b": "x y&z"}},
		{name: "charset parameter", contentType: formType + "; charset=utf-8", body: "a=1", want: map[string]string{"a": "1"}},
		{name: "media type in capitals", contentType: "Application/X-WWW-Form-URLencoded", body: "a=1", want: map[string]string{"a": "1"}},
		{name: "empty value kept", contentType: formType, body: "a=&b=2", want: map[string]string{"a": "", "b": "2"}},
		{name: "exactly callback.MaxBodyBytes", contentType: formType, body: "a=" + strings.Repeat("x", callback.MaxBodyBytes-2), want: map[string]string{"a": strings.Repeat("x", callback.MaxBodyBytes-2)}},
		{name: "no content type", body: "a=1", field: "content-type"},
		{name: "json", contentType: "application/json", body: `{"a":1}`, field: "content-type"},
		{name: "multipart", contentType: "multipart/form-data; boundary=x", body: "a=1", field: "content-type"},
		{name: "text/plain", contentType: "text/plain", body: "a=1", field: "content-type"},
		{name: "malformed content type", contentType: formType + "; charset", body: "a=1", field: "content-type"},
		{name: "field twice", contentType: formType, body: "a=1&b=2&a=2", field: "a", reason: "given more than once"},
		{name: "field twice, once empty", contentType: formType, body: "sign=&sign=abc", field: "sign", reason: "given more than once"},
		{name: "bad escape", contentType: formType, body: "a=%zz", field: "body"},
		{name: "one byte over callback.MaxBodyBytes", contentType: formType, body: "a=" + strings.Repeat("x", callback.MaxBodyBytes-1), field: "body", reason: "larger than 16384 bytes"},
		{name: "far over callback.MaxBodyBytes", contentType: formType, body: "a=" + strings.Repeat("x", 4*callback.MaxBodyBytes), field: "body", reason: "larger than 16384 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/linkv/debit", strings.NewReader(c.body))
			if c.contentType != "" {
				r.Header.Set("Content-Type", c.contentType)
			}
			got, err := ReadForm(r)
			if c.field == "" {
				if err != nil || !maps.Equal(got, c.want) {
					t.Errorf("ReadForm = %q, %v; want %q", got, err, c.want)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field || (c.reason != "" && fe.Reason != c.reason) {
				t.Errorf("err = %v, want a FieldError on %s %q", err, c.field, c.reason)
			}
		})
	}
}

func TestReadForm_QueryStringIgnored(t *testing.T) {
	r := httptest.NewRequest("POST", "/linkv/debit?gold=999&extra=1&a=2", strings.NewReader("gold=5&a=1"))
	r.Header.Set("Content-Type", formType)
	got, err := ReadForm(r)
	if want := map[string]string{"gold": "5", "a": "1"}; err != nil || !maps.Equal(got, want) {
		t.Errorf("ReadForm = %q, %v; want only the body's %q", got, err, want)
	}
}

func TestFieldError_NamesTheFieldFirst(t *testing.T) {
	if got := (&FieldError{Field: "gold", Reason: "must be digits only"}).Error(); got != "gold: must be digits only" {
		t.Errorf("Error() = %q", got)
	}
}

// docNow is the moment of the document's example request (its nonce's
// timestamp); its expriation is 91 days later.
var docNow = time.Unix(1630294348, 0)

func docLimits() Limits { return Limits{Now: docNow, MaxExpiry: 2400 * time.Hour} }

// validFields is the document's example request, signed.
func validFields() map[string]string {
	f := vectorFields()
	f["sign"] = vectorDocument
	return f
}

// reasonWith returns the document's reason with the gift fields changed
// (a json.Number value is written as that literal) and the named ones left out.
func reasonWith(set map[string]any, drop ...string) string {
	m := map[string]any{
		"gift_id": "10620", "send_num": json.Number("1"), "resource_id": "16302940574638332063",
		"vtype": "1", "receiver_id": "1431136630483329025",
	}
	maps.Copy(m, set)
	for _, k := range drop {
		delete(m, k)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// change is one edit of a field set.
type change func(map[string]string)

func set(kv ...string) change {
	return func(m map[string]string) {
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
	}
}

func del(k string) change { return func(m map[string]string) { delete(m, k) } }

func reason(r string) change { return set("reason", r) }

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

func TestValidate_DocumentExample(t *testing.T) {
	got, err := Validate(validFields(), SignAllFields, docLimits())
	if err != nil {
		t.Fatal(err)
	}
	want := Request{
		AppID: "LM6000167049877161121920", RequestID: "bf612c514beb0712816ee60b708acaa6",
		Nonce: "u06au4x31630294348ha2zeb15", UserID: "19718472", Gold: 5,
		Expriation: time.Unix(1638156748, 0), Type: "1", Reason: vectorFields()["reason"],
		GiftID: "10620", SendNum: "1", ReceiverID: "1431136630483329025", VType: "1", ResourceID: "16302940574638332063",
	}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestValidate_Accepts(t *testing.T) {
	allTopLevel := set("gift_id", "10620", "send_num", "1", "receiver_id", "1431136630483329025",
		"vtype", "1", "resource_id", "16302940574638332063")
	cases := []struct {
		name   string
		change change
		check  func(Request) bool // nil = accepted is enough
	}{
		{"top-level send_num=1, reason number 1", set("send_num", "1"), func(r Request) bool { return r.SendNum == "1" }},
		{"top-level send_num=1, reason string \"1\"", func(m map[string]string) {
			m["send_num"] = "1"
			m["reason"] = reasonWith(map[string]any{"send_num": "1"})
		}, func(r Request) bool { return r.SendNum == "1" }},
		{"every gift field top-level and agreeing", allTopLevel, nil},
		{"the docs' second vector (with empty field)", func(m map[string]string) { maps.Copy(m, vectorFieldsWithGift()) }, nil},
		{"gift fields only top-level", func(m map[string]string) {
			allTopLevel(m)
			m["reason"] = `{"note":"x"}`
		}, func(r Request) bool { return r.GiftID == "10620" && r.VType == "1" && r.Reason == `{"note":"x"}` }},
		{"empty top-level field falls back to reason", set("gift_id", ""), func(r Request) bool { return r.GiftID == "10620" }},
		{"gift value as a number in reason keeps its text", reason(reasonWith(map[string]any{"gift_id": json.Number("10620")})), func(r Request) bool { return r.GiftID == "10620" }},
		{"unknown extra fields ignored", set("extra", "1", "note", "x"), nil},
		{"gold with leading zeros", set("gold", "007"), func(r Request) bool { return r.Gold == 7 }},
		{"gold with more leading zeros than an int64 has digits", set("gold", strings.Repeat("0", 30)+"7"), func(r Request) bool { return r.Gold == 7 }},
		{"gold 0", set("gold", "0"), func(r Request) bool { return r.Gold == 0 }},
		{"gold 10^12", set("gold", "1000000000000"), func(r Request) bool { return r.Gold == 1e12 }},
		{"gold 10^12 with leading zeros", set("gold", "0001000000000000"), func(r Request) bool { return r.Gold == 1e12 }},
		{"expriation exactly now", set("expriation", unix(docNow)), nil},
		{"expriation exactly MaxExpiry ahead", set("expriation", unix(docNow.Add(2400*time.Hour))), nil},
		{"64-byte ids", set("app_id", strings.Repeat("a", 64), "request_id", strings.Repeat("r", 64),
			"nonce", strings.Repeat("n", 64), "user_id", strings.Repeat("u", 64)), nil},
		{"every allowed character", set("app_id", " ~!{}", "request_id", "aZ09_-", "nonce", " ~\"&=", "user_id", "aZ09+=_-"), nil},
		{"send_num 10^9", reason(reasonWith(map[string]any{"send_num": json.Number("1000000000")})), nil},
		{"128-byte gift value, UTF-8", reason(reasonWith(map[string]any{"gift_id": strings.Repeat("é", 64)})), nil},
		{"reason exactly 4096 bytes", reason(reasonWith(map[string]any{"pad": strings.Repeat("x", 4096-len(reasonWith(map[string]any{"pad": ""})))})), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := validFields()
			c.change(f)
			r, err := Validate(f, SignAllFields, docLimits())
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if c.check != nil && !c.check(r) {
				t.Errorf("accepted as %+v", r)
			}
		})
	}
}

func TestValidate_RefusesNamingTheField(t *testing.T) {
	type refusal struct {
		name   string
		change change
		field  string
	}
	var cases []refusal
	for _, f := range []string{"app_id", "request_id", "nonce", "user_id", "gold", "expriation", "type", "reason", "sign"} {
		cases = append(cases,
			refusal{f + " missing", del(f), f},
			refusal{f + " empty", set(f, ""), f})
	}
	for _, g := range []string{"gift_id", "send_num", "receiver_id", "vtype", "resource_id"} {
		cases = append(cases,
			refusal{g + " in neither place", reason(reasonWith(nil, g)), g},
			refusal{g + " empty top-level, absent in reason", func(m map[string]string) {
				m[g] = ""
				m["reason"] = reasonWith(nil, g)
			}, g},
			refusal{g + " top-level disagrees with reason", set(g, "999"), g},
			refusal{g + " top-level given, empty in reason", func(m map[string]string) {
				m[g] = "5"
				m["reason"] = reasonWith(map[string]any{g: ""})
			}, g},
		)
	}
	gold := func(v string) refusal { return refusal{"gold " + strconv.Quote(v), set("gold", v), "gold"} }
	cases = append(cases,
		refusal{"app_id too long", set("app_id", strings.Repeat("a", 65)), "app_id"},
		refusal{"app_id control character", set("app_id", "app\x7f"), "app_id"},
		refusal{"app_id not ASCII", set("app_id", "appé"), "app_id"},

		refusal{"request_id too long", set("request_id", strings.Repeat("a", 65)), "request_id"},
		refusal{"request_id slash", set("request_id", "abc/def"), "request_id"},
		refusal{"request_id space", set("request_id", "abc def"), "request_id"},
		refusal{"request_id dot", set("request_id", "abc.def"), "request_id"},
		refusal{"request_id not ASCII", set("request_id", "abcé"), "request_id"},

		refusal{"nonce too long", set("nonce", strings.Repeat("n", 65)), "nonce"},
		refusal{"nonce control character", set("nonce", "abc\x01def"), "nonce"},
		refusal{"nonce DEL", set("nonce", "abc\x7fdef"), "nonce"},
		refusal{"nonce not ASCII", set("nonce", "abcédef"), "nonce"},

		refusal{"user_id too long", set("user_id", strings.Repeat("u", 65)), "user_id"},
		refusal{"user_id space", set("user_id", "u 1"), "user_id"},
		refusal{"user_id slash", set("user_id", "u/1"), "user_id"},
		refusal{"user_id dot", set("user_id", "u.1"), "user_id"},
		refusal{"user_id not ASCII", set("user_id", "ü1"), "user_id"},

		gold("-5"), gold("+5"), gold("1.5"), gold("0x10"), gold("1e3"), gold(" 5"), gold("5 "),
		gold("1_000"), gold("５"), gold("1000000000001"), gold("10000000000001"),
		gold("99999999999999999999999"),

		refusal{"expriation not digits", set("expriation", "soon"), "expriation"},
		refusal{"expriation negative", set("expriation", "-1"), "expriation"},
		refusal{"expriation with fraction", set("expriation", "1638156748.0"), "expriation"},
		refusal{"expriation in milliseconds (13 digits)", set("expriation", "1638156748000"), "expriation"},
		refusal{"expired", set("expriation", unix(docNow.Add(-time.Second))), "expriation"},
		refusal{"too far ahead", set("expriation", unix(docNow.Add(2400*time.Hour+time.Second))), "expriation"},

		refusal{"type 2", set("type", "2"), "type"},
		refusal{"type 01", set("type", "01"), "type"},
		refusal{"type gift", set("type", "gift"), "type"},

		refusal{"reason invalid JSON", reason(`{"gift_id":`), "reason"},
		refusal{"reason array", reason(`[1,2]`), "reason"},
		refusal{"reason string", reason(`"x"`), "reason"},
		refusal{"reason number", reason(`1`), "reason"},
		refusal{"reason null", reason(`null`), "reason"},
		refusal{"reason trailing text", reason(reasonWith(nil) + " x"), "reason"},
		refusal{"reason two objects", reason(reasonWith(nil) + "{}"), "reason"},
		refusal{"reason trailing comma", reason(`{"gift_id":"1",}`), "reason"},
		refusal{"reason invalid UTF-8", reason(`{"note":"` + "\xff" + `"}`), "reason"},
		refusal{"reason 4097 bytes", reason(reasonWith(map[string]any{"pad": strings.Repeat("x", 4097-len(reasonWith(map[string]any{"pad": ""})))})), "reason"},

		refusal{"reason gift_id true", reason(reasonWith(map[string]any{"gift_id": true})), "reason.gift_id"},
		refusal{"reason gift_id null", reason(reasonWith(map[string]any{"gift_id": nil})), "reason.gift_id"},
		refusal{"reason gift_id object", reason(reasonWith(map[string]any{"gift_id": map[string]int{"x": 1}})), "reason.gift_id"},
		refusal{"reason gift_id array", reason(reasonWith(map[string]any{"gift_id": []string{"1"}})), "reason.gift_id"},
		refusal{"reason send_num null even with top-level", func(m map[string]string) {
			m["send_num"] = "1"
			m["reason"] = reasonWith(map[string]any{"send_num": nil})
		}, "reason.send_num"},
		refusal{"reason gift_id twice", reason(`{"gift_id":"1","gift_id":"2","send_num":1,"resource_id":"r","vtype":"1","receiver_id":"h"}`), "reason.gift_id"},

		refusal{"send_num 0 in reason", reason(reasonWith(map[string]any{"send_num": json.Number("0")})), "send_num"},
		refusal{"send_num -1 in reason", reason(reasonWith(map[string]any{"send_num": json.Number("-1")})), "send_num"},
		refusal{"send_num 1.5 in reason", reason(reasonWith(map[string]any{"send_num": json.Number("1.5")})), "send_num"},
		refusal{"send_num 1e0 in reason", reason(reasonWith(map[string]any{"send_num": json.Number("1e0")})), "send_num"},
		refusal{"send_num \"abc\" in reason", reason(reasonWith(map[string]any{"send_num": "abc"})), "send_num"},
		refusal{"send_num above 10^9 in reason", reason(reasonWith(map[string]any{"send_num": json.Number("1000000001")})), "send_num"},
		refusal{"send_num 0 top-level only", func(m map[string]string) {
			m["send_num"] = "0"
			m["reason"] = reasonWith(nil, "send_num")
		}, "send_num"},
		refusal{"send_num 01 top-level vs 1 in reason", set("send_num", "01"), "send_num"},

		refusal{"gift_id 129 bytes", reason(reasonWith(map[string]any{"gift_id": strings.Repeat("g", 129)})), "gift_id"},
		refusal{"gift_id control character in reason", reason(reasonWith(map[string]any{"gift_id": "g\u0001"})), "gift_id"},
		refusal{"gift_id C1 control character in reason", reason(reasonWith(map[string]any{"gift_id": "g\u0085"})), "gift_id"},
		refusal{"gift_id NUL top-level", func(m map[string]string) {
			m["gift_id"] = "g\x00"
			m["reason"] = reasonWith(nil, "gift_id")
		}, "gift_id"},
		refusal{"gift_id invalid UTF-8 top-level", func(m map[string]string) {
			m["gift_id"] = "g\xff"
			m["reason"] = reasonWith(nil, "gift_id")
		}, "gift_id"},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := validFields()
			c.change(f)
			r, err := Validate(f, SignAllFields, docLimits())
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("Validate = %+v, %v; want a FieldError on %s", r, err, c.field)
			}
			if !strings.HasPrefix(err.Error(), c.field+": ") {
				t.Errorf("message %q does not start with the field", err)
			}
		})
	}
}

func TestValidate_Messages(t *testing.T) {
	cases := []struct {
		change change
		want   string
	}{
		{del("nonce"), "nonce: required"},
		{set("gold", "-5"), "gold: must be digits only"},
		{set("expriation", unix(docNow.Add(-time.Second))), "expriation: request expired"},
		{set("expriation", unix(docNow.Add(2401*time.Hour))), "expriation: more than 2400h0m0s ahead"},
		{set("type", "2"), "type: only 1 (gift) is accepted"},
		{set("vtype", "8"), "vtype: disagrees with reason"},
		{reason(reasonWith(nil, "resource_id")), "resource_id: required"},
		{reason(reasonWith(map[string]any{"vtype": false})), "reason.vtype: must be a string or a number"},
		{reason(reasonWith(map[string]any{"send_num": json.Number("0")})), "send_num: must be a positive integer"},
	}
	for _, c := range cases {
		f := validFields()
		c.change(f)
		if _, err := Validate(f, SignAllFields, docLimits()); err == nil || err.Error() != c.want {
			t.Errorf("err = %v, want %q", err, c.want)
		}
	}
}

func TestNonceTime(t *testing.T) {
	cases := []struct {
		nonce string
		want  int64 // -1 = no timestamp
	}{
		{"u06au4x31630294348ha2zeb15", 1630294348},
		{"abcdefgh0abcdefgh", 0},
		{"abcdefgh999999999999abcdefgh", 999999999999},
		{"abcdefgh1999999999999abcdefgh", -1}, // 13 digits
		{"short", -1},
		{"abcdefghabcdefgh", -1},           // nothing between
		{"abcdefgh12x4567890abcdefgh", -1}, // not digits
		{"abcdefgh-1630294348abcdefgh", -1},
	}
	for _, c := range cases {
		got, ok := NonceTime(c.nonce)
		if (c.want < 0 && ok) || (c.want >= 0 && (!ok || got.Unix() != c.want)) {
			t.Errorf("NonceTime(%q) = %v, %t; want %d", c.nonce, got.Unix(), ok, c.want)
		}
	}
}

func TestFingerprint_IgnoresWhatARetryMayChange(t *testing.T) {
	base, err := Validate(validFields(), SignAllFields, docLimits())
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]change{
		"nonce":      set("nonce", "zzzzzzzz1630294400zzzzzzzz"),
		"expriation": set("expriation", "1638156800"),
		"sign":       set("sign", strings.Repeat("0", 32)),
		"app_id":     set("app_id", "other-app"),
		"request_id": set("request_id", "other-id"),
		"extra":      set("extra", "1"),
	} {
		f := validFields()
		c(f)
		r, err := Validate(f, SignAllFields, docLimits())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Fingerprint() != base.Fingerprint() {
			t.Errorf("%s changed the fingerprint", name)
		}
	}
}

func TestFingerprint_ChangesWithTheBusinessFields(t *testing.T) {
	base := Request{UserID: "u1", Gold: 5, Type: "1", GiftID: "g", SendNum: "1", ReceiverID: "h",
		VType: "1", ResourceID: "r", Reason: "{}"}
	cases := map[string]func(*Request){
		"gold":        func(r *Request) { r.Gold = 6 },
		"user_id":     func(r *Request) { r.UserID = "u2" },
		"type":        func(r *Request) { r.Type = "2" },
		"gift_id":     func(r *Request) { r.GiftID = "g2" },
		"send_num":    func(r *Request) { r.SendNum = "2" },
		"receiver_id": func(r *Request) { r.ReceiverID = "h2" },
		"vtype":       func(r *Request) { r.VType = "8" },
		"resource_id": func(r *Request) { r.ResourceID = "r2" },
		"reason":      func(r *Request) { r.Reason = `{"a":1}` },
		// Bytes moved across a boundary: plain concatenation would not see it.
		"user_id|gold":       func(r *Request) { r.UserID, r.Gold = "u", 15 },
		"type|gift_id":       func(r *Request) { r.Type, r.GiftID = "1g", "" },
		"gift_id|send_num":   func(r *Request) { r.GiftID, r.SendNum = "g1", "" },
		"receiver_id|vtype":  func(r *Request) { r.ReceiverID, r.VType = "h1", "" },
		"resource_id|reason": func(r *Request) { r.ResourceID, r.Reason = "r{", "}" },
	}
	for name, change := range cases {
		r := base
		change(&r)
		if r.Fingerprint() == base.Fingerprint() {
			t.Errorf("%s: fingerprint unchanged", name)
		}
	}
	// Bytes moved between two fields that are not neighbours.
	ab := Request{UserID: "ab", GiftID: "c"}
	a := Request{UserID: "a", GiftID: "bc"}
	if ab.Fingerprint() == a.Fingerprint() {
		t.Error(`user_id "ab" + gift_id "c" and "a" + "bc" share a fingerprint`)
	}
}

func TestDetails(t *testing.T) {
	r, err := Validate(validFields(), SignAllFields, docLimits())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"gift_id": "10620", "send_num": "1", "receiver_id": "1431136630483329025", "vtype": "1",
		"resource_id": "16302940574638332063", "type": "1", "reason": vectorFields()["reason"],
	}
	if got := r.Details(); !maps.Equal(got, want) {
		t.Errorf("Details = %q\nwant      %q", got, want)
	}
}

// A top-level gift field that reason does not carry is used only when the
// sign covered it (docs/linkv.md §2.1); one reason carries always comes from the
// signed reason.
func TestValidate_UnsignedTopLevelGiftFields(t *testing.T) {
	onlyTop := func(name, value string) change {
		return func(m map[string]string) {
			m[name] = value
			m["reason"] = reasonWith(nil, name)
		}
	}
	cases := []struct {
		name   string
		form   SignForm
		change change
		field  string // the refused field; "" = accepted
		check  func(Request) bool
	}{
		{"gift_id only top-level, eight", SignEightField, onlyTop("gift_id", "777"), "gift_id", nil},
		{"gift_id only top-level, eight-php", SignEightPHP, onlyTop("gift_id", "777"), "gift_id", nil},
		{"gift_id only top-level, eight-keep-empty", SignEightKeepEmpty, onlyTop("gift_id", "777"), "gift_id", nil},
		{"receiver_id only top-level, eight", SignEightField, onlyTop("receiver_id", "someone-else"), "receiver_id", nil},
		{"vtype=0 only top-level, all-php", SignAllPHP, onlyTop("vtype", "0"), "vtype", nil},
		{"unknown form trusts nothing unsigned", "", onlyTop("gift_id", "777"), "gift_id", nil},
		{"gift_id only top-level, all", SignAllFields, onlyTop("gift_id", "777"), "", func(r Request) bool { return r.GiftID == "777" }},
		{"gift_id only top-level, all-php", SignAllPHP, onlyTop("gift_id", "777"), "", func(r Request) bool { return r.GiftID == "777" }},
		{"vtype=0 only top-level, all", SignAllFields, onlyTop("vtype", "0"), "", func(r Request) bool { return r.VType == "0" }},
		{"vtype=0 only top-level, all-keep-empty", SignAllKeepEmpty, onlyTop("vtype", "0"), "", func(r Request) bool { return r.VType == "0" }},
		{"top-level agreeing with reason, eight", SignEightField, set("gift_id", "10620", "send_num", "1"), "",
			func(r Request) bool { return r.GiftID == "10620" && r.SendNum == "1" }},
		{"top-level disagreeing with reason, eight", SignEightField, set("gift_id", "777"), "gift_id", nil},
		{"everything in reason, eight", SignEightField, func(map[string]string) {}, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := validFields()
			c.change(f)
			r, err := Validate(f, c.form, docLimits())
			if c.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if c.check != nil && !c.check(r) {
					t.Errorf("accepted as %+v", r)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("Validate = %+v, %v; want a FieldError on %s", r, err, c.field)
			}
		})
	}
	f := validFields()
	onlyTop("gift_id", "777")(f)
	if _, err := Validate(f, SignEightField, docLimits()); err == nil || err.Error() != "gift_id: not covered by the signature" {
		t.Errorf("err = %v, want %q", err, "gift_id: not covered by the signature")
	}
}

// The fingerprint is built from signed data only: under an eight-field sign
// an unsigned top-level copy of a gift field can neither change it nor
// stand in for a field reason lacks.
func TestFingerprint_OnlyFromSignedData(t *testing.T) {
	base, err := Validate(validFields(), SignEightField, docLimits())
	if err != nil {
		t.Fatal(err)
	}
	f := validFields()
	set("gift_id", "10620", "vtype", "1", "extra", "x")(f)
	r, err := Validate(f, SignEightField, docLimits())
	if err != nil {
		t.Fatal(err)
	}
	if r.Fingerprint() != base.Fingerprint() || !maps.Equal(r.Details(), base.Details()) {
		t.Error("unsigned top-level copies changed the fingerprint or the details")
	}
	f = validFields()
	f["gift_id"] = "777"
	f["reason"] = reasonWith(nil, "gift_id")
	if r, err := Validate(f, SignEightField, docLimits()); err == nil {
		t.Errorf("an unsigned gift_id made a request with fingerprint %x", r.Fingerprint())
	}
}
