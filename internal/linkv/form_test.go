package linkv

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestReadForm(t *testing.T) {
	cases := []struct {
		name, contentType, query, body string
		field                          string // "" = accepted
	}{
		{"plain", "application/x-www-form-urlencoded", "", "a=1&b=2", ""},
		{"charset parameter", "application/x-www-form-urlencoded; charset=utf-8", "", "a=1", ""},
		{"no content type", "", "", "a=1", "content-type"},
		{"json", "application/json", "", `{"a":1}`, "content-type"},
		{"multipart", "multipart/form-data; boundary=x", "", "a=1", "content-type"},
		{"field twice", "application/x-www-form-urlencoded", "", "a=1&a=2", "a"},
		{"bad escape", "application/x-www-form-urlencoded", "", "a=%zz", "body"},
		{"oversized", "application/x-www-form-urlencoded", "", "a=" + strings.Repeat("x", MaxBodyBytes), "body"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/linkv/debit"+c.query, strings.NewReader(c.body))
			if c.contentType != "" {
				r.Header.Set("Content-Type", c.contentType)
			}
			_, err := ReadForm(r)
			var fe *FieldError
			switch {
			case c.field == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.field != "" && (!errors.As(err, &fe) || fe.Field != c.field):
				t.Errorf("err = %v, want a FieldError on %s", err, c.field)
			}
		})
	}
	t.Run("query string ignored", func(t *testing.T) {
		r := httptest.NewRequest("POST", "/linkv/debit?gold=999&extra=1", strings.NewReader("gold=5"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		f, err := ReadForm(r)
		if err != nil || f["gold"] != "5" || f["extra"] != "" {
			t.Errorf("fields %v, %v; want only the body's gold=5", f, err)
		}
	})
}

func validFields() map[string]string {
	f := vectorFields()
	f["sign"] = "fda4f9769380b93559b4b7d180a606fc"
	return f
}

func TestValidate_DocumentExample(t *testing.T) {
	lim := Limits{Now: time.Unix(1630294348, 0), MaxExpiry: 2400 * time.Hour}
	r, err := Validate(validFields(), lim)
	if err != nil {
		t.Fatal(err)
	}
	want := Request{
		AppID: "LM6000167049877161121920", RequestID: "bf612c514beb0712816ee60b708acaa6",
		Nonce: "u06au4x31630294348ha2zeb15", UserID: "19718472", Gold: 5,
		Expriation: time.Unix(1638156748, 0), Type: "1", Reason: vectorFields()["reason"],
		GiftID: "10620", SendNum: "1", ReceiverID: "1431136630483329025", VType: "1", ResourceID: "16302940574638332063",
	}
	if r != want {
		t.Errorf("got  %+v\nwant %+v", r, want)
	}
	// send_num as a number inside reason agrees with a top-level "1", and
	// so does a string "1".
	f := validFields()
	f["send_num"] = "1"
	if _, err := Validate(f, lim); err != nil {
		t.Errorf("top-level send_num=1 with reason number 1: %v", err)
	}
	f["reason"] = strings.Replace(f["reason"], `"send_num":1`, `"send_num":"1"`, 1)
	if _, err := Validate(f, lim); err != nil {
		t.Errorf("top-level send_num=1 with reason string \"1\": %v", err)
	}
	f["gold"] = "007"
	if r, err := Validate(f, lim); err != nil || r.Gold != 7 {
		t.Errorf("gold 007: %v %v, want 7 (leading zeros accepted)", r.Gold, err)
	}
}

func TestValidate_ReasonFieldTypes(t *testing.T) {
	lim := Limits{Now: time.Unix(1630294348, 0), MaxExpiry: 2400 * time.Hour}
	for _, bad := range []string{`true`, `null`, `{"x":1}`, `["1"]`} {
		f := validFields()
		f["reason"] = strings.Replace(f["reason"], `"10620"`, bad, 1)
		_, err := Validate(f, lim)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "reason.gift_id" {
			t.Errorf("gift_id %s in reason: err = %v, want reason.gift_id", bad, err)
		}
	}
}

func TestNonceTime(t *testing.T) {
	cases := map[string]int64{
		"u06au4x31630294348ha2zeb15": 1630294348,
		"short":                      -1,
		"abcdefgh12x4567890abcdefgh": -1,
		"abcdefghabcdefgh":           -1,
	}
	for nonce, want := range cases {
		got, ok := NonceTime(nonce)
		if (want < 0 && ok) || (want >= 0 && (!ok || got.Unix() != want)) {
			t.Errorf("NonceTime(%q) = %v, %t; want %d", nonce, got.Unix(), ok, want)
		}
	}
}

func TestFingerprint(t *testing.T) {
	base := Request{UserID: "u1", Gold: 5, Type: "1", GiftID: "g", SendNum: "1", ReceiverID: "h", VType: "1", ResourceID: "r", Reason: "{}"}
	retry := base
	retry.Nonce, retry.Expriation, retry.AppID, retry.RequestID = "other", time.Unix(9, 0), "a", "b"
	if base.Fingerprint() != retry.Fingerprint() {
		t.Error("nonce, expriation or key changed the fingerprint")
	}
	for name, change := range map[string]func(*Request){
		"gold":      func(r *Request) { r.Gold = 6 },
		"user":      func(r *Request) { r.UserID = "u2" },
		"reason":    func(r *Request) { r.Reason = `{"a":1}` },
		"receiver":  func(r *Request) { r.ReceiverID = "h2" },
		"boundary":  func(r *Request) { r.UserID, r.Type = "u11", "" },
		"gift/send": func(r *Request) { r.GiftID, r.SendNum = "g1", "" },
	} {
		r := base
		change(&r)
		if r.Fingerprint() == base.Fingerprint() {
			t.Errorf("%s: fingerprint unchanged", name)
		}
	}
}
