package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"giftd/internal/pgtest"
)

// TestLoad_EveryCountedDebitIsInTheLedger runs cmd/giftd-load against a
// real giftd, as LinkV and as Polyv: the load must see only 200s, and
// every 200 it counted must be one debit in the ledger, no more.
func TestLoad_EveryCountedDebitIsInTheLedger(t *testing.T) {
	const polyvApp = "pv-load:pv-load-secret-0123"
	for _, tc := range []struct {
		platform, path string
	}{
		{"linkv", "/linkv/debit"},
		// zone is the registered URL's own parameter: the load signs it.
		{"polyv", "/polyv/points/donate?zone=cn"},
	} {
		t.Run(tc.platform, func(t *testing.T) {
			ctx := waitCtx(t, 2*time.Minute)
			dbURL := pgtest.URL(t)
			store := seededStore(t, ctx, dbURL, 0, 0)
			srv := newServer(t, dbURL, "GIFTD_POLYV_APPS="+polyvApp, "GIFTD_POLYV_POINT_SCALE=100",
				"GIFTD_POLYV_URL_PARAMS=zone")
			cmd := exec.CommandContext(ctx, buildCmd(t, "giftd-load"), "-platform", tc.platform,
				"-url", "http://"+srv.public()+tc.path, "-admin-url", "http://"+srv.admin(),
				"-c", "4", "-wallets", "3", "-d", "500ms")
			cmd.Env = append(os.Environ(), "GIFTD_ADMIN_TOKEN="+token, "GIFTD_LINKV_APPS="+appID+":"+secret,
				"GIFTD_POLYV_APPS="+polyvApp, "GIFTD_POLYV_POINT_SCALE=100")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("giftd-load: %v\n%s", err, out)
			}
			m := regexp.MustCompile(`debits ok: (\d+) `).FindSubmatch(out)
			if m == nil || string(m[1]) == "0" || !strings.Contains(string(out), "non-200:   none") {
				t.Fatalf("load output:\n%s", out)
			}
			var debits string
			err = store.Pool().QueryRow(ctx, `SELECT count(*)::text FROM ledger_entries WHERE kind = 'debit' AND platform = $1`,
				tc.platform).Scan(&debits)
			if err != nil {
				t.Fatal(err)
			}
			if debits != string(m[1]) {
				t.Errorf("the load counted %s debits, the ledger holds %s", m[1], debits)
			}
		})
	}
}
