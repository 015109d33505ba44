package linkv

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzReadFormValidate feeds arbitrary bodies through the form reader and
// the validator: they must never panic, and whatever they accept must obey
// every rule of spec §1.
func FuzzReadFormValidate(f *testing.F) {
	base := url.Values{}
	for k, v := range vectorFieldsWithGift() {
		base.Set(k, v)
	}
	base.Set("sign", "fda4f9769380b93559b4b7d180a606fc")
	f.Add(base.Encode())
	f.Add("gold=-1&app_id=a")
	f.Add("reason=%7B%22gift_id%22%3Anull%7D")
	f.Add("a=1&a=2")
	f.Add("%zz")
	lim := Limits{Now: time.Unix(1630294348, 0), MaxExpiry: 2400 * time.Hour}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/linkv/debit", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		fields, err := ReadForm(r)
		if err != nil {
			return
		}
		req, err := Validate(fields, SignAllFields, lim)
		if err != nil {
			if !strings.Contains(err.Error(), ": ") {
				t.Fatalf("error %q does not name a field", err)
			}
			return
		}
		switch {
		case req.Gold < 0 || req.Gold > maxGold:
			t.Fatalf("accepted gold %d", req.Gold)
		case !only(req.RequestID, "_-") || len(req.RequestID) > 64:
			t.Fatalf("accepted request_id %q", req.RequestID)
		case !ValidUserID(req.UserID):
			t.Fatalf("accepted user_id %q", req.UserID)
		case req.Type != "1":
			t.Fatalf("accepted type %q", req.Type)
		case lim.Now.After(req.Expriation) || req.Expriation.After(lim.Now.Add(lim.MaxExpiry)):
			t.Fatalf("accepted expriation %v", req.Expriation)
		case req.GiftID == "" || req.SendNum == "" || req.ReceiverID == "" || req.VType == "" || req.ResourceID == "":
			t.Fatalf("accepted a request without its gift fields: %+v", req)
		}
		if req.Fingerprint() != req.Fingerprint() {
			t.Fatal("fingerprint not deterministic")
		}
	})
}

// FuzzSignVerify checks that a sign made with a secret verifies with it, and
// that changing the sign or any signed value breaks it.
func FuzzSignVerify(f *testing.F) {
	f.Add("LM6000167049877161121920", "5", "u06au4x31630294348ha2zeb15", "giftd-test-secret", "extra")
	f.Add("a", "", "n", "s", "")
	f.Fuzz(func(t *testing.T, app, gold, nonce, secret, extra string) {
		fields := map[string]string{"app_id": app, "gold": gold, "nonce": nonce, "type": "1", "extra": extra}
		sign := Sign(fields, secret)
		if form, ok := Verify(fields, sign, []string{"other", secret}); !ok || form != SignAllFields {
			t.Fatalf("own sign refused: %q %t", form, ok)
		}
		if _, ok := Verify(fields, strings.ToUpper(sign), []string{secret}); !ok {
			t.Fatal("uppercase sign refused")
		}
		flipped := []byte(sign)
		if flipped[0] == '1' {
			flipped[0] = '0'
		} else {
			flipped[0] = '1'
		}
		if _, ok := Verify(fields, string(flipped), []string{secret}); ok {
			t.Fatal("a changed sign verified")
		}
		if app != "" {
			changed := map[string]string{}
			for k, v := range fields {
				changed[k] = v
			}
			changed["app_id"] = app + "x"
			if _, ok := Verify(changed, sign, []string{secret}); ok {
				t.Fatal("a changed app_id verified")
			}
		}
	})
}
