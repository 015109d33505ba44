package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"giftd/internal/linkvapi/linkvfake"
	"giftd/internal/pgtest"
	"giftd/internal/polyvapi/polyvfake"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	linkvApp    = "LM6000167049877161121920"
	linkvSecret = "linkv-secret-must-never-show-3b1"
	polyvApp    = "pvapp1"
	polyvSecret = "polyv-secret-must-never-show-9d7"
)

// env is a giftd-platform environment against the fakes, with short
// timeouts so that a hanging fake costs milliseconds.
func env(t *testing.T, lf *linkvfake.Fake, pf *polyvfake.Fake) func(string) string {
	m := map[string]string{
		"DATABASE_URL":                pgtest.URL(t),
		"GIFTD_LINKV_API_URL":         lf.URL,
		"GIFTD_LINKV_API_APP":         linkvApp + ":" + linkvSecret,
		"GIFTD_POLYV_API_URL":         pf.URL,
		"GIFTD_POLYV_API_APP":         polyvApp + ":" + polyvSecret,
		"GIFTD_PLATFORM_API_TIMEOUT":  "100ms",
		"GIFTD_PLATFORM_API_ATTEMPTS": "2",
		"GIFTD_PUBLIC_URL":            "https://gifts.example",
	}
	return func(k string) string { return m[k] }
}

func runCmd(t *testing.T, getenv func(string) string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"giftd-platform"}, args...), getenv, strings.NewReader(""), &out, &errOut)
	for _, secret := range []string{linkvSecret, polyvSecret} {
		if strings.Contains(out.String()+errOut.String(), secret) || (err != nil && strings.Contains(err.Error(), secret)) {
			t.Fatalf("%v: a secret was printed:\n%s\n%s\n%v", args, out.String(), errOut.String(), err)
		}
	}
	return out.String(), errOut.String(), err
}

func TestRun_LinkThenMoveResumes(t *testing.T) {
	lf := linkvfake.New(t, linkvApp, linkvSecret)
	pf := polyvfake.New(t, polyvApp, polyvSecret)
	getenv := env(t, lf, pf)

	out, _, err := runCmd(t, getenv, "linkv-link", "-name", "Ann", "-sex", "0", "ann")
	var linked struct {
		OpenID string `json:"live_open_id"`
		Token  string `json:"live_token"`
	}
	if err != nil || json.Unmarshal([]byte(out), &linked) != nil || linked.OpenID == "" || linked.Token == "" {
		t.Fatalf("linkv-link: %v\n%s", err, out)
	}
	ann := linked.OpenID
	lf.SetBalance(ann, 300)
	bob := lf.AddUser("bob", "", 40) // never linked by giftd: its open id is given
	users := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(users, []byte("# users to move\nann\nbob:"+bob+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out, _, err = runCmd(t, getenv, "linkv-move", "-dry-run", "-users", users)
	if err != nil || !strings.Contains(out, "would move 340 coins") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if lf.Balance(ann) != 300 {
		t.Fatal("a dry run took coins")
	}

	// LinkV applies ann's take-out but answers 500 to both attempts.
	lf.Fail("changeGold", linkvfake.AppliedThen500, linkvfake.Fail500)
	out, progress, err := runCmd(t, getenv, "linkv-move", "-users", users)
	if err == nil || !strings.Contains(out, "unknown 1") || !strings.Contains(progress, "[1/2] ann: unknown") ||
		!strings.Contains(progress, "[2/2] bob: done, moved 40 now, 40 in all") {
		t.Fatalf("first run: %v\n%s\n%s", err, out, progress)
	}
	out, progress, err = runCmd(t, getenv, "linkv-move", "-users", users)
	if err != nil || !strings.Contains(out, "moved 300 coins") || !strings.Contains(progress, "bob: already_done") {
		t.Fatalf("second run: %v\n%s\n%s", err, out, progress)
	}
	if lf.Balance(ann) != 0 || lf.Balance(bob) != 0 || lf.Applied() != 2 {
		t.Fatalf("LinkV holds %d and %d after %d changes", lf.Balance(ann), lf.Balance(bob), lf.Applied())
	}
}

func TestRun_PolyvDonations(t *testing.T) {
	lf := linkvfake.New(t, linkvApp, linkvSecret)
	pf := polyvfake.New(t, polyvApp, polyvSecret)
	pf.AddChannel("2149710")
	goods := filepath.Join(t.TempDir(), "goods.json")
	os.WriteFile(goods, []byte(`[{"goodName":"鲜花","goodImg":"//img/1.png","goodPrice":5}]`), 0o600)
	out, _, err := runCmd(t, env(t, lf, pf), "polyv-donations", "-channels", "2149710", "-goods", goods, "-point-unit", "金币")
	if err != nil || !strings.Contains(out, "channel 2149710: point donation on") {
		t.Fatalf("polyv-donations: %v\n%s", err, out)
	}
	s, ch := pf.Setting()
	if s.QueryPointURL != "https://gifts.example/polyv/points" || s.UpdatePointURL != "https://gifts.example/polyv/points/donate" ||
		ch["2149710"] != "Y" || len(s.Goods) != 1 {
		t.Fatalf("Polyv holds %+v %v", s, ch)
	}
	pf.Fail("update-point", polyvfake.Hang, polyvfake.Hang)
	start := time.Now()
	if _, _, err := runCmd(t, env(t, lf, pf), "polyv-donations", "-channels", "2149710"); err == nil ||
		!strings.Contains(err.Error(), "update-point") || time.Since(start) > 10*time.Second {
		t.Fatalf("a hanging Polyv: %v after %s", err, time.Since(start))
	}
}

func TestRun_SettingsErrorsNameTheVariable(t *testing.T) {
	getenv := func(k string) string {
		return map[string]string{"GIFTD_LINKV_API_URL": "https://x", "GIFTD_LINKV_API_APP": linkvSecret}[k]
	}
	_, _, err := runCmd(t, getenv, "linkv-move", "u1")
	if err == nil || !strings.HasPrefix(err.Error(), "GIFTD_LINKV_API_APP: ") {
		t.Fatalf("err %v", err)
	}
}
