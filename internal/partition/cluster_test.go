package partition_test

import (
	"strings"
	"testing"

	"giftd/internal/partition"
)

func TestConnString(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"postgres://giftd:pw@db1:5432/giftd?sslmode=disable",
			"host='db1' port='5432' dbname='giftd' user='giftd' password='pw' sslmode='disable'"},
		{"postgresql://db1/giftd", "host='db1' dbname='giftd'"},
		{"postgres://u:it%27s%5Cx@db1,db2:6432/p0?target_session_attrs=read-write&pool_max_conns=4&connect_timeout=3",
			`host='db1,db2' port='5432,6432' dbname='p0' user='u' password='it\'s\\x' connect_timeout='3' target_session_attrs='read-write'`},
		{"postgres://u@[::1]:5433/p1", "host='::1' port='5433' dbname='p1' user='u'"},
	} {
		got, err := partition.ConnString(tc.url)
		if err != nil {
			t.Errorf("ConnString(%q): %v", tc.url, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ConnString(%q)\n got %s\nwant %s", tc.url, got, tc.want)
		}
	}
	for _, bad := range []string{"host=db1 password=hunter2", "mysql://u:hunter2@db/x", "postgres://u:hunter2@db/x?bad%20key=1"} {
		_, err := partition.ConnString(bad)
		if err == nil {
			t.Errorf("ConnString(%q) took it", bad)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ConnString(%q)'s error quotes the password: %v", bad, err)
		}
	}
}

func TestLayoutCheck(t *testing.T) {
	const p0, p1, proxy = "postgres://u:hunter2@db1/p0", "postgres://u:hunter2@db2/p1", "postgres://u:hunter2@px/proxy"
	for _, tc := range []struct {
		name string
		l    partition.Layout
		want string // in the error; "" for none
	}{
		{"two partitions", partition.Layout{ProxyURL: proxy, PartitionURLs: []string{p0, p1}}, ""},
		{"one partition", partition.Layout{ProxyURL: proxy, PartitionURLs: []string{p0}}, ""},
		{"no proxy", partition.Layout{PartitionURLs: []string{p0, p1}}, "ProxyURL: missing"},
		{"three partitions", partition.Layout{ProxyURL: proxy, PartitionURLs: []string{p0, p1, "postgres://db3/p2"}}, "power of two"},
		{"no partitions", partition.Layout{ProxyURL: proxy}, "power of two"},
		{"a partition twice", partition.Layout{ProxyURL: proxy, PartitionURLs: []string{p0, "postgres://other:x@db1/p0"}}, "database of its own"},
		{"a partition on the proxy", partition.Layout{ProxyURL: proxy, PartitionURLs: []string{p0, "postgres://px/proxy"}}, "database of its own"},
		{"a bad partition URL", partition.Layout{ProxyURL: proxy, PartitionURLs: []string{p0, "host=db2 password=hunter2"}}, "PartitionURLs: partition 1"},
		{"proxy URLs of another length", partition.Layout{ProxyURL: proxy, PartitionURLs: []string{p0, p1}, ProxyPartitionURLs: []string{p0}}, "ProxyPartitionURLs: "},
		{"several hosts without read-write", partition.Layout{ProxyURL: proxy, PartitionURLs: []string{p0, "postgres://u:hunter2@a,b/p1"}}, "target_session_attrs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.l.Check()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Check: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Check: %v; want an error saying %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "hunter2"):
				t.Errorf("Check's error quotes a password: %v", err)
			}
		})
	}
}
