package ledger

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// A debit of a user giftd reshard is moving is refused during the
// reshard's pause (docs/scale-out.md#resharding-n--2n): behind the fence
// (GD003) and, once the claims moved, by the partition the user is leaving
// (GD001), nothing run; with earnings on, so is every gift on an old
// partition from the fence until its economy is split. The pause lasts a second or two; answered at once,
// the refusal is a 500, and a platform's retries (LinkV's SDKs retry a 500
// up to three times) may all fall inside it, so the viewer's gift fails.
// Held until the proxy switches and run again on the user's new partition,
// it is a slower gift instead.

// pauseWaitMax bounds the wait of a debit whose context has no deadline.
// A callback's has its own (GIFTD_DB_TIMEOUT).
const pauseWaitMax = 2 * time.Second

// switchProbeEvery is how often the proxy's partition count is read while
// debits wait for the switch: one read per Store, whatever their number.
const switchProbeEvery = 20 * time.Millisecond

// switchWait lets the debits a reshard's pause refused wait for the proxy's
// switch together: one read of the count at a time, whose end each waiter
// then checks.
type switchWait struct {
	mu    sync.Mutex
	round chan struct{} // closed when the read running now ends; nil when none runs
	// waiting is how many debits are waiting now (AwaitingSwitch).
	waiting atomic.Int64
}

// AwaitingSwitch is the number of debits waiting now for the proxy's
// switch, refused by a giftd reshard's pause (the gauge
// giftd_debits_awaiting_reshard_switch).
func (s *Store) AwaitingSwitch() int64 { return s.switchWait.waiting.Load() }

// debitAfterSwitch answers d, which the partitioned Store routing over from
// partitions ran and err refused. When err is the pause's refusal (the
// fence's GD003; a GD001 where the partition the proxy reaches is claimed
// as one of twice the proxy's count, or already of its count), it waits
// for the proxy's count to grow and runs d again, where the new count
// places its user: nothing ran, and the key makes the run exact whatever
// happened. The wait ends with ctx, or after pauseWaitMax when ctx has no
// deadline; the answer is then err, marked ErrReshardPaused (a retry after
// the switch gets the true outcome). Any other err is returned as it is.
func (s *Store) debitAfterSwitch(ctx context.Context, d Debit, from int, err error) (DebitResult, error) {
	if !s.pausedDebit(ctx, d.UserID, err) {
		return DebitResult{}, err
	}
	wait := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		wait, cancel = context.WithTimeout(ctx, pauseWaitMax)
		defer cancel()
	}
	for {
		if werr := s.awaitSwitch(wait, from); werr != nil || ctx.Err() != nil {
			return DebitResult{}, fmt.Errorf("%w: %w", ErrReshardPaused, err)
		}
		from = s.Partitions()
		var res DebitResult
		if res, err = s.debit(ctx, d); err == nil || !s.pausedDebit(ctx, d.UserID, err) {
			return res, err
		}
	}
}

// pauseLike reports whether err, a partition's refusal of a whole batch,
// may be a reshard's pause: the fence's GD003, or GD001 (the partition no
// longer owns some of its users). Nothing ran.
func pauseLike(err error) bool { return isFenced(err) || isNotPlacedHere(err) }

// executeAroundPause answers debits, a batch refused as a whole with
// refusal (pauseLike), without running them one at a time (which held
// every answer until the last, docs/scale-out.md#a-moving-users-debit-waits-through-the-pause).
// The batch goes again as one batch per pair of partitions its users are
// placed on, under the store's count and under twice it: a reshard's moving
// users apart from the staying ones, and, when the proxy switched since the
// batch was formed, the users of different partitions apart. A part refused
// again (pauseLike) answers each of its debits with that refusal (nothing
// ran; Store.Debit waits for the switch where it is the pause), as does a
// batch that cannot be split; a part failing otherwise goes one debit at a
// time.
func (s *Store) executeAroundPause(ctx context.Context, debits []Debit, refusal error) ([]DebitResult, []error) {
	n := s.Partitions()
	type pair struct{ now, doubled int }
	groups := map[pair][]int{} // indexes into debits
	var order []pair
	for i, d := range debits {
		k := pair{s.place(d.UserID, n), s.place(d.UserID, 2*n)}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	results, errs := make([]DebitResult, len(debits)), make([]error, len(debits))
	if len(order) == 1 {
		// Nothing to split: the refusal stands for every debit.
		for i := range debits {
			errs[i] = refusal
		}
		return results, errs
	}
	for _, k := range order {
		at := groups[k]
		batch := make([]Debit, len(at))
		for j, i := range at {
			batch[j] = debits[i]
		}
		res, es, err := s.execute(ctx, batch)
		for j, i := range at {
			switch {
			case err == nil:
				results[i], errs[i] = res[j], es[j]
			case pauseLike(err) || len(at) == 1 || ctx.Err() != nil:
				errs[i] = err
			default:
				results[i], errs[i] = s.debitOne(ctx, batch[j])
			}
		}
	}
	return results, errs
}

// pausedDebit reports whether err is a reshard's pause refusing a debit of
// userID.
func (s *Store) pausedDebit(ctx context.Context, userID string, err error) bool {
	if isFenced(err) {
		return true
	}
	if !isNotPlacedHere(err) {
		return false
	}
	if ctx.Err() != nil {
		// A refusal answered as the debit's deadline passed is still told
		// apart (its answer then names the pause, not a misplaced
		// partition); the reads take a second at most.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
	}
	return s.pausedClaim(ctx, userID)
}

// awaitSwitch waits until the Store routes over more than from partitions,
// reading the proxy's count every switchProbeEvery, or until ctx ends.
func (s *Store) awaitSwitch(ctx context.Context, from int) error {
	w := &s.switchWait
	w.waiting.Add(1)
	defer w.waiting.Add(-1)
	for s.Partitions() <= from {
		w.mu.Lock()
		round := w.round
		if round == nil {
			round = make(chan struct{})
			w.round = round
			go s.probeSwitch(round)
		}
		w.mu.Unlock()
		select {
		case <-round:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// probeSwitch reads the proxy's count once, after switchProbeEvery, and
// then ends round.
func (s *Store) probeSwitch(round chan struct{}) {
	defer func() {
		s.switchWait.mu.Lock()
		s.switchWait.round = nil
		s.switchWait.mu.Unlock()
		close(round)
	}()
	time.Sleep(switchProbeEvery)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// A failed read is as good as no growth: the next round reads again.
	_, _ = s.recount(ctx)
}
