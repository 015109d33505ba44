package linkv_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/callback"
	"giftd/internal/ledger"
	"giftd/internal/linkv"
	"giftd/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	testSecret = "giftd-test-secret"
	docReason  = `{"gift_id":"10620","send_num":1,"resource_id":"16302940574638332063","vtype":"1","receiver_id":"1431136630483329025"}`
)

// docNow is the moment of the document's example request (its nonce's
// timestamp), so the example and the vectors of docs/linkv.md §2 are not expired.
var docNow = time.Unix(1630294348, 0)

type fixture struct {
	store   *ledger.Store
	handler http.Handler
	metrics *linkv.Metrics
	reg     *prometheus.Registry
	logs    *lockedBuffer // the handler's log, as text
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers and readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newFixture(t *testing.T, mutate ...func(*linkv.Config)) *fixture {
	t.Helper()
	store, err := ledger.Open(context.Background(), pgtest.URL(t), pgtest.StoreOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cfg := linkv.Config{
		Apps: map[string][]string{
			"LM6000167049877161121920": {testSecret},
			"app2":                     {"old-secret", "new-secret"},
		},
		MaxExpiry: 2400 * time.Hour,
		DBTimeout: 10 * time.Second,
		Now:       func() time.Time { return docNow },
	}
	for _, m := range mutate {
		m(&cfg)
	}
	reg := prometheus.NewRegistry()
	m := linkv.NewMetrics(reg)
	logs := &lockedBuffer{}
	return &fixture{store: store, metrics: m, reg: reg, logs: logs,
		handler: linkv.NewHandler(store, cfg, m, callback.NewRecorder(reg, slog.New(slog.NewTextHandler(logs, nil))))}
}

// docFields is the document's example request without its sign.
func docFields() map[string]string {
	return map[string]string{
		"app_id":     "LM6000167049877161121920",
		"expriation": "1638156748",
		"gold":       "5",
		"nonce":      "u06au4x31630294348ha2zeb15",
		"reason":     docReason,
		"request_id": "bf612c514beb0712816ee60b708acaa6",
		"type":       "1",
		"user_id":    "19718472",
	}
}

func fields(id, user string, gold int64) map[string]string {
	f := docFields()
	f["request_id"], f["user_id"], f["gold"] = id, user, strconv.FormatInt(gold, 10)
	return f
}

func encode(f map[string]string) string {
	v := url.Values{}
	for k, s := range f {
		v.Set(k, s)
	}
	return v.Encode()
}

// signed returns the form body of f signed with secret over every field.
func signed(f map[string]string, secret string) string {
	g := map[string]string{}
	for k, v := range f {
		g[k] = v
	}
	g["sign"] = linkv.Sign(g, secret)
	return encode(g)
}

type reply struct {
	code int
	raw  string
	body struct {
		Status int    `json:"status"`
		Msg    string `json:"msg"`
		Gold   *int64 `json:"gold"`
		Data   *struct {
			Gold int64 `json:"gold"`
		} `json:"data"`
	}
}

func (f *fixture) post(t *testing.T, contentType, body string) reply {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/linkv/debit", strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	r := reply{code: rec.Code, raw: rec.Body.String()}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &r.body); err != nil {
		t.Fatalf("answer %q: %v", r.raw, err)
	}
	if r.body.Status != r.code {
		t.Errorf("HTTP status %d but body status %d", r.code, r.body.Status)
	}
	return r
}

func (f *fixture) debit(t *testing.T, fields map[string]string) reply {
	t.Helper()
	return f.post(t, "application/x-www-form-urlencoded", signed(fields, testSecret))
}

func (f *fixture) topUp(t *testing.T, user string, amount int64) {
	t.Helper()
	key := fmt.Sprintf("seed-%s-%d", user, time.Now().UnixNano())
	if _, err := f.store.TopUp(context.Background(), ledger.TopUp{UserID: user, Amount: amount, Key: key}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) balance(t *testing.T, user string) int64 {
	t.Helper()
	w, err := f.store.Wallet(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return w.Gold
}

func (f *fixture) debitEntries(t *testing.T) int {
	t.Helper()
	var n int
	if err := f.store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM ledger_entries WHERE kind = 'debit'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// outcome returns the count of the outcome in giftd_debit_outcomes_total.
func (f *fixture) outcome(name string) float64 {
	return counter(f.reg, "giftd_debit_outcomes_total", "outcome", name)
}

// counter returns the value of the named counter's series whose label has
// the given value, or -1 when there is none.
func counter(reg *prometheus.Registry, metric, label, value string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

func TestDebit_DocumentExampleDebitsAndAnswers(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "19718472", 120)
	// The document's request exactly, signed as the first vector of docs/linkv.md §2.
	body := encode(docFields()) + "&sign=fda4f9769380b93559b4b7d180a606fc"
	r := f.post(t, "application/x-www-form-urlencoded", body)
	if r.code != 200 || r.raw != `{"status":200,"msg":"","gold":115,"data":{"gold":115}}`+"\n" {
		t.Fatalf("answer %d %s", r.code, r.raw)
	}
	if got := f.balance(t, "19718472"); got != 115 {
		t.Errorf("balance %d, want 115", got)
	}
	if f.outcome("ok") != 1 {
		t.Errorf("ok outcomes %v, want 1", f.outcome("ok"))
	}
}

func TestDebit_SignatureVectorsOfBothFormsAccepted(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "19718472", 100)
	all := docFields()
	for k, v := range map[string]string{"gift_id": "10620", "send_num": "1", "receiver_id": "1431136630483329025",
		"vtype": "1", "resource_id": "16302940574638332063", "empty": ""} {
		all[k] = v
	}
	// Both vectors sign the same request: the second is a replay of the first.
	for _, c := range []struct {
		sign string
		form linkv.SignForm
	}{
		{"ecda1164bcf679197fd33ab1f05a0100", linkv.SignAllFields},
		{"fda4f9769380b93559b4b7d180a606fc", linkv.SignEightField},
	} {
		before := counter(f.reg, "giftd_linkv_sign_forms_total", "form", string(c.form))
		r := f.post(t, "application/x-www-form-urlencoded", encode(all)+"&sign="+c.sign)
		if r.code != 200 || r.body.Data == nil || r.body.Data.Gold != 95 {
			t.Errorf("sign %s: answer %d %s, want 200 gold 95", c.sign, r.code, r.raw)
		}
		if after := counter(f.reg, "giftd_linkv_sign_forms_total", "form", string(c.form)); after != before+1 {
			t.Errorf("sign form %s counted %v -> %v", c.form, before, after)
		}
	}
	if got := f.balance(t, "19718472"); got != 95 {
		t.Errorf("balance %d, want 95", got)
	}
}

func TestDebit_AuthenticationFailuresDebitNothing(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "u1", 100)
	base := fields("auth", "u1", 10)
	tampered := signed(base, testSecret)
	tampered = strings.Replace(tampered, "gold=10", "gold=90", 1)
	unknown := fields("auth", "u1", 10)
	unknown["app_id"] = "nobody"
	cases := map[string]string{
		"tampered gold":        tampered,
		"wrong secret":         signed(base, "not-the-secret"),
		"unknown app":          signed(unknown, testSecret),
		"sign not hex":         encode(base) + "&sign=zzzz",
		"other app's secret":   signed(withApp(base, "app2"), testSecret),
		"sign of another form": encode(base) + "&sign=" + linkv.Sign(fields("other", "u1", 10), testSecret),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			r := f.post(t, "application/x-www-form-urlencoded", body)
			if r.code != 403 || r.body.Msg != "sign err" {
				t.Errorf("answer %d %s, want 403 sign err", r.code, r.raw)
			}
		})
	}
	if got := f.balance(t, "u1"); got != 100 || f.debitEntries(t) != 0 {
		t.Errorf("balance %d, %d debits; want 100 and none", got, f.debitEntries(t))
	}
	if got := f.outcome("bad_sign"); got != float64(len(cases)) {
		t.Errorf("bad_sign outcomes %v, want %d", got, len(cases))
	}
}

func withApp(f map[string]string, app string) map[string]string {
	g := map[string]string{}
	for k, v := range f {
		g[k] = v
	}
	g["app_id"] = app
	return g
}

func TestDebit_EverySecretOfAnAppAccepted(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "u1", 100)
	for i, secret := range []string{"old-secret", "new-secret", "unlisted-secret"} {
		body := signed(withApp(fields(fmt.Sprint("s", i), "u1", 1), "app2"), secret)
		want := 200
		if secret == "unlisted-secret" {
			want = 403
		}
		if r := f.post(t, "application/x-www-form-urlencoded", body); r.code != want {
			t.Errorf("secret %d: answer %d %s, want %d", i, r.code, r.raw, want)
		}
	}
	// An uppercase hex sign is the same sign.
	g := withApp(fields("upper", "u1", 1), "app2")
	body := encode(g) + "&sign=" + strings.ToUpper(linkv.Sign(g, "new-secret"))
	if r := f.post(t, "application/x-www-form-urlencoded", body); r.code != 200 {
		t.Errorf("uppercase sign: answer %d %s", r.code, r.raw)
	}
}

func TestDebit_ManyGoroutinesOneWalletNeverOverdraw(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "hot", 100*3)
	const n = 200
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = f.debit(t, fields(fmt.Sprint("g", i), "hot", 3)).code
		}()
	}
	wg.Wait()
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	if count[200] != 100 || count[402] != 100 {
		t.Errorf("answers %v, want 100×200 and 100×402", count)
	}
	if got := f.balance(t, "hot"); got != 0 {
		t.Errorf("balance %d, want 0", got)
	}
	var sum int64
	if err := f.store.Pool().QueryRow(context.Background(),
		`SELECT sum(amount) FROM ledger_entries WHERE user_id = 'hot'`).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	if sum != 0 || f.debitEntries(t) != 100 {
		t.Errorf("ledger sum %d with %d debits, want 0 and 100", sum, f.debitEntries(t))
	}
}

func TestDebit_ConcurrentCopiesDebitOnceAndAnswerAlike(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "u1", 1000)
	body := signed(fields("copy", "u1", 7), testSecret)
	const n = 50
	answers := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = f.post(t, "application/x-www-form-urlencoded", body).raw
		}()
	}
	wg.Wait()
	want := `{"status":200,"msg":"","gold":993,"data":{"gold":993}}` + "\n"
	for i, a := range answers {
		if a != want {
			t.Errorf("copy %d answered %s, want %s", i, a, want)
		}
	}
	if got := f.balance(t, "u1"); got != 993 || f.debitEntries(t) != 1 {
		t.Errorf("balance %d with %d debits, want 993 and 1", got, f.debitEntries(t))
	}
	if f.outcome("ok") != 1 || f.outcome("replay") != n-1 {
		t.Errorf("outcomes ok %v replay %v, want 1 and %d", f.outcome("ok"), f.outcome("replay"), n-1)
	}
}

func TestDebit_ReplayAnswersAsFirstTime(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "u1", 100)
	first := f.debit(t, fields("a", "u1", 30))
	f.debit(t, fields("b", "u1", 50))
	// A retry may carry a new nonce, expriation and sign: still a replay.
	retry := fields("a", "u1", 30)
	retry["nonce"] = "zzzzzzzz1630294349zzzzzzzz"
	retry["expriation"] = "1638156749"
	again := f.debit(t, retry)
	if first.raw != `{"status":200,"msg":"","gold":70,"data":{"gold":70}}`+"\n" || again.raw != first.raw {
		t.Errorf("first %s, replay %s; want the replay to repeat gold 70", first.raw, again.raw)
	}

	poor := f.debit(t, fields("c", "u1", 500))
	f.topUp(t, "u1", 1000)
	poorAgain := f.debit(t, fields("c", "u1", 500))
	if poor.code != 402 || poor.raw != `{"status":402,"msg":"insufficient gold","gold":20}`+"\n" || poorAgain.raw != poor.raw {
		t.Errorf("402 %s, replay %s; want both 402 with gold 20", poor.raw, poorAgain.raw)
	}
	if got := f.balance(t, "u1"); got != 1020 {
		t.Errorf("balance %d, want 1020", got)
	}
}

func TestDebit_ReusedRequestIDOtherParametersConflicts(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "u1", 100)
	f.debit(t, fields("a", "u1", 30))
	changes := map[string]func(map[string]string){
		"gold":    func(m map[string]string) { m["gold"] = "31" },
		"user_id": func(m map[string]string) { m["user_id"] = "u2" },
		"reason":  func(m map[string]string) { m["reason"] = strings.Replace(docReason, "10620", "10621", 1) },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			g := fields("a", "u1", 30)
			change(g)
			r := f.debit(t, g)
			if r.code != 409 || r.body.Msg != "request_id reused with different parameters" {
				t.Errorf("answer %d %s, want 409", r.code, r.raw)
			}
		})
	}
	if got := f.balance(t, "u1"); got != 70 || f.debitEntries(t) != 1 {
		t.Errorf("balance %d with %d debits, want 70 and 1", got, f.debitEntries(t))
	}
}

func TestDebit_MalformedInputsRefusedNamingTheField(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "u1", 1000)
	set := func(k, v string) func(map[string]string) { return func(m map[string]string) { m[k] = v } }
	del := func(k string) func(map[string]string) { return func(m map[string]string) { delete(m, k) } }
	reason := func(r string) func(map[string]string) { return set("reason", r) }
	cases := []struct {
		name   string
		change func(map[string]string)
		field  string
	}{
		{"request_id missing", del("request_id"), "request_id"},
		{"request_id empty", set("request_id", ""), "request_id"},
		{"request_id too long", set("request_id", strings.Repeat("a", 65)), "request_id"},
		{"request_id charset", set("request_id", "abc/def"), "request_id"},
		{"nonce missing", del("nonce"), "nonce"},
		{"nonce too long", set("nonce", strings.Repeat("n", 65)), "nonce"},
		{"nonce not printable", set("nonce", "abc\x01def"), "nonce"},
		{"user_id missing", del("user_id"), "user_id"},
		{"user_id too long", set("user_id", strings.Repeat("u", 65)), "user_id"},
		{"user_id charset", set("user_id", "u 1"), "user_id"},
		{"gold missing", del("gold"), "gold"},
		{"gold negative", set("gold", "-5"), "gold"},
		{"gold plus", set("gold", "+5"), "gold"},
		{"gold float", set("gold", "1.5"), "gold"},
		{"gold hex", set("gold", "0x10"), "gold"},
		{"gold exponent", set("gold", "1e3"), "gold"},
		{"gold space", set("gold", " 5"), "gold"},
		{"gold above 10^12", set("gold", "1000000000001"), "gold"},
		{"gold huge", set("gold", "99999999999999999999999"), "gold"},
		{"expriation missing", del("expriation"), "expriation"},
		{"expriation not digits", set("expriation", "soon"), "expriation"},
		{"expired", set("expriation", strconv.FormatInt(docNow.Unix()-1, 10)), "expriation"},
		{"too far ahead", set("expriation", strconv.FormatInt(docNow.Add(2401*time.Hour).Unix(), 10)), "expriation"},
		{"type missing", del("type"), "type"},
		{"type 2", set("type", "2"), "type"},
		{"reason missing", del("reason"), "reason"},
		{"reason invalid JSON", reason(`{"gift_id":`), "reason"},
		{"reason not an object", reason(`[1,2]`), "reason"},
		{"reason too big", reason(`{"gift_id":"1","send_num":1,"resource_id":"r","vtype":"1","receiver_id":"h","pad":"` + strings.Repeat("x", 4096) + `"}`), "reason"},
		{"gift_id nowhere", reason(`{"send_num":1,"resource_id":"r","vtype":"1","receiver_id":"h"}`), "gift_id"},
		{"send_num zero", reason(`{"gift_id":"1","send_num":0,"resource_id":"r","vtype":"1","receiver_id":"h"}`), "send_num"},
		{"send_num float", reason(`{"gift_id":"1","send_num":1.5,"resource_id":"r","vtype":"1","receiver_id":"h"}`), "send_num"},
		{"top-level gift_id disagrees", set("gift_id", "999"), "gift_id"},
		{"top-level send_num disagrees", set("send_num", "2"), "send_num"},
		{"top-level vtype disagrees", set("vtype", "8"), "vtype"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := fields(fmt.Sprint("malformed-", i), "u1", 5)
			c.change(g)
			r := f.debit(t, g)
			if r.code != 400 || !strings.HasPrefix(r.body.Msg, c.field) {
				t.Errorf("answer %d %s, want 400 naming %s", r.code, r.raw, c.field)
			}
		})
	}
	t.Run("wrong content type", func(t *testing.T) {
		r := f.post(t, "application/json", signed(fields("ct", "u1", 5), testSecret))
		if r.code != 400 || !strings.HasPrefix(r.body.Msg, "content-type") {
			t.Errorf("answer %d %s", r.code, r.raw)
		}
	})
	t.Run("oversized body", func(t *testing.T) {
		g := fields("big", "u1", 5)
		g["padding"] = strings.Repeat("p", callback.MaxBodyBytes)
		r := f.debit(t, g)
		if r.code != 400 || !strings.HasPrefix(r.body.Msg, "body") {
			t.Errorf("answer %d %s", r.code, r.raw)
		}
	})
	t.Run("sign missing", func(t *testing.T) {
		r := f.post(t, "application/x-www-form-urlencoded", encode(fields("nosign", "u1", 5)))
		if r.code != 400 || !strings.HasPrefix(r.body.Msg, "sign") {
			t.Errorf("answer %d %s", r.code, r.raw)
		}
	})
	if got := f.balance(t, "u1"); got != 1000 || f.debitEntries(t) != 0 {
		t.Errorf("balance %d with %d debits, want 1000 and none", got, f.debitEntries(t))
	}
	if f.outcome("expired") != 1 {
		t.Errorf("expired outcomes %v, want 1", f.outcome("expired"))
	}
}

func TestDebit_TopLevelGiftFieldsAgreeingWithReasonAccepted(t *testing.T) {
	f := newFixture(t)
	f.topUp(t, "u1", 100)
	g := fields("agree", "u1", 5)
	for k, v := range map[string]string{"gift_id": "10620", "send_num": "1", "vtype": "1",
		"receiver_id": "1431136630483329025", "resource_id": "16302940574638332063"} {
		g[k] = v
	}
	if r := f.debit(t, g); r.code != 200 {
		t.Errorf("answer %d %s", r.code, r.raw)
	}
}

func TestDebit_StaleNonceRefusedUnlessKnown(t *testing.T) {
	f := newFixture(t, func(c *linkv.Config) { c.NonceMaxAge = 5 * time.Minute })
	f.topUp(t, "u1", 100)
	// The nonce carries docNow: fresh.
	first := f.debit(t, fields("n1", "u1", 10))
	if first.code != 200 {
		t.Fatalf("fresh: %d %s", first.code, first.raw)
	}
	old := func(id string) map[string]string {
		g := fields(id, "u1", 10)
		g["nonce"] = "aaaaaaaa" + strconv.FormatInt(docNow.Add(-6*time.Minute).Unix(), 10) + "bbbbbbbb"
		return g
	}
	if r := f.debit(t, old("n1")); r.raw != first.raw {
		t.Errorf("late retry of a known request: %s, want the first answer %s", r.raw, first.raw)
	}
	if r := f.debit(t, old("n2")); r.code != 400 || !strings.HasPrefix(r.body.Msg, "nonce") {
		t.Errorf("stale new request: %d %s, want 400 nonce", r.code, r.raw)
	}
	if got := f.balance(t, "u1"); got != 90 {
		t.Errorf("balance %d, want 90", got)
	}
}

func TestDebit_DatabaseDownAnswers500(t *testing.T) {
	f := newFixture(t, func(c *linkv.Config) { c.DBTimeout = 2 * time.Second })
	f.store.Close()
	r := f.debit(t, fields("down", "u1", 1))
	if r.code != 500 || r.body.Msg != "system error" {
		t.Errorf("answer %d %s, want 500 system error", r.code, r.raw)
	}
	if f.outcome("error") != 1 {
		t.Errorf("error outcomes %v", f.outcome("error"))
	}
}

func TestDebit_LockWaitPastDeadlineAnswers500AndDebitsNothing(t *testing.T) {
	f := newFixture(t, func(c *linkv.Config) { c.DBTimeout = 300 * time.Millisecond })
	f.topUp(t, "u1", 100)
	ctx := context.Background()
	// Another session holds the wallet's row: the debit waits past its deadline.
	blocker, err := f.store.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blocker.Exec(ctx, `SELECT gold FROM wallets WHERE user_id = 'u1' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := f.debit(t, fields("slow", "u1", 10))
	if took := time.Since(start); r.code != 500 || took > 5*time.Second {
		t.Errorf("answer %d %s after %s, want 500 soon after the 300ms deadline", r.code, r.raw, took)
	}
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// Nothing was recorded: LinkV's retry executes the debit, once.
	if r := f.debit(t, fields("slow", "u1", 10)); r.code != 200 || r.body.Data == nil || r.body.Data.Gold != 90 {
		t.Errorf("retry: %d %s, want 200 gold 90", r.code, r.raw)
	}
	if got := f.balance(t, "u1"); got != 90 || f.debitEntries(t) != 1 {
		t.Errorf("balance %d with %d debits, want 90 and 1", got, f.debitEntries(t))
	}
}
