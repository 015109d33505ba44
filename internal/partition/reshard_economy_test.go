package partition_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/credits"
	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// placed returns n ids with prefix that partition.For places on p of parts.
func placed(prefix string, p, parts, n int) []string {
	var ids []string
	for i := 0; len(ids) < n; i++ {
		if id := fmt.Sprintf("%s-%d", prefix, i); partition.For(id, parts) == p {
			ids = append(ids, id)
		}
	}
	return ids
}

// giftDebit is a gift of 10 gold (5 earned at the default share of 50%).
func giftDebit(id, sender, receiver string) ledger.Debit {
	return ledger.Debit{
		Key:    ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id},
		UserID: sender, Gold: 10, Fingerprint: sha256.Sum256([]byte(id)), ExpiresAt: time.Now().Add(time.Hour),
		Gift: ledger.Gift{ReceiverID: receiver, RoomID: "room", GiftID: "rose", Count: 1},
	}
}

// waitDrained waits until every partition's credit cursor is past its last
// event, while the consumer runs.
func waitDrained(ctx context.Context, t *testing.T, urls []string) {
	t.Helper()
	for p, u := range urls {
		c := connect(t, u)
		for {
			var behind bool
			err := c.QueryRow(ctx, `SELECT c.position < coalesce((SELECT max(position) FROM events), 0) FROM credit_cursor AS c`).Scan(&behind)
			if err != nil {
				t.Fatalf("partition %d: %v", p, err)
			}
			if !behind {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("partition %d: the consumer never drained it: %v", p, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// TestReshard_SplitsTheGiftEconomyUnderLoad doubles a cluster of 2 with
// earnings on while 16 senders of all four partitions-to-be give gifts to
// receivers of all four (half of them on the sender's own partition of 4,
// half elsewhere), retrying every failure with the same key, and a credit
// consumer runs throughout (grown to the 4 partitions after the switch).
// Afterwards: every acknowledged gift once, on its sender's partition of 4,
// with its gift entry; every partition's audit clean; the credits' audit
// clean with the resharding legs paired; each receiver's whole earnings on
// their own partition (the others' accounts at 0), equal to half the gold
// of their acknowledged gifts. Then a reversal of a moved sender's gift to
// a moved receiver, made before the reshard, and a payout of that
// receiver: both on the partitions of 4, the books still clean.
func TestReshard_SplitsTheGiftEconomyUnderLoad(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	requireLogical(t, l.ProxyURL)
	newURLs := newPartitions(t, l)
	after := append(append([]string{}, l.PartitionURLs...), newURLs...)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	b := ledger.DefaultBatching()
	b.Window = 2 * time.Millisecond
	s := economyStore(t, ctx, l.ProxyURL, b)
	senders := make([][]string, 4)   // by partition of 4
	receivers := make([][]string, 4) // by partition of 4
	for p := range 4 {
		senders[p] = placed("sender", p, 4, 4)
		receivers[p] = placed("receiver", p, 4, 2)
		for _, u := range senders[p] {
			if _, err := s.TopUp(ctx, ledger.TopUp{UserID: u, Amount: 1_000_000, Key: "seed-" + u}); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The credit consumer, over the 2 partitions, then over the 4.
	consumer := startConsumer(t, ctx, l.PartitionURLs)

	type gift struct{ sender, receiver string }
	var mu sync.Mutex
	acked := map[string]gift{} // request id → the gift, answered 200
	sent := map[string]gift{}
	failures := map[string]int{}
	ackedOn := make([]int, 4) // by the sender's partition of 4
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			sp := g % 4
			sender := senders[sp][g/4]
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				// Half to a receiver of the sender's partition of 4, half
				// to one of the next partition's.
				rp := sp
				if k%2 == 1 {
					rp = (sp + 1 + g/4%3) % 4
				}
				receiver := receivers[rp][k/2%2]
				id := fmt.Sprintf("g%d-%d", g, k)
				d := giftDebit(id, sender, receiver)
				mu.Lock()
				sent[id] = gift{sender, receiver}
				mu.Unlock()
				for {
					dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
					res, err := s.Debit(dctx, d)
					dcancel()
					if err == nil {
						if res.Status != ledger.Debited {
							t.Errorf("gift %s: %+v; want 200", id, res)
						}
						mu.Lock()
						acked[id] = gift{sender, receiver}
						ackedOn[sp]++
						mu.Unlock()
						break
					}
					code := "other"
					var pgErr *pgconn.PgError
					if errors.As(err, &pgErr) {
						code = pgErr.Code
					}
					mu.Lock()
					if failures[code] == 0 {
						t.Logf("first failure %s: %v", code, err)
					}
					failures[code]++
					mu.Unlock()
					if ctx.Err() != nil {
						t.Errorf("gift %s never got an outcome: %v", id, err)
						return
					}
					select {
					case <-time.After(5 * time.Millisecond):
					case <-ctx.Done():
					}
				}
			}
		})
	}
	// waitAcks waits until each partition of 4 has n more acknowledged
	// gifts than now.
	waitAcks := func(n int) {
		t.Helper()
		mu.Lock()
		base := append([]int(nil), ackedOn...)
		mu.Unlock()
		for {
			mu.Lock()
			done := true
			for p := range 4 {
				done = done && ackedOn[p] >= base[p]+n
			}
			mu.Unlock()
			if done {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("waiting for gifts: %v", ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	waitAcks(60)
	mu.Lock()
	ackedBefore := map[string]gift{}
	for k, x := range acked {
		ackedBefore[k] = x
	}
	mu.Unlock()
	economyBefore := make([]int64, 2) // the economy rows of each old partition
	for i, u := range l.PartitionURLs {
		if err := connect(t, u).QueryRow(ctx, `SELECT (SELECT count(*) FROM gift_entries) + (SELECT count(*) FROM account_entries)`).
			Scan(&economyBefore[i]); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := partition.Reshard(ctx, partition.Resharding{Layout: l, NewPartitionURLs: newURLs, EarningsHold: time.Hour,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatalf("reshard: %v", err)
	}
	// The rows there before the reshard were split before the pause, on
	// both sides; inside it, only those written since.
	for p, u := range after {
		var pre, in int64
		if err := connect(t, u).QueryRow(ctx, `SELECT (SELECT rows FROM giftd_reshard_presplit WHERE partitions = 4),
			(SELECT rows FROM giftd_reshard_split WHERE partitions = 4)`).Scan(&pre, &in); err != nil {
			t.Fatalf("partition %d: %v", p, err)
		}
		t.Logf("partition %d: %d economy rows split before the pause, %d inside it", p, pre, in)
		if pre < economyBefore[p%2] {
			t.Errorf("partition %d: %d economy rows split before the pause; want at least the %d there before the reshard", p, pre, economyBefore[p%2])
		}
	}
	parts := stores(t, after)
	consumer.Grow(parts)
	waitAcks(60)
	close(stop)
	wg.Wait()
	t.Logf("reshard: %+v; failed attempts by SQLSTATE: %v; gifts acknowledged %d", rep, failures, len(acked))
	for i, p := range rep.Pauses {
		t.Logf("pause of partition %d: %v", i, p)
	}
	if len(acked) != len(sent) {
		t.Errorf("%d gifts sent, %d acknowledged", len(sent), len(acked))
	}
	if failures["GD005"] != 0 {
		t.Errorf("%d gift batches failed their wallet check (main migration 11); under the row locks none can", failures["GD005"])
	}
	waitDrained(ctx, t, after)

	// check is every assertion on the books, run after the load and again
	// after the reversal and the payout; earned is each receiver's due.
	check := func(stage string, earned map[string]int64) {
		t.Helper()
		gifts := make([]map[string]int, 4) // request id → gift entries, by partition
		for p, u := range after {
			gifts[p] = map[string]int{}
			rows, err := connect(t, u).Query(ctx, `
				SELECT g.request_id, count(*) FROM gift_entries AS g
				JOIN ledger_entries AS d ON d.id = g.debit_entry AND d.ref = g.request_id
				GROUP BY g.request_id`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var id string
				var n int
				if err := rows.Scan(&id, &n); err != nil {
					t.Fatal(err)
				}
				gifts[p][id] = n
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			var strays int
			if err := connect(t, u).QueryRow(ctx, `SELECT (SELECT count(*) FROM gift_entries WHERE giftd_placement(sender_id) & 3 <> $1)
				+ (SELECT count(*) FROM account_entries AS a JOIN gift_entries AS g ON g.id = a.gift_entry
				   WHERE giftd_placement(g.sender_id) & 3 <> $1)`, p).Scan(&strays); err != nil {
				t.Fatal(err)
			}
			if strays != 0 {
				t.Errorf("%s: partition %d keeps %d gifts (or their legs) of other partitions' senders", stage, p, strays)
			}
		}
		for id, g := range sent {
			home := partition.For(g.sender, 4)
			for p := range 4 {
				n := gifts[p][id]
				switch {
				case p != home && n > 0:
					t.Errorf("%s: gift %s of %s: %d on partition %d; the sender lives on %d", stage, id, g.sender, n, p, home)
				case p == home && (n > 1 || acked[id] != (gift{}) && n != 1):
					t.Errorf("%s: gift %s of %s: %d on its sender's partition; acknowledged: %v", stage, id, g.sender, n, acked[id] != (gift{}))
				}
			}
		}
		for p, ps := range parts {
			r, err := ps.Audit(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !r.OK() {
				t.Errorf("%s: audit of partition %d: %+v", stage, p, r)
			}
		}
		cr, err := credits.Audit(ctx, parts)
		if err != nil {
			t.Fatal(err)
		}
		if !cr.OK() || cr.Reshards == 0 {
			t.Errorf("%s: credits audit: %+v; want OK with resharding legs", stage, cr)
		}
		// Every gift is younger than the hold (an hour): the earnings moved
		// to a receiver's home are in held legs (paired by the audit above).
		var held int
		for _, u := range after {
			var n int
			if err := connect(t, u).QueryRow(ctx, `SELECT count(*) FROM account_entries WHERE ref LIKE 'reshard-held:%'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			held += n
		}
		if held == 0 {
			t.Errorf("%s: no held resharding leg; want the young earnings moved in them", stage)
		}
		for _, rs := range receivers {
			for _, r := range rs {
				home := partition.For(r, 4)
				for p, u := range after {
					var balance int64
					err := connect(t, u).QueryRow(ctx, `SELECT coalesce((SELECT balance - owed FROM earnings_accounts WHERE receiver_id = $1), 0)`, r).Scan(&balance)
					if err != nil {
						t.Fatal(err)
					}
					switch {
					case p == home && balance != earned[r]:
						t.Errorf("%s: receiver %s: %d on their partition %d; want %d (half of their gifts' gold)", stage, r, balance, p, earned[r])
					case p != home && balance != 0:
						t.Errorf("%s: receiver %s: %d left on partition %d, not theirs (%d)", stage, r, balance, p, home)
					}
				}
			}
		}
	}
	earned := map[string]int64{}
	for _, g := range acked {
		earned[g.receiver] += 5
	}
	check("after the reshard", earned)

	// A gift acknowledged before the reshard from a sender who moved (0 →
	// 2) to a receiver who moved (1 → 3), reversed now; then that
	// receiver paid out.
	var id string
	var g gift
	for k, x := range ackedBefore {
		if partition.For(x.sender, 4) == 2 && partition.For(x.receiver, 4) == 3 {
			id, g = k, x
			break
		}
	}
	if id == "" {
		t.Fatal("no gift from partition 2 to partition 3 of 4")
	}
	rev, err := s.Reverse(ctx, ledger.Reversal{Debit: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id},
		Key: "rev-" + id, Note: "test"})
	if err != nil {
		t.Fatalf("reverse %s: %v", id, err)
	}
	if rev.Gift == nil || rev.Gift.Earnings != 5 || rev.Gift.Shortfall != 0 || rev.Gift.House != 5 || rev.Gift.Clawback != 0 {
		t.Errorf("reverse %s: %+v; want 5 earnings taken back on the receiver's partition and 5 from the house", id, rev.Gift)
	}
	earned[g.receiver] -= 5
	pay, err := s.Payout(ctx, ledger.Payout{ReceiverID: g.receiver, Amount: earned[g.receiver], Key: "pay-" + g.receiver})
	if err != nil {
		t.Fatalf("payout of %s: %v", g.receiver, err)
	}
	if pay.Balance != 0 {
		t.Errorf("payout of %s: %+v; want the whole balance paid", g.receiver, pay)
	}
	earned[g.receiver] = 0
	waitDrained(ctx, t, after)
	check("after a reversal and a payout", earned)
}

// TestReshard_KeepsEveryReceiversBooks doubles a quiet cluster of 2 whose
// receivers have every kind of economy row: gifts from senders of both
// partitions (moved by the consumer), payouts, reversals of gifts from their
// own partition (taken back, then a shortfall) and from the other (a
// claw-back owed). Each receiver's earnings account (balance, owed), period
// report and earnings ledger read through the proxy are the same after the
// reshard as before; their balance and what they owe are whole on their
// partition of 4 and 0 on the others; every audit is clean. Then a payout
// recovers what a moved receiver owes, on their new partition.
func TestReshard_KeepsEveryReceiversBooks(t *testing.T) {
	l, newURLs, after, ctx, s := economyCluster(t)
	senders, receivers := economyUsers(t, ctx, s, 4, 2, 1000)
	consumer := startConsumer(t, ctx, l.PartitionURLs)

	give := func(round string) {
		t.Helper()
		for _, from := range senders {
			for _, to := range receivers {
				id := fmt.Sprintf("%s-%s-%s", round, from, to)
				if res, err := s.Debit(ctx, giftDebit(id, from, to)); err != nil || res.Status != ledger.Debited {
					t.Fatalf("gift %s: %+v, %v", id, res, err)
				}
			}
		}
	}
	start := time.Now().Add(-time.Minute)
	give("a")
	give("b")
	waitDrained(ctx, t, l.PartitionURLs)
	// Each receiver: 16 gifts, 80 earned; 75 paid out, then a gift of
	// their own partition of 2 reversed (5 taken back), another (5 owed),
	// and one from the other partition (5 owed by the claw-back).
	for _, r := range receivers {
		if _, err := s.Payout(ctx, ledger.Payout{ReceiverID: r, Amount: 75, Key: "pay-" + r}); err != nil {
			t.Fatalf("payout of %s: %v", r, err)
		}
		var own, other []string
		for _, from := range senders {
			if partition.For(from, 2) == partition.For(r, 2) {
				own = append(own, from)
			} else {
				other = append(other, from)
			}
		}
		for _, x := range []struct{ round, from string }{{"a", own[0]}, {"b", own[0]}, {"a", other[0]}} {
			id := fmt.Sprintf("%s-%s-%s", x.round, x.from, r)
			if _, err := s.Reverse(ctx, ledger.Reversal{Debit: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id},
				Key: "rev-" + id}); err != nil {
				t.Fatalf("reverse %s: %v", id, err)
			}
		}
	}
	give("c")
	waitDrained(ctx, t, l.PartitionURLs)

	type books struct {
		account ledger.EarningsAccount
		period  ledger.ReceiverPeriod
		ledger  map[string]int64 // kind/account/request → amount
	}
	read := func() map[string]books {
		t.Helper()
		out := map[string]books{}
		for _, r := range receivers {
			var b books
			var err error
			if b.account, err = s.Earnings(ctx, r); err != nil {
				t.Fatal(err)
			}
			b.account.UpdatedAt = time.Time{}
			if b.period, err = s.ReceiverPeriod(ctx, r, start, start.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			entries, err := s.EarningsLedger(ctx, r, nil, 1000)
			if err != nil {
				t.Fatal(err)
			}
			b.ledger = map[string]int64{}
			for _, e := range entries {
				b.ledger[e.Kind+"/"+e.Account+"/"+e.RequestID] += e.Amount
			}
			out[r] = b
		}
		return out
	}
	before := read()
	for _, r := range receivers {
		if a := before[r].account; a.Balance != 40 || a.Owed != 10 {
			t.Fatalf("receiver %s before: %+v; want 40 earned, 10 owed", r, a)
		}
	}
	if _, err := partition.Reshard(ctx, partition.Resharding{Layout: l, NewPartitionURLs: newURLs}); err != nil {
		t.Fatalf("reshard: %v", err)
	}
	parts := stores(t, after)
	consumer.Grow(parts)
	got := read()
	for _, r := range receivers {
		b, a := before[r], got[r]
		if a.account != b.account || a.period != b.period {
			t.Errorf("receiver %s: account %+v, period %+v after; before %+v, %+v", r, a.account, a.period, b.account, b.period)
		}
		if len(a.ledger) != len(b.ledger) {
			t.Errorf("receiver %s: %d ledger entries after, %d before", r, len(a.ledger), len(b.ledger))
		}
		for k, v := range b.ledger {
			if a.ledger[k] != v {
				t.Errorf("receiver %s: ledger %s: %d after, %d before", r, k, a.ledger[k], v)
			}
		}
		home := partition.For(r, 4)
		for p, u := range after {
			var balance, owed int64
			if err := connect(t, u).QueryRow(ctx, `SELECT coalesce(sum(balance), 0), coalesce(sum(owed), 0) FROM earnings_accounts WHERE receiver_id = $1`, r).
				Scan(&balance, &owed); err != nil {
				t.Fatal(err)
			}
			if (p == home) != (balance == 40 && owed == 10) || (p != home && (balance != 0 || owed != 0)) {
				t.Errorf("receiver %s (of partition %d): %d earned, %d owed on partition %d", r, home, balance, owed, p)
			}
		}
	}
	for p, ps := range parts {
		if r, err := ps.Audit(ctx); err != nil || !r.OK() {
			t.Errorf("audit of partition %d: %+v, %v", p, r, err)
		}
	}
	if r, err := credits.Audit(ctx, parts); err != nil || !r.OK() || r.Reshards == 0 {
		t.Errorf("credits audit: %+v, %v", r, err)
	}
	// A moved receiver's payout recovers what they owe, on their new
	// partition.
	moved := placed("receiver", 3, 4, 1)[0]
	pay, err := s.Payout(ctx, ledger.Payout{ReceiverID: moved, Amount: 30, Key: "pay2-" + moved})
	if err != nil || pay.Recovered != 10 || pay.Balance != 0 {
		t.Errorf("payout of %s after: %+v, %v; want 10 recovered and nothing left", moved, pay, err)
	}
	for p, ps := range parts {
		if r, err := ps.Audit(ctx); err != nil || !r.OK() {
			t.Errorf("audit of partition %d after the payout: %+v, %v", p, r, err)
		}
	}
}

// TestReshard_EconomyCutShortCarriesOnWhenRunAgain cuts giftd reshard short
// with gift economy rows on the cluster and the consumer running: once the
// subscriptions are dropped (the fences and the freeze lifted: gifts go on,
// and the copy, economy too, is made anew), once the claims have moved and
// before the economy is split (every gift of the old partitions refused
// until the run again), and once it is split (the moving senders refused).
// The run again completes: every gift once on its sender's partition, each
// receiver's earnings whole on their partition, every audit clean.
func TestReshard_EconomyCutShortCarriesOnWhenRunAgain(t *testing.T) {
	for _, step := range []string{"sequences", "split", "switch"} {
		t.Run(step, func(t *testing.T) {
			l := pgtest.Partitioned(t, 2)
			requireLogical(t, l.ProxyURL)
			newURLs := newPartitions(t, l)
			after := append(append([]string{}, l.PartitionURLs...), newURLs...)
			bg, cancelAll := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancelAll()
			s := economyStore(t, bg, l.ProxyURL, ledger.Batching{MaxBatch: 1})
			senders, receivers := economyUsers(t, bg, s, 4, 1, 1000)
			consumer := startConsumer(t, bg, l.PartitionURLs)
			earned := map[string]int64{}
			sentTo := map[string]string{} // request id → sender
			give := func(round string) {
				t.Helper()
				for _, from := range senders {
					for _, to := range receivers {
						id := fmt.Sprintf("%s-%s-%s", round, from, to)
						if res, err := s.Debit(bg, giftDebit(id, from, to)); err != nil || res.Status != ledger.Debited {
							t.Fatalf("gift %s: %+v, %v", id, res, err)
						}
						earned[to] += 5
						sentTo[id] = from
					}
				}
			}
			give("a")
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs, EarningsHold: time.Hour}, func(s string) {
				if s == step {
					cancel()
				}
			})
			if _, err := partition.Reshard(ctx, r); !errors.Is(err, context.Canceled) {
				t.Fatalf("reshard cut short at %s: %v; want context.Canceled", step, err)
			}
			stayer := placed("sender", 0, 4, 1)[0]
			switch step {
			case "sequences":
				give("b") // nothing fenced or frozen any more
			case "split":
				// Without a deadline it waits 2 s for a switch that does not
				// come (bg's would hold it for minutes).
				if _, err := s.Debit(context.Background(), giftDebit("between", stayer, receivers[1])); !errors.Is(err, ledger.ErrReshardPaused) {
					t.Errorf("a gift on an old partition between the claims and the split: %v; want %v until the run again", err, ledger.ErrReshardPaused)
				}
			}
			if _, err := partition.Reshard(bg, partition.Resharding{Layout: l, NewPartitionURLs: newURLs, EarningsHold: time.Hour}); err != nil {
				t.Fatalf("reshard again: %v", err)
			}
			parts := stores(t, after)
			consumer.Grow(parts)
			give("c")
			waitDrained(bg, t, after)
			for p, u := range after {
				rows, err := connect(t, u).Query(bg, `SELECT request_id FROM gift_entries`)
				if err != nil {
					t.Fatal(err)
				}
				ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					t.Fatal(err)
				}
				seen := map[string]bool{}
				for _, id := range ids {
					if seen[id] || partition.For(sentTo[id], 4) != p {
						t.Errorf("gift %s of %q on partition %d: twice, or not its sender's partition", id, sentTo[id], p)
					}
					seen[id] = true
				}
				for id, from := range sentTo {
					if partition.For(from, 4) == p && !seen[id] {
						t.Errorf("gift %s of %s missing from partition %d", id, from, p)
					}
				}
				for _, rc := range receivers {
					var balance int64
					if err := connect(t, u).QueryRow(bg, `SELECT coalesce(sum(balance - owed), 0) FROM earnings_accounts WHERE receiver_id = $1`, rc).
						Scan(&balance); err != nil {
						t.Fatal(err)
					}
					if want := map[bool]int64{true: earned[rc]}[partition.For(rc, 4) == p]; balance != want {
						t.Errorf("receiver %s: %d on partition %d; want %d", rc, balance, p, want)
					}
				}
			}
			for p, ps := range parts {
				if r, err := ps.Audit(bg); err != nil || !r.OK() {
					t.Errorf("audit of partition %d: %+v, %v", p, r, err)
				}
			}
			if r, err := credits.Audit(bg, parts); err != nil || !r.OK() || r.Reshards == 0 {
				t.Errorf("credits audit: %+v, %v", r, err)
			}
		})
	}
}

// TestReshard_TwiceKeepsTheEconomy doubles a cluster with earnings on
// twice, 2 → 4 → 8, gifts, payouts and reversals before each and gifts
// after, the consumer running throughout: every receiver's earnings whole
// on their partition of 8 and right, every gift on its sender's, every
// audit clean, the resharding legs of both runs paired.
func TestReshard_TwiceKeepsTheEconomy(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	requireLogical(t, l.ProxyURL)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := economyStore(t, ctx, l.ProxyURL, ledger.Batching{MaxBatch: 1})
	senders, receivers := economyUsers(t, ctx, s, 8, 1, 10_000)
	consumer := startConsumer(t, ctx, l.PartitionURLs)
	due := map[string]int64{} // balance − owed each receiver must have
	sentTo := map[string]string{}
	give := func(round string) {
		t.Helper()
		for _, from := range senders {
			for _, to := range receivers {
				id := fmt.Sprintf("%s-%s-%s", round, from, to)
				if res, err := s.Debit(ctx, giftDebit(id, from, to)); err != nil || res.Status != ledger.Debited {
					t.Fatalf("gift %s: %+v, %v", id, res, err)
				}
				due[to] += 5
				sentTo[id] = from
			}
		}
	}
	// Each receiver paid out all but 5, then two gifts reversed: one
	// taken back, one owed.
	payAndReverse := func(round string) {
		t.Helper()
		for i, r := range receivers {
			if _, err := s.Payout(ctx, ledger.Payout{ReceiverID: r, Amount: due[r] - 5, Key: round + "-pay-" + r}); err != nil {
				t.Fatalf("payout of %s: %v", r, err)
			}
			due[r] = 5
			for _, from := range []string{senders[i], senders[(i+3)%len(senders)]} {
				id := fmt.Sprintf("%s-%s-%s", round, from, r)
				if _, err := s.Reverse(ctx, ledger.Reversal{Debit: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id},
					Key: "rev-" + id}); err != nil {
					t.Fatalf("reverse %s: %v", id, err)
				}
				due[r] -= 5
			}
		}
	}
	urls := l.PartitionURLs
	check := func(stage string) {
		t.Helper()
		parts := stores(t, urls)
		n := len(urls)
		for p, u := range urls {
			rows, err := connect(t, u).Query(ctx, `SELECT request_id FROM gift_entries`)
			if err != nil {
				t.Fatal(err)
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, id := range ids {
				if seen[id] || partition.For(sentTo[id], n) != p {
					t.Errorf("%s: gift %s on partition %d: twice, or not its sender's partition", stage, id, p)
				}
				seen[id] = true
			}
			if len(seen) != 0 {
				for id, from := range sentTo {
					if partition.For(from, n) == p && !seen[id] {
						t.Errorf("%s: gift %s missing from partition %d", stage, id, p)
					}
				}
			}
			for _, rc := range receivers {
				var net int64
				if err := connect(t, u).QueryRow(ctx, `SELECT coalesce(sum(balance - owed), 0) FROM earnings_accounts WHERE receiver_id = $1`, rc).
					Scan(&net); err != nil {
					t.Fatal(err)
				}
				if want := map[bool]int64{true: due[rc]}[partition.For(rc, n) == p]; net != want {
					t.Errorf("%s: receiver %s: %d on partition %d of %d; want %d", stage, rc, net, p, n, want)
				}
			}
			if r, err := parts[p].Audit(ctx); err != nil || !r.OK() {
				t.Errorf("%s: audit of partition %d: %+v, %v", stage, p, r, err)
			}
		}
		if r, err := credits.Audit(ctx, parts); err != nil || !r.OK() {
			t.Errorf("%s: credits audit: %+v, %v", stage, r, err)
		}
	}
	double := func(round string) {
		t.Helper()
		give(round)
		waitDrained(ctx, t, urls)
		payAndReverse(round)
		waitDrained(ctx, t, urls)
		before := partition.Layout{ProxyURL: l.ProxyURL, PartitionURLs: urls}
		newURLs := newPartitions(t, before)
		if _, err := partition.Reshard(ctx, partition.Resharding{Layout: before, NewPartitionURLs: newURLs}); err != nil {
			t.Fatalf("reshard %d -> %d: %v", len(urls), 2*len(urls), err)
		}
		urls = append(append([]string{}, urls...), newURLs...)
		consumer.Grow(stores(t, urls))
		give(round + "-after")
		waitDrained(ctx, t, urls)
		check(fmt.Sprintf("after %d", len(urls)))
	}
	double("a")
	double("b")
}

// economyStore opens a store through the proxy of a cluster of 2, earnings
// on (half to the receiver), batching as b says.
func economyStore(t *testing.T, ctx context.Context, proxyURL string, b ledger.Batching) *ledger.Store {
	t.Helper()
	s, err := ledger.Open(ctx, proxyURL, ledger.WithPartitions(2, partition.For), ledger.WithBatching(b),
		ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// economyCluster is a cluster of 2 to reshard with the gift economy: its
// layout, 2 new databases, the 4 partitions' URLs in order, a context of 4
// minutes and a store with earnings on over the proxy, one debit a batch.
func economyCluster(t *testing.T) (l partition.Layout, newURLs, after []string, ctx context.Context, s *ledger.Store) {
	t.Helper()
	l = pgtest.Partitioned(t, 2)
	requireLogical(t, l.ProxyURL)
	newURLs = newPartitions(t, l)
	after = append(append([]string{}, l.PartitionURLs...), newURLs...)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	return l, newURLs, after, ctx, economyStore(t, ctx, l.ProxyURL, ledger.Batching{MaxBatch: 1})
}

// economyUsers places k senders and one receiver on each of n partitions,
// and tops each sender up with amount.
func economyUsers(t *testing.T, ctx context.Context, s *ledger.Store, n, k int, amount int64) (senders, receivers []string) {
	t.Helper()
	for p := range n {
		senders = append(senders, placed("sender", p, n, k)...)
		receivers = append(receivers, placed("receiver", p, n, 1)...)
	}
	for _, u := range senders {
		if _, err := s.TopUp(ctx, ledger.TopUp{UserID: u, Amount: amount, Key: "seed-" + u}); err != nil {
			t.Fatal(err)
		}
	}
	return senders, receivers
}

// startConsumer runs a credit consumer over the partitions of urls until
// the test ends.
func startConsumer(t *testing.T, ctx context.Context, urls []string) *credits.Consumer {
	t.Helper()
	consumer, stop := runConsumer(t, ctx, urls)
	t.Cleanup(stop)
	return consumer
}

// runConsumer runs a credit consumer over the partitions of urls until
// stop, which returns once it has stopped (its leases given up).
func runConsumer(t *testing.T, ctx context.Context, urls []string) (consumer *credits.Consumer, stop func()) {
	t.Helper()
	consumer = credits.New(stores(t, urls), credits.Config{Owner: "test", Lease: 10 * time.Second, Batch: 256,
		Idle: 20 * time.Millisecond}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	cctx, cancel := context.WithCancel(ctx)
	var done sync.WaitGroup
	done.Go(func() { consumer.Run(cctx) })
	return consumer, func() { cancel(); done.Wait() }
}
