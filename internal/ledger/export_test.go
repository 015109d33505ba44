package ledger

import "context"

// RunBatch executes debits as one batch, exactly as the batcher would had
// they arrived together, and returns each one's answer.
func RunBatch(s *Store, debits []Debit) ([]DebitResult, []error) {
	// The store's own batching (its Timeout above all), DefaultBatching's
	// for a store opened without batching.
	cfg := s.batching
	if cfg.MaxBatch <= 1 {
		cfg = DefaultBatching()
	}
	b := &batcher{store: s, cfg: cfg}
	batch := make([]*pending, len(debits))
	for i, d := range debits {
		batch[i] = &pending{ctx: context.Background(), d: d, done: make(chan outcome, 1)}
		batch[i].state.Store(taken)
	}
	b.run(batch)
	b.wg.Wait()
	results, errs := make([]DebitResult, len(debits)), make([]error, len(debits))
	for i, p := range batch {
		o := <-p.done
		results[i], errs[i] = o.res, o.err
	}
	return results, errs
}

// Execute runs debits (distinct keys) in one statement, with no fallback.
func Execute(s *Store, debits []Debit) error {
	_, _, err := s.execute(context.Background(), debits)
	return err
}

// Handoffs returns how many debits the store's batcher has handed to a
// worker instead of executing them on their caller's goroutine.
func Handoffs(s *Store) int64 { return s.batcher.handoffs.Load() }

// PartitionBatchers returns, for each partition of a partitioned store with
// batching on, how many debits its batcher handed to a worker and how many
// of its batches failed as a whole and went again one by one.
func PartitionBatchers(s *Store) (handoffs, fallbacks []int64) {
	for _, b := range s.route.Load().batchers {
		handoffs, fallbacks = append(handoffs, b.handoffs.Load()), append(fallbacks, b.fallbacks.Load())
	}
	return handoffs, fallbacks
}

// SetMergeBound sets the bound of the reads across partitions (MaxMergeRows)
// to n until the test ends; tests using it must not run in parallel.
func SetMergeBound(t interface{ Cleanup(func()) }, n int) {
	old := mergeBound
	mergeBound = n
	t.Cleanup(func() { mergeBound = old })
}

// DebitAfterSwitch is the partitioned Store's answer to d, which a store
// routing over from partitions ran and err refused.
func DebitAfterSwitch(ctx context.Context, s *Store, d Debit, from int, err error) (DebitResult, error) {
	return s.debitAfterSwitch(ctx, d, from, err)
}
