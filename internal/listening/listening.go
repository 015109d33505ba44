// Package listening reads, from giftd serve's log, the addresses it bound:
// its "giftd listening" line names them as public and admin, in the text
// and in the JSON form. Tests start giftd with both listeners on port 0
// (the system picks free ports as it binds them) and learn its addresses
// so, instead of handing it ports found free a moment before, which
// another process may take first.
package listening

import (
	"regexp"
	"strings"
)

var line = regexp.MustCompile(`giftd listening"?\W.*?\bpublic"?[=:]"?([^\s",]+)"?[ ,]"?admin"?[=:]"?([^\s",]+)`)

// Addrs returns the public and admin addresses of the first "giftd
// listening" line in log, and whether log has one. Only whole lines count:
// a log read while giftd writes it may end in part of one.
func Addrs(log string) (public, admin string, ok bool) {
	m := line.FindStringSubmatch(log[:strings.LastIndexByte(log, '\n')+1])
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}
