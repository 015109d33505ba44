package partition_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// TestReshard_MovingUsersDebitWaitsThroughThePause sends, during a 2 → 4
// reshard's pause, a debit of a user it moves: behind the fence (step
// "sequences") and once the claims moved (step "switch"), through a store
// batching as giftd serve does. Each is held (the store counts it in
// AwaitingSwitch) and not answered until the proxy switches; then it is
// debited once, on the user's new partition. A staying user's debit in the
// pause is debited at once. Before, the moving user's debit failed at once
// (a 500 to LinkV), however short the pause. A debit whose wait the pause
// outlasts (held here: a context without a deadline waits 2 s) is answered
// ErrReshardPaused, and nothing of it is written.
func TestReshard_MovingUsersDebitWaitsThroughThePause(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	requireLogical(t, l.ProxyURL)
	newURLs := newPartitions(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(2, partition.For), ledger.WithEconomy(ledger.Economy{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)

	steps := []string{"sequences", "switch"}
	movers, stayers := map[string]string{}, map[string]string{}
	for i, step := range steps {
		movers[step] = usersOn(i+2, 4, 1)[0] // from partition i of 2 to i+2 of 4
		stayers[step] = usersOn(i, 4, 1)[0]
	}
	outlasted := usersOn(2, 4, 2)[1]
	for _, u := range []string{movers["sequences"], movers["switch"], stayers["sequences"], stayers["switch"], outlasted} {
		if _, err := s.TopUp(ctx, ledger.TopUp{UserID: u, Amount: 100, Key: "seed-" + u}); err != nil {
			t.Fatal(err)
		}
	}

	type held struct {
		res  ledger.DebitResult
		err  error
		done chan struct{}
	}
	helds := map[string]*held{}
	r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(step string) {
		mover, ok := movers[step]
		if !ok {
			return
		}
		if res, err := s.Debit(ctx, reshardDebit("stay-"+step, stayers[step])); err != nil || res.Status != ledger.Debited {
			t.Errorf("at %q: a staying user's debit: %+v, %v; want debited at once", step, res, err)
		}
		if step == "sequences" {
			// The hook holds the pause past the wait's bound.
			res, err := s.Debit(context.Background(), reshardDebit("outlasted", outlasted))
			if !errors.Is(err, ledger.ErrReshardPaused) {
				t.Errorf("a debit of moving user %s whose wait the pause outlasts: %+v, %v; want %v", outlasted, res, err, ledger.ErrReshardPaused)
			}
		}
		h := &held{done: make(chan struct{})}
		helds[step] = h
		waiting := s.AwaitingSwitch()
		go func() {
			defer close(h.done)
			h.res, h.err = s.Debit(ctx, reshardDebit("move-"+step, mover))
		}()
		// The step goes on (and the pause with it) only once the debit is
		// refused and waiting, or answered.
		for s.AwaitingSwitch() == waiting {
			select {
			case <-h.done:
				t.Errorf("at %q: the debit of moving user %s was answered inside the pause: %+v, %v; want it held until the switch",
					step, mover, h.res, h.err)
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	if _, err := partition.Reshard(ctx, r); err != nil {
		t.Fatal(err)
	}
	if len(helds) != len(steps) {
		t.Fatalf("the reshard reached %d of its pause's steps %v", len(helds), steps)
	}
	parts := stores(t, append(append([]string{}, l.PartitionURLs...), newURLs...))
	for i, step := range steps {
		h := helds[step]
		select {
		case <-h.done:
		case <-ctx.Done():
			t.Fatalf("at %q: the held debit never answered", step)
		}
		if h.err != nil || h.res.Status != ledger.Debited || h.res.Balance != 99 || h.res.Replay {
			t.Errorf("at %q: the moving user's held debit: %+v, %v; want debited to 99 after the switch", step, h.res, h.err)
		}
		for p, ps := range parts {
			w, err := ps.Wallet(ctx, movers[step])
			switch {
			case p == i+2 && (err != nil || w.Gold != 99):
				t.Errorf("at %q: the mover's wallet on its new partition %d: %+v, %v; want 99", step, p, w, err)
			case p != i+2 && err == nil:
				t.Errorf("at %q: partition %d still holds the mover's wallet %+v; it lives on %d", step, p, w, i+2)
			}
		}
	}
	if w, err := s.Wallet(ctx, outlasted); err != nil || w.Gold != 100 {
		t.Errorf("the wallet of %s, whose debit the pause outlasted: %+v, %v; want 100, nothing debited", outlasted, w, err)
	}
	if n := s.AwaitingSwitch(); n != 0 {
		t.Errorf("%d debits still counted as waiting after the switch", n)
	}
	for p, ps := range parts {
		if rep, err := ps.Audit(ctx); err != nil || !rep.OK() {
			t.Errorf("audit of partition %d: %+v, %v", p, rep, err)
		}
	}
}
