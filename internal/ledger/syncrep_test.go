package ledger_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/pgcluster"
	"giftd/internal/pgtest"
)

// TestReplay_WaitsForTheSynchronousStandby runs on a server whose
// synchronous standby never connects: a commit that writes WAL waits for it
// until cancelled. Records written with synchronous_commit=local are what a
// primary holds alone after a cancelled wait. Replaying them, by Debit or
// Recorded, 200 or 402, must wait like a fresh debit's commit and fail at
// the deadline, never answer from a record the standby may not have.
func TestReplay_WaitsForTheSynchronousStandby(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	local, synced := withAbsentStandby(t, ctx)

	topUp(t, local, "alice", 10)
	paid, refused := debit("paid", "alice", 7), debit("refused", "alice", 7)
	for _, d := range []ledger.Debit{paid, refused} {
		if _, err := local.Debit(ctx, d); err != nil {
			t.Fatal(err)
		}
	}

	// within gives a call that must wait for the standby 300 ms to find
	// it waiting; answers gives one that must not wait a minute, which
	// only a wait for the standby outlasts (a loaded machine once took
	// over 300 ms to answer one).
	deadline := func(d time.Duration) func(f func(ctx context.Context) (ledger.DebitResult, error)) (ledger.DebitResult, error) {
		return func(f func(ctx context.Context) (ledger.DebitResult, error)) (ledger.DebitResult, error) {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return f(ctx)
		}
	}
	within, answers := deadline(300*time.Millisecond), deadline(time.Minute)
	cases := []struct {
		name string
		call func(s *ledger.Store) func(ctx context.Context) (ledger.DebitResult, error)
		want ledger.DebitStatus
	}{
		{"Debit replays 200", func(s *ledger.Store) func(context.Context) (ledger.DebitResult, error) {
			return func(ctx context.Context) (ledger.DebitResult, error) { return s.Debit(ctx, paid) }
		}, ledger.Debited},
		{"Debit replays 402", func(s *ledger.Store) func(context.Context) (ledger.DebitResult, error) {
			return func(ctx context.Context) (ledger.DebitResult, error) { return s.Debit(ctx, refused) }
		}, ledger.Insufficient},
		{"Recorded 200", func(s *ledger.Store) func(context.Context) (ledger.DebitResult, error) {
			return func(ctx context.Context) (ledger.DebitResult, error) {
				return s.Recorded(ctx, paid.Key, paid.Fingerprint)
			}
		}, ledger.Debited},
		{"Recorded 402", func(s *ledger.Store) func(context.Context) (ledger.DebitResult, error) {
			return func(ctx context.Context) (ledger.DebitResult, error) {
				return s.Recorded(ctx, refused.Key, refused.Fingerprint)
			}
		}, ledger.Insufficient},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if res, err := within(c.call(synced)); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("with the standby away: %+v, %v; want the deadline's error", res, err)
			}
			// The same replay without waiting for standbys answers: the wait
			// above was for the standby, and the record is intact.
			if res, err := answers(c.call(local)); err != nil || !res.Replay || res.Status != c.want {
				t.Errorf("with synchronous_commit=local: %+v, %v; want a replay of %d", res, err, c.want)
			}
		})
	}

	// No record, nothing to make durable: Recorded answers at once.
	_, err := answers(func(ctx context.Context) (ledger.DebitResult, error) {
		return synced.Recorded(ctx, ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: "never"}, paid.Fingerprint)
	})
	if !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("Recorded of a key never executed: %v; want ErrNotFound", err)
	}
}

// TestAdminReplay_WaitsForTheSynchronousStandby: a top-up or a reversal
// replayed from a record the primary holds alone must wait for the standby
// like a fresh commit, as a debit's replay does.
func TestAdminReplay_WaitsForTheSynchronousStandby(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	local, synced := withAbsentStandby(t, ctx)
	up := ledger.TopUp{UserID: "bob", Amount: 10, Key: "up-1"}
	if _, err := local.TopUp(ctx, up); err != nil {
		t.Fatal(err)
	}
	paid := debit("paid", "bob", 7)
	if _, err := local.Debit(ctx, paid); err != nil {
		t.Fatal(err)
	}
	rev := ledger.Reversal{Debit: paid.Key, Key: "rev-1"}
	if _, err := local.Reverse(ctx, rev); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func(ctx context.Context, s *ledger.Store) (ledger.Credit, error){
		"top-up":   func(ctx context.Context, s *ledger.Store) (ledger.Credit, error) { return s.TopUp(ctx, up) },
		"reversal": func(ctx context.Context, s *ledger.Store) (ledger.Credit, error) { return s.Reverse(ctx, rev) },
	} {
		t.Run(name, func(t *testing.T) {
			wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			if c, err := call(wctx, synced); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("with the standby away: %+v, %v; want the deadline's error", c, err)
			}
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if c, err := call(lctx, local); err != nil || !c.Replay {
				t.Errorf("with synchronous_commit=local: %+v, %v; want a replay", c, err)
			}
		})
	}
}

// withAbsentStandby starts a server whose synchronous standby never
// connects, migrated, and opens two stores on it: local, whose commits do
// not wait for standbys (synchronous_commit=local, what a primary holds
// alone after a cancelled wait), and synced, whose commits wait forever.
func withAbsentStandby(t *testing.T, ctx context.Context) (local, synced *ledger.Store) {
	t.Helper()
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{
		Settings: []string{"fsync=off", "synchronous_standby_names=giftd_absent_standby"},
	})
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Stop() })
	localURL := cluster.URL + "&synchronous_commit=local"
	if err := ledger.Migrate(localURL); err != nil {
		t.Fatal(err)
	}
	open := func(url string) *ledger.Store {
		s, err := ledger.Open(ctx, url, pgtest.StoreOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	return open(localURL), open(cluster.URL)
}
