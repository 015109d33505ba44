package polyv

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// URLParamsSetting is the setting that lists the registered URLs' own
// parameters (Config.URLParams); refusals name it, so that an operator
// whose registered URL carries a parameter knows where to declare it.
const URLParamsSetting = "GIFTD_POLYV_URL_PARAMS"

// documented returns the parameters Polyv's guide lists for a callback
// (docs/polyv.md, "Query a viewer's points" and "Donate"), sign included.
func documented(donate bool) []string {
	if donate {
		return []string{"appId", "channelId", "count", "goodName", "goodNum", "goodPrice", "sessionId", "sign", "ts", "viewerId"}
	}
	return []string{"appId", "channelId", "sessionId", "sign", "ts", "viewerId", "viewerName"}
}

// CheckURLParams returns an error saying what is wrong when names cannot be
// the registered URLs' own query parameters: a name that is empty, longer
// than 64 bytes or not made of [0-9A-Za-z._-], that is given twice, or
// that is a parameter Polyv documents for either callback (sign included).
func CheckURLParams(names []string) error {
	for i, n := range names {
		switch {
		case n == "" || len(n) > 64 || strings.ContainsFunc(n, func(r rune) bool {
			return !('0' <= r && r <= '9' || 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || r == '.' || r == '_' || r == '-')
		}):
			return fmt.Errorf("entry %d: want a name of 1-64 characters of [0-9A-Za-z._-], got %q", i+1, n)
		case slices.Contains(names[:i], n):
			return fmt.Errorf("%q is given twice", n)
		case slices.Contains(documented(true), n) || slices.Contains(documented(false), n):
			return fmt.Errorf("%q is a parameter Polyv itself sends; list only the registered URL's own parameters", n)
		}
	}
	return nil
}

// callbackParams is what one callback may carry: the parameters Polyv
// documents for it and the registered URL's own.
type callbackParams struct {
	what string // "donation callback" or "points query", for messages
	// names are every allowed name but sign, in byte order: the order of
	// the signed string.
	names    []string
	required map[string]bool
	// configured are the registered URL's own parameters.
	configured []string
}

func newCallbackParams(donate bool, urlParams []string) callbackParams {
	c := callbackParams{what: "points query", configured: urlParams,
		required: map[string]bool{"appId": true, "channelId": true, "viewerId": true, "ts": true}}
	if donate {
		c.what = "donation callback"
		for _, n := range []string{"goodName", "goodPrice", "goodNum", "count"} {
			c.required[n] = true
		}
	}
	for _, n := range urlParams {
		c.required[n] = true
	}
	for _, n := range append(documented(donate), urlParams...) {
		if n != "sign" {
			c.names = append(c.names, n)
		}
	}
	slices.Sort(c.names)
	return c
}

// checkNames refuses, with a *FieldError on the parameter, a name that is
// neither documented for the callback nor configured (whatever its value,
// empty included), and a configured parameter that is missing or empty:
// Polyv always sends the registered URL's parameters. Names are checked in
// byte order, so the refusal of a request always names the same one.
func (c callbackParams) checkNames(params map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(params)) {
		if k != "sign" && !slices.Contains(c.names, k) {
			return &FieldError{Field: k, Reason: fmt.Sprintf("not a parameter of Polyv's %s; if the URL registered with Polyv carries it, list it in %s", c.what, URLParamsSetting)}
		}
	}
	for _, k := range c.configured {
		if params[k] == "" {
			return &FieldError{Field: k, Reason: fmt.Sprintf("required: %s lists it as a parameter of the URL registered with Polyv", URLParamsSetting)}
		}
	}
	return nil
}

// unique refuses, with a *FieldError on sign, a signed string that can be
// read as more than one set of parameters this callback would accept.
//
// Why: Polyv's sign covers k1v1k2v2… with no separators, so whoever holds a
// signed call can move the boundaries between names and values without the
// secret: viewerId=alice-wu re-sent as viewerId=alice- and w=u verifies and
// names another wallet. giftd therefore accepts a call only when its
// parameters are the one reading of its signed string.
//
// checkNames already refuses most re-splits: every name must be listed, so
// a boundary can only move to where a listed name is written inside a
// value; and the configured parameters are required, so one cannot be
// absorbed whole into the value before it (viewerId=viewer-1zonecn for
// viewerId=viewer-1 and zone=cn). The field checks refuse most of what is
// left: channelId, ts, goodNum, goodPrice and count hold only digits and a
// point, so no name is written inside them and each of their values ends
// exactly where the next name begins; appId must be a configured app; the
// names of the other required fields cannot be dropped. What they do not
// refuse is a name written inside a free value that sorts before it,
// followed by values that pass the checks: viewerId=sts1700000000000viewerIdvictim
// with sessionId=s1 also reads as sessionId=s1ts1700000000000viewerIds,
// ts=1700000000000, viewerId=victim; with zone configured,
// viewerId=xzoney, zone=cn also reads as viewerId=x, zone=yzonecn. Rather
// than argue that such values never occur, unique counts the readings: the
// same names in the same order, each value non-empty and passing ok (the
// per-field checks, at least as lenient as the full validation), every
// required name present. Exactly one must exist (the received one; zero
// would mean ok disagrees with the validation, and is refused too). The
// count depends on the signed string alone, so every copy of a signed call
// gets the same verdict: either the one reading, or refused however split.
//
// Optional names are the only ones a reading may drop: sessionId (it sorts
// after a numeric field in both callbacks, which cannot absorb it) and the
// query's viewerName, which sorts after viewerId: viewerIdalice viewerNamebob
// also reads as viewerId=aliceviewerNamebob. ok refuses a viewerId that
// contains "viewerName" (checkField), so that every query with a nickname
// is not ambiguous.
//
// The search remembers each (position, next name) it has counted, so its
// work grows with the signed string times the names, not with the number
// of readings; it runs after the sign is verified, on a string Polyv wrote.
func (c callbackParams) unique(signed string, ok func(name, value string) bool) error {
	// startsName[p]: a listed name begins at p, so a value may end there.
	startsName := make([]bool, len(signed)+1)
	startsName[len(signed)] = true
	for p := range signed {
		for _, n := range c.names {
			if strings.HasPrefix(signed[p:], n) {
				startsName[p] = true
				break
			}
		}
	}
	type state struct{ pos, next int }
	memo := map[state]int{}
	// readings returns how many readings, up to 2, signed[pos:] has using
	// names from c.names[next:].
	var readings func(pos, next int) int
	readings = func(pos, next int) int {
		if pos == len(signed) {
			for _, n := range c.names[next:] {
				if c.required[n] {
					return 0
				}
			}
			return 1
		}
		if n, seen := memo[state{pos, next}]; seen {
			return n
		}
		total := 0
		for j := next; j < len(c.names) && total < 2; j++ {
			name := c.names[j]
			if strings.HasPrefix(signed[pos:], name) {
				start := pos + len(name)
				for end := start + 1; end <= len(signed) && total < 2; end++ {
					if startsName[end] && ok(name, signed[start:end]) {
						total += readings(end, j+1)
					}
				}
			}
			if c.required[name] {
				break // a reading cannot skip it
			}
		}
		total = min(total, 2)
		memo[state{pos, next}] = total
		return total
	}
	if readings(0, 0) != 1 {
		return &FieldError{Field: "sign", Reason: "covers a string (k1v1k2v2…) that more than one set of parameters writes; refused, so that no split the sign does not cover decides the wallet or the amount"}
	}
	return nil
}
