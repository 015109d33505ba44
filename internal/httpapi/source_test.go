package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"giftd/internal/httpapi"
)

func TestSourceFilter(t *testing.T) {
	allowed, err := httpapi.ParsePrefixes("203.0.113.0/24, 198.51.100.7, 2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	trusted, err := httpapi.ParsePrefixes("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	cases := []struct {
		name, remote, xff string
		trust             bool
		want              int
	}{
		{"allowed peer", "203.0.113.9:5000", "", false, 200},
		{"allowed single address", "198.51.100.7:5000", "", false, 200},
		{"allowed IPv6", "[2001:db8::1]:5000", "", false, 200},
		{"other peer", "192.0.2.1:5000", "", false, 403},
		{"forged header from an untrusted peer", "192.0.2.1:5000", "203.0.113.9", false, 403},
		{"header ignored without trusted proxies", "10.1.2.3:5000", "203.0.113.9", false, 403},
		{"trusted proxy forwards an allowed client", "10.1.2.3:5000", "203.0.113.9", true, 200},
		{"trusted proxy forwards another client", "10.1.2.3:5000", "192.0.2.1", true, 403},
		{"client-forged hop left of the real one", "10.1.2.3:5000", "203.0.113.9, 192.0.2.1", true, 403},
		{"chain of trusted proxies", "10.1.2.3:5000", "203.0.113.9, 10.9.9.9", true, 200},
		{"garbled header", "10.1.2.3:5000", "not-an-ip", true, 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := trusted
			if !c.trust {
				tr = nil
			}
			h := httpapi.NewSourceFilter(allowed, tr).Wrap(ok)
			req := httptest.NewRequest("POST", "/linkv/debit", nil)
			req.RemoteAddr = c.remote
			if c.xff != "" {
				req.Header.Set("X-Forwarded-For", c.xff)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.want {
				t.Errorf("%d, want %d", rec.Code, c.want)
			}
		})
	}
	if _, err := httpapi.ParsePrefixes("10.0.0.0/33"); err == nil {
		t.Error("a bad CIDR was accepted")
	}
	if _, err := httpapi.ParsePrefixes("localhost"); err == nil {
		t.Error("a host name was accepted")
	}
}
