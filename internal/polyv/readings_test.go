package polyv

import (
	"strings"
	"testing"
	"time"
)

func TestUnique_CountsTheReadingsOfTheSignedString(t *testing.T) {
	apps := map[string][]string{"app": {"secret"}}
	h := &handler{cfg: Config{Apps: apps}}
	base := map[string]string{"appId": "app", "channelId": "1", "count": "7", "goodName": "鲜花", "goodNum": "1",
		"goodPrice": "7", "sessionId": "s1", "ts": "1700000000000", "viewerId": "alice-wu"}
	with := func(kv ...string) map[string]string {
		p := map[string]string{}
		for k, v := range base {
			p[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			p[kv[i]] = kv[i+1]
		}
		return p
	}
	cases := []struct {
		name      string
		urlParams []string
		params    map[string]string
		unique    bool
	}{
		{"plain donation", nil, base, true},
		{"no sessionId", nil, with("sessionId", ""), true},
		{"names in goodName", nil, with("goodName", "count7goodNum1goodPrice7 shirts"), true},
		{"ts and viewerId in viewerId", nil, with("viewerId", "sts1700000000000viewerIdvictim"), false},
		{"ts in viewerId, no sessionId before", nil, with("sessionId", "", "viewerId", "sts1700000000000viewerIdvictim"), true},
		{"configured zone", []string{"zone"}, with("zone", "cn"), true},
		{"zone in viewerId", []string{"zone"}, with("zone", "cn", "viewerId", "xzoney"), false},
		{"zone in viewerId, shop configured instead", []string{"shop"}, with("shop", "s1", "viewerId", "xzoney"), true},
		{"received reading not acceptable", nil, with("ts", "17"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := newCallbackParams(true, c.urlParams).unique(SignedString(c.params), h.fieldOK)
			if (err == nil) != c.unique {
				t.Errorf("unique = %v, want unique %t", err, c.unique)
			}
		})
	}
	// A points query: viewerName, optional, sorts after viewerId.
	q := map[string]string{"appId": "app", "channelId": "1", "ts": "1700000000000", "viewerId": "alice", "viewerName": "bob"}
	if err := newCallbackParams(false, nil).unique(SignedString(q), h.fieldOK); err != nil {
		t.Errorf("query with a nickname: %v", err)
	}
	// A long nickname full of names costs little: each (position, next
	// name) is counted once.
	q["viewerName"] = strings.Repeat("tsviewerIdviewerName", 800)
	start := time.Now()
	err := newCallbackParams(false, []string{"zone"}).unique(SignedString(q)+"zonecn", h.fieldOK)
	if err != nil {
		t.Errorf("long nickname: %v", err)
	}
	t.Logf("16 KB nickname: %s", time.Since(start))
}
