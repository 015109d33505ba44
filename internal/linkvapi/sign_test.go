package linkvapi

import (
	"regexp"
	"testing"
	"time"
)

// TestForm_SignVectors: the signed form of each call, with a fixed nonce,
// against digests computed independently (Python's hashlib over the
// stringSignTemp written out by hand, docs/linkv.md §2).
func TestForm_SignVectors(t *testing.T) {
	c, err := New(Config{BaseURL: "http://linkv.test", AppID: "LM6000167049877161121920", Secret: "giftd-test-secret"})
	if err != nil {
		t.Fatal(err)
	}
	const nonce = "u06au4x31630294348ha2zeb15"
	tests := []struct {
		name   string
		params map[string]string
		want   string
	}{
		// app_id=LM6000167049877161121920&nonce_str=u06au4x31630294348ha2zeb15&uid=115213496111983232934&key=giftd-test-secret
		{"getUserTokens", map[string]string{"uid": "115213496111983232934"}, "4f65956488c96f4d48dc38af73508aac"},
		// app_id=…&expriation=1638156748&nonce_str=…&reason=moved to giftd&request_id=bf61…&type=2&uid=…&value=123&key=…
		{"changeGold", map[string]string{
			"uid": "115213496111983232934", "request_id": "bf612c514beb0712816ee60b708acaa6", "type": "2",
			"value": "123", "expriation": "1638156748", "reason": "moved to giftd",
		}, "a280080e9ebb02168492394c273e1f7a"},
		// Empty values are not sent, so they are not signed; "0" is (sex).
		// app_id=…&name=张三&nonce_str=…&sex=0&userId=534961119&key=…
		{"thGetToken", map[string]string{"userId": "534961119", "name": "张三", "sex": "0", "email": "", "aid": ""},
			"ef020fb1983ea89f9b5b6fc15ed104d3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := c.form(tt.params, nonce)
			if got := form.Get("sign"); got != tt.want {
				t.Errorf("sign %s, want %s", got, tt.want)
			}
			for k, v := range form {
				if v[0] == "" {
					t.Errorf("sent %s with an empty value", k)
				}
			}
			if form.Get("app_id") != "LM6000167049877161121920" || form.Get("nonce_str") != nonce {
				t.Errorf("form %v lacks app_id or nonce_str", form)
			}
		})
	}
}

func TestNonce_LinkVsShape(t *testing.T) {
	now := time.Unix(1630294348, 0)
	shape := regexp.MustCompile(`^[0-9A-Za-z]{8}1630294348[0-9A-Za-z]{8}$`)
	seen := map[string]bool{}
	for range 100 {
		n := Nonce(now)
		if !shape.MatchString(n) {
			t.Fatalf("nonce %q: want 8 random characters, the seconds timestamp, 8 random characters", n)
		}
		if seen[n] {
			t.Fatalf("nonce %q repeated", n)
		}
		seen[n] = true
	}
}

func TestRequestID_DerivedAnd32Hex(t *testing.T) {
	a, b := RequestID("move", "app", "user-1", "1"), RequestID("move", "app", "user-1", "1")
	if a != b || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(a) {
		t.Fatalf("RequestID: %q and %q, want the same 32 hex digits", a, b)
	}
	// Parts are length-prefixed: moving a boundary changes the id.
	if RequestID("ab", "c") == RequestID("a", "bc") || RequestID("move", "app", "user-1", "2") == a {
		t.Fatal("RequestID collides across different parts")
	}
}

func TestExpiration_LinkVsFormula(t *testing.T) {
	// (time()/86400+91)*86400 for 2021-08-30 03:32:28 UTC.
	if got, want := Expiration(time.Unix(1630294348, 0)), int64(1638144000); got != want {
		t.Fatalf("Expiration = %d, want %d", got, want)
	}
}
