package credits

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

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

func (c *cluster) gift(t *testing.T, id, sender, receiver string) {
	t.Helper()
	res, err := c.proxy.Debit(context.Background(), ledger.Debit{
		Key: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id}, UserID: sender, Gold: 10,
		Fingerprint: sha256.Sum256([]byte(id)), ExpiresAt: time.Now().Add(time.Hour),
		Gift: ledger.Gift{ReceiverID: receiver, RoomID: "room", GiftID: "rose", Count: 1},
	})
	if err != nil || res.Status != ledger.Debited {
		t.Fatalf("gift %s: %+v, %v", id, res, err)
	}
}

func (c *cluster) reverse(id, key, user string) (ledger.Credit, error) {
	return c.proxy.Reverse(context.Background(), ledger.Reversal{
		Debit: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id}, UserID: user, Key: key})
}

// earningsOf is receiver's balance and owed on partition p.
func (c *cluster) earningsOf(t *testing.T, p int, receiver string) (balance, owed int64) {
	t.Helper()
	err := c.parts[p].Pool().QueryRow(context.Background(),
		`SELECT balance, owed FROM earnings_accounts WHERE receiver_id = $1`, receiver).Scan(&balance, &owed)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	return balance, owed
}

// audit checks each partition's audit, the audit across them, and that no
// transit account holds anything: every credit moved, every claw-back
// applied.
func (c *cluster) audit(t *testing.T) Report {
	t.Helper()
	ctx := context.Background()
	for p, s := range c.parts {
		r, err := s.Audit(ctx)
		if err != nil || !r.OK() {
			t.Errorf("audit of partition %d: %+v, %v", p, r, err)
		}
		var transit int64
		if err := s.Pool().QueryRow(ctx, `SELECT coalesce(sum(balance), 0)::bigint FROM earnings_accounts
			WHERE giftd_placement(receiver_id) & 1 <> $1`, p).Scan(&transit); err != nil {
			t.Fatal(err)
		}
		if transit != 0 {
			t.Errorf("partition %d holds %d in transit accounts after the drain", p, transit)
		}
	}
	r, err := Audit(ctx, c.parts)
	if err != nil || !r.OK() {
		t.Errorf("audit across partitions: %+v, %v", r, err)
	}
	return r
}

// TestReversal_OfACrossPartitionGiftWaitsForItsCreditThenTakesItBackOnce
// reverses gifts from a sender of partition 0 to a receiver of partition
// 1: while the credit consumer has not moved a gift's earnings, its
// reversal writes nothing and answers ErrCreditInTransit; once moved, the
// reversal takes them back on partition 1 (a shortfall when they were paid
// out), replays alike, and with partition 1 down leaves the claw-back
// pending for the consumer, which applies it once when partition 1 is back.
// Every audit is clean after each.
func TestReversal_OfACrossPartitionGiftWaitsForItsCreditThenTakesItBackOnce(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	us := usersOn("x", 1)
	sender, receiver := us[0][0], us[1][0]
	if _, err := c.proxy.TopUp(ctx, ledger.TopUp{UserID: sender, Amount: 1000, Key: "seed"}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		c.gift(t, fmt.Sprintf("g%d", i), sender, receiver)
	}

	// Not moved yet: nothing written, a retryable refusal.
	if _, err := c.reverse("g0", "rev0", ""); !errors.Is(err, ledger.ErrCreditInTransit) {
		t.Fatalf("reversal before the credit moved: %v; want ErrCreditInTransit", err)
	}
	if w, err := c.proxy.Wallet(ctx, sender); err != nil || w.Gold != 960 {
		t.Errorf("sender after a reversal in transit: %+v, %v; want 960 gold, nothing given back", w, err)
	}
	if b, _ := c.earningsOf(t, 0, receiver); b != 20 {
		t.Errorf("transit account of %s: %d; want 20 (4 gifts' earnings, untouched)", receiver, b)
	}

	c.drain(t, "d1")
	got, err := c.reverse("g0", "rev0", "")
	want := ledger.GiftReversal{ReceiverID: receiver, Earnings: 5, House: 5}
	if err != nil || got.Amount != 10 || got.Balance != 970 || got.Gift == nil || *got.Gift != want {
		t.Errorf("reversal after the move: %+v (gift %+v), %v; want 10 back, earnings 5 and house 5", got, got.Gift, err)
	}
	if b, o := c.earningsOf(t, 1, receiver); b != 15 || o != 0 {
		t.Errorf("%s on partition 1: balance %d, owed %d; want 15 and 0", receiver, b, o)
	}
	again, err := c.reverse("g0", "rev0", "")
	if err != nil || !again.Replay || again.Gift == nil || *again.Gift != want || again.EntryID != got.EntryID {
		t.Errorf("replay: %+v (gift %+v), %v; want the first answer", again, again.Gift, err)
	}
	if _, err := c.reverse("g0", "rev9", ""); !errors.Is(err, ledger.ErrAlreadyReversed) {
		t.Errorf("another key for g0: %v; want ErrAlreadyReversed", err)
	}
	if _, err := c.reverse("g1", "rev0", ""); !errors.Is(err, ledger.ErrKeyReused) {
		t.Errorf("rev0 for g1: %v; want ErrKeyReused", err)
	}
	if _, err := c.reverse("g1", "rev1", receiver); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("g1 named as the receiver's debit: %v; want ErrNotFound", err)
	}
	c.audit(t)

	// Paid out, then reversed: the receiver owes it.
	if p, err := c.proxy.Payout(ctx, ledger.Payout{ReceiverID: receiver, Amount: 15, Key: "pay"}); err != nil || p.Balance != 0 {
		t.Fatalf("payout: %+v, %v", p, err)
	}
	if got, err := c.reverse("g1", "rev1", ""); err != nil || got.Gift == nil ||
		*got.Gift != (ledger.GiftReversal{ReceiverID: receiver, Shortfall: 5, House: 5}) {
		t.Errorf("reversal after the payout: %+v (gift %+v), %v; want a shortfall of 5", got, got.Gift, err)
	}

	// Partition 1 down: the reversal, told the sender, commits on
	// partition 0 and leaves the claw-back pending; without the sender it
	// asks every partition and gets a retryable answer.
	// Its key claimed on partition 0 too (docs/scale-out.md#keys-across-partitions).
	rev2 := "rev2"
	for i := 0; partition.For(rev2, 2) != 0; i++ {
		rev2 = fmt.Sprintf("rev2-%d", i)
	}
	pgtest.StopPartition(t, c.layout.PartitionURLs[1])
	if _, err := c.reverse("g2", rev2, ""); !errors.Is(err, ledger.ErrPartitionUnreachable) {
		t.Errorf("reversal without the sender, partition 1 down: %v; want ErrPartitionUnreachable", err)
	}
	got, err = c.reverse("g2", rev2, sender)
	if err != nil || got.Gift == nil || *got.Gift != (ledger.GiftReversal{ReceiverID: receiver, House: 5, Clawback: 5}) {
		t.Errorf("reversal with partition 1 down: %+v (gift %+v), %v; want the claw-back of 5 pending", got, got.Gift, err)
	}
	pgtest.StartPartition(t, c.layout.PartitionURLs[1])
	c.parts[1].Pool().Reset() // its connections were ended
	if r, err := Audit(ctx, c.parts); err != nil || !r.OK() || r.ClawbacksPending != 1 {
		t.Errorf("audit with the claw-back pending: %+v, %v; want OK with 1 pending", r, err)
	}
	c.drain(t, "d2")
	if b, o := c.earningsOf(t, 1, receiver); b != 0 || o != 10 {
		t.Errorf("%s on partition 1 after the drain: balance %d, owed %d; want 0 and 10", receiver, b, o)
	}
	if again, err := c.reverse("g2", rev2, ""); err != nil || again.Gift == nil ||
		*again.Gift != (ledger.GiftReversal{ReceiverID: receiver, Shortfall: 5, House: 5}) {
		t.Errorf("replay once applied: %+v (gift %+v), %v; want the shortfall of 5", again, again.Gift, err)
	}
	r := c.audit(t)
	if r.Clawbacks != 3 || r.ClawbacksPending != 0 {
		t.Errorf("audit: %d claw-backs, %d pending; want 3 and 0", r.Clawbacks, r.ClawbacksPending)
	}
	if w, err := c.proxy.Wallet(ctx, sender); err != nil || w.Gold != 990 {
		t.Errorf("sender: %+v, %v; want 990 (3 of 4 gifts given back)", w, err)
	}
	// The receiver's period reads as one server's: 20 earned, 5 taken back
	// from the earnings, 10 owed.
	per, err := c.proxy.ReceiverPeriod(ctx, receiver, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil || per.Gifts != 4 || per.Earned != 20 || per.TakenBack != 5 || per.Shortfall != 10 {
		t.Errorf("period of %s: %+v, %v; want 4 gifts, 20 earned, 5 taken back, 10 owed", receiver, per, err)
	}
}

// TestReversalsAndPayouts_RacingTheConsumer sends gifts from senders of
// both partitions to receivers of both while the credit consumer runs,
// reverses half of them (retrying while their credits are in transit) and
// pays receivers out as they go: every reversal gives its gold back once,
// takes the receiver's side back once, nothing goes negative, and after a
// drain no transit balance is left and every audit is clean.
func TestReversalsAndPayouts_RacingTheConsumer(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	senders, receivers := usersOn("s", 2), usersOn("r", 1)
	all := func(x [][]string) []string { return append(append([]string{}, x[0]...), x[1]...) }
	for _, s := range all(senders) {
		if _, err := c.proxy.TopUp(ctx, ledger.TopUp{UserID: s, Amount: 1000, Key: "seed-" + s}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfig("racer")
	cfg.Idle = 5 * time.Millisecond
	rctx, stop := context.WithCancel(ctx)
	var consumer sync.WaitGroup
	consumer.Go(func() { New(c.parts, cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil))).Run(rctx) })

	var wg sync.WaitGroup
	var mu sync.Mutex
	reversed := map[string]int64{} // sender → gold given back
	for _, s := range all(senders) {
		for _, r := range all(receivers) {
			wg.Go(func() {
				for i := range 6 {
					id := fmt.Sprintf("%s-%s-%d", s, r, i)
					c.gift(t, id, s, r)
					if i%2 == 1 {
						continue
					}
					for tries := 0; ; tries++ {
						got, err := c.reverse(id, "rev-"+id, "")
						if errors.Is(err, ledger.ErrCreditInTransit) && tries < 20 {
							continue // each try waited up to 3 s for the consumer
						}
						if err != nil || got.Amount != 10 {
							t.Errorf("reverse %s: %+v, %v", id, got, err)
							return
						}
						mu.Lock()
						reversed[s] += got.Amount
						mu.Unlock()
						break
					}
				}
			})
		}
	}
	// Payouts of 3 as the earnings come, until the gifts are all sent and
	// each receiver was paid at least once.
	giftsDone := make(chan struct{})
	var payouts sync.WaitGroup
	for _, r := range all(receivers) {
		payouts.Go(func() {
			paid := false
			for i := 0; ; i++ {
				select {
				case <-giftsDone:
					if paid {
						return
					}
				default:
				}
				_, err := c.proxy.Payout(ctx, ledger.Payout{ReceiverID: r, Amount: 3, Key: fmt.Sprintf("pay-%s-%d", r, i)})
				switch {
				case err == nil:
					paid = true
				case !errors.Is(err, ledger.ErrInsufficientEarnings) && !errors.Is(err, ledger.ErrNotFound):
					t.Errorf("payout of %s: %v", r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(giftsDone)
	payouts.Wait()
	stop()
	consumer.Wait()
	c.drain(t, "drain")
	for _, s := range all(senders) {
		if w, err := c.proxy.Wallet(ctx, s); err != nil || w.Gold != 1000-6*10*2+reversed[s] || reversed[s] != 3*10*2 {
			t.Errorf("sender %s: %+v, %v; given back %d; want %d gold", s, w, err, reversed[s], 1000-3*10*2)
		}
	}
	r := c.audit(t)
	cross := 0
	for _, s := range all(senders) {
		for _, rc := range all(receivers) {
			if partition.For(s, 2) != partition.For(rc, 2) {
				cross += 3
			}
		}
	}
	if r.Clawbacks != cross || r.ClawbacksPending != 0 {
		t.Errorf("audit: %d claw-backs, %d pending; want %d (the reversed gifts across partitions), 0 pending", r.Clawbacks, r.ClawbacksPending, cross)
	}
	// Each receiver's books: balance − owed on its partition = what its
	// gifts earned − paid out − the earnings of its gifts reversed.
	for _, rc := range all(receivers) {
		var earned, reversedEarnings int64
		for _, s := range c.parts {
			var e, re int64
			err := s.Pool().QueryRow(ctx, `
				SELECT coalesce(sum(g.earnings), 0)::bigint,
				       coalesce(sum(g.earnings) FILTER (WHERE EXISTS (SELECT 1 FROM ledger_entries r WHERE r.reverses = g.debit_entry)), 0)::bigint
				FROM gift_entries g WHERE g.receiver_id = $1`, rc).Scan(&e, &re)
			if err != nil {
				t.Fatal(err)
			}
			earned, reversedEarnings = earned+e, reversedEarnings+re
		}
		home := c.parts[partition.For(rc, 2)]
		var net, paid int64
		if err := home.Pool().QueryRow(ctx, `
			SELECT (SELECT balance - owed FROM earnings_accounts WHERE receiver_id = $1),
			       (SELECT coalesce(-sum(amount), 0)::bigint FROM account_entries WHERE receiver_id = $1 AND kind = 'payout')`,
			rc).Scan(&net, &paid); err != nil {
			t.Fatal(err)
		}
		if net != earned-paid-reversedEarnings || paid == 0 {
			t.Errorf("receiver %s: balance − owed %d; want earned %d − paid %d − reversed %d (and some paid)",
				rc, net, earned, paid, reversedEarnings)
		}
	}
}
