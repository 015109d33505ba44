package linkv

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// reasonByDecoder is reasonGiftFields as it was written first, on
// encoding/json's token decoder: the reference the hand-written walk must
// agree with on every input.
func reasonByDecoder(reason string) (map[string]string, error) {
	switch {
	case len(reason) > maxReasonBytes:
		return nil, &FieldError{Field: "reason", Reason: fmt.Sprintf("longer than %d bytes", maxReasonBytes)}
	case !utf8.ValidString(reason) || !json.Valid([]byte(reason)):
		return nil, &FieldError{Field: "reason", Reason: "must be valid JSON"}
	case !strings.HasPrefix(strings.TrimLeft(reason, " \t\r\n"), "{"):
		return nil, &FieldError{Field: "reason", Reason: "must be a JSON object"}
	}
	notObject := &FieldError{Field: "reason", Reason: "must be a JSON object"}
	dec := json.NewDecoder(strings.NewReader(reason))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, notObject
	}
	names := giftFieldNames()
	out := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, notObject
		}
		key, _ := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, notObject
		}
		if !slices.Contains(names[:], key) {
			continue
		}
		if _, dup := out[key]; dup {
			return nil, &FieldError{Field: "reason." + key, Reason: "given more than once"}
		}
		switch v := v.(type) {
		case string:
			out[key] = v
		case json.Number:
			out[key] = v.String()
		default:
			return nil, &FieldError{Field: "reason." + key, Reason: "must be a string or a number"}
		}
	}
	return out, nil
}

// checkReasonAgrees fails t unless reasonGiftFields and reasonByDecoder give
// the same fields, or the same error, for reason.
func checkReasonAgrees(t *testing.T, reason string) {
	t.Helper()
	got, err := reasonGiftFields(reason)
	want, wantErr := reasonByDecoder(reason)
	if fmt.Sprint(err) != fmt.Sprint(wantErr) {
		t.Fatalf("reason %q: error %v, want %v", reason, err, wantErr)
	}
	if err != nil {
		return
	}
	for _, name := range giftFieldNames() {
		v, ok := got.get(name)
		w, wok := want[name]
		if v != w || ok != wok {
			t.Fatalf("reason %q: %s = %q (found %t), want %q (found %t)", reason, name, v, ok, w, wok)
		}
	}
}

// reasonSeeds are reasons that test the walk's corners: whitespace, escapes
// in keys and values, nested values around and between gift fields, numbers
// of every shape, other types, repeats, and what is not an object.
var reasonSeeds = []string{
	docReasonText,
	`{}`, ` { } `, "\t{\n\"gift_id\"\r: \"1\" ,\n\"send_num\":2}\n",
	`{"gift_id":"a\"b","send_num":"\u0031","vtype":"\ud800","resource_id":"x\\"}`,
	`{"gift\u005fid":"7","gift_id":"8"}`, `{"gift_id":"7","gift_id":"7"}`,
	`{"x":{"gift_id":"no","y":[1,{"z":"}"}]},"gift_id":"yes","a":[],"b":{}}`,
	`{"send_num":-1.5e+3,"vtype":0,"gift_id":1E2,"receiver_id":-0}`,
	`{"gift_id":null}`, `{"gift_id":true}`, `{"gift_id":[1]}`, `{"gift_id":{"a":1}}`,
	`{"other":null,"send_num":false}`, `{"a":"]","gift_id":"q"}`, `{"a":"\\","gift_id":"\\\""}`,
	`[]`, `"x"`, `1`, `{`, `{"gift_id":}`, "{\"gift_id\":\"\x01\"}", "\xff",
	`{"gift_id":"日本","resource_id":"\u65e5"}`,
}

const docReasonText = `{"gift_id":"10620","send_num":1,"resource_id":"16302940574638332063","vtype":"1","receiver_id":"1431136630483329025"}`

// TestReasonGiftFields_AgreesWithDecoder: the walk over reason's members
// finds exactly what encoding/json's decoder finds, and refuses alike.
func TestReasonGiftFields_AgreesWithDecoder(t *testing.T) {
	for _, reason := range reasonSeeds {
		checkReasonAgrees(t, reason)
	}
}

// FuzzReasonGiftFields compares the walk with the decoder on any text.
func FuzzReasonGiftFields(f *testing.F) {
	for _, reason := range reasonSeeds {
		f.Add(reason)
	}
	f.Fuzz(checkReasonAgrees)
}
