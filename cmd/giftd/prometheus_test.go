package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// prometheusBinary finds Debian's prometheus server; without it the test
// fails under CI (.ci/run installs it) and is skipped elsewhere.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/prometheus"); err == nil {
		return "/usr/bin/prometheus"
	}
	if os.Getenv("CI") != "" {
		t.Fatal("prometheus server binary not found (apt-get install prometheus)")
	}
	t.Skip("prometheus server binary not found; apt-get install prometheus to run this test")
	return ""
}

// startPrometheus runs a real Prometheus on loopback scraping target (giftd's
// admin listener) every second and evaluating deploy/prometheus/rules.yml
// every second. It is killed when the test ends.
func startPrometheus(t *testing.T, target string) (base string) {
	t.Helper()
	bin := prometheusBinary(t)
	rules, err := filepath.Abs("../../deploy/prometheus/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: giftd
    scrape_interval: 1s
    scrape_timeout: 900ms
    static_configs:
      - targets: [%q]
`, rules, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() //nolint:errcheck // killed at the end
	t.Cleanup(func() {
		cmd.Process.Kill() //nolint:errcheck // it may have exited
		<-exited
		logFile.Close()
	})
	base = "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			out, _ := os.ReadFile(logFile.Name())
			t.Fatalf("prometheus exited at start:\n%s", out)
		default:
		}
		if resp, err := http.Get(base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("prometheus not ready in 20s")
	return ""
}

// promQuery asks Prometheus for an instant vector and returns its samples'
// values by their labels as text; ok is false when the answer is empty.
func promQuery(t *testing.T, base, query string) (values map[string]float64, ok bool) {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		t.Fatalf("query %s: %v", query, err)
	}
	if ans.Status != "success" {
		t.Fatalf("query %s: %s %s", query, ans.Status, ans.Error)
	}
	values = map[string]float64{}
	for _, r := range ans.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("query %s: value %q: %v", query, s, err)
		}
		values[fmt.Sprint(r.Metric)] = v
	}
	return values, len(values) > 0
}

// TestPrometheus_RealServerComputesDebitP99 proves the metrics work for a
// real scraper: a real Prometheus scrapes a real giftd while debits flow,
// and its HTTP API answers the p99 of the debit route with a number, and
// evaluates giftd's own rules without error.
func TestPrometheus_RealServerComputesDebitP99(t *testing.T) {
	public, admin := serveFor(t, nil)
	prom := startPrometheus(t, admin)
	topUpWallet(t, admin, "prom-viewer", 1_000_000)

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // debits keep flowing, so that rates are never zero
		defer wg.Done()
		exp := time.Now().Add(time.Hour).Unix()
		for i := 0; ctx.Err() == nil; i++ {
			form := url.Values{}
			for k, v := range debitFields(fmt.Sprintf("prom-%d", i), "prom-viewer", 1, exp, e2eSecret) {
				form.Set(k, v)
			}
			if resp, err := http.PostForm("http://"+public+"/linkv/debit", form); err == nil {
				resp.Body.Close()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	poll := func(what, query string) map[string]float64 {
		t.Helper()
		for ctx.Err() == nil {
			if v, ok := promQuery(t, prom, query); ok {
				return v
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Fatalf("%s: Prometheus never answered a sample for %s", what, query)
		return nil
	}
	p99 := poll("p99", `histogram_quantile(0.99, sum by (le) (rate(giftd_http_request_duration_seconds_bucket{route="/linkv/debit"}[1m])))`)
	for _, v := range p99 {
		if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 || v > 5 {
			t.Errorf("debit p99 = %v, want a finite positive number of seconds", v)
		}
	}
	// The recording rules of deploy/prometheus/rules.yml on real data.
	rec := poll("recorded p99", `route:giftd_http_request_duration_seconds:p99_rate5m{route="/linkv/debit"} > 0`)
	ratio := poll("ok ratio", `platform_outcome:giftd_debit_outcomes:ratio_rate5m{platform="linkv",outcome="ok"}`)
	ready := poll("ready", `giftd_ready{job="giftd"}`)
	for name, got := range map[string]map[string]float64{"recorded p99": rec, "ok ratio": ratio, "giftd_ready": ready} {
		for labels, v := range got {
			if math.IsNaN(v) || v <= 0 {
				t.Errorf("%s %s = %v", name, labels, v)
			}
		}
	}
	// Every rule evaluates without error against giftd's real series.
	resp, err := http.Get(prom + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rules); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rules.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health == "err" {
				t.Errorf("rule %s: %s", r.Name, r.LastError)
			}
		}
	}
	if n == 0 {
		t.Error("Prometheus loaded no rule from deploy/prometheus/rules.yml")
	}
	if firing, _ := promQuery(t, prom, `ALERTS{alertstate="firing",alertname=~"GiftdDown|GiftdDatabaseNotReady|GiftdMissing"}`); len(firing) > 0 {
		t.Errorf("alerts firing on a healthy giftd: %v", strings.Join(mapKeys(firing), ", "))
	}
}

func mapKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
