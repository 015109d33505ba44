package listening

import "testing"

func TestAddrs(t *testing.T) {
	for _, tc := range []struct {
		name, log     string
		public, admin string
	}{
		{"json", `{"time":"2026-12-01T07:40:00Z","level":"INFO","msg":"giftd listening","public":"127.0.0.1:40001","admin":"127.0.0.1:40002","debit_path":"/linkv/debit"}` + "\n",
			"127.0.0.1:40001", "127.0.0.1:40002"},
		{"after other lines, the first", "{\"msg\":\"migrated\",\"public\":\"x\"}\n" +
			`{"msg":"giftd listening","public":"127.0.0.1:1","admin":"127.0.0.1:2"}` + "\n" +
			`{"msg":"giftd listening","public":"127.0.0.1:3","admin":"127.0.0.1:4"}` + "\n",
			"127.0.0.1:1", "127.0.0.1:2"},
		{"none", `{"msg":"migrated"}` + "\n" + `{"msg":"shutting down","public":"127.0.0.1:1","admin":"127.0.0.1:2"}` + "\n", "", ""},
		{"text", "time=2026-12-01T07:40:00Z level=INFO msg=\"giftd listening\" public=127.0.0.1:40001 admin=[::1]:40002 debit_path=/linkv/debit\n",
			"127.0.0.1:40001", "[::1]:40002"},
		{"a line not written whole yet", `{"msg":"giftd listening","public":"127.0.0.1:40001","admin":"127.0.0.1:4`, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			public, admin, ok := Addrs(tc.log)
			if public != tc.public || admin != tc.admin || ok != (tc.public != "") {
				t.Errorf("Addrs = %q, %q, %t; want %q, %q, %t", public, admin, ok, tc.public, tc.admin, tc.public != "")
			}
		})
	}
}
