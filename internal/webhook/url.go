package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// MaxURLLen bounds an endpoint's URL.
const MaxURLLen = 2048

// CheckURL returns nil when raw may be a webhook endpoint: an absolute
// http or https URL with a host, no user or password in it (a secret that
// would show in listings and logs) and no fragment. Unless allowPrivate,
// a host that is a loopback, private, link-local or unspecified address
// (or "localhost") is refused; the dialer refuses such addresses too,
// whatever a name resolves to.
func CheckURL(raw string, allowPrivate bool) error {
	if raw == "" || len(raw) > MaxURLLen {
		return fmt.Errorf("must be an http or https URL of at most %d characters", MaxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must start with http:// or https://")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("must name a host")
	case u.User != nil:
		return errors.New("must not carry a user or password; authenticate by the signature")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return errors.New("must not have a fragment")
	}
	if allowPrivate {
		return nil
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return errors.New("must not be a loopback host (GIFTD_WEBHOOK_ALLOW_PRIVATE=true allows it)")
	}
	if ip, err := netip.ParseAddr(host); err == nil && private(ip) {
		return errors.New("must not be a loopback, private or link-local address (GIFTD_WEBHOOK_ALLOW_PRIVATE=true allows it)")
	}
	return nil
}

func private(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast()
}

// dialer returns a dialer that, unless allowPrivate, refuses to connect to
// the addresses CheckURL refuses, after name resolution.
func dialer(allowPrivate bool) *net.Dialer {
	d := &net.Dialer{}
	if !allowPrivate {
		d.ControlContext = func(_ context.Context, _, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || private(ap.Addr()) {
				return fmt.Errorf("webhook: refusing to connect to %s (private address)", address)
			}
			return nil
		}
	}
	return d
}
