package partition_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/ledger"
	"giftd/internal/linkvapi"
	"giftd/internal/linkvapi/linkvfake"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
	"giftd/internal/platforms"
)

const (
	moveApp    = "LM6000167049877161121920"
	moveSecret = "linkv-secret-never-shown-7f3a"
)

// moveBed is a partitioned giftd of 2 partitions about to be resharded to
// 4, a LinkV fake, and a Store through the proxy opened over 2 (as a
// replica started before the reshard: never reopened).
type moveBed struct {
	l       partition.Layout
	newURLs []string
	fake    *linkvfake.Fake
	linkv   *linkvapi.Client
	store   *ledger.Store
	opens   map[string]string // user → live_open_id on the fake
	coins   map[string]int64  // user → coins on LinkV at the start
}

func newMoveBed(t *testing.T) *moveBed {
	t.Helper()
	l := pgtest.Partitioned(t, 2)
	requireLogical(t, l.ProxyURL)
	b := &moveBed{l: l, newURLs: newPartitions(t, l), fake: linkvfake.New(t, moveApp, moveSecret),
		opens: map[string]string{}, coins: map[string]int64{}}
	var err error
	b.linkv, err = linkvapi.New(linkvapi.Config{BaseURL: b.fake.URL, AppID: moveApp, Secret: moveSecret,
		Timeout: time.Second, Attempts: 3, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b.store, err = ledger.Open(context.Background(), l.ProxyURL, append(pgtest.StoreOptions(), ledger.WithPartitions(2, partition.For))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.store.Close)
	return b
}

// user gives user coins on LinkV and, when link, saves its live_open_id as
// linking would.
func (b *moveBed) user(t *testing.T, user string, coins int64, link bool) platforms.MoveUser {
	t.Helper()
	b.opens[user] = b.fake.AddUser(user, "", coins)
	b.coins[user] = coins
	if link {
		if err := b.store.SaveLinkVAccount(context.Background(), moveApp, user, b.opens[user]); err != nil {
			t.Fatal(err)
		}
	}
	return platforms.MoveUser{UserID: user}
}

// mover is a run's Mover, logging to log when given.
func (b *moveBed) mover(log *bytes.Buffer) *platforms.Mover {
	m := &platforms.Mover{LinkV: b.linkv, Store: b.store}
	if log != nil {
		m.Log = slog.New(slog.NewTextHandler(log, nil))
	}
	return m
}

// isCode reports whether err carries a PostgreSQL error of SQLSTATE code.
func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// crashAt cuts u's move short right after step, before the reshard.
func (b *moveBed) crashAt(t *testing.T, u platforms.MoveUser, step string) {
	t.Helper()
	m := b.mover(nil)
	platforms.CrashAfter(m, step)
	if sum := m.Move(context.Background(), []platforms.MoveUser{u}, false); sum.Outcomes[platforms.OutcomeCrashed] != 1 {
		t.Fatalf("%s: the run %+v; want it cut short after %s", u.UserID, sum, step)
	}
}

// books checks, once the reshard has forgotten what each partition gave
// away, that every user's coins moved once: LinkV holds none of them; on
// the user's partition of 4 the wallet holds them all, equal to the sum of
// its ledger entries, from exactly one LinkV credit (one round), and its
// move is done, having moved them once; no other partition holds a row of
// the user. Each partition's audit is clean, and LinkV applied one
// take-out per user.
func (b *moveBed) books(t *testing.T, users []platforms.MoveUser) {
	t.Helper()
	ctx := context.Background()
	all := append(append([]string{}, b.l.PartitionURLs...), b.newURLs...)
	for _, u := range users {
		if got := b.fake.Balance(b.opens[u.UserID]); got != 0 {
			t.Errorf("%s: LinkV holds %d; want 0", u.UserID, got)
		}
		for p, url := range all {
			var wallets, gold, sum, entries, credits, moves, done, moved int64
			err := connect(t, url).QueryRow(ctx, `
				SELECT (SELECT count(*) FROM wallets WHERE user_id = $1),
				       coalesce((SELECT gold FROM wallets WHERE user_id = $1), 0),
				       coalesce((SELECT sum(amount) FROM ledger_entries WHERE user_id = $1), 0),
				       (SELECT count(*) FROM ledger_entries WHERE user_id = $1),
				       (SELECT count(*) FROM ledger_entries WHERE user_id = $1 AND kind = 'topup' AND platform = 'linkv'),
				       (SELECT count(*) FROM linkv_wallet_moves WHERE user_id = $1),
				       (SELECT count(*) FROM linkv_wallet_moves WHERE user_id = $1 AND state = 'done'),
				       coalesce((SELECT moved FROM linkv_wallet_moves WHERE user_id = $1), 0)`,
				u.UserID).Scan(&wallets, &gold, &sum, &entries, &credits, &moves, &done, &moved)
			if err != nil {
				t.Fatal(err)
			}
			home := partition.For(u.UserID, 4) == p
			want := b.coins[u.UserID]
			switch {
			case home && (wallets != 1 || gold != want || sum != want || credits != 1 || entries != 1 || moves != 1 || done != 1 || moved != want):
				t.Errorf("%s on its partition %d of 4: wallet %d (%d rows), entries summing to %d (%d, %d LinkV credits), "+
					"move rows %d (%d done) having moved %d; want %d in 1 wallet from 1 credit, 1 move done having moved %d",
					u.UserID, p, gold, wallets, sum, entries, credits, moves, done, moved, want, want)
			case !home && (wallets != 0 || entries != 0 || moves != 0):
				t.Errorf("%s on partition %d, not its own: %d wallets, %d entries, %d moves; want none", u.UserID, p, wallets, entries, moves)
			}
		}
	}
	if got := b.fake.Applied(); got != len(users) {
		t.Errorf("LinkV applied %d take-outs; want %d, one per user", got, len(users))
	}
	for p, ps := range stores(t, all) {
		if r, err := ps.Audit(ctx); err != nil || !r.OK() {
			t.Errorf("audit of partition %d: %+v, %v", p, r, err)
		}
	}
}

// TestReshard_WalletMovesCutShortResumeAfterTheSwitch cuts LinkV wallet
// moves short after each of their steps (the take-out recorded, sent,
// taken, credited), for users moving to the new partitions and users
// staying, then doubles the cluster from 2 to 4 partitions, then runs the
// moves again through the proxy with the same Store: each resumes from its
// step on the user's partition of 4, and every coin arrives once.
func TestReshard_WalletMovesCutShortResumeAfterTheSwitch(t *testing.T) {
	b := newMoveBed(t)
	ctx := context.Background()
	var users []platforms.MoveUser
	for i, step := range []string{"recorded", "sent", "taken", "credited"} {
		// A user moving from partition i%2 to i%2+2, and one staying there.
		for j, u := range []string{usersOn(i%2+2, 4, i/2+1)[i/2], usersOn(i%2, 4, i/2+1)[i/2]} {
			mu := b.user(t, u, int64(10*(2*i+j+1)), true)
			b.crashAt(t, mu, step)
			users = append(users, mu)
		}
	}
	if _, err := partition.Reshard(ctx, partition.Resharding{Layout: b.l, NewPartitionURLs: b.newURLs}); err != nil {
		t.Fatal(err)
	}
	sum := b.mover(nil).Move(ctx, users, false)
	if !sum.OK() || sum.Outcomes[platforms.OutcomeDone] != len(users) {
		t.Errorf("the moves resumed after the switch: %+v; want every user done", sum)
	}
	b.books(t, users)
}

// TestReshard_WalletMoveDuringThePauseIsRefusedAndResumes runs LinkV wallet
// moves inside the pause of a reshard from 2 to 4 partitions: once the
// moving users are fenced and the copy cut off (their writes refused with
// GD003), and once their claims have moved, just before the proxy's switch
// (refused with GD001 on the partition they are leaving). For a user
// moving, a move not started, one whose take-out was recorded (LinkV takes
// the coins, giftd cannot record it) and one whose take-out was taken each
// stop failed, saying the reshard's pause refused them (ErrReshardPaused),
// with no error of their own noted on the row, and LinkV's account link of
// another is refused the same way; a user staying moves at once. After the
// switch the same runs finish every move: LinkV took each user's coins
// once, and giftd credited them once.
func TestReshard_WalletMoveDuringThePauseIsRefusedAndResumes(t *testing.T) {
	b := newMoveBed(t)
	ctx := context.Background()
	type pauseUsers struct {
		fresh, taking, taken, stayer platforms.MoveUser
		unlinked                     string
	}
	at := map[string]*pauseUsers{}
	var all []platforms.MoveUser
	for i, step := range []string{"sequences", "switch"} {
		movers := usersOn(i+2, 4, 4) // from partition i of 2 to i+2 of 4
		pu := &pauseUsers{
			fresh:    b.user(t, movers[0], 11, true),
			taking:   b.user(t, movers[1], 12, true),
			taken:    b.user(t, movers[2], 13, true),
			stayer:   b.user(t, usersOn(i, 4, 1)[0], 14, true),
			unlinked: movers[3],
		}
		b.crashAt(t, pu.taking, "recorded")
		b.crashAt(t, pu.taken, "taken")
		b.user(t, pu.unlinked, 15, false)
		at[step] = pu
		all = append(all, pu.fresh, pu.taking, pu.taken, pu.stayer, platforms.MoveUser{UserID: pu.unlinked})
	}
	applied := b.fake.Applied()
	paused := map[string]bool{}
	r := partition.WithOnStep(partition.Resharding{Layout: b.l, NewPartitionURLs: b.newURLs}, func(step string) {
		pu := at[step]
		if pu == nil {
			return
		}
		paused[step] = true
		var log bytes.Buffer
		sum := b.mover(&log).Move(ctx, []platforms.MoveUser{pu.fresh, pu.taking, pu.taken, pu.stayer}, false)
		for _, r := range sum.Results {
			if r.UserID == pu.stayer.UserID {
				if r.Outcome != platforms.OutcomeDone {
					t.Errorf("at %q: the move of %s, staying: %+v; want done", step, r.UserID, r)
				}
				continue
			}
			if r.Outcome != platforms.OutcomeFailed || !strings.Contains(r.Error, ledger.ErrReshardPaused.Error()) {
				t.Errorf("at %q: the move of %s, moving: %+v; want failed, saying the reshard's pause refused it (%q)",
					step, r.UserID, r, ledger.ErrReshardPaused)
			}
			if mv, err := b.store.WalletMove(ctx, moveApp, r.UserID); err == nil && mv.LastError != "" {
				t.Errorf("at %q: the move of %s noted %q; want no note (the pause refuses it)", step, r.UserID, mv.LastError)
			}
		}
		if strings.Contains(log.String(), "could not record an error") {
			t.Errorf("at %q: the run tried to note an error the pause refuses: %s", step, log.String())
		}
		// Both refusals are the pause's: the fence's (GD003) throughout,
		// the partition's that no longer owns the user (GD001) for a
		// move's step once the claims moved.
		refusals := map[string]string{"sequences": "GD003", "switch": "GD001"}
		_, err := b.store.StartWalletMove(ctx, moveApp, pu.unlinked, b.opens[pu.unlinked])
		if !errors.Is(err, ledger.ErrReshardPaused) || !isCode(err, refusals[step]) {
			t.Errorf("at %q: starting the move of %s, moving: %v; want ErrReshardPaused from %s", step, pu.unlinked, err, refusals[step])
		}
		err = b.store.SaveLinkVAccount(ctx, moveApp, pu.unlinked, b.opens[pu.unlinked])
		if !errors.Is(err, ledger.ErrReshardPaused) || !isCode(err, "GD003") {
			t.Errorf("at %q: linking %s, moving: %v; want ErrReshardPaused from GD003", step, pu.unlinked, err)
		}
	})
	if _, err := partition.Reshard(ctx, r); err != nil {
		t.Fatal(err)
	}
	if !paused["sequences"] || !paused["switch"] {
		t.Fatalf("the reshard never reached its pause: %v", paused)
	}
	// Three take-outs during the pause: the staying users' two, and at
	// "sequences" the taking user's, which LinkV applied and giftd could
	// not record (at "switch" the move stops at its start, nothing sent).
	if got := b.fake.Applied() - applied; got != 3 {
		t.Errorf("LinkV applied %d take-outs during the pause; want 3 (2 staying users', the taking user's at \"sequences\")", got)
	}
	for _, pu := range at {
		if err := b.store.SaveLinkVAccount(ctx, moveApp, pu.unlinked, b.opens[pu.unlinked]); err != nil {
			t.Errorf("linking %s after the switch: %v", pu.unlinked, err)
		}
	}
	sum := b.mover(nil).Move(ctx, all, false)
	if !sum.OK() {
		t.Errorf("the moves run again after the switch: %+v; want every user done", sum)
	}
	for _, r := range sum.Results {
		t.Logf("%s (partition %d of 4): %s, moved %d now, %d in all", r.UserID, partition.For(r.UserID, 4), r.Outcome, r.Moved, r.TotalMoved)
	}
	b.books(t, all)
}

// TestReshard_WalletMovesRacingAReshardMoveEveryCoinOnce runs LinkV wallet
// moves of 24 users of all four partitions-to-be, most of them cut short
// before after one of their steps, from three concurrent runners while a
// reshard doubles the cluster from 2 to 4 partitions: they start just
// before the first fence, and the reshard waits, once fenced and once the
// claims have moved, until every runner has gone round twice more. Each round cuts its run short after one step (or none), in turn.
// Every stop that is not a cut or another run's step says the reshard's
// pause refused it (no raw database error), and once a last run has
// finished every move, LinkV took each user's coins once and giftd credited
// them once, on the user's partition of 4.
func TestReshard_WalletMovesRacingAReshardMoveEveryCoinOnce(t *testing.T) {
	b := newMoveBed(t)
	ctx := context.Background()
	var users []platforms.MoveUser
	for p := range 4 {
		for j, u := range usersOn(p, 4, 6) {
			mu := b.user(t, u, int64(10*(6*p+j+1)), j%2 == 0)
			if j%2 != 0 {
				mu.OpenID = b.opens[u] // given, as for a user giftd did not link
			}
			// Cut short before the reshard after one step, or not started:
			// the fence meets moves in every state.
			if step := []string{"", "recorded", "sent", "taken", "credited"}[j%5]; step != "" {
				b.crashAt(t, mu, step)
			}
			users = append(users, mu)
		}
	}
	const runners = 3
	var mu sync.Mutex
	changed := sync.NewCond(&mu)
	rounds := make([]int, runners)
	var refusals []string                // what a stop other than a cut or busy said
	paused := map[ledger.MoveState]int{} // the pause's refusals, by the state the move was in
	start, stop := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	for g := range runners {
		wg.Go(func() {
			<-start
			order := append([]platforms.MoveUser{}, users...)
			for round := 0; ; round++ {
				select {
				case <-stop:
					return
				default:
				}
				m := b.mover(nil)
				if step := []string{"", "recorded", "sent", "taken", "credited"}[(g+round)%5]; step != "" {
					platforms.CrashAfter(m, step)
				}
				rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
				sum := m.Move(ctx, order, false)
				mu.Lock()
				for _, r := range sum.Results {
					switch r.Outcome {
					case platforms.OutcomeDone, platforms.OutcomeAlreadyDone, platforms.OutcomeCrashed, platforms.OutcomeBusy:
					default:
						if r.Outcome != platforms.OutcomeFailed || !strings.Contains(r.Error, ledger.ErrReshardPaused.Error()) {
							refusals = append(refusals, fmt.Sprintf("%s: %s (%s)", r.UserID, r.Outcome, r.Error))
						} else {
							paused[r.State]++
						}
					}
				}
				rounds[g]++
				changed.Broadcast()
				mu.Unlock()
			}
		})
	}
	// twoRounds waits until every runner has finished two more rounds: the
	// second of them began after this call.
	twoRounds := func() {
		mu.Lock()
		defer mu.Unlock()
		from := append([]int{}, rounds...)
		for {
			all := true
			for g := range runners {
				all = all && rounds[g] >= from[g]+2
			}
			if all {
				return
			}
			changed.Wait()
		}
	}
	r := partition.WithOnStep(partition.Resharding{Layout: b.l, NewPartitionURLs: b.newURLs}, func(step string) {
		switch step {
		case "fence":
			close(start)
		case "sequences", "switch":
			twoRounds()
		}
	})
	_, err := partition.Reshard(ctx, r)
	close(stop)
	select {
	case <-start:
	default:
		close(start) // the reshard failed before its pause
	}
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refusals {
		t.Errorf("a move stopped, not by the pause: %s", r)
	}
	if paused[ledger.MoveTaking]+paused[ledger.MoveTaken]+paused[ledger.MovePending] == 0 {
		t.Errorf("the pause refused no move under way (%v): the runners did not meet it", paused)
	}
	var log bytes.Buffer
	sum := b.mover(&log).Move(ctx, users, false)
	if !sum.OK() {
		t.Errorf("the last run: %+v; want every user done", sum)
	}
	t.Logf("rounds of each runner: %v; refused by the pause, by state: %v; the last run: %v", rounds, paused, sum.Outcomes)
	b.books(t, users)
}
