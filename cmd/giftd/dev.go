package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/linkv"
	"giftd/internal/pgcluster"
	"giftd/internal/polyv"
)

const (
	devAppID      = "dev-app"
	devPolyvAppID = "dev-polyv-app"
	demoUser      = "demo-user"
	demoBalance   = 100000
)

// runDev runs giftd for a newcomer: a throwaway PostgreSQL when DATABASE_URL
// is unset, a made-up app and admin token when none are configured, a demo
// wallet with gold, and ready-to-paste curl commands.
func runDev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("dev: takes no arguments, got %q (use the environment, see README)", args)
	}
	getenv, shown := devEnv(getenv)
	s, err := readSettings(getenv)
	if err != nil {
		return err
	}
	log := newLogger(s.LogFormat, stderr)

	if s.DatabaseURL == "" {
		fmt.Fprintln(stdout, "starting a throwaway PostgreSQL (set DATABASE_URL to use your own)…")
		cluster, err := pgcluster.Start(ctx, pgcluster.Options{})
		if err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		defer func() {
			if err := cluster.Stop(); err != nil {
				log.Error("stop throwaway PostgreSQL", "error", err.Error())
			}
		}()
		s.DatabaseURL, s.MigrateDatabaseURL = cluster.URL, cluster.URL
	}
	if err := ledger.Migrate(s.MigrateDatabaseURL, ledger.WithLockWait(s.MigrateLockWait)); err != nil {
		return err
	}
	s.Migrate = false
	store, err := ledger.Open(ctx, s.DatabaseURL)
	if err != nil {
		return err
	}
	_, err = store.TopUp(ctx, ledger.TopUp{UserID: demoUser, Amount: demoBalance, Key: "giftd-dev-demo-topup", Note: "giftd dev"})
	store.Close()
	if err != nil {
		return err
	}

	return serve(ctx, s, log, func(public, admin string) {
		printDevHelp(stdout, s, shown, public, admin)
	})
}

// devCredentials are the ones giftd dev made up, and so may print.
type devCredentials struct{ apps, polyvApps, token string }

// printDevHelp prints what a newcomer needs: the settings in force and a
// signed debit to paste.
func printDevHelp(w io.Writer, s settings, shown devCredentials, public, admin string) {
	var appID, secret string
	for id, secrets := range s.LinkVApps {
		if appID == "" || id < appID {
			appID, secret = id, secrets[0]
		}
	}
	now := time.Now()
	expriation := strconv.FormatInt(now.Add(91*24*time.Hour).Unix(), 10)
	fields := []linkv.Field{
		{Name: "app_id", Value: appID},
		{Name: "request_id", Value: randomHex(16)},
		{Name: "nonce", Value: randomHex(4) + strconv.FormatInt(now.Unix(), 10) + randomHex(4)},
		{Name: "user_id", Value: demoUser},
		{Name: "gold", Value: "5"},
		{Name: "expriation", Value: expriation},
		{Name: "type", Value: "1"},
		{Name: "reason", Value: `{"gift_id":"10620","send_num":1,"resource_id":"16302940574638332063","vtype":"1","receiver_id":"1431136630483329025"}`},
	}
	body := linkv.AppendSignedBody(nil, fields, secret)
	// Configured credentials are already in the user's environment.
	apps, token, auth, loadEnv := "(from GIFTD_LINKV_APPS)", "(from GIFTD_ADMIN_TOKEN)", "$GIFTD_ADMIN_TOKEN", ""
	if shown.apps != "" {
		apps = "GIFTD_LINKV_APPS=" + shown.apps
		loadEnv += apps + " "
	}
	if shown.token != "" {
		token, auth = "GIFTD_ADMIN_TOKEN="+shown.token, shown.token
		loadEnv += token + " "
	}
	publicURL := "http://" + hostPort(public)
	adminURL := "http://" + hostPort(admin)
	fmt.Fprintf(w, `
giftd dev is running (Ctrl-C stops it and its throwaway database).

  database      %s
  public        %s  (debit callback at %s)
  admin         %s
  console       %s/console/  (in a browser; sign in with the admin token)
  app           %s
  admin token   %s
  demo wallet   %s with %d gold

A signed debit of 5 gold (run it twice: the second answer is a replay):

  curl -sS -X POST %s%s -H 'Content-Type: application/x-www-form-urlencoded' --data '%s'

The demo wallet and its ledger:

  curl -sS -H 'Authorization: Bearer %s' %s/admin/v1/wallets/%s
  curl -sS -H 'Authorization: Bearer %s' %s/admin/v1/wallets/%s/ledger

A load of signed debits (in another shell):

  %sgo run ./cmd/giftd-load -url %s%s -admin-url %s

`, redactURL(s.DatabaseURL), publicURL, s.DebitPath, adminURL, adminURL, apps, token, demoUser, demoBalance,
		publicURL, s.DebitPath, body,
		auth, adminURL, demoUser, auth, adminURL, demoUser,
		loadEnv, publicURL, s.DebitPath, adminURL)
	printPolyvHelp(w, s, shown, publicURL, adminURL)
}

// printPolyvHelp prints a signed Polyv donation and points query: both
// carry the current ts, so they are good for GIFTD_POLYV_MAX_SKEW.
func printPolyvHelp(w io.Writer, s settings, shown devCredentials, publicURL, adminURL string) {
	var appID, secret string
	for id, secrets := range s.PolyvApps {
		if appID == "" || id < appID {
			appID, secret = id, secrets[0]
		}
	}
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	points := s.PolyvScale.Points(5)
	donation := map[string]string{
		"appId": appID, "channelId": "2114561", "viewerId": demoUser, "sessionId": randomHex(8), "ts": ts,
		"goodName": "鲜花", "goodPrice": points, "goodNum": "1", "count": points,
	}
	query := map[string]string{"appId": appID, "channelId": "2114561", "viewerId": demoUser, "viewerName": "demo", "ts": ts}
	signed := func(p map[string]string) string {
		p["sign"] = polyv.Sign(p, secret)
		v := url.Values{}
		for k, val := range p {
			v.Set(k, val)
		}
		return v.Encode()
	}
	apps, loadEnv := "(from GIFTD_POLYV_APPS)", ""
	if shown.polyvApps != "" {
		apps = "GIFTD_POLYV_APPS=" + shown.polyvApps
		loadEnv = apps + " "
	}
	if shown.token != "" {
		loadEnv += "GIFTD_ADMIN_TOKEN=" + shown.token + " "
	}
	fmt.Fprintf(w, `Polyv point donations (%s, %d coins per point):
a signed donation of 5 coins (%s points; run it twice: the second answer is a replay) and the
viewer's points. Their ts is now: paste them within %s (GIFTD_POLYV_MAX_SKEW).

  curl -sS -X POST %s%s -H 'Content-Type: application/x-www-form-urlencoded' --data '%s'
  curl -sS '%s%s?%s'

A load of signed donations (in another shell):

  %sgo run ./cmd/giftd-load -platform polyv -url %s%s -admin-url %s

`, apps, s.PolyvScale.CoinsPerPoint(), points, s.PolyvMaxSkew,
		publicURL, s.PolyvUpdatePath, signed(donation),
		publicURL, s.PolyvQueryPath, signed(query),
		loadEnv, publicURL, s.PolyvUpdatePath, adminURL)
}

// hostPort turns a listener address like [::]:8080 into one curl can reach.
func hostPort(addr string) string {
	if strings.HasPrefix(addr, "[::]:") || strings.HasPrefix(addr, "0.0.0.0:") {
		return "127.0.0.1:" + addr[strings.LastIndex(addr, ":")+1:]
	}
	return addr
}

// redactURL hides the password of a database URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) //nolint:errcheck // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
