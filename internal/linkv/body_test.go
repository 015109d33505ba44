package linkv

import (
	"net/url"
	"testing"
)

// TestAppendSignedBody_IsSignsForm: the body carries every field, and its
// sign is Sign's over the same fields, including the docs' first vector.
func TestAppendSignedBody_IsSignsForm(t *testing.T) {
	fields := []Field{
		{"user_id", "19718472"}, {"type", "1"}, {"request_id", "bf612c514beb0712816ee60b708acaa6"},
		{"reason", `{"gift_id":"10620","send_num":1,"resource_id":"16302940574638332063","vtype":"1","receiver_id":"1431136630483329025"}`},
		{"nonce", "u06au4x31630294348ha2zeb15"}, {"gold", "5"}, {"expriation", "1638156748"},
		{"app_id", "LM6000167049877161121920"}, {"empty", ""},
	}
	body := AppendSignedBody([]byte("x"), fields, "giftd-test-secret")
	if body[0] != 'x' {
		t.Fatalf("dst's bytes were not kept: %q", body)
	}
	v, err := url.ParseQuery(string(body[1:]))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, f := range fields {
		if f.Value != "" && v.Get(f.Name) != f.Value {
			t.Errorf("%s = %q in the body, want %q", f.Name, v.Get(f.Name), f.Value)
		}
		m[f.Name] = f.Value
	}
	if got, want := v.Get("sign"), "fda4f9769380b93559b4b7d180a606fc"; got != want || got != Sign(m, "giftd-test-secret") {
		t.Errorf("sign %s, want %s", got, want)
	}
}
