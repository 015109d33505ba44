package platforms

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"giftd/internal/linkvapi"
	"giftd/internal/polyvapi"
)

// Settings are the platform API clients' settings, read from the
// environment by ReadSettings: the one place both giftd serve (through
// cmd/giftd's readPlatformAPIs) and giftd-platform read them.
type Settings struct {
	// LinkV is the LinkV client's config; nil when GIFTD_LINKV_API_URL is
	// unset (account linking and the wallet move are off).
	LinkV *linkvapi.Config
	// Polyv is the Polyv client's config; nil when GIFTD_POLYV_API_APP is
	// unset (the donation settings job is off).
	Polyv *polyvapi.Config
	// PolyvQueryURL and PolyvUpdateURL are giftd's public URLs of Polyv's
	// callbacks, GIFTD_PUBLIC_URL plus the callback paths; empty when
	// GIFTD_PUBLIC_URL is unset.
	PolyvQueryURL, PolyvUpdateURL string
}

// SettingNames are the variables ReadSettings reads (documented in
// docs/configuration.md; a test holds it).
func SettingNames() []string {
	return []string{"GIFTD_LINKV_API_URL", "GIFTD_LINKV_API_APP", "GIFTD_POLYV_API_URL", "GIFTD_POLYV_API_APP",
		"GIFTD_PLATFORM_API_TIMEOUT", "GIFTD_PLATFORM_API_ATTEMPTS", "GIFTD_PUBLIC_URL",
		"GIFTD_POLYV_QUERY_PATH", "GIFTD_POLYV_UPDATE_PATH"}
}

// SettingError names the variable that is wrong and the form it must take.
// It never quotes a secret.
type SettingError struct{ Name, Problem string }

func (e *SettingError) Error() string { return e.Name + ": " + e.Problem }

// ReadSettings reads the platform API settings from getenv; errors are
// *SettingError.
func ReadSettings(getenv func(string) string) (Settings, error) {
	var s Settings
	timeout := linkvapi.DefaultTimeout
	if raw := getenv("GIFTD_PLATFORM_API_TIMEOUT"); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil || d < 10*time.Millisecond || d > 5*time.Minute {
			return Settings{}, &SettingError{"GIFTD_PLATFORM_API_TIMEOUT", fmt.Sprintf("must be a duration from 10ms to 5m like 5s, got %q", raw)}
		}
		timeout = d
	}
	attempts := linkvapi.DefaultAttempts
	if raw := getenv("GIFTD_PLATFORM_API_ATTEMPTS"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > 10 {
			return Settings{}, &SettingError{"GIFTD_PLATFORM_API_ATTEMPTS", fmt.Sprintf("must be an integer from 1 to 10, got %q", raw)}
		}
		attempts = n
	}
	if base := getenv("GIFTD_LINKV_API_URL"); base != "" {
		if err := checkBase(base); err != nil {
			return Settings{}, &SettingError{"GIFTD_LINKV_API_URL", err.Error()}
		}
		app, secret, err := appSecret(getenv("GIFTD_LINKV_API_APP"))
		if err != nil {
			return Settings{}, &SettingError{"GIFTD_LINKV_API_APP", err.Error() + " (required with GIFTD_LINKV_API_URL)"}
		}
		s.LinkV = &linkvapi.Config{BaseURL: base, AppID: app, Secret: secret, Timeout: timeout, Attempts: attempts}
	}
	if raw := getenv("GIFTD_POLYV_API_APP"); raw != "" {
		app, secret, err := appSecret(raw)
		if err != nil {
			return Settings{}, &SettingError{"GIFTD_POLYV_API_APP", err.Error()}
		}
		base := getenv("GIFTD_POLYV_API_URL")
		if base == "" {
			base = polyvapi.DefaultBaseURL
		}
		if err := checkBase(base); err != nil {
			return Settings{}, &SettingError{"GIFTD_POLYV_API_URL", err.Error()}
		}
		s.Polyv = &polyvapi.Config{BaseURL: base, AppID: app, Secret: secret, Timeout: timeout, Attempts: attempts}
	}
	if pub := getenv("GIFTD_PUBLIC_URL"); pub != "" {
		if err := checkBase(pub); err != nil {
			return Settings{}, &SettingError{"GIFTD_PUBLIC_URL", err.Error()}
		}
		pub = strings.TrimSuffix(pub, "/")
		// The callback paths, with giftd serve's defaults (cmd/giftd checks them).
		q, u := getenv("GIFTD_POLYV_QUERY_PATH"), getenv("GIFTD_POLYV_UPDATE_PATH")
		if q == "" {
			q = "/polyv/points"
		}
		if u == "" {
			u = "/polyv/points/donate"
		}
		s.PolyvQueryURL, s.PolyvUpdateURL = pub+q, pub+u
	}
	return s, nil
}

// checkBase accepts an absolute http(s) URL without query or credentials.
func checkBase(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("must be an absolute http(s) URL without query or credentials like https://api.example.com, got %q", redact(raw))
	}
	return nil
}

// redact drops a URL's user info, which could hold a password.
func redact(raw string) string {
	if i := strings.Index(raw, "@"); i >= 0 {
		return "…" + raw[i:]
	}
	return raw
}

// appSecret reads "app_id:secret"; its errors never quote the value.
func appSecret(v string) (string, string, error) {
	app, secret, ok := strings.Cut(strings.TrimSpace(v), ":")
	if !ok || app == "" || secret == "" || strings.Contains(v, ",") {
		return "", "", fmt.Errorf("must be one app_id:secret")
	}
	return app, secret, nil
}
