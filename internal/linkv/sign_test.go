package linkv

import (
	"strings"
	"testing"
)

// The spec's vectors (§2), computed by an implementation independent of giftd's.
const vectorSecret = "giftd-test-secret"

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

func vectorFieldsWithGift() map[string]string {
	f := vectorFields()
	for k, v := range map[string]string{"gift_id": "10620", "send_num": "1", "receiver_id": "1431136630483329025",
		"vtype": "1", "resource_id": "16302940574638332063", "empty": ""} {
		f[k] = v
	}
	return f
}

func TestSign_SpecVectors(t *testing.T) {
	if got := Sign(vectorFields(), vectorSecret); got != "fda4f9769380b93559b4b7d180a606fc" {
		t.Errorf("document example: %s, want fda4f9769380b93559b4b7d180a606fc", got)
	}
	if got := Sign(vectorFieldsWithGift(), vectorSecret); got != "ecda1164bcf679197fd33ab1f05a0100" {
		t.Errorf("with top-level gift fields, every field: %s, want ecda1164bcf679197fd33ab1f05a0100", got)
	}
}

func TestSign_IgnoresSignAndEmptyValues(t *testing.T) {
	f := vectorFields()
	f["sign"] = "whatever"
	f["blank"] = ""
	if got := Sign(f, vectorSecret); got != "fda4f9769380b93559b4b7d180a606fc" {
		t.Errorf("got %s; sign and empty fields must not be signed", got)
	}
}

func TestVerify(t *testing.T) {
	withGift := vectorFieldsWithGift()
	cases := []struct {
		name    string
		fields  map[string]string
		sign    string
		secrets []string
		form    SignForm
		ok      bool
	}{
		{"example, eight fields only", vectorFields(), "fda4f9769380b93559b4b7d180a606fc", []string{vectorSecret}, SignAllFields, true},
		{"all fields (a)", withGift, "ecda1164bcf679197fd33ab1f05a0100", []string{vectorSecret}, SignAllFields, true},
		{"eight fields (b)", withGift, "fda4f9769380b93559b4b7d180a606fc", []string{vectorSecret}, SignEightField, true},
		{"uppercase hex", withGift, "ECDA1164BCF679197FD33AB1F05A0100", []string{vectorSecret}, SignAllFields, true},
		{"second secret", withGift, "ecda1164bcf679197fd33ab1f05a0100", []string{"old", vectorSecret}, SignAllFields, true},
		{"wrong secret", withGift, "ecda1164bcf679197fd33ab1f05a0100", []string{"other"}, "", false},
		{"no secrets", withGift, "ecda1164bcf679197fd33ab1f05a0100", nil, "", false},
		{"short sign", withGift, "ecda1164bcf679197fd33ab1f05a010", []string{vectorSecret}, "", false},
		{"not hex", withGift, strings.Repeat("z", 32), []string{vectorSecret}, "", false},
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
	// Every signed field is covered: changing any one breaks both forms.
	for k := range vectorFields() {
		f := vectorFieldsWithGift()
		f[k] += "x"
		if form, ok := Verify(f, "fda4f9769380b93559b4b7d180a606fc", []string{vectorSecret}); ok {
			t.Errorf("tampered %s accepted as form %s", k, form)
		}
	}
}
