package e2e

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/pgcluster"
)

// TestStandby_FirstInAMultiHostURL puts a real hot standby (pg_basebackup
// of a real primary) first in DATABASE_URL. Without
// target_session_attrs=read-write giftd must refuse to start, saying what
// to add and not quoting the password; with it, giftd must debit on the
// primary. A giftd whose only database is the standby must report not
// ready, since it cannot debit.
func TestStandby_FirstInAMultiHostURL(t *testing.T) {
	ctx := waitCtx(t, 3*time.Minute)
	primary, standby := primaryAndStandby(t, ctx)
	pu, su := mustParse(t, primary.URL), mustParse(t, standby.URL)
	const password = "pw-not-to-be-printed"
	both := *pu
	both.User = url.UserPassword("postgres", password)
	both.Host = su.Host + "," + pu.Host // the standby first

	t.Run("without target_session_attrs refused at start", func(t *testing.T) {
		cmd := exec.Command(giftdBinary(t), "serve")
		cmd.Env = append(os.Environ(), "DATABASE_URL="+both.String(), "GIFTD_MIGRATE=false",
			"GIFTD_HTTP_ADDR=127.0.0.1:0", "GIFTD_ADMIN_ADDR=127.0.0.1:0",
			"GIFTD_LINKV_APPS="+appID+":"+secret, "GIFTD_ADMIN_TOKEN="+token)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("giftd exited 0:\n%s", &out)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill() //nolint:errcheck // failing anyway
			<-done
			t.Fatalf("giftd started on a URL that lists a standby first without target_session_attrs:\n%s", &out)
		}
		msg := out.String()
		if !strings.Contains(msg, "DATABASE_URL") || !strings.Contains(msg, "target_session_attrs=read-write") {
			t.Errorf("the refusal does not name DATABASE_URL and say what to add:\n%s", msg)
		}
		if strings.Contains(msg, password) {
			t.Errorf("the refusal quotes the password:\n%s", msg)
		}
	})

	t.Run("with target_session_attrs=read-write debits on the primary", func(t *testing.T) {
		rw := both
		q := rw.Query()
		q.Set("target_session_attrs", "read-write")
		rw.RawQuery = q.Encode()
		srv := newServer(t, rw.String(), "GIFTD_MIGRATE=false")
		client := linkvClient{&http.Client{Timeout: 10 * time.Second}}
		for i := range 20 {
			if got, _ := client.send(ctx, srv, signedForm("rw-"+strconv.Itoa(i), "w0", 1)); got != http.StatusOK {
				t.Fatalf("debit %d answered %d, want 200", i, got)
			}
		}
		store, err := ledger.Open(ctx, primary.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		if w, err := store.Wallet(ctx, "w0"); err != nil || w.Gold != 80 {
			t.Errorf("primary's w0 = %d, %v; want 80 after 20 debits of 1 from 100", w.Gold, err)
		}
	})

	t.Run("on the standby alone not ready", func(t *testing.T) {
		srv := stoppedServer(t, standby.URL, "GIFTD_MIGRATE=false")
		srv.launch()
		srv.awaitAddrs()
		if !eventually(ctx, 15*time.Second, func() bool { return health(srv) == http.StatusOK }) {
			out, _ := os.ReadFile(srv.log.Name())
			t.Fatalf("giftd never answered /healthz:\n%s", out)
		}
		for range 10 {
			if got := ready(srv); got != http.StatusServiceUnavailable {
				t.Fatalf("/readyz answered %d on a standby, want 503", got)
			}
			time.Sleep(100 * time.Millisecond)
		}
		client := &http.Client{Timeout: 10 * time.Second}
		if got := post(ctx, client, srv, signedForm("on-standby", "w1", 1)); got != http.StatusInternalServerError {
			t.Errorf("a debit on the standby answered %d, want 500", got)
		}
	})
}

func health(s *server) int {
	resp, err := http.Get("http://" + s.admin() + "/healthz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// primaryAndStandby starts a throwaway primary, migrates it and gives
// wallets w0…w4 100 gold each, then copies it into a hot standby that
// streams from it (pgcluster.StartStandby). Both stop when the test ends. Without
// PostgreSQL's binaries the test fails under CI and is skipped otherwise.
func primaryAndStandby(t *testing.T, ctx context.Context) (primary, standby *pgcluster.Cluster) {
	t.Helper()
	primary, err := pgcluster.Start(ctx, pgcluster.Options{Settings: []string{"fsync=off"}})
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { primary.Stop() }) //nolint:errcheck // best effort
	if err := ledger.Migrate(primary.URL); err != nil {
		t.Fatal(err)
	}
	seededStore(t, ctx, primary.URL, 5, 100).Close()

	standby, err = pgcluster.StartStandby(ctx, primary, "giftd_standby", "", pgcluster.Options{Settings: []string{"fsync=off"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standby.Stop() }) //nolint:errcheck // best effort
	return primary, standby
}
