package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/linkv"
	"giftd/internal/listening"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
	"giftd/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func waitHealthy(t *testing.T, base string, errc <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-errc:
			t.Fatalf("run ended early: %v", err)
		default:
		}
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("giftd did not become healthy")
}

// serving is a giftd serve run by a test through run(), as main does.
type serving struct {
	public, admin, dbURL string
	logs                 *syncBuffer
	stopped              chan struct{}
	cancel               context.CancelFunc
	err                  error // run's answer, once stopped is closed
}

// startServe runs giftd serve with env over defaults (a fresh database,
// ports the system picks, e2eToken, app1:e2eSecret) and waits until it is
// healthy. It is stopped when the test ends, if the test did not stop it
// first.
func startServe(t *testing.T, env map[string]string) *serving {
	t.Helper()
	s := &serving{logs: &syncBuffer{}, stopped: make(chan struct{})}
	full := map[string]string{
		// Port 0: serve binds ports of its own and logs them. A port
		// found free and handed over (freeAddr) may be taken meanwhile by
		// another test binary's server, which then answered this test.
		"GIFTD_HTTP_ADDR":   "127.0.0.1:0",
		"GIFTD_ADMIN_ADDR":  "127.0.0.1:0",
		"GIFTD_ADMIN_TOKEN": e2eToken,
		"GIFTD_LINKV_APPS":  "app1:" + e2eSecret,
	}
	for k, v := range env {
		full[k] = v
	}
	if full["DATABASE_URL"] == "" {
		full["DATABASE_URL"] = pgtest.URL(t)
	}
	s.dbURL = full["DATABASE_URL"]
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	errc := make(chan error, 1)
	go func() {
		s.err = run(ctx, []string{"giftd", "serve"}, func(k string) string { return full[k] }, io.Discard, s.logs)
		close(s.stopped)
		errc <- s.err
	}()
	t.Cleanup(func() { s.stop(t) }) //nolint:errcheck // the test checks stop's answer when it cares
	s.public, s.admin = boundAddrs(t, s.logs, errc)
	waitHealthy(t, "http://"+s.admin, errc)
	return s
}

// boundAddrs waits for serve to log the addresses it bound, and returns
// them.
func boundAddrs(t *testing.T, logs *syncBuffer, errc <-chan error) (public, admin string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if public, admin, ok := listening.Addrs(logs.String()); ok {
			return public, admin
		}
		select {
		case err := <-errc:
			t.Fatalf("run ended early: %v\n%s", err, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("giftd serve logged no addresses within a minute:\n%s", logs.String())
	return "", ""
}

// stop cancels serve's context as SIGTERM would and returns run's answer.
func (s *serving) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	select {
	case <-s.stopped:
		return s.err
	case <-time.After(time.Minute):
		t.Fatal("giftd serve did not stop within a minute of its shutdown")
		return nil
	}
}

const (
	e2eToken  = "e2e-admin-token-0123456789"
	e2eSecret = "e2e-secret-value-42"
)

func TestRun_ServeEndToEnd(t *testing.T) {
	srv := startServe(t, map[string]string{"GIFTD_DEBIT_PATH": "/cb/debit"})
	public, admin, logs := srv.public, srv.admin, srv.logs

	for _, u := range []string{"http://" + public + "/readyz", "http://" + admin + "/readyz"} {
		resp, err := http.Get(u)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", u, resp, err)
		}
		resp.Body.Close()
	}

	req, _ := http.NewRequest(http.MethodPost, "http://"+admin+"/admin/v1/wallets/viewer-1/topups",
		strings.NewReader(`{"amount":50,"idempotency_key":"e2e"}`))
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("top-up: %v %v", resp, err)
	}
	resp.Body.Close()

	now := time.Now().Unix()
	f := map[string]string{
		"app_id": "app1", "request_id": "e2e-1", "nonce": "abcdefgh" + strconv.FormatInt(now, 10) + "ijklmnop",
		"user_id": "viewer-1", "gold": "20", "expriation": strconv.FormatInt(now+86400, 10), "type": "1",
		"reason": `{"gift_id":"7","send_num":2,"resource_id":"room","vtype":"1","receiver_id":"host"}`,
	}
	f["sign"] = linkv.Sign(f, e2eSecret)
	form := url.Values{}
	for k, v := range f {
		form.Set(k, v)
	}
	resp, err = http.PostForm("http://"+public+"/cb/debit", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"status":200,"msg":"","gold":30,"data":{"gold":30}}`+"\n" {
		t.Fatalf("debit: %d %s", resp.StatusCode, body)
	}

	resp, err = http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`route="/cb/debit"`, `giftd_debit_outcomes_total{outcome="ok",platform="linkv"} 1`} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	if err := srv.stop(t); err != nil {
		t.Errorf("run returned %v after shutdown", err)
	}
	out := logs.String()
	for _, secret := range []string{e2eSecret, e2eToken, f["sign"]} {
		if strings.Contains(out, secret) {
			t.Errorf("logs carry a secret or sign: %q", secret)
		}
	}
	if !strings.Contains(out, `"request_id":"e2e-1"`) || !strings.Contains(out, `"outcome":"ok"`) {
		t.Errorf("no callback log line in:\n%s", out)
	}
}

func TestRun_BadSettingsNamed(t *testing.T) {
	good := map[string]string{
		"DATABASE_URL":      "postgres://localhost/giftd",
		"GIFTD_ADMIN_TOKEN": "0123456789abcdef",
		"GIFTD_LINKV_APPS":  "a:s",
		"GIFTD_POLYV_APPS":  "p:s",
	}
	cases := []struct{ name, value string }{
		{"DATABASE_URL", ""},
		{"DATABASE_URL", "postgres://giftd:pw@db1,db2/giftd"},
		{"GIFTD_MIGRATE_DATABASE_URL", "postgres://giftd:pw@db1,db2/giftd?target_session_attrs=any"},
		{"GIFTD_MIGRATE_LOCK_WAIT", "0"},
		{"GIFTD_MIGRATE_LOCK_WAIT", "soon"},
		{"GIFTD_ADMIN_TOKEN", ""},
		{"GIFTD_ADMIN_TOKEN", "short"},
		{"GIFTD_LINKV_APPS", ""},
		{"GIFTD_LINKV_APPS", "no-secret"},
		{"GIFTD_LINKV_APPS", "a:s,:s2"},
		{"GIFTD_MAX_EXPIRY", "forever"},
		{"GIFTD_MAX_EXPIRY", "0"},
		{"GIFTD_NONCE_MAX_AGE", "-1s"},
		{"GIFTD_DB_TIMEOUT", "0"},
		{"GIFTD_SHUTDOWN_TIMEOUT", "x"},
		{"GIFTD_MIGRATE", "maybe"},
		{"GIFTD_LOG_FORMAT", "xml"},
		{"GIFTD_DEBIT_PATH", "linkv"},
		{"GIFTD_DEBIT_PATH", "/healthz"},
		{"GIFTD_HTTP_ADDR", "8080"},
		{"GIFTD_ADMIN_ADDR", ":8080"},
		{"GIFTD_BATCH_MAX", "0"},
		{"GIFTD_BATCH_MAX", "many"},
		{"GIFTD_BATCH_WORKERS", "0"},
		{"GIFTD_BATCH_WINDOW", "-1ms"},
		{"GIFTD_BATCH_WINDOW", "5s"},
		{"GIFTD_BATCH_OVERLAP", "-1ms"},
		{"GIFTD_BATCH_OVERLAP", "soon"},
		{"GIFTD_ALLOWED_CIDRS", "10.0.0.0/33"},
		{"GIFTD_TRUSTED_PROXIES", "proxy.local"},
		{"GIFTD_TLS_CERT", "/nonexistent/cert.pem"},
		{"GIFTD_HTTP_READ_TIMEOUT", "1ms"},
		{"GIFTD_HTTP_IDLE_TIMEOUT", "x"},
		{"GIFTD_POLYV_APPS", "no-secret"},
		{"GIFTD_POLYV_APPS", "p:s,:s2"},
		{"GIFTD_POLYV_POINT_SCALE", "0"},
		{"GIFTD_POLYV_POINT_SCALE", "3"},
		{"GIFTD_POLYV_POINT_SCALE", "10000000"},
		{"GIFTD_POLYV_POINT_SCALE", "1e2"},
		{"GIFTD_POLYV_MAX_SKEW", "0"},
		{"GIFTD_POLYV_MAX_SKEW", "soon"},
		{"GIFTD_POLYV_QUERY_PATH", "polyv"},
		{"GIFTD_POLYV_QUERY_PATH", "/healthz"},
		{"GIFTD_POLYV_QUERY_PATH", "/linkv/debit"},
		{"GIFTD_POLYV_UPDATE_PATH", "/readyz"},
		{"GIFTD_POLYV_UPDATE_PATH", "/polyv/points"},
		{"GIFTD_POLYV_UPDATE_PATH", "/polyv/{x}"},
		{"GIFTD_POLYV_URL_PARAMS", "zone,,shop"},
		{"GIFTD_POLYV_URL_PARAMS", "zone,zone"},
		{"GIFTD_POLYV_URL_PARAMS", "my zone"},
		{"GIFTD_POLYV_URL_PARAMS", "zone=cn"},
		{"GIFTD_POLYV_URL_PARAMS", "viewerId"},
		{"GIFTD_POLYV_URL_PARAMS", "shop,viewerName"},
		{"GIFTD_POLYV_URL_PARAMS", "sign"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s=%q", c.name, c.value), func(t *testing.T) {
			env := map[string]string{}
			for k, v := range good {
				env[k] = v
			}
			env[c.name] = c.value
			if c.name == "GIFTD_ADMIN_ADDR" {
				env["GIFTD_HTTP_ADDR"] = ":8080"
			}
			err := run(context.Background(), []string{"giftd", "serve"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
			if err == nil || !strings.HasPrefix(err.Error(), c.name+":") {
				t.Errorf("err = %v, want one naming %s", err, c.name)
			}
			if err != nil && c.value != "" && strings.HasSuffix(c.name, "_APPS") && strings.Contains(err.Error(), "s2") {
				t.Errorf("error quotes a secret: %v", err)
			}
		})
	}
}

func TestRun_MigrateUpDownVersion(t *testing.T) {
	env := map[string]string{"DATABASE_URL": pgtest.URL(t)}
	getenv := func(k string) string { return env[k] }
	// The embedded migrations' versions, whichever have landed: down goes
	// one step back from the latest.
	names, err := fs.Glob(migrations.FS, "*.up.sql")
	if err != nil || len(names) < 2 {
		t.Fatalf("migrations %v: %v", names, err)
	}
	slices.Sort(names)
	version := func(name string) string {
		v, _ := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		return strconv.Itoa(v)
	}
	latest, previous := version(names[len(names)-1]), version(names[len(names)-2])
	var out bytes.Buffer
	for _, step := range []struct{ action, want string }{
		{"version", "schema version " + latest + " (dirty: false)"},
		{"down", "schema version " + previous + " (dirty: false)"},
		{"up", "schema version " + latest + " (dirty: false)"},
	} {
		out.Reset()
		if err := run(context.Background(), []string{"giftd", "migrate", step.action}, getenv, &out, io.Discard); err != nil {
			t.Fatalf("migrate %s: %v", step.action, err)
		}
		if !strings.Contains(out.String(), step.want) {
			t.Errorf("migrate %s printed %q, want %q", step.action, out.String(), step.want)
		}
	}
}

func TestRun_DevPrintsWorkingCurl(t *testing.T) {
	env := map[string]string{"GIFTD_HTTP_ADDR": "127.0.0.1:0", "GIFTD_ADMIN_ADDR": "127.0.0.1:0", "CI": os.Getenv("CI")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, logs syncBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"giftd", "dev"}, func(k string) string { return env[k] }, &out, &logs)
	}()
	_, admin := boundAddrs(t, &logs, errc)
	waitHealthy(t, "http://"+admin, errc)

	m := regexp.MustCompile(`curl -sS -X POST (\S+) -H '[^']+' --data '([^']+)'`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no signed debit printed:\n%s", out.String())
	}
	for _, want := range []string{`{"status":200,"msg":"","gold":99995,"data":{"gold":99995}}`, // debited
		`{"status":200,"msg":"","gold":99995,"data":{"gold":99995}}`} { // replayed
		resp, err := http.Post(m[1], "application/x-www-form-urlencoded", strings.NewReader(m[2]))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.TrimSpace(string(body)) != want {
			t.Errorf("printed curl answered %s, want %s", body, want)
		}
	}
	// Polyv's donation, twice (the second a replay), and its points query.
	pv := regexp.MustCompile(`curl -sS -X POST (\S+/polyv/\S+) -H '[^']+' --data '([^']+)'`).FindStringSubmatch(out.String())
	pq := regexp.MustCompile(`curl -sS '(\S+/polyv/points\?[^']+)'`).FindStringSubmatch(out.String())
	if pv == nil || pq == nil {
		t.Fatalf("no signed Polyv donation or query printed:\n%s", out.String())
	}
	want := `{"code":200,"status":"success","message":"","data":99990}`
	for range 2 {
		resp, err := http.Post(pv[1], "application/x-www-form-urlencoded", strings.NewReader(pv[2]))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.TrimSpace(string(body)) != want {
			t.Errorf("printed Polyv curl answered %s, want %s", body, want)
		}
	}
	if resp, err := http.Get(pq[1]); err != nil {
		t.Error(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.TrimSpace(string(body)) != want {
			t.Errorf("printed Polyv query answered %s, want %s", body, want)
		}
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("dev returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dev did not stop")
	}
	// Its PostgreSQL is gone with it.
	db := regexp.MustCompile(`database\s+(\S+)`).FindStringSubmatch(out.String())
	if db == nil {
		t.Fatalf("no database printed:\n%s", out.String())
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if conn, err := pgx.Connect(ctx2, db[1]); err == nil {
		conn.Close(ctx2)
		t.Error("the throwaway PostgreSQL still answers after dev stopped")
	}
}

func TestRun_MigratePartitioned(t *testing.T) {
	ctx := context.Background()
	l := pgtest.UnmigratedPartitioned(t, 2)
	const secret = "partition-secret-9c1e"
	var urls []string
	for _, u := range l.PartitionURLs {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		// The test server trusts local connections: the password is never asked for.
		parsed.User = url.UserPassword(parsed.User.Username(), secret)
		urls = append(urls, parsed.String())
	}
	env := map[string]string{"GIFTD_PROXY_URL": l.ProxyURL, "GIFTD_PARTITION_URLS": strings.Join(urls, "\n  ")}
	getenv := func(k string) string { return env[k] }
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"giftd", "migrate", "up"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("migrate up: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"partition 0 (", "partition 1 (", ": main schema version ", ": partition schema version ",
		"proxy (", ": proxy schema version ", "proxy: 2 partitions registered in cluster giftd"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("migrate up printed\n%s\nwithout %q", out.String(), want)
		}
	}
	if strings.Contains(out.String()+errOut.String(), secret) {
		t.Errorf("migrate up printed a partition's password:\n%s%s", out.String(), errOut.String())
	}

	// What it migrated routes: a top-up through the proxy lands on the
	// partition giftd's placement names.
	proxy, err := pgx.Connect(ctx, l.ProxyURL)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close(ctx)
	for _, user := range []string{"u1", "u2"} {
		if _, err := proxy.Exec(ctx, `SELECT * FROM giftd_topup($1, 5, $2, '')`, user, "k-"+user); err != nil {
			t.Fatalf("top-up of %s through the proxy: %v", user, err)
		}
		part, err := pgx.Connect(ctx, l.PartitionURLs[partition.For(user, 2)])
		if err != nil {
			t.Fatal(err)
		}
		var gold int64
		err = part.QueryRow(ctx, `SELECT gold FROM wallets WHERE user_id = $1`, user).Scan(&gold)
		part.Close(ctx)
		if err != nil || gold != 5 {
			t.Errorf("%s on partition %d: gold %d, %v; want 5", user, partition.For(user, 2), gold, err)
		}
	}

	out.Reset()
	if err := run(ctx, []string{"giftd", "migrate", "version"}, getenv, &out, io.Discard); err != nil {
		t.Fatalf("migrate version: %v", err)
	}
	if n := strings.Count(out.String(), "(dirty: false)"); n != 5 {
		t.Errorf("migrate version printed %d versions, want 5:\n%s", n, out.String())
	}
	if err := run(ctx, []string{"giftd", "migrate", "down"}, getenv, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "not in partitioned mode") {
		t.Errorf("migrate down in partitioned mode: %v; want a refusal", err)
	}

	env["GIFTD_PARTITION_URLS"] = strings.Join(append(urls, urls[0]), " ")
	err = run(ctx, []string{"giftd", "migrate", "up"}, getenv, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "GIFTD_PARTITION_URLS") || strings.Contains(err.Error(), secret) {
		t.Errorf("three partitions: %v; want an error naming GIFTD_PARTITION_URLS and no password", err)
	}
}
