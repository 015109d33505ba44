// Command giftd-load plays LinkV (or with -platform polyv, Polyv) against a
// running giftd: connections sending signed debits with fresh request ids
// (for Polyv: a fresh ts and sessionId) over a set of wallets for a while,
// then it prints throughput, latency quantiles and every non-200 answer. It
// is a benchmark tool (bench/run), not part of the server.
package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"giftd/internal/linkv"
	"giftd/internal/polyv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "giftd-load:", err)
		os.Exit(1)
	}
}

// run is the whole command, with its flags in args.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("giftd-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	platform := fs.String("platform", "linkv", "whose callbacks to play: linkv or polyv")
	debitURL := fs.String("url", "", "the debit callback URL (default: http://127.0.0.1:8080/linkv/debit, or /polyv/points/donate with -platform polyv)")
	adminURL := fs.String("admin-url", "http://127.0.0.1:8081", "the admin listener, to top up the load's wallets first")
	conns := fs.Int("c", 64, "concurrent connections")
	wallets := fs.Int("wallets", 1000, "wallets to spread debits over (1 = one hot wallet)")
	receivers := fs.Int("receivers", 1000, "receivers to spread gifts over (1 = one hot receiver; Polyv: channels 1…n)")
	duration := fs.Duration("d", 10*time.Second, "how long to send")
	gold := fs.Int64("gold", 1, "gold per debit")
	app := fs.String("app", "", "app_id:secret to sign with (default: the first of GIFTD_LINKV_APPS, or of GIFTD_POLYV_APPS with -platform polyv)")
	startAfter := fs.String("start-after", "", "after the top-ups, print \"ready\" and wait for this file to exist before sending (the kit reads its CPU and WAL counters in between)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *conns < 1 || *wallets < 1 || *receivers < 1 || *duration <= 0 || *gold < 0 {
		return errors.New("-c, -wallets and -receivers must be at least 1, -d positive, -gold not negative")
	}
	appsVar, defaultURL := "GIFTD_LINKV_APPS", "http://127.0.0.1:8080/linkv/debit"
	var scale polyv.Scale
	switch *platform {
	case "linkv":
	case "polyv":
		appsVar, defaultURL = "GIFTD_POLYV_APPS", "http://127.0.0.1:8080/polyv/points/donate"
		// Amounts are sent in points: the server's scale says how many coins each is.
		raw := or(getenv("GIFTD_POLYV_POINT_SCALE"), "1")
		n, err := strconv.ParseInt(raw, 10, 64)
		if err == nil {
			scale, err = polyv.NewScale(n)
		}
		if err != nil || *gold < 1 {
			return errors.New("with -platform polyv, -gold must be at least 1 and GIFTD_POLYV_POINT_SCALE a power of ten from 1 to 1000000")
		}
	default:
		return fmt.Errorf("-platform must be linkv or polyv, got %q", *platform)
	}
	if *debitURL == "" {
		*debitURL = defaultURL
	}
	if *app == "" {
		*app, _, _ = strings.Cut(getenv(appsVar), ",")
	}
	appID, secret, ok := strings.Cut(*app, ":")
	if !ok || appID == "" || secret == "" {
		return errors.New("give -app app_id:secret or set " + appsVar)
	}
	prefix := "load-" + randomHex(4) + "-"
	receiver := func() string { return strconv.Itoa(1 + rand.IntN(*receivers)) }
	body := func(user string) string { return signedDebit(appID, secret, user, prefix+"host-"+receiver(), *gold) }
	if *platform == "polyv" {
		// The URL's own query parameters (those of GIFTD_POLYV_URL_PARAMS)
		// take part in the sign, as in Polyv's calls.
		u, err := url.Parse(*debitURL)
		if err != nil {
			return fmt.Errorf("-url: %w", err)
		}
		body = func(user string) string {
			return signedDonation(appID, secret, user, receiver(), *gold, scale, u.Query())
		}
	}
	token := getenv("GIFTD_ADMIN_TOKEN")
	if token == "" {
		return errors.New("set GIFTD_ADMIN_TOKEN so the load can top up its wallets")
	}

	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns},
	}
	users := make([]string, *wallets)
	for i := range users {
		users[i] = prefix + strconv.Itoa(i)
	}
	perWallet := min(int64(1e12), max(1, *gold)*1e7)
	if err := topUpAll(ctx, client, *adminURL, token, users, perWallet, *conns); err != nil {
		return err
	}

	target, err := newLoadConn(*debitURL)
	if err != nil {
		return err
	}
	if *startAfter != "" {
		fmt.Fprintln(stdout, "ready")
		if err := waitForFile(ctx, *startAfter); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "giftd-load: %s, %d connections, %d wallets, %d receivers, %s, %d gold per debit, against %s\n",
		*platform, *conns, *wallets, *receivers, *duration, *gold, *debitURL)
	cpu0 := cpuTime()
	type result struct {
		latencies []time.Duration
		statuses  map[int]int
		errors    map[string]int
	}
	results := make([]result, *conns)
	deadline := time.Now().Add(*duration)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := result{statuses: map[int]int{}, errors: map[string]int{}}
			conn := *target
			for time.Now().Before(deadline) && ctx.Err() == nil {
				b := body(users[rand.IntN(len(users))])
				t0 := time.Now()
				status, err := conn.post(b)
				if err != nil {
					res.errors[shortError(err)]++
					continue
				}
				res.latencies = append(res.latencies, time.Since(t0))
				res.statuses[status]++
			}
			if conn.conn != nil {
				conn.conn.Close()
			}
			results[w] = res
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	loadCPU := cpuTime() - cpu0

	var all []time.Duration
	statuses, errs := map[int]int{}, map[string]int{}
	for _, r := range results {
		all = append(all, r.latencies...)
		for k, v := range r.statuses {
			statuses[k] += v
		}
		for k, v := range r.errors {
			errs[k] += v
		}
	}
	slices.Sort(all)
	q := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	fmt.Fprintf(stdout, "debits ok: %d in %.1fs = %.0f debits/s\n", statuses[200], elapsed.Seconds(), float64(statuses[200])/elapsed.Seconds())
	fmt.Fprintf(stdout, "latency:   p50 %s  p90 %s  p99 %s  max %s  (%d answers)\n",
		ms(q(.50)), ms(q(.90)), ms(q(.99)), ms(q(1)), len(all))
	fmt.Fprintf(stdout, "load cpu:  %.3f s\n", loadCPU.Seconds())
	codes := make([]int, 0, len(statuses))
	for c := range statuses {
		if c != 200 {
			codes = append(codes, c)
		}
	}
	sort.Ints(codes)
	if len(codes) == 0 && len(errs) == 0 {
		fmt.Fprintln(stdout, "non-200:   none")
	}
	for _, c := range codes {
		fmt.Fprintf(stdout, "non-200:   %d × %d\n", statuses[c], c)
	}
	for e, n := range errs {
		fmt.Fprintf(stdout, "error:     %d × %s\n", n, e)
	}
	return nil
}

// waitForFile returns once path exists.
func waitForFile(ctx context.Context, path string) error {
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// cpuTime returns the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// topUpAll gives every wallet amount gold through the admin API.
func topUpAll(ctx context.Context, client *http.Client, adminURL, token string, users []string, amount int64, conns int) error {
	work := make(chan string)
	errc := make(chan error, conns)
	var wg sync.WaitGroup
	for range min(conns, len(users)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range work {
				body, _ := json.Marshal(map[string]any{"amount": amount, "idempotency_key": "load-topup-" + u})
				req, err := http.NewRequestWithContext(ctx, http.MethodPost,
					adminURL+"/admin/v1/wallets/"+u+"/topups", bytes.NewReader(body))
				if err != nil {
					errc <- err
					return
				}
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					errc <- fmt.Errorf("top up %s: %w", u, err)
					return
				}
				msg, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errc <- fmt.Errorf("top up %s: %s %s", u, resp.Status, bytes.TrimSpace(msg))
					return
				}
			}
		}()
	}
	var err error
	for _, u := range users {
		select {
		case work <- u:
			continue
		case err = <-errc:
		}
		break
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}

// signedDonation builds one Polyv donation body of gold coins (one good of
// that price) in channel with a fresh ts and a random sessionId, so that
// each is a new request, signed by polyv.Sign together with inURL, the
// parameters the request carries in its URL.
func signedDonation(appID, secret, user, channel string, gold int64, scale polyv.Scale, inURL url.Values) string {
	points := scale.Points(gold)
	p := map[string]string{
		"appId": appID, "channelId": channel, "viewerId": user, "sessionId": randomHex(8),
		"ts": strconv.FormatInt(time.Now().UnixMilli(), 10), "goodName": "load", "goodPrice": points,
		"goodNum": "1", "count": points,
	}
	signed := maps.Clone(p)
	for k := range inURL {
		signed[k] = inURL.Get(k)
	}
	p["sign"] = polyv.Sign(signed, secret)
	v := make(url.Values, len(p))
	for k, s := range p {
		v.Set(k, s)
	}
	return v.Encode()
}

// signedDebit builds one LinkV callback body, a gift to receiver, with a
// fresh request id.
func signedDebit(appID, secret, user, receiver string, gold int64) string {
	now := time.Now().Unix()
	f := [8]linkv.Field{
		{Name: "app_id", Value: appID},
		{Name: "expriation", Value: strconv.FormatInt(now+91*86400, 10)},
		{Name: "gold", Value: strconv.FormatInt(gold, 10)},
		{Name: "nonce", Value: randomHex(4) + strconv.FormatInt(now, 10) + randomHex(4)},
		{Name: "reason", Value: `{"gift_id":"1","send_num":1,"resource_id":"load-room","vtype":"1","receiver_id":"` + receiver + `"}`},
		{Name: "request_id", Value: randomHex(16)},
		{Name: "type", Value: "1"},
		{Name: "user_id", Value: user},
	}
	return string(linkv.AppendSignedBody(make([]byte, 0, 512), f[:], secret))
}

func randomHex(n int) string {
	b := make([]byte, n)
	crand.Read(b) //nolint:errcheck // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func shortError(err error) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return err.Error()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }
