package polyv

import (
	"encoding/hex"
	"errors"
	"maps"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"giftd/internal/callback"
	"giftd/internal/ledger"
)

func mustScale(t testing.TB, coinsPerPoint int64) Scale {
	t.Helper()
	s, err := NewScale(coinsPerPoint)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewScale_PowersOfTenOnly(t *testing.T) {
	for _, n := range []int64{1, 10, 100, 1000, 10000, 100000, 1000000} {
		if s, err := NewScale(n); err != nil || s.CoinsPerPoint() != n {
			t.Errorf("NewScale(%d) = %v, %v", n, s.CoinsPerPoint(), err)
		}
	}
	for _, n := range []int64{0, -1, -10, 2, 50, 99, 101, 10000000} {
		if _, err := NewScale(n); err == nil {
			t.Errorf("NewScale(%d) accepted", n)
		}
	}
	if (Scale{}).CoinsPerPoint() != 1 {
		t.Error("the zero Scale is not 1 coin per point")
	}
}

func TestScale_CoinsAndPoints(t *testing.T) {
	cases := []struct {
		scale  int64
		points string
		coins  int64
		back   string // Points(coins)
	}{
		{1, "10", 10, "10"},
		{1, "0010", 10, "10"},
		{1, "10.000", 10, "10"},
		{1, "0", 0, "0"},
		{1, "1000000000000", 1_000_000_000_000, "1000000000000"},
		{100, "12.34", 1234, "12.34"},
		{100, "12.3", 1230, "12.30"},
		{100, "12.340000", 1234, "12.34"},
		{100, "12", 1200, "12.00"},
		{100, "0.05", 5, "0.05"},
		{100, "0", 0, "0.00"},
		{100, "10000000000", 1_000_000_000_000, "10000000000.00"},
		{1000000, "0.000001", 1, "0.000001"},
		{1000000, "1000000", 1_000_000_000_000, "1000000.000000"},
	}
	for _, c := range cases {
		s := mustScale(t, c.scale)
		coins, err := s.Coins("count", c.points)
		if err != nil || coins != c.coins {
			t.Errorf("scale %d: Coins(%q) = %d, %v; want %d", c.scale, c.points, coins, err, c.coins)
			continue
		}
		if got := s.Points(coins); got != c.back {
			t.Errorf("scale %d: Points(%d) = %q, want %q", c.scale, coins, got, c.back)
		}
	}
}

func TestScale_CoinsRefusesNamingTheField(t *testing.T) {
	cases := []struct {
		scale  int64
		points string
		reason string
	}{
		{1, "12.5", "not a whole number of coins"},
		{100, "12.345", "not a whole number of coins"},
		{100, "0.001", "not a whole number of coins"},
		{1, "1000000000001", "at most"},
		{100, "10000000000.01", "at most"},
		{1000000, "1000000.000001", "at most"},
		{1000000, "99999999999999999999", "at most"},
		{1, "", "plain decimal"},
		{1, "-1", "plain decimal"},
		{1, "+1", "plain decimal"},
		{1, "1e3", "plain decimal"},
		{1, "1E3", "plain decimal"},
		{100, ".5", "plain decimal"},
		{100, "5.", "plain decimal"},
		{100, "1.2.3", "plain decimal"},
		{1, " 1", "plain decimal"},
		{1, "0x10", "plain decimal"},
		{1, "1,000", "plain decimal"},
		{1, "NaN", "plain decimal"},
		{1, "١٢", "plain decimal"}, // Arabic-Indic digits
	}
	for _, c := range cases {
		_, err := mustScale(t, c.scale).Coins("count", c.points)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "count" || !strings.Contains(fe.Reason, c.reason) {
			t.Errorf("scale %d: Coins(%q) err = %v, want count: …%s…", c.scale, c.points, err, c.reason)
		}
	}
}

func TestReadParams(t *testing.T) {
	form := "application/x-www-form-urlencoded"
	cases := []struct {
		name, query, contentType, body string
		want                           map[string]string
		field                          string // of the error, when one is wanted
	}{
		{"query only", "a=1&b=x+y", "", "", map[string]string{"a": "1", "b": "x y"}, ""},
		{"body only", "", form, "a=1&b=2", map[string]string{"a": "1", "b": "2"}, ""},
		{"both", "shop=s1", form + "; charset=UTF-8", "a=1", map[string]string{"shop": "s1", "a": "1"}, ""},
		{"empty value kept", "a=", form, "b=2", map[string]string{"a": "", "b": "2"}, ""},
		{"empty body, any content type", "a=1", "application/json", "", map[string]string{"a": "1"}, ""},
		{"repeated in query", "a=1&a=1", "", "", nil, "a"},
		{"repeated in body", "", form, "b=1&b=2", nil, "b"},
		{"in query and body", "a=1", form, "a=1", nil, "a"},
		{"bad query", "a=%zz", "", "", nil, "query"},
		{"bad body", "", form, "a=%zz", nil, "body"},
		{"json body", "", "application/json", `{"a":1}`, nil, "content-type"},
		{"no content type", "", "", "a=1", nil, "content-type"},
		{"body over 16 KiB", "", form, "a=" + strings.Repeat("x", callback.MaxBodyBytes), nil, "body"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/polyv/points/donate?"+c.query, strings.NewReader(c.body))
			if c.contentType != "" {
				r.Header.Set("Content-Type", c.contentType)
			}
			got, err := ReadParams(r, true)
			var fe *FieldError
			switch {
			case c.field != "" && (!errors.As(err, &fe) || fe.Field != c.field):
				t.Errorf("err = %v, want one on %s", err, c.field)
			case c.field == "" && (err != nil || !maps.Equal(got, c.want)):
				t.Errorf("ReadParams = %v, %v; want %v", got, err, c.want)
			}
		})
	}
	t.Run("body ignored without withBody", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/polyv/points?a=1", strings.NewReader("a=2"))
		r.Header.Set("Content-Type", form)
		if got, err := ReadParams(r, false); err != nil || !maps.Equal(got, map[string]string{"a": "1"}) {
			t.Errorf("ReadParams = %v, %v", got, err)
		}
	})
}

func TestSignedDigest_HandDerivedVector(t *testing.T) {
	// Signed string: appIdabx y (sign and the empty e left out, names in
	// byte order, values raw); printf '%s' 'appIdabx y' | sha256sum
	want := "8208316e152febff2bec0ce02539c2dbeac15d9866d4ecab57fee3ab7bd3fa6f"
	p := map[string]string{"sign": "S", "e": "", "b": "x y", "appId": "a"}
	if got := SignedString(p); got != "appIdabx y" {
		t.Errorf("SignedString = %q, want %q", got, "appIdabx y")
	}
	d := SignedDigest(p)
	if got := hex.EncodeToString(d[:]); got != want {
		t.Errorf("SignedDigest = %s, want %s", got, want)
	}
}

func TestSignedDigest_SameWhatTheSignCovers(t *testing.T) {
	base := map[string]string{"a": "1", "b": "2", "sign": "ABC"}
	for name, p := range map[string]map[string]string{
		"sign in other case":    {"a": "1", "b": "2", "sign": "abc"},
		"no sign":               {"a": "1", "b": "2"},
		"empty parameter added": {"a": "1", "b": "2", "sign": "ABC", "c": ""},
		"split as a1=b2":        {"a1": "b2", "sign": "ABC"},
		"split as a1b=2":        {"a1b": "2", "sign": "ABC"},
	} {
		if SignedDigest(p) != SignedDigest(base) {
			t.Errorf("%s: digest differs from the same signed string's", name)
		}
	}
}

func TestSignedDigest_EverySignedByteCounts(t *testing.T) {
	base := map[string]string{"a": "1", "b": "2", "sign": "S"}
	seen := map[[32]byte]string{SignedDigest(base): "base"}
	for name, p := range map[string]map[string]string{
		"value changed":        {"a": "1", "b": "3", "sign": "S"},
		"name changed":         {"a": "1", "c": "2", "sign": "S"},
		"parameter dropped":    {"a": "1", "sign": "S"},
		"parameter added":      {"a": "1", "b": "2", "c": "3", "sign": "S"},
		"ampersand in a value": {"a": "1&b=2", "sign": "S"},
	} {
		d := SignedDigest(p)
		if prev, dup := seen[d]; dup {
			t.Errorf("%s digests like %s", name, prev)
		}
		seen[d] = name
	}
}

func TestOldParamsDigest_HandDerivedVector(t *testing.T) {
	// The key of builds before SignedDigest. Canonical form:
	// appId=a&b=x+y&e=&sign=S (empty parameters and sign included);
	// printf '%s' 'appId=a&b=x+y&e=&sign=S' | sha256sum
	want := "bcfb2f17a86339401c63c4e8157d063e461b5854f33e66966e6dc62b830c7800"
	d := oldParamsDigest(map[string]string{"sign": "S", "e": "", "b": "x y", "appId": "a"})
	if got := hex.EncodeToString(d[:]); got != want {
		t.Errorf("oldParamsDigest = %s, want %s", got, want)
	}
}

func TestValidateDonation_Accepts(t *testing.T) {
	d, err := ValidateDonation(vectorWithURLParam(), mustScale(t, 100))
	if err != nil {
		t.Fatal(err)
	}
	if d.Coins != 1234 || d.ViewerID != "viewer-1" || d.AppID != "polyv-app-1" || !d.TS.Equal(time.UnixMilli(1700000000000)) {
		t.Errorf("donation %+v", d)
	}
	want := map[string]string{"channelId": "2114561", "sessionId": "fz2qbq6gtd", "goodName": "鲜花",
		"goodPrice": "6.17", "goodNum": "2", "count": "12.34"}
	if !maps.Equal(d.Details(), want) {
		t.Errorf("Details = %v, want %v", d.Details(), want)
	}
	if len(d.RequestID()) != 64 || d.RequestID() != strings.ToLower(d.RequestID()) {
		t.Errorf("RequestID %q, want 64 lowercase hex digits", d.RequestID())
	}
}

// FuzzScaleCoins checks that whatever Coins accepts is a plain decimal
// within the limit, and that Points writes it back in a form Coins reads as
// the same number of coins.
func FuzzScaleCoins(f *testing.F) {
	for _, seed := range []string{"12.34", "0", "0.001", "1e3", "-1", "1000000000000", "5.", ".5", "00.100"} {
		f.Add(seed, uint8(2))
	}
	f.Fuzz(func(t *testing.T, v string, exp uint8) {
		n := int64(1)
		for range exp % 7 {
			n *= 10
		}
		s := mustScale(t, n)
		coins, err := s.Coins("count", v)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "count: ") {
				t.Fatalf("error %q does not name the field", err)
			}
			return
		}
		if coins < 0 || coins > ledger.MaxAmount || strings.ContainsAny(v, "+-eE ") {
			t.Fatalf("accepted %q as %d coins", v, coins)
		}
		back, err := s.Coins("count", s.Points(coins))
		if err != nil || back != coins {
			t.Fatalf("%q: %d coins written %q, read back %d, %v", v, coins, s.Points(coins), back, err)
		}
	})
}
