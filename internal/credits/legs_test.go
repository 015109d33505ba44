package credits

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/ledger"
	"giftd/migrations"
)

// TestLegs_WriteWhatMigration4Wrote runs the same calls of both legs on two
// clusters, one with the latest legs (set-based since partition migration
// 10, their look-ups by key since 15) and one taken back down to migration
// 4's bodies (checked to be those, as written, and on the way down
// migration 10's, as written, once 15 is reverted), and
// requires the same answers and the same rows: credits applied before,
// repeated in a batch, a receiver several times in a batch, in no order,
// and every refusal.
func TestLegs_WriteWhatMigration4Wrote(t *testing.T) {
	ctx := context.Background()
	set, old := newCluster(t), newCluster(t)
	v4, err := migrations.PartitionFS.ReadFile("partition/000004_credits.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	v10, err := migrations.PartitionFS.ReadFile("partition/000010_legs.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	// bodiesAre checks that both legs' functions on partition p are those
	// of migration file src, settings included.
	bodiesAre := func(p int, src []byte, name string, settings []string) {
		t.Helper()
		for _, f := range []string{"giftd_credits_in", "giftd_credit_out"} {
			var body string
			var conf *[]string
			if err := old.parts[p].Pool().QueryRow(ctx, `SELECT prosrc, proconfig FROM pg_proc WHERE proname = $1`, f).
				Scan(&body, &conf); err != nil {
				t.Fatal(err)
			}
			got := []string(nil)
			if conf != nil {
				got = *conf
			}
			if !strings.Contains(string(src), "AS $$"+body+"$$;") || !slices.Equal(got, settings) {
				t.Errorf("partition %d, down to %s: %s is not as its file wrote it (settings %v)", p, name, f, got)
			}
		}
	}
	for p, u := range old.layout.PartitionURLs {
		// Down one migration at a time until migration 10 is reverted
		// (the others, which do not touch the legs, go too).
		for {
			v, _, err := ledger.MigrationVersion(u, ledger.WithMigrationSet(ledger.PartitionMigrations()))
			if err != nil {
				t.Fatal(err)
			}
			if v == 14 {
				bodiesAre(p, v10, "migration 14", []string{"plan_cache_mode=force_generic_plan"})
			}
			if v < 10 {
				break
			}
			if err := ledger.MigrateDown(u, ledger.WithMigrationSet(ledger.PartitionMigrations())); err != nil {
				t.Fatal(err)
			}
		}
		bodiesAre(p, v4, "migration 9", nil)
	}
	// The receivers are on partition 1; partition 0 is the source.
	users := usersOn("legs", 3)
	r1, r2, r3, foreign := users[1][0], users[1][1], users[1][2], users[0][0]
	type in struct {
		pos []int64
		rcv []string
		amt []int64
	}
	batch := func(c ...any) in {
		var b in
		for i := 0; i < len(c); i += 3 {
			b.pos, b.rcv, b.amt = append(b.pos, int64(c[i].(int))), append(b.rcv, c[i+1].(string)), append(b.amt, int64(c[i+2].(int)))
		}
		return b
	}
	ins := []in{
		batch(3, r1, 4, 1, r1, 5, 2, r2, 3, 1, r1, 5), // repeated in the batch; r2 new
		batch(2, r2, 3, 6, r1, 2, 4, r2, 6, 5, r1, 1, 4, r2, 6, 8, r3, 9),
		batch(7, r1, 1, 7, r2, 1),       // one credit, two receivers
		batch(7, r1, 1, 7, r1, 2),       // one credit, two amounts
		batch(9, r1, 1, 1, r1, 6),       // applied before with another amount
		batch(9, r1, 1, 2, r1, 3),       // applied before with another receiver
		batch(9, r1, 1, 10, foreign, 1), // a receiver placed elsewhere
		batch(5, r1, 1, 9, r2, 4, 9, r2, 4),
	}
	type out struct {
		from, upTo int64
		b          in
	}
	outs := []out{
		{0, 10, batch(3, r1, 4, 1, r1, 5, 2, r2, 3)},
		{10, 20, batch(1, r1, 5)},             // applied before
		{10, 20, batch(11, r2, 1000)},         // below zero
		{10, 20, batch(11, r2, 1, 12, r3, 1)}, // no transit account
		{0, 20, batch(11, r2, 1)},             // the cursor moved on
		{10, 20, batch(12, r1, 1, 12, r1, 1)}, // repeated in the batch
		{10, 20, batch(6, r1, 2, 4, r2, 6, 5, r1, 1)},
		{20, 30, in{}},
	}
	run := func(c *cluster) []string {
		var got []string
		answer := func(what string, v any, err error) {
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				got = append(got, fmt.Sprintf("%s: SQLSTATE %s", what, pe.Code))
			} else if err != nil {
				t.Fatalf("%s: %v", what, err)
			} else {
				got = append(got, fmt.Sprintf("%s: %v", what, v))
			}
		}
		in1, src := c.parts[1].Pool(), c.parts[0].Pool()
		if _, err := in1.Exec(ctx, `INSERT INTO earnings_accounts (receiver_id, balance) VALUES ($1, 7)`, r1); err != nil {
			t.Fatal(err)
		}
		if _, err := src.Exec(ctx, `INSERT INTO earnings_accounts (receiver_id, balance) VALUES ($1, 100), ($2, 50)`, r1, r2); err != nil {
			t.Fatal(err)
		}
		for i, b := range ins {
			var n int
			err := in1.QueryRow(ctx, `SELECT giftd_credits_in(0, $1, $2, $3)`, b.pos, b.rcv, b.amt).Scan(&n)
			answer(fmt.Sprint("in ", i), n, err)
		}
		if _, ok, err := c.parts[0].LeaseCredits(ctx, "o", time.Hour); err != nil || !ok {
			t.Fatalf("lease: %v, %v", ok, err)
		}
		for i, o := range outs {
			_, err := src.Exec(ctx, `SELECT giftd_credit_out('o', $1, $2, $3, $4, $5)`, o.from, o.upTo, o.b.pos, o.b.rcv, o.b.amt)
			answer(fmt.Sprint("out ", i), "done", err)
		}
		_, err := src.Exec(ctx, `SELECT giftd_credit_out('x', 30, 40, '{}', '{}', '{}')`)
		answer("out, another owner", "done", err)
		for p, s := range c.parts {
			rows, _ := s.Pool().Query(ctx, `SELECT format('%s %s %s %s %s %s %s', account, receiver_id, kind, amount, balance_after, ref, details)
				FROM account_entries ORDER BY id`)
			for rows.Next() {
				var r string
				if err := rows.Scan(&r); err != nil {
					t.Fatal(err)
				}
				got = append(got, fmt.Sprintf("partition %d entry: %s", p, r))
			}
			rows, _ = s.Pool().Query(ctx, `SELECT format('%s %s', receiver_id, balance) FROM earnings_accounts ORDER BY 1`)
			for rows.Next() {
				var r string
				if err := rows.Scan(&r); err != nil {
					t.Fatal(err)
				}
				got = append(got, fmt.Sprintf("partition %d account: %s", p, r))
			}
			var cursor int64
			if err := s.Pool().QueryRow(ctx, `SELECT position FROM credit_cursor`).Scan(&cursor); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("partition %d cursor: %d", p, cursor))
		}
		return got
	}
	want, got := run(old), run(set)
	if !slices.Equal(got, want) {
		t.Errorf("the latest legs:\n%s\nmigration 4's:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Not vacuous: both batches applied (4 + 3 legs), the cursor moved.
	for _, w := range []string{"in 0: 3", "in 1: 4", "in 2: SQLSTATE 23505", "in 6: SQLSTATE GD001", "out 0: done",
		"out 2: SQLSTATE 23514", "out 6: done", "partition 0 cursor: 30", "partition 1 account: " + r1 + " 19"} {
		if !slices.Contains(got, w) {
			t.Errorf("no %q in:\n%s", w, strings.Join(got, "\n"))
		}
	}
}

// TestConsumer_StoppingGivesItsLeasesUp: a consumer's Run that ends gives up
// its leases, so that another consumer takes the cursors at once although
// the leases had an hour to run; a consumer giving up a lease it no longer
// holds leaves the holder's alone.
func TestConsumer_StoppingGivesItsLeasesUp(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	cfg := DefaultConfig("first")
	cfg.Lease, cfg.Idle = time.Hour, time.Millisecond
	// Its errors in the test's output: a failure says whether a step or
	// the release failed.
	first := New(c.parts, cfg, nil, slog.New(slog.NewTextHandler(t.Output(), nil)))
	// Run until it holds both partitions' leases.
	held := make(chan struct{})
	var once sync.Once
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { first.Run(rctx) })
	go func() {
		for rctx.Err() == nil {
			n := 0
			for _, s := range c.parts {
				var owner *string
				if err := s.Pool().QueryRow(ctx, `SELECT lease_owner FROM credit_cursor WHERE lease_until > now()`).Scan(&owner); err == nil &&
					owner != nil && *owner == "first" {
					n++
				}
			}
			if n == len(c.parts) {
				once.Do(func() { close(held) })
				return
			}
			<-time.After(time.Millisecond)
		}
	}()
	<-held
	for p, s := range c.parts {
		if _, ok, err := s.LeaseCredits(ctx, "second", time.Hour); err != nil || ok {
			t.Fatalf("partition %d: a second consumer leased the cursor while the first runs: %v, %v", p, ok, err)
		}
	}
	stop()
	wg.Wait()
	for p, s := range c.parts {
		if _, ok, err := s.LeaseCredits(ctx, "second", time.Hour); err != nil || !ok {
			t.Errorf("partition %d: the first consumer stopped, yet a second cannot lease the cursor: %v, %v", p, ok, err)
		}
		if held, err := s.ReleaseCredits(ctx, "first"); err != nil || held {
			t.Errorf("partition %d: the first consumer gave up a lease it no longer held: %v, %v", p, held, err)
		}
		if _, ok, err := s.LeaseCredits(ctx, "third", time.Hour); err != nil || ok {
			t.Errorf("partition %d: a third consumer leased the second's cursor: %v, %v", p, ok, err)
		}
	}
}

// TestConsumer_StoppingWaitsForTheStepOnThePartition: a consumer's Run that
// ends while a step's giftd_credit_out runs on the partition gives its lease
// up only once that statement has ended. Cut short by Run's context, the
// statement would be given up by the client only; the partition would run
// it on, and, its lease checked against its own start, renew the lease
// after the release: the stopped consumer would hold it for a whole lease.
// Here giftd_credit_out is held back on the partition until the lease is
// given up (what a descheduled backend does under load), deaf to the
// cancel pgx sends, or for 2 s when no release comes meanwhile.
func TestConsumer_StoppingWaitsForTheStepOnThePartition(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	sender, receiver := usersOn("sender", 1)[0][0], usersOn("host", 1)[1][0]
	if _, err := c.proxy.TopUp(ctx, ledger.TopUp{UserID: sender, Amount: 100, Key: "seed"}); err != nil {
		t.Fatal(err)
	}
	c.gifts(t, "r", []string{sender}, []string{receiver}, 1)
	src := c.parts[0]
	if _, err := src.Pool().Exec(ctx, `
		ALTER FUNCTION giftd_credit_out(text, bigint, bigint, bigint[], text[], bigint[], double precision)
			RENAME TO giftd_credit_out_held;
		CREATE FUNCTION giftd_credit_out(p_owner text, p_from bigint, p_upto bigint, p_position bigint[],
		                                 p_receiver text[], p_amount bigint[], p_lease double precision DEFAULT NULL)
		    RETURNS void LANGUAGE plpgsql AS $$
		DECLARE
		    t0 timestamptz := clock_timestamp();
		BEGIN
		    LOOP
		        BEGIN
		            EXIT WHEN (SELECT lease_until <= clock_timestamp() FROM credit_cursor)
		                OR clock_timestamp() > t0 + interval '2 seconds';
		            PERFORM pg_sleep(0.001);
		        EXCEPTION WHEN query_canceled THEN NULL;
		        END;
		    END LOOP;
		    LOOP
		        BEGIN
		            PERFORM giftd_credit_out_held(p_owner, p_from, p_upto, p_position, p_receiver, p_amount, p_lease);
		            RETURN;
		        EXCEPTION WHEN query_canceled THEN NULL;
		        END;
		    END LOOP;
		END $$`); err != nil {
		t.Fatal(err)
	}
	running := func() bool {
		t.Helper()
		var n int
		if err := src.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE state = 'active' AND query LIKE '%giftd_credit_out(%' AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	cfg := DefaultConfig("first")
	cfg.Lease, cfg.Idle = time.Hour, time.Millisecond
	first := New(c.parts, cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { first.Run(rctx) })
	for !running() {
		<-time.After(time.Millisecond)
	}
	stop()
	wg.Wait()
	for running() {
		<-time.After(time.Millisecond)
	}
	if _, ok, err := src.LeaseCredits(ctx, "second", time.Hour); err != nil || !ok {
		var owner string
		var until time.Time
		_ = src.Pool().QueryRow(ctx, `SELECT lease_owner, lease_until FROM credit_cursor`).Scan(&owner, &until)
		t.Fatalf("the first consumer stopped, yet a second cannot lease the cursor: %v, %v (leased to %s until %s)", ok, err, owner, until)
	}
	var cursor int64
	if err := src.Pool().QueryRow(ctx, `SELECT position FROM credit_cursor`).Scan(&cursor); err != nil || cursor == 0 {
		t.Errorf("the step in flight when Run stopped did not move the cursor: at %d, %v", cursor, err)
	}
}

// TestLegs_RivalsApplyAFirstLegOnce: two consumers applying the same first
// legs at once (one lost its lease mid-step): the second waits for the
// first's accounts, then meets its keys and fails whole, so that each
// receiver is credited once.
func TestLegs_RivalsApplyAFirstLegOnce(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	users := usersOn("rival", 2)
	r1, r2 := users[1][0], users[1][1]
	pool := c.parts[1].Pool()
	if _, err := pool.Exec(ctx, `INSERT INTO earnings_accounts (receiver_id, balance) VALUES ($1, 7)`, r1); err != nil {
		t.Fatal(err)
	}
	pos, rcv, amt := []int64{1, 2, 3}, []string{r1, r2, r1}, []int64{5, 3, 4}
	first, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(ctx)
	if _, err := first.Exec(ctx, `SELECT giftd_credits_in(0, $1, $2, $3)`, pos, rcv, amt); err != nil {
		t.Fatal(err)
	}
	var secondPID int
	second, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Release()
	if err := second.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&secondPID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := second.Exec(ctx, `SELECT giftd_credits_in(0, $1, $2, $3)`, pos, rcv, amt)
		done <- err
	}()
	// The second waits on the first's locks: then the first commits.
	for {
		var waiting bool
		if err := pool.QueryRow(ctx, `SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1`, secondPID).
			Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the second consumer's first legs ended before the first's committed: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var pe *pgconn.PgError
	if err := <-done; !errors.As(err, &pe) || pe.Code != "23505" {
		t.Errorf("the second consumer's first legs: %v; want unique_violation", err)
	}
	for r, want := range map[string]int64{r1: 7 + 5 + 4, r2: 3} {
		var b int64
		var n int
		if err := pool.QueryRow(ctx, `SELECT a.balance, (SELECT count(*) FROM account_entries AS x WHERE x.receiver_id = a.receiver_id)
			FROM earnings_accounts AS a WHERE a.receiver_id = $1`, r).Scan(&b, &n); err != nil {
			t.Fatal(err)
		}
		if b != want || n != len(slices.DeleteFunc(slices.Clone(rcv), func(x string) bool { return x != r })) {
			t.Errorf("receiver %s: balance %d with %d legs; want %d, credited once", r, b, n, want)
		}
	}
}

// TestConsumer_ALeaseTakenOverMeanwhileMovesNothingTwice: a consumer that
// renewed its lease with its last step takes the next one on what it
// remembers (no lease taken); if another consumer took the lease meanwhile
// (here: the first's made to expire in the database) and moved the credits,
// the first's step applies no leg twice, fails on its second legs (GD002),
// and the step after leases again (and finds the other holding it).
func TestConsumer_ALeaseTakenOverMeanwhileMovesNothingTwice(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	senders, receivers := usersOn("over-s", 2), usersOn("over-h", 2)
	for _, s := range senders[0] {
		if _, err := c.proxy.TopUp(ctx, ledger.TopUp{UserID: s, Amount: 1_000_000, Key: "seed-" + s}); err != nil {
			t.Fatal(err)
		}
	}
	c.gifts(t, "r1", senders[0], receivers[1], 5) // 20 credits from partition 0 to 1
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := DefaultConfig("first")
	cfg.Lease, cfg.Batch = time.Hour, 6
	first := New(c.parts, cfg, nil, quiet)
	if n, err := first.Step(ctx, 0); err != nil || n == 0 {
		t.Fatalf("the first consumer's first step: %d, %v", n, err)
	}
	if _, err := c.parts[0].Pool().Exec(ctx, `UPDATE credit_cursor SET lease_until = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	cfg.Owner = "second"
	second := New(c.parts, cfg, nil, quiet)
	for {
		n, err := second.Step(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	legs := func() (n int) {
		t.Helper()
		if err := c.parts[1].Pool().QueryRow(ctx, `SELECT count(*) FROM account_entries WHERE kind = 'transfer_in'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := legs()
	if before != 20 {
		t.Fatalf("%d credits moved in; want 20", before)
	}
	var pe *pgconn.PgError
	if _, err := first.Step(ctx, 0); !errors.As(err, &pe) || pe.Code != "GD002" {
		t.Errorf("the first consumer's step after the second took over: %v; want SQLSTATE GD002", err)
	}
	if n, err := first.Step(ctx, 0); n != 0 || err != nil {
		t.Errorf("the first consumer's next step: %d, %v; want none moved (the second holds the lease)", n, err)
	}
	if after := legs(); after != before {
		t.Errorf("%d credits moved in, %d before the first consumer's steps", after, before)
	}
	if _, err := c.parts[0].ReleaseCredits(ctx, "second"); err != nil {
		t.Fatal(err)
	}
	c.drain(t, "drain")
	c.check(t)
}
