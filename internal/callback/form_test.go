package callback

import (
	"crypto/md5"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
)

func TestParseFields_QueryAndBodyTogetherRepeatsRefused(t *testing.T) {
	for _, tc := range []struct {
		name, query, body string
		want              map[string]string
		field             string
	}{
		{"both", "a=1", "b=2", map[string]string{"a": "1", "b": "2"}, ""},
		{"empty value kept", "", "a=", map[string]string{"a": ""}, ""},
		{"repeated in the body", "", "a=1&a=1", nil, "a"},
		{"repeated across", "a=1", "a=1", nil, "a"},
		{"first repeated name in byte order", "", "b=1&b=2&a=1&a=2", nil, "a"},
		{"bad query", "a=%zz", "", nil, "query"},
		{"bad body", "", "a=%zz", nil, "body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFields(tc.query, []byte(tc.body))
			var fe *FieldError
			switch {
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
				t.Fatalf("error %v, want one on %q", err, tc.field)
			case tc.field == "" && err != nil:
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestParseSign_ThirtyTwoHexDigitsEitherCase(t *testing.T) {
	sum := md5.Sum([]byte("x"))
	for sign, ok := range map[string]bool{
		"9dd4e461268c8034f5c8564e155c67a6":  true,
		"9DD4E461268C8034F5C8564E155C67A6":  true,
		"9dd4e461268c8034f5c8564e155c67a":   false,
		"9dd4e461268c8034f5c8564e155c67a6 ": false,
		"0e123456789012345678901234567890":  false, // hex, but another sum
		"9dd4e461268c8034f5c8564e155c67ag":  false,
	} {
		s, parsed := ParseSign(sign)
		if got := parsed && s.Matches(sum) == 1; got != ok {
			t.Errorf("%q matches md5(x): %v, want %v", sign, got, ok)
		}
	}
}

func TestDigitsPrintableText(t *testing.T) {
	if !Digits("007") || Digits("") || Digits("-1") || Digits("1.0") || Digits("１") {
		t.Error("Digits")
	}
	if !PrintableASCII(" ~") || PrintableASCII("\x7f") || PrintableASCII("é") {
		t.Error("PrintableASCII")
	}
	if !Text("", 3) || !Text("鲜", 3) || Text("鲜花", 3) || Text("a\nb", 9) || Text("\xff", 9) {
		t.Error("Text")
	}
}

// checkParseAgrees fails t unless ParseFields, whose usual path is
// parseUnique, answers query and body exactly as url.ParseQuery's path does.
func checkParseAgrees(t *testing.T, query, body string) {
	t.Helper()
	got, err := ParseFields(query, []byte(body))
	want, wantErr := parseFieldsByValues(query, []byte(body))
	if fmt.Sprint(err) != fmt.Sprint(wantErr) {
		t.Fatalf("query %q body %q: error %v, want %v", query, body, err, wantErr)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("query %q body %q: %v, want %v", query, body, got, want)
	}
}

// parseSeeds are forms that test parseUnique's corners.
var parseSeeds = [][2]string{
	{"", "a=1&b=2"}, {"a=1", "b=2"}, {"a=1", "a=1"}, {"", "a=1&a=2"}, {"", "b=1&b=2&a=1&a=2"},
	{"", "&&a=1&&"}, {"", "a"}, {"", "=x"}, {"", "a=b=c"}, {"", "a=%7B%22x%22%3A1%7D+b"},
	{"", "a=%zz"}, {"a=%zz", ""}, {"", "a=1;b=2"}, {"", "a%3Bb=1"}, {"", "%61=1&a=2"},
	{"", "a=1&" + strings.Repeat("b&", 300)}, {"", strings.Repeat("&", 20000)},
	{"", "a=%e9%9c"}, {"", "a=\xff"},
}

func TestParseFields_OnePassAgreesWithParseQuery(t *testing.T) {
	for _, s := range parseSeeds {
		checkParseAgrees(t, s[0], s[1])
	}
}

// FuzzParseFields compares the one-pass reading with url.ParseQuery's.
func FuzzParseFields(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(checkParseAgrees)
}
