package polyv

import (
	"strings"
	"testing"
)

// The vectors below were derived by hand from the rule, not by Sign: each
// plain string was written out and hashed with
// printf '%s' '<plain>' | md5sum, then uppercased.
const vectorSecret = "polyv-test-secret"

// vectorDonation is a donation at scale 1. Its plain string:
//
//	polyv-test-secretappIdpolyv-app-1channelId2114561count10goodName鲜花goodNum2goodPrice5sessionIdfz2qbq6gtdts1700000000000viewerIdviewer-1polyv-test-secret
const vectorDonationSign = "92473248D2976491D51A71BED250B86F"

func vectorDonation() map[string]string {
	return map[string]string{
		"appId": "polyv-app-1", "channelId": "2114561", "viewerId": "viewer-1", "sessionId": "fz2qbq6gtd",
		"ts": "1700000000000", "goodName": "鲜花", "goodPrice": "5", "goodNum": "2", "count": "10",
	}
}

// vectorWithURLParam is a donation at scale 100 whose configured URL carries
// shop=s1, with an empty viewerName, which is not signed. Its plain string
// ("sessionId" sorts before "shop"):
//
//	polyv-test-secretappIdpolyv-app-1channelId2114561count12.34goodName鲜花goodNum2goodPrice6.17sessionIdfz2qbq6gtdshops1ts1700000000000viewerIdviewer-1polyv-test-secret
const vectorWithURLParamSign = "DE14D6EB0AD664DB464F9108AF05FD1A"

func vectorWithURLParam() map[string]string {
	p := vectorDonation()
	p["count"], p["goodPrice"], p["shop"], p["viewerName"] = "12.34", "6.17", "s1", ""
	return p
}

// vectorQuery is a points query. Its plain string (sessionId is empty):
//
//	polyv-test-secretappIdpolyv-app-1channelId2114561ts1700000000000viewerIdviewer-1viewerName小明polyv-test-secret
const vectorQuerySign = "7D459CDEA8A487FEC0A655B1CD99CB23"

func vectorQuery() map[string]string {
	return map[string]string{
		"appId": "polyv-app-1", "channelId": "2114561", "viewerId": "viewer-1", "viewerName": "小明",
		"sessionId": "", "ts": "1700000000000",
	}
}

func TestSign_HandDerivedVectors(t *testing.T) {
	byteOrder := map[string]string{"a": "1", "Z": "x y&z", "B": "é"}
	cases := []struct {
		name   string
		params map[string]string
		secret string
		want   string
	}{
		{"donation", vectorDonation(), vectorSecret, vectorDonationSign},
		{"URL parameter signed, empty one not", vectorWithURLParam(), vectorSecret, vectorWithURLParamSign},
		{"points query", vectorQuery(), vectorSecret, vectorQuerySign},
		// Byte order puts "B" and "Z" before "a"; values are not re-encoded.
		// Plain string: sBéZx y&za1s
		{"byte order, raw values", byteOrder, "s", "EFF8F4EAFA3E2D480837508D50DEC572"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Sign(c.params, c.secret); got != c.want {
				t.Errorf("Sign = %s, want %s", got, c.want)
			}
		})
	}
}

func TestSign_IgnoresSignAndEmptyValues(t *testing.T) {
	p := vectorDonation()
	p["sign"], p["blank"] = "whatever", ""
	if got := Sign(p, vectorSecret); got != vectorDonationSign {
		t.Errorf("Sign = %s, want %s: sign and empty parameters must not be signed", got, vectorDonationSign)
	}
}

func TestVerify(t *testing.T) {
	tampered := vectorDonation()
	tampered["count"] = "11"
	noShop := vectorWithURLParam()
	delete(noShop, "shop")
	cases := []struct {
		name    string
		params  map[string]string
		sign    string
		secrets []string
		ok      bool
	}{
		{"uppercase", vectorDonation(), vectorDonationSign, []string{vectorSecret}, true},
		{"lowercase accepted", vectorDonation(), strings.ToLower(vectorDonationSign), []string{vectorSecret}, true},
		{"second secret", vectorDonation(), vectorDonationSign, []string{"old-secret", vectorSecret}, true},
		{"URL parameter signed", vectorWithURLParam(), vectorWithURLParamSign, []string{vectorSecret}, true},
		{"URL parameter dropped", noShop, vectorWithURLParamSign, []string{vectorSecret}, false},
		{"count tampered 10 to 11", tampered, vectorDonationSign, []string{vectorSecret}, false},
		{"wrong secret", vectorDonation(), vectorDonationSign, []string{"other"}, false},
		{"no secrets", vectorDonation(), vectorDonationSign, nil, false},
		{"31 hex digits", vectorDonation(), vectorDonationSign[:31], []string{vectorSecret}, false},
		{"33 characters", vectorDonation(), vectorDonationSign + "0", []string{vectorSecret}, false},
		{"not hex", vectorDonation(), strings.Repeat("Z", 32), []string{vectorSecret}, false},
		{"empty sign", vectorDonation(), "", []string{vectorSecret}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if ok := Verify(c.params, c.sign, c.secrets); ok != c.ok {
				t.Errorf("Verify = %t, want %t", ok, c.ok)
			}
		})
	}
}

func TestVerify_AnyChangedSignedParameterRefused(t *testing.T) {
	for k := range vectorWithURLParam() {
		t.Run(k, func(t *testing.T) {
			p := vectorWithURLParam()
			p[k] += "x"
			if Verify(p, vectorWithURLParamSign, []string{vectorSecret}) {
				t.Errorf("changed %s accepted", k)
			}
		})
	}
}
