// Command giftd-platform runs giftd's jobs against the platforms' server
// APIs from an operator's shell (docs/platform-apis.md): linking a user to
// LinkV, moving users' coins out of LinkV's wallet into giftd's, and setting
// up Polyv's point donations. It is an operator tool, not the server: it
// lives outside the giftd binary, like giftd-load. The same jobs are on
// giftd's admin API. Settings come from the environment, as giftd serve's do.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"giftd/internal/ledger"
	"giftd/internal/linkvapi"
	"giftd/internal/platforms"
	"giftd/internal/polyvapi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "giftd-platform:", err)
		os.Exit(1)
	}
}

const usage = `giftd-platform: giftd's jobs against LinkV's and Polyv's server APIs

Usage:
  giftd-platform linkv-link [-aid A] [-name N] [-portrait-uri U] [-sex S] ... USER_ID
        link a user to LinkV (thGetToken); prints its live_open_id and live_token
  giftd-platform linkv-move [-dry-run] [-users FILE|-] [USER_ID[:LIVE_OPEN_ID] ...]
        move the users' coins out of LinkV's wallet into giftd's; resumable
  giftd-platform polyv-donations -channels ID[,ID...] [-goods FILE] [-query-url U] [-update-url U]
        [-point-unit U] [-request-fail-tips T] [-point-not-enough-tips T]
        turn Polyv's point donation on, register giftd's URLs and goods, read it back

Settings (environment): DATABASE_URL (linkv-*), GIFTD_LINKV_API_URL, GIFTD_LINKV_API_APP,
GIFTD_POLYV_API_URL, GIFTD_POLYV_API_APP, GIFTD_PLATFORM_API_TIMEOUT, GIFTD_PLATFORM_API_ATTEMPTS,
GIFTD_PUBLIC_URL (docs/configuration.md).
`

// run is the whole command.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return errors.New("no subcommand given")
	}
	if h := args[1]; h == "help" || h == "-h" || h == "-help" || h == "--help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	s, err := platforms.ReadSettings(getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	switch cmd, rest := args[1], args[2:]; cmd {
	case "linkv-link":
		return runLink(ctx, rest, getenv, s, stdout, stderr)
	case "linkv-move":
		return runMove(ctx, rest, getenv, s, stdin, stdout, stderr, log)
	case "polyv-donations":
		return runDonations(ctx, rest, s, stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown subcommand %q", cmd)
	}
}

// linkvSetup opens the database and the LinkV client.
func linkvSetup(ctx context.Context, getenv func(string) string, s platforms.Settings) (*ledger.Store, *linkvapi.Client, error) {
	if s.LinkV == nil {
		return nil, nil, errors.New("GIFTD_LINKV_API_URL: required (with GIFTD_LINKV_API_APP), LinkV's API host")
	}
	c, err := linkvapi.New(*s.LinkV)
	if err != nil {
		return nil, nil, err
	}
	url := getenv("DATABASE_URL")
	if url == "" {
		return nil, nil, errors.New("DATABASE_URL: required, giftd's PostgreSQL")
	}
	store, err := ledger.Open(ctx, url, ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
	if err != nil {
		return nil, nil, err
	}
	if err := store.Ready(ctx); err != nil {
		store.Close()
		return nil, nil, fmt.Errorf("database: %w (run giftd migrate up first)", err)
	}
	return store, c, nil
}

func runLink(ctx context.Context, args []string, getenv func(string) string, s platforms.Settings, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("linkv-link", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var p linkvapi.Profile
	fs.StringVar(&p.AID, "aid", "", "the user's device id")
	fs.StringVar(&p.Name, "name", "", "user name (LinkV needs it to register a new user)")
	fs.StringVar(&p.PortraitURI, "portrait-uri", "", "avatar URI (LinkV needs it to register a new user)")
	fs.StringVar(&p.Email, "email", "", "email")
	fs.StringVar(&p.CountryCode, "country-code", "", "country code, e.g. US")
	fs.StringVar(&p.Birthday, "birthday", "", "birthday, e.g. 2010-01-01")
	fs.StringVar(&p.Sex, "sex", "", "-1 unknown, 1 male, 0 female")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || !ledger.ValidUserID(fs.Arg(0)) {
		return errors.New("linkv-link: give one user id (1-64 characters of [0-9A-Za-z+=_-])")
	}
	store, c, err := linkvSetup(ctx, getenv, s)
	if err != nil {
		return err
	}
	defer store.Close()
	tok, err := platforms.LinkAccount(ctx, c, store, fs.Arg(0), p)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(map[string]string{"user_id": tok.UserID, "live_open_id": tok.OpenID, "live_token": tok.Token})
}

func runMove(ctx context.Context, args []string, getenv func(string) string, s platforms.Settings, stdin io.Reader,
	stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("linkv-move", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dry := fs.Bool("dry-run", false, "only read balances and steps; change nothing")
	file := fs.String("users", "", "a file of users, one USER_ID[:LIVE_OPEN_ID] a line (- for stdin)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lines := fs.Args()
	if *file != "" {
		r := stdin
		if *file != "-" {
			f, err := os.Open(*file)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
				lines = append(lines, l)
			}
		}
		if err := sc.Err(); err != nil {
			return err
		}
	}
	users, err := parseUsers(lines)
	if err != nil {
		return err
	}
	store, c, err := linkvSetup(ctx, getenv, s)
	if err != nil {
		return err
	}
	defer store.Close()
	m := platforms.Mover{LinkV: c, Store: store, Log: log, Progress: func(done, total int, r platforms.MoveResult) {
		line := fmt.Sprintf("[%d/%d] %s: %s", done, total, r.UserID, r.Outcome)
		switch {
		case r.Outcome == platforms.OutcomeWouldMove:
			line += fmt.Sprintf(", %d coins on LinkV", r.LinkVBalance)
			if r.InFlight > 0 {
				line += fmt.Sprintf(" + %d in flight", r.InFlight)
			}
		case r.Moved > 0 || r.TotalMoved > 0:
			line += fmt.Sprintf(", moved %d now, %d in all", r.Moved, r.TotalMoved)
		}
		if r.Error != "" {
			line += " (" + r.Error + ")"
		}
		fmt.Fprintln(stderr, line)
	}}
	sum := m.Move(ctx, users, *dry)
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(sum); err != nil {
			return err
		}
	} else {
		verb := "moved"
		if sum.DryRun {
			verb = "would move"
		}
		fmt.Fprintf(stdout, "linkv-move: %d users, %s %d coins; outcomes:", sum.Users, verb, sum.Coins)
		for _, o := range []string{platforms.OutcomeDone, platforms.OutcomeAlreadyDone, platforms.OutcomeWouldMove,
			platforms.OutcomeUnknown, platforms.OutcomeFailed, platforms.OutcomeNoOpenID, platforms.OutcomeBusy, platforms.OutcomeIncomplete} {
			if n := sum.Outcomes[o]; n > 0 {
				fmt.Fprintf(stdout, " %s %d", o, n)
			}
		}
		fmt.Fprintln(stdout)
	}
	if ctx.Err() != nil {
		return errors.New("linkv-move: interrupted; run it again to resume (every step is recorded)")
	}
	if !sum.OK() {
		return errors.New("linkv-move: not every user is done; run it again to resume (see the outcomes above)")
	}
	return nil
}

// parseUsers reads USER_ID or USER_ID:LIVE_OPEN_ID entries.
func parseUsers(lines []string) ([]platforms.MoveUser, error) {
	if len(lines) == 0 {
		return nil, errors.New("linkv-move: no users given (arguments or -users FILE)")
	}
	seen := map[string]bool{}
	users := make([]platforms.MoveUser, 0, len(lines))
	for i, l := range lines {
		id, open, _ := strings.Cut(l, ":")
		if !ledger.ValidUserID(id) || seen[id] {
			return nil, fmt.Errorf("linkv-move: user %d (%q) is not a user id of 1-64 characters of [0-9A-Za-z+=_-], or is listed twice", i+1, id)
		}
		seen[id] = true
		users = append(users, platforms.MoveUser{UserID: id, OpenID: open})
	}
	return users, nil
}

func runDonations(ctx context.Context, args []string, s platforms.Settings, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("polyv-donations", flag.ContinueOnError)
	fs.SetOutput(stderr)
	channels := fs.String("channels", "", "comma-separated channel ids")
	goods := fs.String("goods", "", "a JSON file of goods ([{goodName, goodImg, goodPrice, goodEnabled}]); unset: Polyv's goods stay")
	var setup platforms.DonationSetup
	fs.StringVar(&setup.QueryPointURL, "query-url", s.PolyvQueryURL, "queryPointUrl (default: GIFTD_PUBLIC_URL + the query path)")
	fs.StringVar(&setup.UpdatePointURL, "update-url", s.PolyvUpdateURL, "updatePointUrl (default: GIFTD_PUBLIC_URL + the donation path)")
	fs.StringVar(&setup.PointUnit, "point-unit", "", "pointUnit, the points' name")
	fs.StringVar(&setup.RequestFailTips, "request-fail-tips", "", "requestFailTips")
	fs.StringVar(&setup.PointNotEnoughTips, "point-not-enough-tips", "", "pointNotEnoughTips")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if s.Polyv == nil {
		return errors.New("GIFTD_POLYV_API_APP: required, the Polyv account's appId:appSecret")
	}
	for _, ch := range strings.Split(*channels, ",") {
		if ch = strings.TrimSpace(ch); ch != "" {
			setup.Channels = append(setup.Channels, ch)
		}
	}
	if len(setup.Channels) == 0 {
		return errors.New("polyv-donations: -channels is required")
	}
	if setup.QueryPointURL == "" || setup.UpdatePointURL == "" {
		return errors.New("polyv-donations: set GIFTD_PUBLIC_URL, or give -query-url and -update-url")
	}
	if *goods != "" {
		var err error
		if setup.Goods, err = platforms.FileGoods(*goods).PolyvGoods(ctx); err != nil {
			return err
		}
	}
	c, err := polyvapi.New(*s.Polyv)
	if err != nil {
		return err
	}
	rep := platforms.SetUpDonations(ctx, c, setup)
	if rep.Error != "" {
		return fmt.Errorf("polyv-donations: %s (no channel was touched)", rep.Error)
	}
	for _, ch := range rep.Channels {
		switch {
		case ch.Error != "":
			fmt.Fprintf(stdout, "channel %s: FAILED: %s\n", ch.ChannelID, ch.Error)
		case len(ch.Differences) > 0:
			fmt.Fprintf(stdout, "channel %s: set, but Polyv reads back otherwise:\n", ch.ChannelID)
			for _, d := range ch.Differences {
				fmt.Fprintf(stdout, "  %s\n", d)
			}
		default:
			fmt.Fprintf(stdout, "channel %s: point donation on, URLs and goods read back as set\n", ch.ChannelID)
		}
	}
	if !rep.OK {
		return errors.New("polyv-donations: some channels are not as set (above)")
	}
	return nil
}
