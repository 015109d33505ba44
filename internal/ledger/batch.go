package ledger

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Batching configures group commit: concurrent debits executed together,
// several per transaction and round trip, each with its own answer.
type Batching struct {
	// MaxBatch is the most debits one transaction executes; 1 turns batching
	// off (one transaction per debit).
	MaxBatch int
	// Window is how long a worker that has one debit waits for more before
	// executing. 0 never waits: a lone debit goes at once, and batches form
	// from the debits that arrive while earlier batches commit.
	Window time.Duration
	// Workers is how many batches may be executing at once.
	Workers int
	// Overlap is how long a worker that has debits holds them back while
	// another execution is in progress, gathering more: it starts when that
	// execution ends, when its batch is full, or when Overlap has passed
	// (so that an execution stuck on a lock or a slow commit does not hold
	// the others up for longer). Bigger batches cost less per debit; 0
	// starts at once, executions overlapping freely.
	Overlap time.Duration
	// Timeout bounds the execution of one batch.
	Timeout time.Duration
}

// DefaultBatching returns what measured best on a 2-core machine (see docs/benchmarks.md).
func DefaultBatching() Batching {
	return Batching{MaxBatch: 64, Window: 0, Workers: 2, Overlap: 5 * time.Millisecond, Timeout: 2 * time.Second}
}

// Option configures a Store at Open.
type Option func(*Store)

// WithMaxConns sets the pool's size, whatever the URL says: for a pool of
// its own, such as webhook delivery's, apart from the debits'.
func WithMaxConns(n int32) Option {
	return func(s *Store) { s.maxConns = n }
}

// maxConnsOf returns the size WithMaxConns sets, if opt is one.
func maxConnsOf(opt Option) (int32, bool) {
	var probe Store
	opt(&probe)
	return probe.maxConns, probe.maxConns > 0
}

// WithBatching sets group commit; b.MaxBatch <= 1 turns it off.
func WithBatching(b Batching) Option {
	return func(s *Store) { s.batching = b }
}

// errClosed answers debits still queued when the store closes.
var errClosed = errors.New("store closed")

// pending is one debit waiting for its batch.
type pending struct {
	ctx   context.Context
	d     Debit
	state atomic.Int32 // queued → taken by a worker, or queued → abandoned by its caller
	done  chan outcome // buffered: the worker never blocks on it
}

const (
	queued int32 = iota
	taken
	abandoned
)

type outcome struct {
	res DebitResult
	err error
}

// batcher owns the workers that execute queued debits in batches.
type batcher struct {
	store *Store
	cfg   Batching
	queue chan *pending
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	// busy counts executions in progress, batches and lone debits alike;
	// ended is signalled (without blocking) each time one ends.
	busy  atomic.Int32
	ended chan struct{}
	// gate lets one worker at a time take and gather debits, so that the
	// workers do not split between them what one batch could hold.
	gate chan struct{}
	// handoffs counts debits handed to a worker rather than executed on
	// their caller's goroutine (for tests: a lone debit never is).
	handoffs atomic.Int64
	// fallbacks counts batches that failed as a whole and went again one
	// debit at a time (for tests: in partitioned mode, none should).
	fallbacks atomic.Int64
}

func startBatcher(s *Store, cfg Batching) *batcher {
	b := &batcher{store: s, cfg: cfg, queue: make(chan *pending, cfg.MaxBatch*cfg.Workers*4), stop: make(chan struct{}),
		ended: make(chan struct{}, 1), gate: make(chan struct{}, 1)}
	for range cfg.Workers {
		b.wg.Add(1)
		go b.work()
	}
	return b
}

// close stops the workers after the batches they are executing; debits
// still queued are answered errClosed (nothing was done for them).
func (b *batcher) close() {
	b.once.Do(func() { close(b.stop) })
	b.wg.Wait()
	for {
		select {
		case p := <-b.queue:
			if p.state.CompareAndSwap(queued, taken) {
				p.done <- outcome{err: errClosed}
			}
		default:
			return
		}
	}
}

// debit queues d and waits for its answer. Until a worker takes it, the
// caller may give up (ctx); once taken, the caller waits for the batch,
// which is bounded by cfg.Timeout, so that an answer is never lost.
func (b *batcher) debit(ctx context.Context, d Debit) (DebitResult, error) {
	// A debit that finds nothing executing and nobody waiting has no one to
	// batch with: it goes at once, on its caller's goroutine, sparing the
	// hand-off to a worker. Debits arriving meanwhile queue and batch.
	if len(b.queue) == 0 && b.busy.CompareAndSwap(0, 1) {
		defer b.end()
		return b.store.debitOne(ctx, d)
	}
	p := &pending{ctx: ctx, d: d, done: make(chan outcome, 1)}
	select {
	case b.queue <- p:
		b.handoffs.Add(1)
	case <-ctx.Done():
		return DebitResult{}, ctx.Err()
	case <-b.stop:
		return DebitResult{}, errClosed
	}
	select {
	case o := <-p.done:
		return o.res, o.err
	case <-ctx.Done():
		if p.state.CompareAndSwap(queued, abandoned) {
			return DebitResult{}, ctx.Err()
		}
		o := <-p.done
		return o.res, o.err
	}
}

func (b *batcher) work() {
	defer b.wg.Done()
	batch := make([]*pending, 0, b.cfg.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case b.gate <- struct{}{}:
		case <-b.stop:
			return
		}
		select {
		case p := <-b.queue:
			batch = b.take(batch, p)
		case <-b.stop:
			<-b.gate
			return
		}
		batch = b.hold(b.fill(batch))
		<-b.gate
		if len(batch) > 0 {
			b.run(batch)
		}
	}
}

// end marks the end of an execution.
func (b *batcher) end() {
	b.busy.Add(-1)
	select {
	case b.ended <- struct{}{}:
	default:
	}
}

// hold keeps gathering into batch while another execution is in progress,
// until it ends, batch is full, or cfg.Overlap passes.
func (b *batcher) hold(batch []*pending) []*pending {
	if b.cfg.Overlap <= 0 || len(batch) >= b.cfg.MaxBatch || b.busy.Load() == 0 {
		return batch
	}
	t := time.NewTimer(b.cfg.Overlap)
	defer t.Stop()
	for len(batch) < b.cfg.MaxBatch {
		select {
		case p := <-b.queue:
			batch = b.take(batch, p)
		case <-b.ended:
			if b.busy.Load() == 0 {
				return b.fill(batch)
			}
		case <-t.C:
			return b.fill(batch)
		case <-b.stop:
			return batch
		}
	}
	return batch
}

// take adds p to batch unless its caller already gave up.
func (b *batcher) take(batch []*pending, p *pending) []*pending {
	if p.state.CompareAndSwap(queued, taken) {
		batch = append(batch, p)
	}
	return batch
}

// fill adds what is already queued, and with a Window what arrives within
// it, up to MaxBatch.
func (b *batcher) fill(batch []*pending) []*pending {
	var deadline <-chan time.Time
	if b.cfg.Window > 0 {
		t := time.NewTimer(b.cfg.Window)
		defer t.Stop()
		deadline = t.C
	}
	for len(batch) < b.cfg.MaxBatch {
		select {
		case p := <-b.queue:
			batch = b.take(batch, p)
			continue
		default:
		}
		if deadline == nil {
			return batch
		}
		select {
		case p := <-b.queue:
			batch = b.take(batch, p)
		case <-deadline:
			return batch
		}
	}
	return batch
}

// run executes one batch and answers each of its debits.
func (b *batcher) run(batch []*pending) {
	b.busy.Add(1)
	defer b.end()
	// Fold copies of one key: the first executes, later copies with the same
	// fingerprint share its answer as a replay; copies with another
	// fingerprint go round again and meet the first one's record.
	var debits []Debit
	leaders := make([]int, len(batch)) // index into debits, or -1 to requeue
	first := make(map[DebitKey]int, len(batch))
	for i, p := range batch {
		j, seen := first[p.d.Key]
		switch {
		case !seen:
			first[p.d.Key] = len(debits)
			leaders[i] = len(debits)
			debits = append(debits, p.d)
		case debits[j].Fingerprint == p.d.Fingerprint:
			leaders[i] = j
		default:
			leaders[i] = -1
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Timeout)
	defer cancel()
	results, errs, err := b.store.execute(ctx, debits)
	if err != nil && len(debits) > 1 && ctx.Err() == nil && b.store.partitions > 0 && pauseLike(err) {
		results, errs = b.store.executeAroundPause(ctx, debits, err)
		err = nil
	}
	if err != nil && len(debits) > 1 && ctx.Err() == nil {
		// One bad debit must not fail its neighbours: the batch was not
		// applied, so each goes again alone (a retry of a batch whose commit
		// was lost finds its own records and replays them).
		b.fallbacks.Add(1)
		results, errs, err = make([]DebitResult, len(debits)), make([]error, len(debits)), nil
		for i, d := range debits {
			results[i], errs[i] = b.store.debitOne(ctx, d)
		}
	}

	answered := make([]bool, len(debits))
	for i, p := range batch {
		j := leaders[i]
		if j < 0 {
			b.wg.Add(1)
			go b.requeue(p)
			continue
		}
		o := outcome{err: err}
		if err == nil {
			o = outcome{res: results[j], err: errs[j]}
			if answered[j] && o.err == nil {
				o.res.Replay = true
			}
		}
		answered[j] = true
		p.done <- o
	}
}

// requeue executes p alone, after the copy it conflicted with.
func (b *batcher) requeue(p *pending) {
	defer b.wg.Done()
	res, err := b.store.debitOne(p.ctx, p.d)
	p.done <- outcome{res: res, err: err}
}
