package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"giftd/internal/httpapi"
	"giftd/internal/ledger"
	"giftd/internal/polyv"
)

// settings are giftd's configuration, read once from the environment.
type settings struct {
	DatabaseURL     string
	HTTPAddr        string
	AdminAddr       string
	AdminToken      string
	LinkVApps       map[string][]string
	DebitPath       string
	MaxExpiry       time.Duration
	NonceMaxAge     time.Duration
	DBTimeout       time.Duration
	ShutdownTimeout time.Duration
	Migrate         bool
	LogFormat       string
	Batching        ledger.Batching
	AllowedCIDRs    []netip.Prefix
	TrustedProxies  []netip.Prefix
	TLSCert, TLSKey string
	ReadTimeout     time.Duration
	IdleTimeout     time.Duration
	// ShutdownDelay is how long giftd stays up, answering /readyz with
	// 503, between SIGTERM and closing its listeners.
	ShutdownDelay time.Duration
	// PruneInterval is the period of the background pruning of expired
	// debit records (0: off); PruneMargin how long past its expiry a
	// record is kept.
	PruneInterval time.Duration
	PruneMargin   time.Duration
	// Polyv's callbacks are served only when PolyvApps is set.
	PolyvApps       map[string][]string
	PolyvQueryPath  string
	PolyvUpdatePath string
	PolyvScale      polyv.Scale
	PolyvMaxSkew    time.Duration
	// PolyvURLParams are the names of the registered URLs' own query
	// parameters (GIFTD_POLYV_URL_PARAMS).
	PolyvURLParams []string
	// Economy is the receiving side of gifts: earnings on or off, the price
	// check, the default share (docs/economy.md).
	Economy ledger.Economy
	// MigrateDatabaseURL is where migrations run at start: PostgreSQL
	// directly or a session pool, never a transaction pool (default
	// DatabaseURL). MigrateLockWait bounds the wait for the migration lock.
	MigrateDatabaseURL string
	MigrateLockWait    time.Duration
}

// settingsError names the variable that is missing or wrong and the form it
// must take. It never quotes a secret's value.
type settingsError struct{ name, problem string }

func (e *settingsError) Error() string { return e.name + ": " + e.problem }

// readSettings reads every setting from getenv. With dev set, the admin
// token and apps may be missing (giftd dev makes them up) and the token may
// be short.
func readSettings(getenv func(string) string, dev bool) (settings, error) {
	s := settings{
		DatabaseURL: getenv("DATABASE_URL"),
		HTTPAddr:    or(getenv("GIFTD_HTTP_ADDR"), ":8080"),
		AdminAddr:   or(getenv("GIFTD_ADMIN_ADDR"), "127.0.0.1:8081"),
		AdminToken:  getenv("GIFTD_ADMIN_TOKEN"),
		DebitPath:   or(getenv("GIFTD_DEBIT_PATH"), "/linkv/debit"),
		LogFormat:   or(getenv("GIFTD_LOG_FORMAT"), "json"),

		PolyvQueryPath:  or(getenv("GIFTD_POLYV_QUERY_PATH"), "/polyv/points"),
		PolyvUpdatePath: or(getenv("GIFTD_POLYV_UPDATE_PATH"), "/polyv/points/donate"),
	}
	s.MigrateDatabaseURL = or(getenv("GIFTD_MIGRATE_DATABASE_URL"), s.DatabaseURL)
	if dev {
		s.HTTPAddr = or(getenv("GIFTD_HTTP_ADDR"), "127.0.0.1:8080")
		s.LogFormat = or(getenv("GIFTD_LOG_FORMAT"), "text")
	}
	var err error
	durations := []struct {
		name, def string
		min       time.Duration
		dst       *time.Duration
	}{
		{"GIFTD_MAX_EXPIRY", "2400h", time.Second, &s.MaxExpiry},
		{"GIFTD_NONCE_MAX_AGE", "0", 0, &s.NonceMaxAge},
		{"GIFTD_DB_TIMEOUT", "2s", time.Millisecond, &s.DBTimeout},
		{"GIFTD_SHUTDOWN_TIMEOUT", "15s", 0, &s.ShutdownTimeout},
		{"GIFTD_HTTP_READ_TIMEOUT", "5s", 100 * time.Millisecond, &s.ReadTimeout},
		{"GIFTD_HTTP_IDLE_TIMEOUT", "60s", time.Second, &s.IdleTimeout},
		{"GIFTD_SHUTDOWN_DELAY", "0", 0, &s.ShutdownDelay},
		{"GIFTD_PRUNE_INTERVAL", "10m", 0, &s.PruneInterval},
		{"GIFTD_PRUNE_MARGIN", "24h", 0, &s.PruneMargin},
		{"GIFTD_POLYV_MAX_SKEW", "5m", time.Second, &s.PolyvMaxSkew},
		{"GIFTD_MIGRATE_LOCK_WAIT", ledger.DefaultMigrateLockWait.String(), time.Second, &s.MigrateLockWait},
	}
	for _, d := range durations {
		v := or(getenv(d.name), d.def)
		*d.dst, err = time.ParseDuration(v)
		if err != nil || *d.dst < d.min {
			return settings{}, &settingsError{d.name, fmt.Sprintf("must be a duration of at least %s like 2s or 2400h, got %q", d.min, v)}
		}
	}
	for _, p := range []struct {
		name string
		dst  *[]netip.Prefix
	}{{"GIFTD_ALLOWED_CIDRS", &s.AllowedCIDRs}, {"GIFTD_TRUSTED_PROXIES", &s.TrustedProxies}} {
		if *p.dst, err = httpapi.ParsePrefixes(getenv(p.name)); err != nil {
			return settings{}, &settingsError{p.name, err.Error() + "; want comma-separated CIDRs like 203.0.113.0/24"}
		}
	}
	if s.PruneInterval != 0 && s.PruneInterval < 100*time.Millisecond {
		return settings{}, &settingsError{"GIFTD_PRUNE_INTERVAL", fmt.Sprintf("must be 0 (off) or a duration of at least 100ms like 10m, got %q", getenv("GIFTD_PRUNE_INTERVAL"))}
	}
	s.TLSCert, s.TLSKey = getenv("GIFTD_TLS_CERT"), getenv("GIFTD_TLS_KEY")
	if (s.TLSCert == "") != (s.TLSKey == "") {
		return settings{}, &settingsError{"GIFTD_TLS_CERT", "GIFTD_TLS_CERT and GIFTD_TLS_KEY must be given together"}
	}
	if s.Batching, err = readBatching(getenv, s.DBTimeout); err != nil {
		return settings{}, err
	}
	if s.Migrate, err = strconv.ParseBool(or(getenv("GIFTD_MIGRATE"), "true")); err != nil {
		return settings{}, &settingsError{"GIFTD_MIGRATE", "must be true or false"}
	}
	for _, u := range []struct{ name, url string }{
		{"DATABASE_URL", s.DatabaseURL}, {"GIFTD_MIGRATE_DATABASE_URL", s.MigrateDatabaseURL},
	} {
		if u.url == "" {
			continue
		}
		if err := ledger.CheckURL(u.url); err != nil {
			return settings{}, &settingsError{u.name, err.Error()}
		}
	}
	if s.LogFormat != "json" && s.LogFormat != "text" {
		return settings{}, &settingsError{"GIFTD_LOG_FORMAT", "must be json or text"}
	}
	if !strings.HasPrefix(s.DebitPath, "/") || s.DebitPath == "/healthz" || s.DebitPath == "/readyz" ||
		strings.ContainsAny(s.DebitPath, "{}*? ") {
		return settings{}, &settingsError{"GIFTD_DEBIT_PATH", "must be a plain path starting with / other than /healthz and /readyz"}
	}
	for name, addr := range map[string]string{"GIFTD_HTTP_ADDR": s.HTTPAddr, "GIFTD_ADMIN_ADDR": s.AdminAddr} {
		if !strings.Contains(addr, ":") {
			return settings{}, &settingsError{name, fmt.Sprintf("must be host:port or :port, got %q", addr)}
		}
	}
	if s.HTTPAddr == s.AdminAddr {
		return settings{}, &settingsError{"GIFTD_ADMIN_ADDR", "must differ from GIFTD_HTTP_ADDR"}
	}
	if apps := getenv("GIFTD_LINKV_APPS"); apps != "" || !dev {
		if s.LinkVApps, err = parseApps(apps); err != nil {
			return settings{}, &settingsError{"GIFTD_LINKV_APPS", err.Error()}
		}
	}
	if err := readPolyv(getenv, dev, &s); err != nil {
		return settings{}, err
	}
	if s.Economy, err = readEconomy(getenv); err != nil {
		return settings{}, err
	}
	if s.AdminToken != "" || !dev {
		if len(s.AdminToken) < 16 {
			return settings{}, &settingsError{"GIFTD_ADMIN_TOKEN", "required, at least 16 characters"}
		}
	}
	return s, nil
}

// readBatching reads the group-commit settings; a batch is bounded by the
// same deadline as one debit.
func readBatching(getenv func(string) string, timeout time.Duration) (ledger.Batching, error) {
	b := ledger.DefaultBatching()
	b.Timeout = timeout
	ints := []struct {
		name     string
		min, max int
		dst      *int
	}{
		{"GIFTD_BATCH_MAX", 1, 1000, &b.MaxBatch},
		{"GIFTD_BATCH_WORKERS", 1, 64, &b.Workers},
	}
	for _, v := range ints {
		if raw := getenv(v.name); raw != "" {
			n, err := strconv.Atoi(raw)
			if err != nil || n < v.min || n > v.max {
				return b, &settingsError{v.name, fmt.Sprintf("must be an integer from %d to %d, got %q", v.min, v.max, raw)}
			}
			*v.dst = n
		}
	}
	if raw := getenv("GIFTD_BATCH_WINDOW"); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil || d < 0 || d > time.Second {
			return b, &settingsError{"GIFTD_BATCH_WINDOW", fmt.Sprintf("must be a duration from 0 to 1s, got %q", raw)}
		}
		b.Window = d
	}
	return b, nil
}

// readPolyv reads Polyv's settings into s. Polyv is on when GIFTD_POLYV_APPS
// is set (giftd dev makes an app up otherwise); then its two paths must
// differ from each other and from the public listener's other routes.
func readPolyv(getenv func(string) string, dev bool, s *settings) error {
	if apps := getenv("GIFTD_POLYV_APPS"); apps != "" {
		var err error
		if s.PolyvApps, err = parseApps(apps); err != nil {
			return &settingsError{"GIFTD_POLYV_APPS", err.Error()}
		}
	}
	raw := or(getenv("GIFTD_POLYV_POINT_SCALE"), "1")
	n, err := strconv.ParseInt(raw, 10, 64)
	if err == nil {
		s.PolyvScale, err = polyv.NewScale(n)
	}
	if err != nil {
		return &settingsError{"GIFTD_POLYV_POINT_SCALE", fmt.Sprintf("must be a power of ten from 1 to 1000000 (coins per point), got %q", raw)}
	}
	if raw := getenv(polyv.URLParamsSetting); raw != "" {
		for _, n := range strings.Split(raw, ",") {
			s.PolyvURLParams = append(s.PolyvURLParams, strings.TrimSpace(n))
		}
		if err := polyv.CheckURLParams(s.PolyvURLParams); err != nil {
			return &settingsError{polyv.URLParamsSetting, err.Error() + "; want comma-separated parameter names like zone,shop"}
		}
	}
	taken := []string{"/healthz", "/readyz", s.DebitPath}
	for _, p := range []struct{ name, path string }{
		{"GIFTD_POLYV_QUERY_PATH", s.PolyvQueryPath},
		{"GIFTD_POLYV_UPDATE_PATH", s.PolyvUpdatePath},
	} {
		if !strings.HasPrefix(p.path, "/") || strings.ContainsAny(p.path, "{}*? ") {
			return &settingsError{p.name, fmt.Sprintf("must be a plain path starting with /, got %q", p.path)}
		}
		if (s.PolyvApps != nil || dev) && slices.Contains(taken, p.path) {
			return &settingsError{p.name, fmt.Sprintf("must differ from /healthz, /readyz, GIFTD_DEBIT_PATH and the other Polyv path, got %q", p.path)}
		}
		taken = append(taken, p.path)
	}
	return nil
}

// readEconomy reads the settings of the receiving side of gifts
// (docs/economy.md): GIFTD_EARNINGS (on or off), GIFTD_PRICE_CHECK (off or
// enforce) and GIFTD_DEFAULT_SHARE_BP (0-10000).
func readEconomy(getenv func(string) string) (ledger.Economy, error) {
	e := ledger.DefaultEconomy()
	switch v := or(getenv("GIFTD_EARNINGS"), "on"); v {
	case "on":
		e.Earnings = true
	case "off":
		e.Earnings = false
	default:
		return e, &settingsError{"GIFTD_EARNINGS", fmt.Sprintf("must be on or off, got %q", v)}
	}
	switch v := or(getenv("GIFTD_PRICE_CHECK"), "off"); v {
	case "off":
		e.PriceCheck = false
	case "enforce":
		e.PriceCheck = true
	default:
		return e, &settingsError{"GIFTD_PRICE_CHECK", fmt.Sprintf("must be off or enforce, got %q", v)}
	}
	raw := or(getenv("GIFTD_DEFAULT_SHARE_BP"), "0")
	n, err := strconv.Atoi(raw)
	if err != nil || n < 0 || n > ledger.MaxShareBP {
		return e, &settingsError{"GIFTD_DEFAULT_SHARE_BP", fmt.Sprintf("must be an integer from 0 to %d (basis points: 5000 is half), got %q", ledger.MaxShareBP, raw)}
	}
	e.DefaultShareBP = n
	return e, nil
}

// parseApps reads "app1:secret1,app1:secret2,app2:secret3".
func parseApps(v string) (map[string][]string, error) {
	if v == "" {
		return nil, fmt.Errorf("required, as app_id:secret[,app_id:secret...]")
	}
	apps := map[string][]string{}
	for i, pair := range strings.Split(v, ",") {
		app, secret, ok := strings.Cut(strings.TrimSpace(pair), ":")
		if !ok || app == "" || secret == "" {
			// Say which entry, never what it holds: it may be a secret.
			return nil, fmt.Errorf("entry %d is not app_id:secret", i+1)
		}
		apps[app] = append(apps[app], secret)
	}
	return apps, nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
