package httpapi

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// SourceFilter admits callbacks only from allowed networks. The source is
// the TCP peer, unless the peer is a trusted proxy: then it is the rightmost
// address of X-Forwarded-For that is not itself a trusted proxy, since only
// what trusted proxies appended can be believed.
type SourceFilter struct {
	allowed []netip.Prefix
	trusted []netip.Prefix
}

// ParsePrefixes reads a comma-separated list of CIDRs or single addresses.
func ParsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if !strings.Contains(item, "/") {
			addr, err := netip.ParseAddr(item)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR or an IP address", item)
			}
			out = append(out, netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR or an IP address", item)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// NewSourceFilter returns a filter admitting sources in allowed (all when
// allowed is empty), believing X-Forwarded-For only from trusted peers.
func NewSourceFilter(allowed, trusted []netip.Prefix) *SourceFilter {
	return &SourceFilter{allowed: allowed, trusted: trusted}
}

// Wrap refuses requests from other sources with 403 before next sees them.
// A nil filter, or one with no allowed network, admits everyone.
func (f *SourceFilter) Wrap(next http.Handler) http.Handler {
	if f == nil || len(f.allowed) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if src, ok := f.source(r); !ok || !contains(f.allowed, src) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"status":403,"msg":"source not allowed"}` + "\n")) //nolint:errcheck // the client is gone
			return
		}
		next.ServeHTTP(w, r)
	})
}

// source finds the request's client address.
func (f *SourceFilter) source(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	src := peer.Unmap()
	if !contains(f.trusted, src) {
		return src, true
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return netip.Addr{}, false // a garbled chain is not believed
		}
		src = hop.Unmap()
		if !contains(f.trusted, src) {
			return src, true
		}
	}
	return src, true // every hop is a trusted proxy: the leftmost is the client
}

func contains(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
