package ledger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/pgtest"
)

// openBatching opens a store with group commit on, whatever
// GIFTD_TEST_BATCH says: these tests are about the batcher.
func openBatching(t *testing.T) *ledger.Store {
	t.Helper()
	s, err := ledger.Open(context.Background(), pgtest.URL(t), ledger.WithBatching(ledger.DefaultBatching()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// A debit from a lone caller (nothing executing, nothing queued) goes at
// once on its caller's goroutine, exactly as with batching off: never
// through a worker, never waiting for a batch to form.
func TestLone_DebitsGoAtOnceOnTheCallersGoroutine(t *testing.T) {
	s := openBatching(t)
	topUp(t, s, "lone", 1000)
	for i := range 50 {
		res, err := s.Debit(context.Background(), debit(fmt.Sprint("lone-", i), "lone", 1))
		if err != nil || res.Status != ledger.Debited {
			t.Fatalf("debit %d: %+v, %v", i, res, err)
		}
	}
	if n := ledger.Handoffs(s); n != 0 {
		t.Errorf("%d of 50 lone debits were handed to a worker, want 0", n)
	}
	checkBooks(t, s)
}

// A debit that arrives while a batch is stuck in the database (its wallet
// locked by another transaction) is executed by a free worker and answered
// while that batch still waits: it is not queued behind it.
func TestLone_DebitIsNotDelayedBehindAStuckBatch(t *testing.T) {
	s := openBatching(t)
	ctx := context.Background()
	topUp(t, s, "stuck", 100)
	topUp(t, s, "free", 100)

	release, stuck := stuckDebit(t, s)

	// The deadline only bounds a failure: a free debit queued behind the
	// stuck one would wait for ever.
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := s.Debit(fctx, debit("free-1", "free", 1))
	if err != nil || res.Status != ledger.Debited || res.Balance != 99 {
		t.Fatalf("free debit: %+v, %v", res, err)
	}
	select {
	case err := <-stuck:
		t.Fatalf("the stuck debit finished before its wallet was released: %v", err)
	default:
	}
	release()
	if err := <-stuck; err != nil {
		t.Fatalf("stuck debit after release: %v", err)
	}
	checkBooks(t, s)
}

// Debits that arrive while another execution is in progress are held and
// gathered into one batch (within Batching.Overlap) rather than split
// among the workers: here, ten debits queued behind a stuck lone debit
// execute in one transaction once it ends.
func TestHold_DebitsQueuedDuringAnExecutionGoAsOneBatch(t *testing.T) {
	cfg := ledger.DefaultBatching()
	cfg.Overlap = time.Minute // only the stuck debit's end lets them go
	s, err := ledger.Open(context.Background(), pgtest.URL(t), ledger.WithBatching(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	topUp(t, s, "stuck", 100)
	for i := range 10 {
		topUp(t, s, fmt.Sprint("held-", i), 100)
	}
	release, stuck := stuckDebit(t, s)
	done := make(chan error, 10)
	for i := range 10 {
		go func() {
			_, err := s.Debit(ctx, debit(fmt.Sprint("held-", i), fmt.Sprint("held-", i), 1))
			done <- err
		}()
	}
	for ledger.Handoffs(s) < 10 {
		time.Sleep(time.Millisecond)
	}
	release()
	if err := <-stuck; err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	var txns int
	if err := s.Pool().QueryRow(ctx, `SELECT count(DISTINCT xmin::text) FROM ledger_entries
		WHERE kind = 'debit' AND ref LIKE 'held-%'`).Scan(&txns); err != nil {
		t.Fatal(err)
	}
	if txns != 1 {
		t.Errorf("the ten held debits executed in %d transactions, want 1", txns)
	}
	checkBooks(t, s)
}

// stuckDebit locks the wallet "stuck" (topped up by the caller) in a
// transaction of its own, starts a debit of it, and returns once that
// debit waits for the lock in the database: release lets it go on, and its
// answer's error arrives on done.
func stuckDebit(t *testing.T, s *ledger.Store) (release func(), done <-chan error) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(ctx) }) //nolint:errcheck // released already, or the test failed
	if _, err := tx.Exec(ctx, `SELECT 1 FROM wallets WHERE user_id = 'stuck' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() {
		_, err := s.Debit(ctx, debit("stuck-1", "stuck", 1))
		answered <- err
	}()
	// Asked outside tx, whose view of pg_stat_activity would not move.
	for waiting := 0; waiting == 0; {
		if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%giftd_debit_gifts%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-answered:
			t.Fatalf("the debit of a locked wallet finished: %v", err)
		default:
		}
	}
	return func() {
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}, answered
}
