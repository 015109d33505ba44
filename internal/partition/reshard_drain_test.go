package partition_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/credits"
	"giftd/internal/ledger"
	"giftd/internal/partition"
)

// TestReshard_DrainsWhatIsPendingAtTheFence leaves, with no credit consumer
// running, claw-backs pending (reversals of gifts whose credits had moved
// to their receivers' partitions), or credits (gifts), when giftd reshard
// fences (2 → 4). A consumer starts once the fences are up, and the
// earnings accounts it must write are held locked until the drain has
// looked twice: the pause goes on only once every one is applied.
// Afterwards each claw-back is applied once, on one partition, and each
// receiver's earnings and what they owe are right and whole on their
// partition of 4; every audit is clean.
func TestReshard_DrainsWhatIsPendingAtTheFence(t *testing.T) {
	for _, clawbacks := range []bool{true, false} {
		name := "credits"
		if clawbacks {
			name = "clawbacks"
		}
		t.Run(name, func(t *testing.T) { drainsPendingAtTheFence(t, clawbacks) })
	}
}

func drainsPendingAtTheFence(t *testing.T, clawbacks bool) {
	l, newURLs, after, ctx, s := economyCluster(t)
	senders, receivers := economyUsers(t, ctx, s, 4, 1, 1000) // one of each per partition of 4
	_, stopFirst := runConsumer(t, ctx, l.PartitionURLs)
	for _, from := range senders {
		for _, to := range receivers {
			id := "gift-" + from + "-" + to
			if res, err := s.Debit(ctx, giftDebit(id, from, to)); err != nil || res.Status != ledger.Debited {
				t.Fatalf("gift %s: %+v, %v", id, res, err)
			}
		}
	}
	waitDrained(ctx, t, l.PartitionURLs)
	stopFirst()

	var old []*pgx.Conn
	var dbs []string
	for _, u := range l.PartitionURLs {
		c := connect(t, u)
		var db string
		if err := c.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
			t.Fatal(err)
		}
		old, dbs = append(old, c), append(dbs, db)
	}
	// A reversal applies its claw-back on the receiver's partition right
	// after it commits, and leaves it to the consumer when that fails (the
	// partition down): giftd_clawback is out of the way for the reversals.
	clawbackAway := func(away bool) {
		t.Helper()
		from, to := "giftd_clawback", "giftd_clawback_away"
		if !away {
			from, to = to, from
		}
		for p, c := range old {
			if _, err := c.Exec(ctx, `ALTER FUNCTION `+from+`(int, bigint, text, bigint) RENAME TO `+to); err != nil {
				t.Fatalf("partition %d: %v", p, err)
			}
		}
	}

	// Each receiver earned 20 (4 gifts of which 5 each). The last pays 15
	// out, so that the second of its claw-backs is owed. Then either the
	// gifts from the senders of the other partition of 2 are reversed
	// (their credits moved, so each takes 5 back on its receiver's
	// partition), or every sender gives every receiver but the last one
	// more (12 credits, the 6 that cross partitions of 2 to move). Senders
	// and receivers who move and who stay are paired every way among them.
	last := receivers[len(receivers)-1]
	if _, err := s.Payout(ctx, ledger.Payout{ReceiverID: last, Amount: 15, Key: "pay-" + last}); err != nil {
		t.Fatalf("payout of %s: %v", last, err)
	}
	clawbackAway(true)
	reversed := 0
	for _, to := range receivers {
		for _, from := range senders {
			if !clawbacks || partition.For(from, 2) == partition.For(to, 2) {
				continue
			}
			id := "gift-" + from + "-" + to
			c, err := s.Reverse(ctx, ledger.Reversal{Debit: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id},
				Key: "rev-" + id})
			if err != nil || c.Gift == nil || c.Gift.Clawback != 5 {
				t.Fatalf("reverse %s: %+v, %v; want 5 to take back, pending", id, c, err)
			}
			reversed++
		}
	}
	clawbackAway(false)
	gifts := 0
	for _, from := range senders {
		for _, to := range receivers[:len(receivers)-1] {
			if clawbacks {
				continue
			}
			id := "more-" + from + "-" + to
			if res, err := s.Debit(ctx, giftDebit(id, from, to)); err != nil || res.Status != ledger.Debited {
				t.Fatalf("gift %s: %+v, %v", id, res, err)
			}
			gifts++
		}
	}
	// The claw-backs and the gifts with earnings past each old partition's
	// credit cursor.
	pending := func() (claws, credits int) {
		t.Helper()
		for p, c := range old {
			var cl, cr int
			if err := c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE e.type = 'debit.reversed'
				                                     AND coalesce((e.data->'gift'->>'clawback')::bigint, 0) > 0),
				       count(*) FILTER (WHERE e.type = 'gift.debited' AND (e.data->>'earnings')::bigint > 0)
				FROM events AS e, credit_cursor AS c WHERE e.position > c.position`).Scan(&cl, &cr); err != nil {
				t.Fatalf("partition %d: %v", p, err)
			}
			claws, credits = claws+cl, credits+cr
		}
		return claws, credits
	}
	if cl, cr := pending(); cl != reversed || cr != gifts {
		t.Fatalf("%d claw-backs and %d credits pending before the reshard; want %d and %d", cl, cr, reversed, gifts)
	}
	for p, c := range old {
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM account_entries WHERE kind = 'clawback'`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("partition %d: %d claw-backs applied before the reshard, %v; want none", p, n, err)
		}
	}

	// A consumer holds the leases, as giftd reshard needs before it pauses:
	// held here for the one of the same owner the drain's hook starts.
	leaseTo(ctx, t, old, "test")

	var locks []pgx.Tx
	release := sync.OnceFunc(func() {
		for _, tx := range locks {
			tx.Rollback(context.Background()) //nolint:errcheck // only the lock counts
		}
	})
	defer release()
	watch := connect(t, l.PartitionURLs[0])
	wctx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	watched := make(chan error, 1)
	var consumer *credits.Consumer
	hook := func(step string) {
		switch step {
		case "drain":
			if cl, cr := pending(); cl != reversed || cr != gifts {
				t.Errorf("%d claw-backs and %d credits pending behind the fences; want %d and %d", cl, cr, reversed, gifts)
			}
			for p, u := range l.PartitionURLs {
				tx, err := connect(t, u).Begin(ctx)
				if err == nil {
					locks = append(locks, tx)
					_, err = tx.Exec(ctx, `SELECT 1 FROM earnings_accounts WHERE receiver_id = ANY ($1) FOR UPDATE`, receivers)
				}
				if err != nil {
					t.Fatalf("partition %d: lock the earnings accounts: %v", p, err)
				}
			}
			var stop func()
			consumer, stop = runConsumer(t, ctx, l.PartitionURLs)
			t.Cleanup(stop)
			go func() {
				err := drainLookedTwice(wctx, watch, dbs)
				if err == nil {
					release()
				}
				watched <- err
			}()
		case "split":
			// Every claim has moved: the drain is behind.
			if cl, cr := pending(); cl != 0 || cr != 0 {
				t.Errorf("the pause went on past the drain with %d claw-backs and %d credits pending", cl, cr)
			}
			stopWatching()
			release()
		}
	}
	if _, err := partition.Reshard(ctx, partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, hook)); err != nil {
		t.Fatalf("reshard: %v", err)
	}
	if consumer == nil {
		t.Fatal("the reshard never reached its drain")
	}
	if err := <-watched; err != nil {
		t.Errorf("the drain did not look again while the credits were held back: %v", err)
	}
	parts := stores(t, after)
	consumer.Grow(parts)
	waitDrained(ctx, t, after)

	// Each claw-back's legs on one partition, 5 taken in all (from the
	// earnings, or owed).
	on := map[string][]int{}
	took := map[string]int64{}
	for p, u := range after {
		rows, err := connect(t, u).Query(ctx, `SELECT ref, sum(CASE account WHEN 'earnings' THEN -amount ELSE amount END)::bigint
			FROM account_entries WHERE kind = 'clawback' GROUP BY ref`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var ref string
			var amount int64
			if err := rows.Scan(&ref, &amount); err != nil {
				t.Fatal(err)
			}
			on[ref] = append(on[ref], p)
			took[ref] += amount
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if len(on) != reversed {
		t.Errorf("%d claw-backs applied; want %d", len(on), reversed)
	}
	for ref, ps := range on {
		if len(ps) != 1 || took[ref] != 5 {
			t.Errorf("claw-back %s: legs on partitions %v taking %d; want one partition, 5", ref, ps, took[ref])
		}
	}
	// Each receiver: 20 earned, then 10 taken back or 20 more earned (the
	// last: 15 paid out, then 5 taken back and 5 owed, or no more), all on
	// their partition of 4.
	for _, r := range receivers {
		balance, owed := int64(40), int64(0)
		switch {
		case clawbacks && r == last:
			balance, owed = 0, 5
		case clawbacks:
			balance = 10
		case r == last:
			balance = 5
		}
		if a, err := s.Earnings(ctx, r); err != nil || a.Balance != balance || a.Owed != owed {
			t.Errorf("receiver %s: %+v, %v; want %d earned, %d owed", r, a, err, balance, owed)
		}
		home := partition.For(r, 4)
		for p, u := range after {
			var b, o int64
			if err := connect(t, u).QueryRow(ctx, `SELECT coalesce(sum(balance), 0), coalesce(sum(owed), 0)
				FROM earnings_accounts WHERE receiver_id = $1`, r).Scan(&b, &o); err != nil {
				t.Fatal(err)
			}
			if p == home && (b != balance || o != owed) || p != home && (b != 0 || o != 0) {
				t.Errorf("receiver %s (of partition %d): %d earned, %d owed on partition %d", r, home, b, o, p)
			}
		}
	}
	auditsClean(t, ctx, parts)
}

// drainLookedTwice returns once a connection to one of the databases dbs
// has run giftd reshard's drain query (its wait for the credits of the old
// count) a second time: the drain found credits pending and looked again.
func drainLookedTwice(ctx context.Context, c *pgx.Conn, dbs []string) error {
	first := map[int32]time.Time{}
	for {
		rows, err := c.Query(ctx, `SELECT pid, query_start FROM pg_stat_activity
			WHERE datname = ANY ($1) AND query LIKE $2 AND pid <> pg_backend_pid()`,
			dbs, "%e.position > c.position AND e.position <= $1%")
		if err != nil {
			return err
		}
		type run struct {
			PID   int32
			Start time.Time
		}
		runs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[run])
		if err != nil {
			return err
		}
		for _, r := range runs {
			if t, ok := first[r.PID]; !ok {
				first[r.PID] = r.Start
			} else if !t.Equal(r.Start) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// leaseTo gives the credit lease of each partition of conns to owner for an
// hour.
func leaseTo(ctx context.Context, t *testing.T, conns []*pgx.Conn, owner string) {
	t.Helper()
	for p, c := range conns {
		if _, err := c.Exec(ctx, `UPDATE credit_cursor SET lease_owner = $1, lease_until = now() + interval '1 hour'`, owner); err != nil {
			t.Fatalf("partition %d: %v", p, err)
		}
	}
}

// TestReshard_RefusesToPauseWithoutACreditConsumer gives gifts whose
// credits are left pending with no credit consumer running: giftd reshard
// refuses to pause, nothing fenced, and gifts go on. With the lease held by
// a consumer that never steps, the drain gives up after DrainTimeout and
// lifts the fences and the freeze. With a consumer running, the run again
// completes, every receiver's earnings whole on their partition of 4.
func TestReshard_RefusesToPauseWithoutACreditConsumer(t *testing.T) {
	l, newURLs, after, ctx, s := economyCluster(t)
	senders, receivers := economyUsers(t, ctx, s, 4, 1, 1000)
	gifts := 0
	give := func(round string) {
		t.Helper()
		for _, from := range senders {
			for _, to := range receivers {
				id := round + "-" + from + "-" + to
				if res, err := s.Debit(ctx, giftDebit(id, from, to)); err != nil || res.Status != ledger.Debited {
					t.Fatalf("gift %s: %+v, %v", id, res, err)
				}
				gifts++
			}
		}
	}
	var old []*pgx.Conn
	for _, u := range l.PartitionURLs {
		old = append(old, connect(t, u))
	}
	// Nothing fenced or frozen: no fence row, and a gift of every sender,
	// those who move too, goes through.
	unfenced := func(round string) {
		t.Helper()
		for p, c := range old {
			var n int
			if err := c.QueryRow(ctx, `SELECT count(*) FROM giftd_reshard_fence`).Scan(&n); err != nil || n != 0 {
				t.Errorf("partition %d: %d fence rows, %v; want none", p, n, err)
			}
		}
		give(round)
	}
	give("a")

	_, err := partition.Reshard(ctx, partition.Resharding{Layout: l, NewPartitionURLs: newURLs})
	if err == nil || !strings.Contains(err.Error(), "no credit consumer holds its lease") {
		t.Fatalf("reshard with credits pending and no consumer: %v; want a refusal naming the consumer", err)
	}
	unfenced("b")

	leaseTo(ctx, t, old, "gone")
	_, err = partition.Reshard(ctx, partition.Resharding{Layout: l, NewPartitionURLs: newURLs, DrainTimeout: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "wait for the credit consumer") {
		t.Fatalf("reshard with the lease held by a consumer that never steps: %v; want the drain to give up", err)
	}
	unfenced("c")

	for p, c := range old {
		if _, err := c.Exec(ctx, `UPDATE credit_cursor SET lease_until = now()`); err != nil {
			t.Fatalf("partition %d: %v", p, err)
		}
	}
	consumer := startConsumer(t, ctx, l.PartitionURLs)
	if _, err := partition.Reshard(ctx, partition.Resharding{Layout: l, NewPartitionURLs: newURLs}); err != nil {
		t.Fatalf("reshard with a consumer running: %v", err)
	}
	parts := stores(t, after)
	consumer.Grow(parts)
	waitDrained(ctx, t, after)
	// Each receiver: 5 earned of each gift to them, all on their partition.
	want := int64(gifts / len(receivers) * 5)
	for _, r := range receivers {
		if a, err := s.Earnings(ctx, r); err != nil || a.Balance != want || a.Owed != 0 {
			t.Errorf("receiver %s: %+v, %v; want %d earned", r, a, err, want)
		}
	}
	auditsClean(t, ctx, parts)
}

// auditsClean checks that every partition's audit and the credits' audit
// are clean, no claw-back pending.
func auditsClean(t *testing.T, ctx context.Context, parts []*ledger.Store) {
	t.Helper()
	a := auditAll(t, ctx, parts)
	for p, r := range a.Partitions {
		if !r.OK() {
			t.Errorf("audit of partition %d: %+v", p, r)
		}
	}
	if !a.Credits.OK() || a.Credits.ClawbacksPending != 0 {
		t.Errorf("credits audit: %+v", a.Credits)
	}
}
