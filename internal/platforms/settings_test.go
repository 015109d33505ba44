package platforms_test

import (
	"os"
	"strings"
	"testing"

	"giftd/internal/platforms"
)

func TestReadSettings(t *testing.T) {
	env := map[string]string{
		"GIFTD_LINKV_API_URL": "https://linkv.example", "GIFTD_LINKV_API_APP": "LMapp:linkv-top-secret",
		"GIFTD_POLYV_API_APP": "pv:polyv-top-secret", "GIFTD_PUBLIC_URL": "https://gifts.example/",
		"GIFTD_POLYV_UPDATE_PATH": "/pv/donate", "GIFTD_PLATFORM_API_TIMEOUT": "2s",
	}
	s, err := platforms.ReadSettings(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if s.LinkV == nil || s.LinkV.AppID != "LMapp" || s.LinkV.Timeout.String() != "2s" || s.Polyv == nil ||
		s.Polyv.BaseURL != "https://api.polyv.net" || s.PolyvQueryURL != "https://gifts.example/polyv/points" ||
		s.PolyvUpdateURL != "https://gifts.example/pv/donate" {
		t.Fatalf("settings %+v", s)
	}
	none, err := platforms.ReadSettings(func(string) string { return "" })
	if err != nil || none.LinkV != nil || none.Polyv != nil {
		t.Fatalf("no settings: %+v %v, want both off", none, err)
	}
	for name, v := range map[string]string{
		"GIFTD_LINKV_API_APP":         "LMapp-linkv-top-secret",
		"GIFTD_POLYV_API_APP":         "pv:polyv-top-secret,pv2:polyv-top-secret",
		"GIFTD_LINKV_API_URL":         "https://user:linkv-top-secret@linkv.example",
		"GIFTD_PLATFORM_API_ATTEMPTS": "0",
		"GIFTD_PLATFORM_API_TIMEOUT":  "soon",
	} {
		bad := map[string]string{}
		for k, x := range env {
			bad[k] = x
		}
		bad[name] = v
		_, err := platforms.ReadSettings(func(k string) string { return bad[k] })
		if err == nil || !strings.HasPrefix(err.Error(), name+": ") || strings.Contains(err.Error(), "top-secret") {
			t.Errorf("%s=%q: %v, want an error naming it without the secret", name, v, err)
		}
	}
}

// TestSettings_Documented: every variable ReadSettings reads is in the
// settings table of docs/configuration.md.
func TestSettings_Documented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range platforms.SettingNames() {
		if !strings.Contains(string(doc), "| `"+name+"`") {
			t.Errorf("docs/configuration.md's table lacks %s", name)
		}
	}
}
