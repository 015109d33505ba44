package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

const repoRoot = "../.."

// exposedMetrics returns the metric names a running giftd exposes, after a
// debit and a top-up so that every histogram has buckets.
func exposedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	public, admin := serveFor(t, webhookEnv)
	// A webhook endpoint that fails once, so that every webhook metric shows.
	rcv := startReceiver(t, 1)
	rcv.register(t, admin)
	topUpWallet(t, admin, "deploy-viewer", 100)
	if code, body := postDebit(t, public, debitFields("deploy-1", "deploy-viewer", 1, time.Now().Add(time.Hour).Unix(), e2eSecret)); code != 200 {
		t.Fatalf("debit: %d %s", code, body)
	}
	rcv.waitFor(t, 2)
	text := scrape(t, admin)
	for !strings.Contains(text, "giftd_webhook_lag_seconds{") { // refreshed every 2 s
		<-time.After(100 * time.Millisecond)
		text = scrape(t, admin)
	}
	names := map[string]bool{}
	// Partitioned mode's own metrics (the credit consumer's), from a
	// partitioned giftd once it has moved a credit; outside CI without
	// PL/Proxy they are taken on trust, saying so.
	t.Run("partitioned", func(t *testing.T) {
		t.Cleanup(func() {
			if t.Skipped() {
				names["giftd_credit_lag_seconds"], names["giftd_credits_moved_total"] = true, true
				names["giftd_partition_reshard_fenced"], names["giftd_partition_reshard_unforgotten"] = true, true
			}
		})
		l := pgtest.Partitioned(t, 2)
		srv := startServe(t, map[string]string{"GIFTD_PROXY_URL": l.ProxyURL, "GIFTD_PARTITION_URLS": strings.Join(l.PartitionURLs, " "),
			"DATABASE_URL": "postgres://unused@127.0.0.1:1/unused", "GIFTD_DEFAULT_SHARE_BP": "5000"})
		sender := "deploy-sender-0"
		for i := 1; partition.For(sender, 2) == partition.For("host", 2); i++ {
			sender = fmt.Sprint("deploy-sender-", i)
		}
		topUpWallet(t, srv.admin, sender, 100)
		if code, body := postDebit(t, srv.public, debitFields("deploy-p-1", sender, 10, time.Now().Add(time.Hour).Unix(), e2eSecret)); code != 200 {
			t.Fatalf("debit: %d %s", code, body)
		}
		ptext := scrape(t, srv.admin)
		for !strings.Contains(ptext, "giftd_credits_moved_total{") { // the consumer reads every 100 ms
			<-time.After(50 * time.Millisecond)
			ptext = scrape(t, srv.admin)
		}
		text += "\n" + ptext
	})
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		names[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
	}
	return names
}

// giftdMetricRefs returns the giftd_… metric names a text (PromQL, YAML)
// refers to: not the names of recording rules, which hold colons.
func giftdMetricRefs(text string) []string {
	var names []string
	for _, tok := range regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`).FindAllString(text, -1) {
		if strings.HasPrefix(tok, "giftd_") && !strings.Contains(tok, ":") {
			names = append(names, tok)
		}
	}
	return names
}

// isExposed reports whether name is a series giftd exposes, or the family
// name of an exposed histogram.
func isExposed(exposed map[string]bool, name string) bool {
	return exposed[name] || exposed[name+"_bucket"]
}

// TestDeploy_JSONFilesParse parses every JSON file of the repository.
func TestDeploy_JSONFilesParse(t *testing.T) {
	n := 0
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == ".giftd-dev") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".json") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Errorf("found %d JSON files, want at least the dashboard and the OpenAPI document", n)
	}
}

// TestDeploy_DashboardAndRulesUseRealMetrics checks that every giftd metric
// the Grafana dashboard and the Prometheus rules query is one a running
// giftd exposes: renaming a metric breaks this test, not a dashboard in
// production.
func TestDeploy_DashboardAndRulesUseRealMetrics(t *testing.T) {
	exposed := exposedMetrics(t)

	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy/grafana/dashboards/giftd.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" {
		t.Error("dashboard has no uid")
	}
	exprs := 0
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			for _, name := range giftdMetricRefs(tg.Expr) {
				if !isExposed(exposed, name) {
					t.Errorf("dashboard panel %q queries %s, which giftd does not expose", p.Title, name)
				}
			}
		}
	}
	if exprs < 10 {
		t.Errorf("dashboard has %d queries; expected its latency, outcome, error and pool panels", exprs)
	}

	rules, err := os.ReadFile(filepath.Join(repoRoot, "deploy/prometheus/rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(rules), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, name := range giftdMetricRefs(line) {
			if !isExposed(exposed, name) {
				t.Errorf("rules.yml queries %s, which giftd does not expose: %s", name, strings.TrimSpace(line))
			}
		}
	}
}

// TestDeploy_DocsDocumentEveryMetricAndSetting: every giftd metric a
// running giftd exposes is in the Metrics table of docs/operations.md, and
// every GIFTD_ setting the commands read is in the settings table of
// docs/configuration.md.
func TestDeploy_DocsDocumentEveryMetricAndSetting(t *testing.T) {
	ops, err := os.ReadFile(filepath.Join(repoRoot, "docs/operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(ops)
	for name := range exposedMetrics(t) {
		if !strings.HasPrefix(name, "giftd_") {
			continue
		}
		family := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && strings.Contains(doc, "`"+base+"`") {
				family = base
			}
		}
		if !strings.Contains(doc, "`"+family+"`") && !strings.HasPrefix(family, "giftd_db_pool_") {
			t.Errorf("docs/operations.md's Metrics table lacks `%s`", family)
		}
	}
	conf, err := os.ReadFile(filepath.Join(repoRoot, "docs/configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	// Every command's settings: serve's in settings.go, the others' beside
	// their command (giftd reshard's drain timeout).
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var src []byte
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, b...)
	}
	var missing []string
	for _, name := range regexp.MustCompile(`"(GIFTD_[A-Z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		if !strings.Contains(string(conf), "`"+name[1]+"`") && !slices.Contains(missing, name[1]) {
			missing = append(missing, name[1])
		}
	}
	if len(missing) > 0 {
		t.Errorf("docs/configuration.md's settings table lacks %v", missing)
	}
}
