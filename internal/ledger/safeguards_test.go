package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/pgtest"
)

// clock is a time the test sets; debits judge policies at it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// openSafe opens a store on a fresh database with safeguards g (On set) and
// the earnings on, judging policies at c's time when c is not nil.
func openSafe(t *testing.T, g ledger.Safeguards, c *clock) *ledger.Store {
	t.Helper()
	g.On = true
	opts := append(pgtest.StoreOptions(), ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000}),
		ledger.WithSafeguards(g))
	if c != nil {
		opts = append(opts, ledger.WithClock(c.now))
	}
	s, err := ledger.Open(context.Background(), pgtest.URL(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func i64(v int64) *int64 { return &v }
func yes() *bool         { b := true; return &b }

func putUser(t *testing.T, s *ledger.Store, user string, p ledger.Policy) {
	t.Helper()
	if _, err := s.PutPolicy(context.Background(), ledger.PolicyKey{Scope: ledger.ScopeUser, Subject: user}, p, "test"); err != nil {
		t.Fatal(err)
	}
}

func mustDebit(t *testing.T, s *ledger.Store, d ledger.Debit) ledger.DebitResult {
	t.Helper()
	res, err := s.Debit(context.Background(), d)
	if err != nil {
		t.Fatalf("debit %s: %v", d.Key.RequestID, err)
	}
	return res
}

func TestSafeguards_FlagsAndMaxDebitRefuseRecordedAndReplayed(t *testing.T) {
	s := openSafe(t, ledger.Safeguards{MaxDebit: 100}, nil)
	for _, u := range []string{"kid", "bad", "adult"} {
		topUp(t, s, u, 1000)
	}
	putUser(t, s, "kid", ledger.Policy{Minor: yes()})
	putUser(t, s, "bad", ledger.Policy{Blocked: yes()})
	for _, c := range []struct {
		id, user string
		gold     int64
		refusal  string
		limit    int64
	}{
		{"m1", "kid", 1, ledger.RefusedMinor, 0},
		{"b1", "bad", 1, ledger.RefusedBlocked, 0},
		{"x1", "adult", 101, ledger.RefusedMaxDebit, 100},
	} {
		res := mustDebit(t, s, debit(c.id, c.user, c.gold))
		if res.Status != ledger.PolicyRefused || res.Refusal != c.refusal || res.Limit != c.limit || res.Balance != 1000 || res.Replay {
			t.Errorf("%s: %+v, want 403 %s limit %d balance 1000", c.id, res, c.refusal, c.limit)
		}
		again := mustDebit(t, s, debit(c.id, c.user, c.gold))
		res.Replay = true
		if !same(again, res) {
			t.Errorf("%s replayed as %+v, want %+v", c.id, again, res)
		}
		rec, err := s.Recorded(context.Background(), ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: c.id},
			debit(c.id, c.user, c.gold).Fingerprint)
		if err != nil || !same(rec, res) {
			t.Errorf("%s recorded as %+v, %v, want %+v", c.id, rec, err, res)
		}
	}
	v, err := s.FindDebit(context.Background(), ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: "x1"})
	if err != nil || v.Record == nil || v.Record.Status != ledger.PolicyRefused || v.Record.Refusal == nil ||
		*v.Record.Refusal != ledger.RefusedMaxDebit || *v.Record.RefusalLimit != 100 || v.Entry != nil {
		t.Errorf("the record of a refusal: %+v, %v", v.Record, err)
	}
	if res := mustDebit(t, s, debit("ok", "adult", 100)); res.Status != ledger.Debited {
		t.Errorf("a debit at the max: %+v", res)
	}
	// A user's 0 lifts the default.
	putUser(t, s, "adult", ledger.Policy{MaxDebit: i64(0)})
	if res := mustDebit(t, s, debit("big", "adult", 500)); res.Status != ledger.Debited {
		t.Errorf("a debit with the user's max_debit 0: %+v", res)
	}
	checkBooks(t, s)
	auditOK(t, s)
}

func TestSafeguards_AppPolicyBetweenUserAndDefault(t *testing.T) {
	s := openSafe(t, ledger.Safeguards{MaxDebit: 100}, nil)
	ctx := context.Background()
	topUp(t, s, "u", 1000)
	if _, err := s.PutPolicy(ctx, ledger.PolicyKey{Scope: ledger.ScopeApp, Subject: "linkv/app"}, ledger.Policy{MaxDebit: i64(10)}, "op"); err != nil {
		t.Fatal(err)
	}
	if res := mustDebit(t, s, debit("a", "u", 11)); res.Status != ledger.PolicyRefused || res.Limit != 10 {
		t.Errorf("over the app's max: %+v", res)
	}
	putUser(t, s, "u", ledger.Policy{MaxDebit: i64(50)})
	if res := mustDebit(t, s, debit("b", "u", 50)); res.Status != ledger.Debited {
		t.Errorf("within the user's max: %+v", res)
	}
}

// The 24 h cap with one sender's gifts from 64 goroutines at once: the total
// debited never exceeds the cap, every gift is answered debited or refused,
// and the refusals replay identically.
func TestSafeguards_ConcurrentGiftsNeverExceedTheDailyCap(t *testing.T) {
	const capGold, n, gold = 1000, 640, 7
	s := openSafe(t, ledger.Safeguards{Cap24h: capGold}, nil)
	topUp(t, s, "whale", 1_000_000)
	results := make([]ledger.DebitResult, n)
	var wg sync.WaitGroup
	var next atomic.Int32
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				res, err := s.Debit(context.Background(), gift(fmt.Sprint("g", i), "whale", gold, "host", "rose", 1))
				if err != nil {
					t.Errorf("gift %d: %v", i, err)
				}
				results[i] = res
			}
		}()
	}
	wg.Wait()
	var debited int64
	for i, r := range results {
		switch {
		case r.Status == ledger.Debited:
			debited += gold
		case r.Status == ledger.PolicyRefused && r.Refusal == ledger.RefusedCap24h && r.Limit == capGold && !r.ResetsAt.IsZero():
		default:
			t.Errorf("gift %d: %+v, want debited or refused by the 24 h cap", i, r)
		}
	}
	if want := int64(capGold / gold * gold); debited != want {
		t.Errorf("debited %d, want %d (as many as fit under %d)", debited, want, capGold)
	}
	for i := range 20 {
		again := mustDebit(t, s, gift(fmt.Sprint("g", i), "whale", gold, "host", "rose", 1))
		want := results[i]
		want.Replay = true
		if !same(again, want) {
			t.Errorf("gift %d replayed as %+v, want %+v", i, again, want)
		}
	}
	w, err := s.SpendWindowOf(context.Background(), "whale")
	if err != nil || w.Last24h != debited || w.DayGold != debited || w.MonthGold != debited {
		t.Errorf("counters %+v, %v: want %d everywhere", w, err, debited)
	}
	checkBooks(t, s)
	auditOK(t, s)
}

func TestSafeguards_Rolling24hAgesOutByTheHour(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)}
	s := openSafe(t, ledger.Safeguards{Cap24h: 100}, c)
	topUp(t, s, "u", 10_000)
	mustDebit(t, s, debit("a", "u", 60))
	c.set(c.now().Add(12 * time.Hour)) // 22:30
	mustDebit(t, s, debit("b", "u", 40))
	res := mustDebit(t, s, debit("c", "u", 1))
	// "a" (hour 10) counts until 11:00 the next day: the end of the hour 24 h after.
	if want := time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC); res.Status != ledger.PolicyRefused || !res.ResetsAt.Equal(want) {
		t.Errorf("over the cap: %+v, want refused until %s", res, want)
	}
	c.set(time.Date(2026, 3, 2, 10, 59, 0, 0, time.UTC))
	if res := mustDebit(t, s, debit("d", "u", 1)); res.Status != ledger.PolicyRefused {
		t.Errorf("at 10:59 the next day: %+v, want still refused", res)
	}
	c.set(time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC))
	if res := mustDebit(t, s, debit("e", "u", 60)); res.Status != ledger.Debited {
		t.Errorf("at 11:00 the next day: %+v, want debited", res)
	}
	if res := mustDebit(t, s, debit("f", "u", 1)); res.Status != ledger.PolicyRefused {
		t.Errorf("b (40) + e (60) fill the cap: %+v", res)
	}
	// Larger than the cap by itself: no reset.
	if res := mustDebit(t, s, debit("g", "u", 101)); res.Status != ledger.PolicyRefused || !res.ResetsAt.IsZero() {
		t.Errorf("a debit larger than the cap: %+v, want refused with no reset", res)
	}
}

func TestSafeguards_MonthCapInTheUsersTimeZone(t *testing.T) {
	shanghai, _ := time.LoadLocation("Asia/Shanghai")
	c := &clock{t: time.Date(2026, 1, 31, 23, 0, 0, 0, shanghai)} // 15:00 UTC
	s := openSafe(t, ledger.Safeguards{CapMonth: 100, TimeZone: "UTC"}, c)
	topUp(t, s, "cn", 10_000)
	topUp(t, s, "utc", 10_000)
	putUser(t, s, "cn", ledger.Policy{TimeZone: strp("Asia/Shanghai")})
	for _, u := range []string{"cn", "utc"} {
		mustDebit(t, s, debit(u+"1", u, 100))
		res := mustDebit(t, s, debit(u+"2", u, 1))
		if res.Status != ledger.PolicyRefused || res.Refusal != ledger.RefusedCapMonth {
			t.Errorf("%s over the month cap: %+v", u, res)
		}
	}
	// 01:00 on 1 February in Shanghai, still January in UTC.
	c.set(time.Date(2026, 2, 1, 1, 0, 0, 0, shanghai))
	if res := mustDebit(t, s, debit("cn3", "cn", 100)); res.Status != ledger.Debited {
		t.Errorf("cn in a new month: %+v", res)
	}
	res := mustDebit(t, s, debit("utc3", "utc", 1))
	if want := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC); res.Status != ledger.PolicyRefused || !res.ResetsAt.Equal(want) {
		t.Errorf("utc still in January: %+v, want refused until %s", res, want)
	}
	c.set(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	if res := mustDebit(t, s, debit("utc4", "utc", 100)); res.Status != ledger.Debited {
		t.Errorf("utc at midnight of February: %+v", res)
	}
	res = mustDebit(t, s, debit("cn4", "cn", 1))
	if want := time.Date(2026, 3, 1, 0, 0, 0, 0, shanghai); res.Status != ledger.PolicyRefused || !res.ResetsAt.Equal(want) {
		t.Errorf("cn over February's cap: %+v, want refused until %s", res, want)
	}
}

func strp(s string) *string { return &s }

// same compares results, times by instant.
func same(a, b ledger.DebitResult) bool {
	if !a.ResetsAt.Equal(b.ResetsAt) {
		return false
	}
	a.ResetsAt, b.ResetsAt = time.Time{}, time.Time{}
	return a == b
}

func TestSafeguards_ReminderOncePerDayAndCoolingOff(t *testing.T) {
	c := &clock{t: time.Date(2026, 5, 5, 8, 0, 0, 0, time.UTC)}
	s := openSafe(t, ledger.Safeguards{RemindDay: 50, CoolingOff: time.Hour}, c)
	ctx := context.Background()
	topUp(t, s, "u", 10_000)
	if res := mustDebit(t, s, debit("a", "u", 30)); res.Reminded {
		t.Errorf("below the threshold: %+v", res)
	}
	if res := mustDebit(t, s, debit("b", "u", 30)); !res.Reminded || res.Status != ledger.Debited {
		t.Errorf("crossing the threshold: %+v, want debited and reminded", res)
	}
	res := mustDebit(t, s, debit("c", "u", 1))
	if want := c.now().Add(time.Hour); res.Status != ledger.PolicyRefused || res.Refusal != ledger.RefusedCoolingOff || !res.ResetsAt.Equal(want) || res.Limit != 50 {
		t.Errorf("in the cooling-off: %+v, want refused until %s", res, want)
	}
	c.set(c.now().Add(time.Hour))
	if res := mustDebit(t, s, debit("d", "u", 100)); res.Status != ledger.Debited || res.Reminded {
		t.Errorf("after the cooling-off: %+v, want debited, no second reminder today", res)
	}
	c.set(time.Date(2026, 5, 6, 8, 0, 0, 0, time.UTC))
	if res := mustDebit(t, s, debit("e", "u", 60)); !res.Reminded {
		t.Errorf("the next day: %+v, want a new reminder", res)
	}
	rs, err := s.Reminders(ctx, "u", time.Time{}, 10)
	if err != nil || len(rs) != 2 || rs[0].Day != "2026-05-05" || rs[0].RequestID != "b" || rs[0].DayGold != 60 || rs[1].Day != "2026-05-06" {
		t.Errorf("reminders %+v, %v", rs, err)
	}
}

func TestSafeguards_SuspendedReceiverCreditsTheHouseMarked(t *testing.T) {
	c := &clock{t: time.Date(2026, 5, 5, 8, 0, 0, 0, time.UTC)}
	s := openSafe(t, ledger.Safeguards{}, c)
	topUp(t, s, "fan", 1000)
	topUp(t, s, "host", 1)
	until := c.now().Add(time.Hour)
	putUser(t, s, "host", ledger.Policy{SuspendedUntil: &until})
	mustDebit(t, s, gift("g1", "fan", 100, "host", "rose", 1))
	var receiver, withheld *string
	var earnings int64
	if err := s.Pool().QueryRow(context.Background(), `SELECT receiver_id, withheld_from, earnings FROM gift_entries WHERE request_id = 'g1'`).
		Scan(&receiver, &withheld, &earnings); err != nil {
		t.Fatal(err)
	}
	if receiver != nil || withheld == nil || *withheld != "host" || earnings != 0 {
		t.Errorf("a gift to a suspended receiver settled to %v (withheld from %v), earnings %d", receiver, withheld, earnings)
	}
	c.set(until)
	mustDebit(t, s, gift("g2", "fan", 100, "host", "rose", 1))
	if a := earningsOf(t, s, "host"); a.Balance != 50 {
		t.Errorf("host's earnings after the suspension %+v, want 50", a)
	}
	auditOK(t, s)
	checkBooks(t, s)
}

// The counters equal what sums of the debits would give, for random debits
// at random times over three months, in a zone with an offset.
func TestSafeguards_CountersEqualSumsOfDebits(t *testing.T) {
	zone := "America/New_York"
	loc, _ := time.LoadLocation(zone)
	start := time.Date(2026, 1, 30, 0, 0, 0, 0, loc)
	c := &clock{t: start}
	s := openSafe(t, ledger.Safeguards{TimeZone: zone}, c)
	topUp(t, s, "u", 1_000_000_000)
	type spent struct {
		at   time.Time
		gold int64
	}
	var log []spent
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		c.set(c.now().Add(time.Duration(rng.IntN(6*60)) * time.Minute))
		g := int64(1 + rng.IntN(1000))
		if res := mustDebit(t, s, debit(fmt.Sprint("d", i), "u", g)); res.Status != ledger.Debited {
			t.Fatalf("debit %d: %+v", i, res)
		}
		log = append(log, spent{c.now(), g})
		if i%7 != 0 {
			continue
		}
		now := c.now()
		var want24, wantDay, wantMonth int64
		hourStart := now.Truncate(time.Hour).Add(-24 * time.Hour)
		y, m, d := now.In(loc).Date()
		for _, e := range log {
			if !e.at.Before(hourStart) {
				want24 += e.gold
			}
			ey, em, ed := e.at.In(loc).Date()
			if ey == y && em == m {
				wantMonth += e.gold
				if ed == d {
					wantDay += e.gold
				}
			}
		}
		w, err := s.SpendWindowOf(context.Background(), "u")
		if err != nil || w.Last24h != want24 || w.DayGold != wantDay || w.MonthGold != wantMonth {
			t.Fatalf("after debit %d at %s: counters %+v, %v; want 24 h %d, day %d, month %d", i, now, w, err, want24, wantDay, wantMonth)
		}
	}
}

func TestSafeguards_PolicyBadInputAndHistory(t *testing.T) {
	s := openSafe(t, ledger.Safeguards{}, nil)
	ctx := context.Background()
	topUp(t, s, "u", 1)
	user := ledger.PolicyKey{Scope: ledger.ScopeUser, Subject: "u"}
	for _, c := range []struct {
		name string
		k    ledger.PolicyKey
		p    ledger.Policy
		want error
	}{
		{"negative", user, ledger.Policy{Cap24h: i64(-1)}, ledger.ErrBadPolicy},
		{"absurd", user, ledger.Policy{CapMonth: i64(ledger.MaxAmount + 1)}, ledger.ErrBadPolicy},
		{"cooling off too long", user, ledger.Policy{CoolingOffS: i64(31 * 86400)}, ledger.ErrBadPolicy},
		{"malformed zone", user, ledger.Policy{TimeZone: strp("Mars/Olympus")}, ledger.ErrBadPolicy},
		{"unknown user", ledger.PolicyKey{Scope: ledger.ScopeUser, Subject: "nobody"}, ledger.Policy{}, ledger.ErrUnknownUser},
		{"flag on an app", ledger.PolicyKey{Scope: ledger.ScopeApp, Subject: "linkv/a"}, ledger.Policy{Minor: yes()}, ledger.ErrBadPolicy},
		{"bad app", ledger.PolicyKey{Scope: ledger.ScopeApp, Subject: "other/a"}, ledger.Policy{}, ledger.ErrBadPolicy},
	} {
		if _, err := s.PutPolicy(ctx, c.k, c.p, "op"); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := s.PutPolicy(ctx, user, ledger.Policy{Cap24h: i64(10)}, "ann"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutPolicy(ctx, user, ledger.Policy{Cap24h: i64(20), Consent: yes()}, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearPolicy(ctx, user, "cy"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetPolicy(ctx, user); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("a cleared policy: %v", err)
	}
	h, err := s.PolicyHistory(ctx, user, 10)
	if err != nil || len(h) != 3 {
		t.Fatalf("history %+v, %v", h, err)
	}
	if h[0].ChangedBy != "cy" || h[0].New != nil || *h[0].Old.Cap24h != 20 ||
		h[1].ChangedBy != "bob" || *h[1].Old.Cap24h != 10 || *h[1].New.Cap24h != 20 ||
		h[2].ChangedBy != "ann" || h[2].Old != nil {
		t.Errorf("history %+v", h)
	}
}

// A binary of the previous release calls the 16-argument signature during a
// rolling deploy: it keeps working, and a recorded policy refusal reaches it
// as a 402, which it answers as a final refusal (a 403 it would take for a
// debit).
func TestSafeguards_PreviousReleasesSignatureDuringARollingDeploy(t *testing.T) {
	s := openSafe(t, ledger.Safeguards{}, nil)
	topUp(t, s, "kid", 100)
	putUser(t, s, "kid", ledger.Policy{Minor: yes()})
	d := debit("m1", "kid", 5)
	if res := mustDebit(t, s, d); res.Status != ledger.PolicyRefused {
		t.Fatalf("%+v", res)
	}
	var status int
	var balance int64
	var replay bool
	var refusal *string
	err := s.Pool().QueryRow(context.Background(), `
		SELECT status, balance, replay, refusal FROM giftd_debit_gifts(
			ARRAY['linkv'], ARRAY['app'], ARRAY['m1'], ARRAY[$1::bytea], ARRAY['kid'], ARRAY[5::bigint],
			ARRAY[now() + interval '1 hour'], ARRAY['{}'::jsonb], ARRAY[NULL::text], ARRAY['r'], ARRAY['1'],
			ARRAY[1::bigint], ARRAY[NULL::bigint], true, false, 0)`, d.Fingerprint[:]).Scan(&status, &balance, &replay, &refusal)
	if err != nil || status != 402 || balance != 100 || !replay || refusal != nil {
		t.Errorf("the old signature replayed %d %d %t %v, %v; want 402, 100, a replay, no refusal", status, balance, replay, refusal, err)
	}
}

func TestSafeguards_MigrationDownAndUpAgain(t *testing.T) {
	url := pgtest.URL(t)
	s, err := ledger.Open(context.Background(), url, ledger.WithSafeguards(ledger.Safeguards{On: true, MaxDebit: 1}))
	if err != nil {
		t.Fatal(err)
	}
	topUp(t, s, "u", 100)
	mustDebit(t, s, debit("refused", "u", 5))
	s.Close()
	if err := ledger.MigrateDown(url); err != nil {
		t.Fatal(err)
	}
	if err := ledger.Migrate(url); err != nil {
		t.Fatal(err)
	}
}

// Earnings younger than the hold are held: not payable, not paid out.
func TestSafeguards_HeldEarningsAreNotPaidUntilTheyMature(t *testing.T) {
	url := pgtest.URL(t)
	open := func(hold time.Duration) *ledger.Store {
		s, err := ledger.Open(context.Background(), url, ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000}),
			ledger.WithSafeguards(ledger.Safeguards{EarningsHold: hold}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	ctx := context.Background()
	held := open(time.Hour)
	topUp(t, held, "fan", 1000)
	mustDebit(t, held, gift("g1", "fan", 100, "host", "rose", 1))
	if a := earningsOf(t, held, "host"); a.Balance != 50 || a.Held != 50 || a.Payable != 0 {
		t.Errorf("earnings within the hold: %+v, want 50 held, 0 payable", a)
	}
	if _, err := held.Payout(ctx, ledger.Payout{ReceiverID: "host", Amount: 1, Key: "p1"}); !errors.Is(err, ledger.ErrInsufficientEarnings) {
		t.Errorf("a payout of held earnings: %v", err)
	}
	rows, err := held.EarningsPeriod(ctx, time.Now().Add(-time.Hour), time.Now().Add(time.Minute))
	if err != nil || len(rows) != 1 || rows[0].Held != 50 || rows[0].Payable != 0 {
		t.Errorf("export within the hold: %+v, %v", rows, err)
	}
	// A hold of a nanosecond has passed by now: the same earnings matured.
	matured := open(time.Nanosecond)
	if a := earningsOf(t, matured, "host"); a.Held != 0 || a.Payable != 50 {
		t.Errorf("matured earnings: %+v, want 50 payable", a)
	}
	if _, err := matured.Payout(ctx, ledger.Payout{ReceiverID: "host", Amount: 50, Key: "p2"}); err != nil {
		t.Errorf("a payout of matured earnings: %v", err)
	}
}

// BenchmarkSafeguards_Batch64 times one batch of 64 gifts of 64 senders,
// earnings on, with the safeguards off and on (every cap, the reminder and
// the cooling-off set, none hit), alternately on one database.
func BenchmarkSafeguards_Batch64(b *testing.B) {
	url := pgtest.URL(b)
	stores := map[string]*ledger.Store{}
	for _, mode := range []string{"off", "on"} {
		g := ledger.Safeguards{On: mode == "on", MaxDebit: 1e6, Cap24h: 1e11, CapMonth: 1e11, RemindDay: 1e11, CoolingOff: time.Hour, TimeZone: "Asia/Shanghai"}
		s, err := ledger.Open(context.Background(), url, ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000}), ledger.WithSafeguards(g))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(s.Close)
		stores[mode] = s
	}
	for u := range 64 {
		if _, err := stores["off"].TopUp(context.Background(), ledger.TopUp{UserID: fmt.Sprint("s", u), Amount: 1e12, Key: fmt.Sprint("seed", u)}); err != nil {
			b.Fatal(err)
		}
	}
	n := 0
	for round := range 3 {
		for _, mode := range []string{"off", "on"} {
			b.Run(fmt.Sprint(mode, "-", round), func(b *testing.B) {
				for range b.N {
					batch := make([]ledger.Debit, 64)
					for u := range batch {
						n++
						batch[u] = gift(fmt.Sprint("b", n), fmt.Sprint("s", u), 10, fmt.Sprint("h", u), "rose", 1)
					}
					if _, errs := ledger.RunBatch(stores[mode], batch); errs[0] != nil {
						b.Fatal(errs[0])
					}
				}
			})
		}
	}
}
