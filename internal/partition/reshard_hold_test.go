package partition_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"giftd/internal/credits"
	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// TestReshard_KeepsTheEarningsHold doubles a cluster of 2 (earnings held 1
// hour) whose receivers had gifts older and younger than the hold from
// senders that end on the other side of the split from them: receiver a
// stays on partition 0, their senders move to 2; receiver b moves to 2,
// their senders stay on 0. Each has 2 gifts made "2 hours ago" (their rows'
// times set back), 3 young ones before the reshard and 1 made between the
// pre-splits and the fence (so read by the split inside the pause). After
// the reshard, a payout of everything is refused with 10 payable (the old
// gifts'), a payout of those 10 goes through, and once the hold has passed
// (every economy row's time set back 2 hours more) the young 20 can be paid
// too. The held legs are +20 on the home, −20 on the other side; every
// audit clean, the resharding legs paired. Each receiver's earnings
// account (GET) says as payable what the payout pays.
//
// "stopped before the forget" stops giftd reshard after the proxy's switch,
// before step 4 (every partition's giftd_reshard_forget), and pays there:
// old partition 0 still holds a's young gifts of senders moved to 2 under
// the pre-split's cut, whose earnings came home in the held leg. The payouts
// there pay what they pay after the forget (partition migration 25): 10,
// not 0 (the young gifts held twice, by the gifts and by the leg); then the
// run again forgets, and the rest is as after a whole run.
func TestReshard_KeepsTheEarningsHold(t *testing.T) {
	for _, stop := range []string{"", "forget"} {
		name := map[string]string{"": "whole run", "forget": "stopped before the forget"}[stop]
		t.Run(name, func(t *testing.T) { keepsTheEarningsHold(t, stop) })
	}
}

// keepsTheEarningsHold is TestReshard_KeepsTheEarningsHold, with giftd
// reshard stopped at step stop ("" for none), the payouts made there, then
// run again.
func keepsTheEarningsHold(t *testing.T, stop string) {
	l := pgtest.Partitioned(t, 2)
	requireLogical(t, l.ProxyURL)
	newURLs := newPartitions(t, l)
	after := append(append([]string{}, l.PartitionURLs...), newURLs...)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const hold = time.Hour
	s, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(2, partition.For), ledger.WithBatching(ledger.Batching{MaxBatch: 1}),
		ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000}), ledger.WithSafeguards(ledger.Safeguards{EarningsHold: hold}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	consumer := startConsumer(t, ctx, l.PartitionURLs)

	// a on 0 of 4 with senders on 2 of 4; b on 2 of 4 with senders on 0 of
	// 4: all on partition 0 of 2, each gift a home gift before the reshard.
	a, b := placed("receiver", 0, 4, 1)[0], placed("receiver", 2, 4, 1)[0]
	senders := map[string]string{a: placed("sender", 2, 4, 1)[0], b: placed("sender", 0, 4, 1)[0]}
	for _, u := range senders {
		if _, err := s.TopUp(ctx, ledger.TopUp{UserID: u, Amount: 1000, Key: "seed-" + u}); err != nil {
			t.Fatal(err)
		}
	}
	give := func(round string, k int) {
		t.Helper()
		for _, r := range []string{a, b} {
			for j := range k {
				id := fmt.Sprintf("%s-%d-%s", round, j, r)
				if res, err := s.Debit(ctx, giftDebit(id, senders[r], r)); err != nil || res.Status != ledger.Debited {
					t.Fatalf("gift %s: %+v, %v", id, res, err)
				}
			}
		}
	}
	// setBack moves every economy row of the partitions of urls back by d:
	// the clock moved on by d.
	setBack := func(urls []string, d time.Duration) {
		t.Helper()
		for _, u := range urls {
			c := connect(t, u)
			for _, q := range []string{`SET session_replication_role = replica`,
				`UPDATE gift_entries SET created_at = created_at - $1::interval`,
				`UPDATE account_entries SET created_at = created_at - $1::interval`} {
				var args []any
				if strings.Contains(q, "$1") {
					args = append(args, d)
				}
				if _, err := c.Exec(ctx, q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
		}
	}
	give("old", 2)
	setBack(l.PartitionURLs, 2*hold)
	give("young", 3)
	waitDrained(ctx, t, l.PartitionURLs)
	// payable wants a payout of everything refused with want payable, and
	// the receiver's earnings account saying want payable.
	payable := func(r, key string, want int64) {
		t.Helper()
		_, err := s.Payout(ctx, ledger.Payout{ReceiverID: r, Amount: 30, Key: key})
		if !errors.Is(err, ledger.ErrInsufficientEarnings) || !strings.Contains(err.Error(), fmt.Sprintf("(payable %d)", want)) {
			t.Errorf("payout of 30 to %s: %v; want refused, %d payable", r, err, want)
		}
		if a, err := s.Earnings(ctx, r); err != nil || a.Payable != want {
			t.Errorf("earnings of %s: %+v, %v; want %d payable", r, a, err, want)
		}
	}
	payable(a, "all-before-"+a, 10)

	cut, cancelCut := context.WithCancel(ctx)
	defer cancelCut()
	r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs, EarningsHold: hold}, func(step string) {
		if step == "fence" {
			give("late", 1)
		}
		if step == stop {
			cancelCut()
		}
	})
	if _, err := partition.Reshard(cut, r); stop == "" && err != nil {
		t.Fatalf("reshard: %v", err)
	} else if stop != "" && !errors.Is(err, context.Canceled) {
		t.Fatalf("reshard stopped at %s: %v; want context.Canceled", stop, err)
	}
	parts := stores(t, after)
	consumer.Grow(parts)
	s4, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(4, partition.For), ledger.WithBatching(ledger.Batching{MaxBatch: 1}),
		ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000}), ledger.WithSafeguards(ledger.Safeguards{EarningsHold: hold}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s4.Close)
	s = s4

	// The held legs: +20 on the receiver's home, −20 on the other side.
	for _, x := range []struct {
		r         string
		home, off int
	}{{a, 0, 2}, {b, 2, 0}} {
		for p, want := range map[int]int64{x.home: 20, x.off: -20} {
			var got int64
			if err := connect(t, after[p]).QueryRow(ctx, `SELECT coalesce(sum(amount), 0) FROM account_entries
				WHERE receiver_id = $1 AND account = 'earnings' AND ref LIKE 'reshard-held:%'`, x.r).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("receiver %s: held legs on partition %d: %d; want %d", x.r, p, got, want)
			}
		}
	}
	audit := func(when string) {
		t.Helper()
		for p, ps := range parts {
			if r, err := ps.Audit(ctx); err != nil || !r.OK() {
				t.Errorf("audit of partition %d %s: %+v, %v", p, when, r, err)
			}
		}
		if r, err := credits.Audit(ctx, parts); err != nil || !r.OK() || r.Reshards == 0 {
			t.Errorf("credits audit %s: %+v, %v", when, r, err)
		}
	}
	if stop == "forget" {
		var given int
		if err := connect(t, l.PartitionURLs[0]).QueryRow(ctx, `SELECT count(*) FROM gift_entries
			WHERE receiver_id = $1 AND giftd_placement(sender_id) & 3 <> 0`, a).Scan(&given); err != nil || given == 0 {
			t.Fatalf("old partition 0 holds %d gifts to %s of senders moved to 2, %v; want some before the forget", given, a, err)
		}
	} else {
		audit("after the reshard")
	}
	for _, r := range []string{a, b} {
		payable(r, "all-after-"+r, 10)
		if pay, err := s.Payout(ctx, ledger.Payout{ReceiverID: r, Amount: 10, Key: "old-" + r}); err != nil || pay.Balance != 20 {
			t.Errorf("payout of the old 10 to %s: %+v, %v; want 20 left", r, pay, err)
		}
		payable(r, "rest-early-"+r, 0)
	}
	if stop != "" {
		if _, err := partition.Reshard(ctx, partition.Resharding{Layout: l, NewPartitionURLs: newURLs, EarningsHold: hold}); err != nil {
			t.Fatalf("reshard again: %v", err)
		}
		audit("after the run again")
		for _, r := range []string{a, b} {
			payable(r, "rest-forgotten-"+r, 0)
		}
	}
	setBack(after, 2*hold)
	for _, r := range []string{a, b} {
		if pay, err := s.Payout(ctx, ledger.Payout{ReceiverID: r, Amount: 20, Key: "young-" + r}); err != nil || pay.Balance != 0 {
			t.Errorf("payout of the young 20 to %s once the hold passed: %+v, %v; want nothing left", r, pay, err)
		}
	}
	audit("after the payouts")
}
