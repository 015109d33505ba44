package main

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"giftd/internal/httpapi"
	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/platforms"
	"giftd/internal/polyv"
	"giftd/internal/webhook"
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
	// LeaderboardCache is how long a room's leaderboard is answered from
	// memory after it was read (docs/economy.md#reports-and-leaderboards).
	LeaderboardCache time.Duration
	// MigrateDatabaseURL is where migrations run at start: PostgreSQL
	// directly or a session pool, never a transaction pool (default
	// DatabaseURL). MigrateLockWait bounds the wait for the migration lock.
	MigrateDatabaseURL string
	MigrateLockWait    time.Duration
	// Platforms are the platform API clients' settings (readPlatformAPIs).
	Platforms platforms.Settings
	// Webhooks is on when this replica delivers webhooks; Webhook how.
	// EventsRetention is how long giftd prune keeps delivered events.
	Webhooks        bool
	Webhook         webhook.Config
	EventsRetention time.Duration
	// Safeguards are the spending safeguards' settings (readPolicies,
	// docs/safeguards.md); SafeguardsProfile the profile they started from.
	Safeguards        ledger.Safeguards
	SafeguardsProfile string
	// Partitioned is the partitioned mode's layout (readPartitions,
	// docs/scale-out.md): a PL/Proxy database and its partitions. Its
	// ProxyURL is empty when giftd runs on DATABASE_URL alone.
	Partitioned partition.Layout
}

// settingsError names the variable that is missing or wrong and the form it
// must take. It never quotes a secret's value.
type settingsError struct{ name, problem string }

func (e *settingsError) Error() string { return e.name + ": " + e.problem }

// readSettings reads every setting from getenv, one concern at a time. The
// database URL may be missing (serve requires it, giftd dev starts a server
// of its own); everything else missing takes its default or is an error.
func readSettings(getenv func(string) string) (settings, error) {
	var s settings
	for _, read := range []func(func(string) string, *settings) error{
		readDatabase, readPartitions, readListeners, readLinkV, readPolyv, readEconomy, readPlatformAPIs, readPolicies, readEvents,
	} {
		if err := read(getenv, &s); err != nil {
			return settings{}, err
		}
	}
	return s, nil
}

// readDatabase reads where the ledger is and how giftd uses it: the URLs,
// migrations at start, the deadline of a debit, group commit and pruning.
func readDatabase(getenv func(string) string, s *settings) error {
	s.DatabaseURL = getenv("DATABASE_URL")
	s.MigrateDatabaseURL = or(getenv("GIFTD_MIGRATE_DATABASE_URL"), s.DatabaseURL)
	for _, u := range []struct{ name, url string }{
		{"DATABASE_URL", s.DatabaseURL}, {"GIFTD_MIGRATE_DATABASE_URL", s.MigrateDatabaseURL},
	} {
		if u.url == "" {
			continue
		}
		if err := ledger.CheckURL(u.url); err != nil {
			return &settingsError{u.name, err.Error()}
		}
	}
	var err error
	if s.Migrate, err = strconv.ParseBool(or(getenv("GIFTD_MIGRATE"), "true")); err != nil {
		return &settingsError{"GIFTD_MIGRATE", "must be true or false"}
	}
	err = durations(getenv, []durationSetting{
		{"GIFTD_MIGRATE_LOCK_WAIT", ledger.DefaultMigrateLockWait.String(), time.Second, &s.MigrateLockWait},
		{"GIFTD_DB_TIMEOUT", "2s", time.Millisecond, &s.DBTimeout},
		{"GIFTD_PRUNE_INTERVAL", "10m", 0, &s.PruneInterval},
		{"GIFTD_PRUNE_MARGIN", "24h", 0, &s.PruneMargin},
	})
	if err != nil {
		return err
	}
	if s.PruneInterval != 0 && s.PruneInterval < 100*time.Millisecond {
		return &settingsError{"GIFTD_PRUNE_INTERVAL", fmt.Sprintf("must be 0 (off) or a duration of at least 100ms like 10m, got %q", getenv("GIFTD_PRUNE_INTERVAL"))}
	}
	s.Batching, err = readBatching(getenv, s.DBTimeout)
	return err
}

// readPartitions reads the partitioned mode's layout (docs/scale-out.md):
// the PL/Proxy database and its 2^k partitions, in partition order,
// separated by spaces or newlines (a URL may hold commas: several hosts).
// Either both GIFTD_PROXY_URL and GIFTD_PARTITION_URLS or neither.
func readPartitions(getenv func(string) string, s *settings) error {
	l := partition.Layout{
		ProxyURL:           getenv("GIFTD_PROXY_URL"),
		PartitionURLs:      strings.Fields(getenv("GIFTD_PARTITION_URLS")),
		ProxyPartitionURLs: strings.Fields(getenv("GIFTD_PROXY_PARTITION_URLS")),
	}
	if l.ProxyURL == "" && len(l.PartitionURLs) == 0 && len(l.ProxyPartitionURLs) == 0 {
		return nil
	}
	if err := l.Check(); err != nil {
		var le *partition.LayoutError
		if !errors.As(err, &le) {
			return err
		}
		name := map[string]string{"ProxyURL": "GIFTD_PROXY_URL", "PartitionURLs": "GIFTD_PARTITION_URLS",
			"ProxyPartitionURLs": "GIFTD_PROXY_PARTITION_URLS"}[le.Field]
		return &settingsError{name, le.Problem + " (partitioned mode needs GIFTD_PROXY_URL, a postgres:// URL of the " +
			"PL/Proxy database, and GIFTD_PARTITION_URLS, 2^k postgres:// URLs separated by spaces)"}
	}
	s.Partitioned = l
	return nil
}

// requireDatabase is DATABASE_URL's error when s has none.
func requireDatabase(s settings) error {
	if s.DatabaseURL == "" {
		return &settingsError{"DATABASE_URL", "required, a PostgreSQL URL like postgres://user:pass@host:5432/giftd"}
	}
	return nil
}

// readListeners reads the two listeners' settings: addresses, the admin
// token, TLS, timeouts, who may call back, shutdown and the log format.
func readListeners(getenv func(string) string, s *settings) error {
	s.HTTPAddr = or(getenv("GIFTD_HTTP_ADDR"), ":8080")
	s.AdminAddr = or(getenv("GIFTD_ADMIN_ADDR"), "127.0.0.1:8081")
	s.AdminToken = getenv("GIFTD_ADMIN_TOKEN")
	s.LogFormat = or(getenv("GIFTD_LOG_FORMAT"), "json")
	err := durations(getenv, []durationSetting{
		{"GIFTD_SHUTDOWN_TIMEOUT", "15s", 0, &s.ShutdownTimeout},
		{"GIFTD_HTTP_READ_TIMEOUT", "5s", 100 * time.Millisecond, &s.ReadTimeout},
		{"GIFTD_HTTP_IDLE_TIMEOUT", "60s", time.Second, &s.IdleTimeout},
		{"GIFTD_SHUTDOWN_DELAY", "0", 0, &s.ShutdownDelay},
	})
	if err != nil {
		return err
	}
	for _, p := range []struct {
		name string
		dst  *[]netip.Prefix
	}{{"GIFTD_ALLOWED_CIDRS", &s.AllowedCIDRs}, {"GIFTD_TRUSTED_PROXIES", &s.TrustedProxies}} {
		if *p.dst, err = httpapi.ParsePrefixes(getenv(p.name)); err != nil {
			return &settingsError{p.name, err.Error() + "; want comma-separated CIDRs like 203.0.113.0/24"}
		}
	}
	s.TLSCert, s.TLSKey = getenv("GIFTD_TLS_CERT"), getenv("GIFTD_TLS_KEY")
	if (s.TLSCert == "") != (s.TLSKey == "") {
		return &settingsError{"GIFTD_TLS_CERT", "GIFTD_TLS_CERT and GIFTD_TLS_KEY must be given together"}
	}
	if s.LogFormat != "json" && s.LogFormat != "text" {
		return &settingsError{"GIFTD_LOG_FORMAT", "must be json or text"}
	}
	for name, addr := range map[string]string{"GIFTD_HTTP_ADDR": s.HTTPAddr, "GIFTD_ADMIN_ADDR": s.AdminAddr} {
		if !strings.Contains(addr, ":") {
			return &settingsError{name, fmt.Sprintf("must be host:port or :port, got %q", addr)}
		}
	}
	// Port 0 asks the system for a free port each: two never clash.
	if s.HTTPAddr == s.AdminAddr && !strings.HasSuffix(s.AdminAddr, ":0") {
		return &settingsError{"GIFTD_ADMIN_ADDR", "must differ from GIFTD_HTTP_ADDR"}
	}
	if len(s.AdminToken) < 16 {
		return &settingsError{"GIFTD_ADMIN_TOKEN", "required, at least 16 characters"}
	}
	return nil
}

// readLinkV reads LinkV's callback settings: its apps, path and time rules.
func readLinkV(getenv func(string) string, s *settings) error {
	s.DebitPath = or(getenv("GIFTD_DEBIT_PATH"), "/linkv/debit")
	err := durations(getenv, []durationSetting{
		{"GIFTD_MAX_EXPIRY", "2400h", time.Second, &s.MaxExpiry},
		{"GIFTD_NONCE_MAX_AGE", "0", 0, &s.NonceMaxAge},
	})
	if err != nil {
		return err
	}
	if !strings.HasPrefix(s.DebitPath, "/") || s.DebitPath == "/healthz" || s.DebitPath == "/readyz" ||
		strings.ContainsAny(s.DebitPath, "{}*? ") {
		return &settingsError{"GIFTD_DEBIT_PATH", "must be a plain path starting with / other than /healthz and /readyz"}
	}
	if s.LinkVApps, err = parseApps(getenv("GIFTD_LINKV_APPS")); err != nil {
		return &settingsError{"GIFTD_LINKV_APPS", err.Error()}
	}
	return nil
}

// durationSetting is one duration variable: its default and least value.
type durationSetting struct {
	name, def string
	min       time.Duration
	dst       *time.Duration
}

// durations reads each of ds into its dst.
func durations(getenv func(string) string, ds []durationSetting) error {
	for _, d := range ds {
		v := or(getenv(d.name), d.def)
		var err error
		*d.dst, err = time.ParseDuration(v)
		if err != nil || *d.dst < d.min {
			return &settingsError{d.name, fmt.Sprintf("must be a duration of at least %s like 2s or 2400h, got %q", d.min, v)}
		}
	}
	return nil
}

// devEnv is getenv with giftd dev's defaults under it: loopback listeners,
// text logs, and an app of each platform and an admin token made up when
// none is configured. Only what it made up is in shown, to be printed;
// configured credentials stay secret.
func devEnv(getenv func(string) string) (env func(string) string, shown devCredentials) {
	defaults := map[string]string{"GIFTD_HTTP_ADDR": "127.0.0.1:8080", "GIFTD_LOG_FORMAT": "text"}
	if getenv("GIFTD_LINKV_APPS") == "" {
		shown.apps = devAppID + ":" + randomHex(16)
		defaults["GIFTD_LINKV_APPS"] = shown.apps
	}
	if getenv("GIFTD_POLYV_APPS") == "" {
		shown.polyvApps = devPolyvAppID + ":" + randomHex(16)
		defaults["GIFTD_POLYV_APPS"] = shown.polyvApps
	}
	if getenv("GIFTD_ADMIN_TOKEN") == "" {
		shown.token = randomHex(16)
		defaults["GIFTD_ADMIN_TOKEN"] = shown.token
	}
	return func(name string) string { return or(getenv(name), defaults[name]) }, shown
}

// adminAddr reads GIFTD_ADMIN_ADDR alone, for giftd healthcheck.
func adminAddr(getenv func(string) string) string {
	return or(getenv("GIFTD_ADMIN_ADDR"), "127.0.0.1:8081")
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
	for _, v := range []struct {
		name string
		to   *time.Duration
	}{{"GIFTD_BATCH_WINDOW", &b.Window}, {"GIFTD_BATCH_OVERLAP", &b.Overlap}} {
		if raw := getenv(v.name); raw != "" {
			d, err := time.ParseDuration(raw)
			if err != nil || d < 0 || d > time.Second {
				return b, &settingsError{v.name, fmt.Sprintf("must be a duration from 0 to 1s, got %q", raw)}
			}
			*v.to = d
		}
	}
	return b, nil
}

// readPolyv reads Polyv's settings into s. Polyv is on when GIFTD_POLYV_APPS
// is set; then its two paths must differ from each other and from the
// public listener's other routes.
func readPolyv(getenv func(string) string, s *settings) error {
	s.PolyvQueryPath = or(getenv("GIFTD_POLYV_QUERY_PATH"), "/polyv/points")
	s.PolyvUpdatePath = or(getenv("GIFTD_POLYV_UPDATE_PATH"), "/polyv/points/donate")
	err := durations(getenv, []durationSetting{{"GIFTD_POLYV_MAX_SKEW", "5m", time.Second, &s.PolyvMaxSkew}})
	if err != nil {
		return err
	}
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
		if s.PolyvApps != nil && slices.Contains(taken, p.path) {
			return &settingsError{p.name, fmt.Sprintf("must differ from /healthz, /readyz, GIFTD_DEBIT_PATH and the other Polyv path, got %q", p.path)}
		}
		taken = append(taken, p.path)
	}
	return nil
}

// readEconomy reads the settings of the receiving side of gifts
// (docs/economy.md): GIFTD_EARNINGS (on or off), GIFTD_PRICE_CHECK (off or
// enforce), GIFTD_DEFAULT_SHARE_BP (0-10000) and GIFTD_LEADERBOARD_CACHE
// (0-1m).
func readEconomy(getenv func(string) string, s *settings) error {
	e := ledger.DefaultEconomy()
	switch v := or(getenv("GIFTD_EARNINGS"), "on"); v {
	case "on":
		e.Earnings = true
	case "off":
		e.Earnings = false
	default:
		return &settingsError{"GIFTD_EARNINGS", fmt.Sprintf("must be on or off, got %q", v)}
	}
	switch v := or(getenv("GIFTD_PRICE_CHECK"), "off"); v {
	case "off":
		e.PriceCheck = false
	case "enforce":
		e.PriceCheck = true
	default:
		return &settingsError{"GIFTD_PRICE_CHECK", fmt.Sprintf("must be off or enforce, got %q", v)}
	}
	raw := or(getenv("GIFTD_DEFAULT_SHARE_BP"), "0")
	n, err := strconv.Atoi(raw)
	if err != nil || n < 0 || n > ledger.MaxShareBP {
		return &settingsError{"GIFTD_DEFAULT_SHARE_BP", fmt.Sprintf("must be an integer from 0 to %d (basis points: 5000 is half), got %q", ledger.MaxShareBP, raw)}
	}
	e.DefaultShareBP = n
	s.Economy = e
	raw = or(getenv("GIFTD_LEADERBOARD_CACHE"), "2s")
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 || d > time.Minute {
		return &settingsError{"GIFTD_LEADERBOARD_CACHE", fmt.Sprintf("must be a duration from 0 (off) to 1m, got %q", raw)}
	}
	s.LeaderboardCache = d
	return nil
}

// readPlatformAPIs reads the settings of giftd's clients of LinkV's and
// Polyv's server APIs (docs/platform-apis.md): GIFTD_LINKV_API_URL,
// GIFTD_LINKV_API_APP, GIFTD_POLYV_API_URL, GIFTD_POLYV_API_APP,
// GIFTD_PLATFORM_API_TIMEOUT, GIFTD_PLATFORM_API_ATTEMPTS and
// GIFTD_PUBLIC_URL. platforms.ReadSettings reads them, the one place
// giftd-platform reads them too.
func readPlatformAPIs(getenv func(string) string, s *settings) error {
	p, err := platforms.ReadSettings(getenv)
	var se *platforms.SettingError
	if errors.As(err, &se) {
		return &settingsError{se.Name, se.Problem}
	}
	if err != nil {
		return err
	}
	// The registered callback URLs follow the paths serve really uses.
	if p.PolyvQueryURL != "" {
		pub := strings.TrimSuffix(getenv("GIFTD_PUBLIC_URL"), "/")
		p.PolyvQueryURL, p.PolyvUpdateURL = pub+s.PolyvQueryPath, pub+s.PolyvUpdatePath
	}
	s.Platforms = p
	return nil
}

// readPolicies reads the spending safeguards (docs/safeguards.md):
// GIFTD_SAFEGUARDS_PROFILE picks the defaults of the others: none (today's
// behaviour: nothing enforced) or cn (every rule on: GIFTD_SAFEGUARDS on,
// the zone Asia/Shanghai, amounts hidden in displays, and the values the
// merchant must fill in, each required and above 0: GIFTD_MAX_DEBIT,
// GIFTD_CAP_24H, GIFTD_CAP_MONTH, GIFTD_REMIND_DAY, GIFTD_COOLING_OFF and
// GIFTD_EARNINGS_HOLD). Any variable set overrides its profile's default.
func readPolicies(getenv func(string) string, s *settings) error {
	var g ledger.Safeguards
	profile := or(getenv("GIFTD_SAFEGUARDS_PROFILE"), "none")
	on, zone, hide := "off", "UTC", "false"
	var required []string
	switch profile {
	case "none":
	case "cn":
		on, zone, hide = "on", "Asia/Shanghai", "true"
		required = []string{"GIFTD_MAX_DEBIT", "GIFTD_CAP_24H", "GIFTD_CAP_MONTH", "GIFTD_REMIND_DAY", "GIFTD_COOLING_OFF", "GIFTD_EARNINGS_HOLD"}
	default:
		return &settingsError{"GIFTD_SAFEGUARDS_PROFILE", fmt.Sprintf("must be none or cn, got %q", profile)}
	}
	for _, name := range required {
		if getenv(name) == "" {
			return &settingsError{name, "required with GIFTD_SAFEGUARDS_PROFILE=cn: the merchant's value, above 0 (docs/safeguards.md#profiles)"}
		}
	}
	switch v := or(getenv("GIFTD_SAFEGUARDS"), on); v {
	case "on", "off":
		g.On = v == "on"
	default:
		return &settingsError{"GIFTD_SAFEGUARDS", fmt.Sprintf("must be on or off, got %q", v)}
	}
	for _, a := range []struct {
		name string
		dst  *int64
	}{{"GIFTD_MAX_DEBIT", &g.MaxDebit}, {"GIFTD_CAP_24H", &g.Cap24h}, {"GIFTD_CAP_MONTH", &g.CapMonth}, {"GIFTD_REMIND_DAY", &g.RemindDay}} {
		raw := or(getenv(a.name), "0")
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 0 || n > ledger.MaxAmount || (n == 0 && slices.Contains(required, a.name)) {
			return &settingsError{a.name, fmt.Sprintf("must be an integer of coins from 0 (no limit; above 0 with the cn profile) to %d, got %q", int64(ledger.MaxAmount), raw)}
		}
		*a.dst = n
	}
	err := durations(getenv, []durationSetting{
		{"GIFTD_COOLING_OFF", "0", 0, &g.CoolingOff},
		{"GIFTD_EARNINGS_HOLD", "0", 0, &g.EarningsHold},
	})
	if err != nil {
		return err
	}
	for _, d := range []struct {
		name     string
		v, limit time.Duration
	}{{"GIFTD_COOLING_OFF", g.CoolingOff, ledger.MaxCoolingOff}, {"GIFTD_EARNINGS_HOLD", g.EarningsHold, ledger.MaxEarningsHold}} {
		if d.v > d.limit || (d.v == 0 && slices.Contains(required, d.name)) {
			return &settingsError{d.name, fmt.Sprintf("must be a duration from 0 (none; above 0 with the cn profile) to %s, got %q", d.limit, getenv(d.name))}
		}
	}
	g.TimeZone = or(getenv("GIFTD_SAFEGUARDS_TIME_ZONE"), zone)
	if _, err := time.LoadLocation(g.TimeZone); err != nil || g.TimeZone == "Local" {
		return &settingsError{"GIFTD_SAFEGUARDS_TIME_ZONE", fmt.Sprintf("must be an IANA time zone name like Asia/Shanghai or UTC, got %q", g.TimeZone)}
	}
	switch v := or(getenv("GIFTD_DISPLAY_HIDE_AMOUNTS"), hide); v {
	case "true", "false":
		g.DisplayHideAmounts = v == "true"
	default:
		return &settingsError{"GIFTD_DISPLAY_HIDE_AMOUNTS", fmt.Sprintf("must be true or false, got %q", v)}
	}
	s.Safeguards, s.SafeguardsProfile = g, profile
	return nil
}

// readEvents reads the settings of the events (docs/events.md):
// GIFTD_WEBHOOKS (on or off: whether this replica delivers),
// GIFTD_WEBHOOK_WORKERS (requests in flight), GIFTD_WEBHOOK_TIMEOUT,
// GIFTD_WEBHOOK_RETRY_BASE, GIFTD_WEBHOOK_RETRY_MAX,
// GIFTD_WEBHOOK_DEAD_AFTER, GIFTD_WEBHOOK_ALLOW_PRIVATE and
// GIFTD_EVENTS_RETENTION.
func readEvents(getenv func(string) string, s *settings) error {
	c := webhook.DefaultConfig()
	switch v := or(getenv("GIFTD_WEBHOOKS"), "on"); v {
	case "on", "off":
		s.Webhooks = v == "on"
	default:
		return &settingsError{"GIFTD_WEBHOOKS", fmt.Sprintf("must be on or off, got %q", v)}
	}
	if raw := getenv("GIFTD_WEBHOOK_WORKERS"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > 64 {
			return &settingsError{"GIFTD_WEBHOOK_WORKERS", fmt.Sprintf("must be an integer from 1 to 64, got %q", raw)}
		}
		c.Workers = n
	}
	err := durations(getenv, []durationSetting{
		{"GIFTD_WEBHOOK_TIMEOUT", c.Timeout.String(), 100 * time.Millisecond, &c.Timeout},
		{"GIFTD_WEBHOOK_RETRY_BASE", c.RetryBase.String(), 10 * time.Millisecond, &c.RetryBase},
		{"GIFTD_WEBHOOK_RETRY_MAX", c.RetryMax.String(), 10 * time.Millisecond, &c.RetryMax},
		{"GIFTD_WEBHOOK_DEAD_AFTER", c.DeadAfter.String(), time.Second, &c.DeadAfter},
		{"GIFTD_EVENTS_RETENTION", "168h", time.Second, &s.EventsRetention},
	})
	if err != nil {
		return err
	}
	if c.RetryMax < c.RetryBase {
		return &settingsError{"GIFTD_WEBHOOK_RETRY_MAX", "must be at least GIFTD_WEBHOOK_RETRY_BASE"}
	}
	if c.AllowPrivate, err = strconv.ParseBool(or(getenv("GIFTD_WEBHOOK_ALLOW_PRIVATE"), "false")); err != nil {
		return &settingsError{"GIFTD_WEBHOOK_ALLOW_PRIVATE", "must be true or false"}
	}
	s.Webhook = c
	return nil
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
