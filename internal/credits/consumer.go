// Package credits moves gifts' earnings from the sender's partition to the
// receiver's in partitioned mode (docs/scale-out.md#cross-partition-credits):
// for each source partition, one consumer at a time across replicas, by a
// lease on that partition, each credit applied once by (source partition,
// event position).
package credits

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/ledger"
	"giftd/internal/partition"
)

// Config is the consumer's settings.
type Config struct {
	// Owner names this consumer in the leases: unique per process.
	Owner string
	// Lease is how long a lease lasts unless renewed (each step that moves
	// the cursor renews it).
	Lease time.Duration
	// Batch is the most gifts with earnings and claw-backs one step reads
	// (so the most credits it moves).
	Batch int
	// Idle is how long a source partition waits before it is read again
	// after a step that read less than a full batch (nothing included).
	Idle time.Duration
}

// DefaultConfig returns the consumer's defaults for owner: a step reads up
// to 512 gifts and claw-backs, and a partition that had less is read again
// 200 ms later, so that under load steps are large (a step's fixed cost,
// its round trips and commits, is then spread over many credits) while the
// lag stays far below its 2 s target (docs/scale-out.md
// #the-credit-consumer-per-credit).
func DefaultConfig(owner string) Config {
	return Config{Owner: owner, Lease: 10 * time.Second, Batch: 512, Idle: 200 * time.Millisecond}
}

// Consumer moves credits between the partitions of parts, each a Store
// opened on one partition database (not the proxy), in partition order.
type Consumer struct {
	mu    sync.Mutex
	parts []*ledger.Store
	grown chan struct{} // closed and replaced by Grow
	// held is, by source partition, the lease this consumer renewed with
	// its last step's second legs, and the cursor they moved.
	held  map[int]heldLease
	cfg   Config
	log   *slog.Logger
	lag   *prometheus.GaugeVec
	moved *prometheus.CounterVec
	// beforeOut, if set, runs between a step's two legs (tests: a crash there).
	beforeOut func(source int) bool
}

// New returns a consumer of parts, registering its metrics on reg (nil: not
// registered).
func New(parts []*ledger.Store, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Consumer {
	c := &Consumer{parts: parts, grown: make(chan struct{}), held: map[int]heldLease{}, cfg: cfg, log: log,
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "giftd_credit_lag_seconds",
			Help: "Age of the oldest cross-partition credit read and not yet moved from the partition, by source partition (0: none pending)."},
			[]string{"partition"}),
		moved: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "giftd_credits_moved_total",
			Help: "Cross-partition credits moved to the receiver's partition by this replica, by source partition."},
			[]string{"partition"}),
	}
	if reg != nil {
		reg.MustRegister(c.lag, c.moved)
	}
	return c
}

// releaseTimeout bounds giving up a lease once Run's context has ended.
const releaseTimeout = 2 * time.Second

// Grow gives the consumer the partitions of a cluster giftd reshard has
// doubled: parts begins with the ones it had, in order. From then on each
// credit goes to its receiver's partition of the new count, and Run reads
// the new partitions' outboxes too.
func (c *Consumer) Grow(parts []*ledger.Store) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(parts) <= len(c.parts) {
		return
	}
	c.parts = append([]*ledger.Store(nil), parts...)
	close(c.grown)
	c.grown = make(chan struct{})
}

// heldLease is a lease a consumer knows it holds until (its clock: half the
// lease's length after it sent the transaction that renewed it, which
// started later), with the cursor at position.
type heldLease struct {
	position int64
	until    time.Time
}

// lease returns the cursor of source partition p and whether this consumer
// holds p's lease: from what its last step renewed while that is surely
// still valid, otherwise by leasing it (a transaction on p).
func (c *Consumer) lease(ctx context.Context, p int, src *ledger.Store) (int64, bool, error) {
	c.mu.Lock()
	h, ok := c.held[p]
	c.mu.Unlock()
	if ok && time.Now().Before(h.until) {
		return h.position, true, nil
	}
	c.forget(p)
	sent := time.Now()
	from, ok, err := src.LeaseCredits(ctx, c.cfg.Owner, c.cfg.Lease)
	if err == nil && ok {
		c.remember(p, from, sent)
	}
	return from, ok, err
}

// remember records that this consumer holds p's lease, renewed by a
// transaction sent at sent, with the cursor at position.
func (c *Consumer) remember(p int, position int64, sent time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held[p] = heldLease{position: position, until: sent.Add(c.cfg.Lease / 2)}
}

// forget drops what this consumer knew of p's lease and cursor: the next
// step leases it again and reads the cursor.
func (c *Consumer) forget(p int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.held, p)
}

// errOutOfReach: source partition source claims to be one of claimed
// partitions, more than the consumer reaches.
type errOutOfReach struct{ source, claimed, reached int }

func (e *errOutOfReach) Error() string {
	return fmt.Sprintf("partition %d claims to be one of %d partitions; this consumer reaches %d (GIFTD_PARTITION_URLS): lease given up until it grows",
		e.source, e.claimed, e.reached)
}

// grown is a channel closed when c's partitions grow.
func grown(c *Consumer) <-chan struct{} {
	_, g := c.current()
	return g
}

// current returns the partitions, and a channel closed when they grow.
func (c *Consumer) current() ([]*ledger.Store, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.parts, c.grown
}

// Run moves credits from every partition until ctx ends, one goroutine per
// source partition (started for new ones as Grow adds them), and returns
// when they have stopped, each having given up its partition's lease (if
// it still held it) so that another consumer takes over at once rather
// than after the lease's length.
func (c *Consumer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	started := 0
	for {
		parts, grown := c.current()
		for p := started; p < len(parts); p++ {
			wg.Go(func() { c.run(ctx, p) })
		}
		started = len(parts)
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-grown:
		}
	}
}

// run moves credits from source partition p until ctx ends, then gives up
// its lease.
//
// A step in flight when ctx ends runs to its end, or for a lease more: a
// statement cut short by its context is given up by the client only, the
// partition runs it on, and giftd_credit_lease or giftd_credit_out (which
// checks the lease against its own start) could then take or renew the
// lease after the release below, leaving it to a consumer that has
// stopped, for a whole lease.
func (c *Consumer) run(ctx context.Context, p int) {
	sctx, cutSteps := context.WithCancel(context.WithoutCancel(ctx))
	defer cutSteps()
	defer context.AfterFunc(ctx, func() {
		t := time.NewTimer(c.cfg.Lease)
		defer t.Stop()
		select {
		case <-t.C:
			cutSteps()
		case <-sctx.Done():
		}
	})()
	for ctx.Err() == nil {
		_, full, err := c.step(sctx, p)
		if err != nil && ctx.Err() == nil {
			c.log.Error("credit consumer", "partition", p, "error", err.Error())
		}
		// A step that read less than a full batch waits as an idle one
		// does, so that steps carry many credits each (a step's round
		// trips and commits are much of its cost); a backlog is moved
		// one full batch after another.
		wait := c.cfg.Idle
		if errors.As(err, new(*errOutOfReach)) {
			// Long enough for another replica to lease p.
			wait = c.cfg.Lease
		}
		if !full || err != nil {
			select {
			case <-ctx.Done():
			case <-grown(c):
			case <-time.After(wait):
			}
		}
	}
	// No step runs any more, here or (unless one was cut short a lease
	// after ctx ended) on the partition. A step cut short left at most its
	// first legs, which the next owner applies again as no-ops.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	parts, _ := c.current()
	c.forget(p)
	if _, err := parts[p].ReleaseCredits(rctx, c.cfg.Owner); err != nil {
		c.log.Error("credit consumer: release the lease", "partition", p, "error", err.Error())
	}
}

// Step moves at most one batch of credits from source partition p: the
// lease (taken again only when the last step's second legs did not renew
// it, or half its length has passed since), the batch read up to the events' horizon (the credits and the
// reversals' claw-backs in one read), each credit's first leg on its
// receiver's partition, the claw-backs on theirs, then the second legs and
// the cursor on p in one transaction. It returns how many credits it moved
// (0 when another consumer holds p's lease or nothing is pending). A step
// cut short anywhere is safe to run again: a first leg applied twice
// applies once.
func (c *Consumer) Step(ctx context.Context, p int) (int, error) {
	n, _, err := c.step(ctx, p)
	return n, err
}

// step is Step, and reports whether the read was a full batch (more may be
// pending).
func (c *Consumer) step(ctx context.Context, p int) (moved int, full bool, err error) {
	parts, _ := c.current()
	src := parts[p]
	label := strconv.Itoa(p)
	// Any failure below forgets the lease and the cursor: the next step
	// leases again and reads where the cursor is.
	defer func() {
		if err != nil {
			c.forget(p)
		}
	}()
	from, ok, err := c.lease(ctx, p, src)
	if err != nil {
		return 0, false, err
	}
	if !ok {
		// Another replica holds the lease and reports the lag (the alert
		// takes the worst replica's view).
		c.lag.WithLabelValues(label).Set(0)
		return 0, false, nil
	}
	ev, err := src.CreditEvents(ctx, from, c.cfg.Batch)
	if err != nil {
		return 0, false, err
	}
	if ev.UpTo == from {
		c.lag.WithLabelValues(label).Set(0)
		return 0, false, nil
	}
	// The credits: the gifts whose receiver the partition's own identity,
	// read with them, places on another partition (as giftd_credits_after
	// decides in SQL; partition.For agrees with giftd_placement).
	n := ev.Partitions
	read := len(ev.Gifts)+len(ev.Clawbacks) > 0
	if read && (n <= 0 || n&(n-1) != 0 || ev.Partition < 0 || ev.Partition >= n) {
		return 0, false, fmt.Errorf("partition %d claims to be partition %d of %d", p, ev.Partition, n)
	}
	if read && n > len(parts) {
		// Resharded to partitions this consumer does not reach (yet): it
		// gives the lease up, so that a replica that reaches them moves
		// the credits, and waits for Grow.
		c.forget(p)
		if _, err := src.ReleaseCredits(ctx, c.cfg.Owner); err != nil {
			return 0, false, err
		}
		return 0, false, &errOutOfReach{source: p, claimed: n, reached: len(parts)}
	}
	var moves []ledger.CreditMove
	for _, m := range ev.Gifts {
		if partition.For(m.ReceiverID, n) != ev.Partition {
			moves = append(moves, m)
		}
	}
	if len(moves) > 0 {
		c.lag.WithLabelValues(label).Set(time.Since(moves[0].CreatedAt).Seconds())
	}
	// The first legs, one transaction per receivers' partition, placed by
	// the count the source's claim names.
	byPart := make([][]ledger.CreditMove, n)
	for _, m := range moves {
		q := partition.For(m.ReceiverID, n)
		byPart[q] = append(byPart[q], m)
	}
	for q, ms := range byPart {
		if len(ms) == 0 {
			continue
		}
		if _, err := parts[q].CreditsIn(ctx, p, ms); err != nil {
			return 0, false, err
		}
	}
	// The claw-backs of the reversals read with them (docs/scale-out.md
	// #reversals-and-payouts), each once on its receiver's partition,
	// before the cursor passes them.
	for _, cb := range ev.Clawbacks {
		if _, _, _, err := parts[partition.For(cb.ReceiverID, n)].ApplyClawback(ctx, p, cb); err != nil {
			return 0, false, err
		}
	}
	if c.beforeOut != nil && !c.beforeOut(p) {
		c.forget(p)
		return 0, false, nil
	}
	sent := time.Now()
	if err := src.CreditOutRenewing(ctx, c.cfg.Owner, from, ev.UpTo, moves, c.cfg.Lease); err != nil {
		return 0, false, err
	}
	c.remember(p, ev.UpTo, sent)
	c.moved.WithLabelValues(label).Add(float64(len(moves)))
	full = ev.Full(c.cfg.Batch)
	if !full {
		c.lag.WithLabelValues(label).Set(0)
	}
	return len(moves), full, nil
}

// Report is the audit of cross-partition credits across every partition.
type Report struct {
	// Credits counts the credit events still in the partitions' outboxes;
	// Moved those of them moved both ways, InFlight those past their
	// source's cursor (not moved, or moved in only).
	Credits, Moved, InFlight int
	// Taken is the earnings of those events, MovedGold and InFlightGold
	// their split: Taken = MovedGold + InFlightGold when the books hold.
	Taken, MovedGold, InFlightGold int64
	// Clawbacks counts the reversals' claw-backs on the senders'
	// partitions; ClawbacksPending those not yet applied on the receivers'
	// (past their source's cursor).
	Clawbacks, ClawbacksPending int
	// Reshards counts the pairs of resharding legs (a receiver's account
	// squared between the two partitions giftd reshard split one into).
	Reshards int
	// Problems lists every credit that breaks a rule, at most 100.
	Problems []string
	// NotSwitched names each partition claimed among another count than
	// the partitions audited: giftd reshard moved the claims and has not
	// switched the proxy (stopped there, or in its pause). The credits are
	// not checked then (Problems empty): they cannot be paired until the
	// switch.
	NotSwitched []string
}

// OK reports whether every credit was moved at most once each way, and
// every one behind its source's cursor moved both ways.
func (r Report) OK() bool {
	return len(r.Problems) == 0 && len(r.NotSwitched) == 0 && r.Taken == r.MovedGold+r.InFlightGold
}

// auditReshards pairs the resharding legs of parts: each key once
// reshard_in and once reshard_out, per account, of opposite amounts.
func auditReshards(ctx context.Context, parts []*ledger.Store, r *Report, problem func(string, ...any)) error {
	type side struct {
		amount int64
		n      int
	}
	type key struct{ account, ref string }
	in, out := map[key]side{}, map[key]side{}
	for p, s := range parts {
		legs, err := s.ReshardLegs(ctx)
		if err != nil {
			return fmt.Errorf("partition %d: %w", p, err)
		}
		for _, l := range legs {
			m := in
			if l.Kind == "reshard_out" {
				m = out
			}
			k := key{l.Account, l.Ref}
			m[k] = side{m[k].amount + l.Amount, m[k].n + 1}
		}
	}
	for k, i := range in {
		o, ok := out[k]
		switch {
		case i.n > 1 || o.n > 1:
			problem("reshard %s (%s): %d legs in, %d out; want one each", k.ref, k.account, i.n, o.n)
		case !ok:
			problem("reshard %s (%s): %d moved in, never out", k.ref, k.account, i.amount)
		case i.amount != -o.amount:
			problem("reshard %s (%s): %d moved out, %d moved in", k.ref, k.account, -o.amount, i.amount)
		default:
			r.Reshards++
		}
	}
	for k, o := range out {
		if _, ok := in[k]; !ok {
			problem("reshard %s (%s): %d moved out, never in", k.ref, k.account, -o.amount)
		}
	}
	return nil
}

// Audit checks the credits of parts (a Store on each partition, in order):
// every transfer_in has its transfer_out of the same amount unless its
// event is past its source's cursor (caught between the legs), every
// transfer_out has its transfer_in, and every credit event behind its
// source's cursor was moved. The sources are read before the receivers, so
// a credit moving meanwhile shows as in flight, never as a problem. A
// partition's credit events at or below its floor (written before giftd
// reshard split it, all moved then) are not read; their legs still are.
// And each pair of resharding legs is one in, one out, of opposite amounts.
// A partition claimed among another count than len(parts) (giftd reshard
// stopped, or in its pause, between the claims' move and the proxy's
// switch) is reported in NotSwitched, and nothing else: the credits cannot
// be paired then.
//
// And the reversals' claw-backs: each applied on a receiver's partition has
// its leg on the sender's, of the same amount, and each behind its source's
// cursor was applied once. A claw-back's legs go the other way (the
// sender's first), so the receivers' claw-backs are read both before the
// sources (each must have its source's leg) and after (each source's leg
// behind the cursor must be there).
func Audit(ctx context.Context, parts []*ledger.Store) (Report, error) {
	var r Report
	problem := func(format string, args ...any) {
		if len(r.Problems) < 100 {
			r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
		}
	}
	taken := func() (map[string]int64, error) {
		m := map[string]int64{}
		for p, s := range parts {
			legs, err := s.ClawbacksTaken(ctx)
			if err != nil {
				return nil, fmt.Errorf("partition %d: %w", p, err)
			}
			for _, l := range legs {
				if _, dup := m[l.Ref]; dup {
					problem("claw-back %s: applied on two partitions", l.Ref)
				}
				m[l.Ref] = l.Amount
			}
		}
		return m, nil
	}
	takenBefore, err := taken()
	if err != nil {
		return Report{}, err
	}
	sources := make([]ledger.CreditSource, len(parts))
	outs := map[string]int64{}
	var stuck []string
	for p, s := range parts {
		b, err := s.CreditSourceBook(ctx)
		if err != nil {
			return Report{}, fmt.Errorf("partition %d: %w", p, err)
		}
		if b.Partition != p {
			return Report{}, fmt.Errorf("partition %d: the database is claimed as partition %d", p, b.Partition)
		}
		if b.Partitions != len(parts) {
			stuck = append(stuck, fmt.Sprintf("partition %d: claimed as %d of %d, audited as one of %d: giftd reshard moved "+
				"the claims but has not switched the proxy (or is in its pause now); run giftd reshard again "+
				"(docs/scale-out.md#resharding-n--2n)", p, b.Partition, b.Partitions, len(parts)))
		}
		sources[p] = b
		for _, l := range b.Out {
			if _, dup := outs[l.Ref]; dup {
				problem("credit %s: moved out twice", l.Ref)
			}
			outs[l.Ref] = l.Amount
		}
	}
	if stuck != nil {
		// Between the claims' move and the proxy's switch the partitions
		// read hold the credits as no audit of this count can pair them
		// (some legs are on the new partitions, not read): the state is
		// the finding, not its mismatches.
		return Report{NotSwitched: stuck}, nil
	}
	takenAfter, err := taken()
	if err != nil {
		return Report{}, err
	}
	clawbacksIn := map[string]int64{}
	for p, b := range sources {
		for _, l := range b.ClawbacksIn {
			r.Clawbacks++
			clawbacksIn[l.Ref] = l.Amount
			var pos int64
			if _, err := fmt.Sscanf(l.Ref, fmt.Sprintf("%d:%%d", p), &pos); err != nil {
				problem("claw-back %s: on partition %d, keyed for another", l.Ref, p)
				continue
			}
			got, applied := takenAfter[l.Ref]
			switch {
			case !applied && pos > b.Cursor:
				r.ClawbacksPending++
			case !applied:
				problem("claw-back %s: behind the cursor %d, never applied", l.Ref, b.Cursor)
			case got != l.Amount:
				problem("claw-back %s: %d to take back, %d taken", l.Ref, l.Amount, got)
			}
		}
	}
	for ref, got := range takenBefore {
		if _, ok := clawbacksIn[ref]; !ok {
			problem("claw-back %s: %d taken back, no reversal asked for it", ref, got)
		}
	}
	ins := map[string]int64{}
	for p, s := range parts {
		legs, err := s.CreditsReceived(ctx)
		if err != nil {
			return Report{}, fmt.Errorf("partition %d: %w", p, err)
		}
		for _, l := range legs {
			if _, dup := ins[l.Ref]; dup {
				problem("credit %s: moved in twice", l.Ref)
			}
			ins[l.Ref] = l.Amount
		}
	}
	for p, b := range sources {
		for _, e := range b.Events {
			ref := fmt.Sprintf("%d:%d", p, e.Position)
			r.Credits++
			r.Taken += e.Earnings
			out, moved := outs[ref]
			switch {
			case e.Position > b.Cursor:
				r.InFlight++
				r.InFlightGold += e.Earnings
				if moved {
					problem("credit %s: moved out, yet past the cursor %d", ref, b.Cursor)
				}
			case !moved:
				problem("credit %s: behind the cursor %d, never moved out", ref, b.Cursor)
			case out != e.Earnings:
				problem("credit %s: %d earned, %d moved out", ref, e.Earnings, out)
			default:
				r.Moved++
				r.MovedGold += e.Earnings
			}
		}
	}
	for ref, out := range outs {
		if in, ok := ins[ref]; !ok || in != out {
			problem("credit %s: %d moved out, %d moved in", ref, out, in)
		}
	}
	if err := auditReshards(ctx, parts, &r, problem); err != nil {
		return Report{}, err
	}
	for ref, in := range ins {
		var p int
		var pos int64
		if _, err := fmt.Sscanf(ref, "%d:%d", &p, &pos); err != nil || p < 0 || p >= len(sources) {
			problem("credit %s: moved in from no partition", ref)
			continue
		}
		if _, ok := outs[ref]; !ok && pos <= sources[p].Cursor {
			problem("credit %s: %d moved in, never out though behind the cursor %d", ref, in, sources[p].Cursor)
		}
	}
	sort.Strings(r.Problems)
	return r, nil
}
