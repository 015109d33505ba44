package main

import (
	"testing"
	"time"
)

// The run itself is bench/failover/run (minutes, not in CI); these check its
// arithmetic and its loopback guard in milliseconds.

func TestExposedIn(t *testing.T) {
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 1 1 0 100 0 0 10 0
   1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 2 1 0 100 0 0 10 0
   2: 00000000:1F92 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 3 1 0 100 0 0 10 0
   3: 0100007F:1F93 0100007F:D431 01 00000000:00000000 00:00000000 00000000   101        0 4 1 0 100 0 0 10 0
`
	// 8080 on 127.0.0.1: fine; 8081 on 0.0.0.0: exposed; 8082 on 0.0.0.0
	// is not ours; 8083 is a connection, not a listener.
	got := exposedIn(tcp, "tcp", []int{8080, 8081, 8083})
	if len(got) != 1 || got[0] != "port 8081 listens on 00000000 (tcp)" {
		t.Fatalf("exposedIn = %q", got)
	}
	tcp6 := `  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 0
   1: 0000000000000000FFFF00000100007F:1F91 00000000000000000000000000000000:0000 0A 0
   2: 00000000000000000000000000000000:1F92 00000000000000000000000000000000:0000 0A 0
`
	got = exposedIn(tcp6, "tcp6", []int{8080, 8081, 8082})
	if len(got) != 1 || got[0] != "port 8082 listens on 00000000000000000000000000000000 (tcp6)" {
		t.Fatalf("exposedIn tcp6 = %q", got)
	}
}

func TestLongestGap(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	oks := []time.Time{at(0.5), at(1), at(1.2), at(4.2), at(4.3)}
	gap, from := longestGap(oks, t0, at(5))
	if gap != 3*time.Second || !from.Equal(at(1.2)) {
		t.Fatalf("gap %s from %s", gap, from.Sub(t0))
	}
	// No 200 at all: the whole window.
	if gap, _ := longestGap(nil, t0, at(5)); gap != 5*time.Second {
		t.Fatalf("empty: gap %s", gap)
	}
	// The tail counts: the last 200 long before the end.
	if gap, _ := longestGap(oks, t0, at(10)); gap != 5700*time.Millisecond {
		t.Fatalf("tail: gap %s", gap)
	}
}

func TestHealthy(t *testing.T) {
	for _, c := range []struct {
		st   []nodeState
		want bool
	}{
		{[]nodeState{{name: "a", reported: "primary", goal: "primary"}, {name: "b", reported: "secondary", goal: "secondary"}}, true},
		{[]nodeState{{name: "a", reported: "wait_primary", goal: "wait_primary"}, {name: "b", reported: "catchingup", goal: "catchingup"}}, false},
		{[]nodeState{{name: "a", reported: "primary", goal: "draining"}, {name: "b", reported: "secondary", goal: "secondary"}}, false},
		{[]nodeState{{name: "a", reported: "primary", goal: "primary"}}, false},
	} {
		if got := healthy(c.st); got != c.want {
			t.Errorf("healthy(%s) = %t", describe(c.st), got)
		}
	}
}
