package platforms_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/linkvapi"
	"giftd/internal/linkvapi/linkvfake"
	"giftd/internal/pgtest"
	"giftd/internal/platforms"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	linkvApp    = "LM6000167049877161121920"
	linkvSecret = "linkv-secret-never-shown-7f3a"
)

func openStore(t *testing.T) *ledger.Store {
	t.Helper()
	s, err := ledger.Open(context.Background(), pgtest.URL(t), pgtest.StoreOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func linkvClient(t *testing.T, f *linkvfake.Fake) *linkvapi.Client {
	t.Helper()
	c, err := linkvapi.New(linkvapi.Config{BaseURL: f.URL, AppID: linkvApp, Secret: linkvSecret,
		Timeout: 100 * time.Millisecond, Attempts: 3, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type world struct {
	fake  *linkvfake.Fake
	store *ledger.Store
	c     *linkvapi.Client
}

func newWorld(t *testing.T) world {
	f := linkvfake.New(t, linkvApp, linkvSecret)
	return world{fake: f, store: openStore(t), c: linkvClient(t, f)}
}

func (w world) mover() *platforms.Mover { return &platforms.Mover{LinkV: w.c, Store: w.store} }

// books checks the end state of a user's move: LinkV holds linkv coins,
// giftd's wallet gold, credited by exactly credits top-up entries.
func (w world) books(t *testing.T, user, open string, linkv, gold int64, credits int) {
	t.Helper()
	if b := w.fake.Balance(open); b != linkv {
		t.Errorf("%s: LinkV holds %d, want %d", user, b, linkv)
	}
	var have, n int64
	err := w.store.Pool().QueryRow(context.Background(), `
		SELECT coalesce((SELECT gold FROM wallets WHERE user_id = $1), 0),
		       (SELECT count(*) FROM ledger_entries WHERE user_id = $1 AND kind = 'topup' AND platform = 'linkv')`,
		user).Scan(&have, &n)
	if err != nil {
		t.Fatal(err)
	}
	if have != gold || n != int64(credits) {
		t.Errorf("%s: giftd wallet %d from %d credits, want %d from %d", user, have, n, gold, credits)
	}
}

func TestMove_MovesEveryCoinOnce(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	linked := w.fake.AddUser("linked", "", 100)
	if err := w.store.SaveLinkVAccount(ctx, linkvApp, "linked", linked); err != nil {
		t.Fatal(err)
	}
	given := w.fake.AddUser("given", "", 50)
	empty := w.fake.AddUser("empty", "", 0)
	w.fake.AddUser("stranger", "", 10)

	var progress []string
	m := w.mover()
	m.Progress = func(done, total int, r platforms.MoveResult) { progress = append(progress, r.UserID+":"+r.Outcome) }
	users := []platforms.MoveUser{{UserID: "linked"}, {UserID: "given", OpenID: given}, {UserID: "empty", OpenID: empty}, {UserID: "stranger"}}
	sum := m.Move(ctx, users, false)
	if sum.Coins != 150 || sum.Outcomes[platforms.OutcomeDone] != 3 || sum.Outcomes[platforms.OutcomeNoOpenID] != 1 || sum.OK() {
		t.Fatalf("summary %+v", sum)
	}
	if len(progress) != 4 || progress[3] != "stranger:no_open_id" {
		t.Errorf("progress %v", progress)
	}
	w.books(t, "linked", linked, 0, 100, 1)
	w.books(t, "given", given, 0, 50, 1)
	w.books(t, "empty", empty, 0, 0, 0)

	// A second run calls nothing for done users.
	again := w.mover().Move(ctx, users[:3], false)
	if again.Coins != 0 || again.Outcomes[platforms.OutcomeAlreadyDone] != 3 || !again.OK() {
		t.Fatalf("second run %+v", again)
	}
	w.books(t, "linked", linked, 0, 100, 1)
	if w.fake.Applied() != 2 {
		t.Errorf("%d changeGold applied, want 2", w.fake.Applied())
	}
}

func TestMove_DryRunChangesNothing(t *testing.T) {
	w := newWorld(t)
	open := w.fake.AddUser("u1", "", 70)
	sum := w.mover().Move(context.Background(), []platforms.MoveUser{{UserID: "u1", OpenID: open}, {UserID: "u2"}}, true)
	if !sum.DryRun || sum.Coins != 70 || sum.Outcomes[platforms.OutcomeWouldMove] != 1 || sum.Outcomes[platforms.OutcomeNoOpenID] != 1 {
		t.Fatalf("dry run %+v", sum)
	}
	w.books(t, "u1", open, 70, 0, 0)
	if _, err := w.store.WalletMove(context.Background(), linkvApp, "u1"); err == nil {
		t.Error("a dry run recorded a step")
	}
}

// TestMove_CrashAtEveryStepResumes interrupts a move right after each of
// its steps, as a crash would, and resumes it with a new run: every coin
// arrives exactly once.
func TestMove_CrashAtEveryStepResumes(t *testing.T) {
	for _, step := range []string{"recorded", "sent", "taken", "credited", "finished"} {
		t.Run(step, func(t *testing.T) {
			w := newWorld(t)
			open := w.fake.AddUser("u1", "", 100)
			users := []platforms.MoveUser{{UserID: "u1", OpenID: open}}
			m := w.mover()
			platforms.CrashAfter(m, step)
			if sum := m.Move(context.Background(), users, false); sum.Outcomes[platforms.OutcomeCrashed] != 1 {
				t.Fatalf("first run %+v, want it to crash after %s", sum, step)
			}
			sum := w.mover().Move(context.Background(), users, false)
			if r := sum.Results[0]; r.TotalMoved != 100 || (r.Outcome != platforms.OutcomeDone && r.Outcome != platforms.OutcomeAlreadyDone) {
				t.Fatalf("resumed run %+v", sum)
			}
			w.books(t, "u1", open, 0, 100, 1)
			if w.fake.Applied() != 1 {
				t.Errorf("%d changeGold applied, want 1", w.fake.Applied())
			}
		})
	}
}

// TestMove_AppliedThen500Resumes: LinkV takes the coins but answers 500 to
// every attempt; the run leaves the take-out unknown, and the next replays
// its request_id, which LinkV answers 200 without taking again.
func TestMove_AppliedThen500Resumes(t *testing.T) {
	w := newWorld(t)
	open := w.fake.AddUser("u1", "", 100)
	users := []platforms.MoveUser{{UserID: "u1", OpenID: open}}
	w.fake.Fail("changeGold", linkvfake.AppliedThen500, linkvfake.Fail500, linkvfake.Hang)
	sum := w.mover().Move(context.Background(), users, false)
	if r := sum.Results[0]; r.Outcome != platforms.OutcomeUnknown || r.InFlight != 100 || r.State != ledger.MoveTaking {
		t.Fatalf("first run %+v, want the take-out unknown", sum)
	}
	w.books(t, "u1", open, 0, 0, 0) // taken on LinkV, not yet credited
	mv, err := w.store.WalletMove(context.Background(), linkvApp, "u1")
	if err != nil || mv.LastError == "" {
		t.Fatalf("step %+v %v: want the error recorded", mv, err)
	}
	sum = w.mover().Move(context.Background(), users, false)
	if r := sum.Results[0]; r.Outcome != platforms.OutcomeDone || r.Moved != 100 {
		t.Fatalf("second run %+v", sum)
	}
	w.books(t, "u1", open, 0, 100, 1)
	if w.fake.Applied() != 1 {
		t.Errorf("%d changeGold applied, want 1", w.fake.Applied())
	}
}

// TestMove_BalanceChangedBetweenReadAndTakeOut: the balance falls or grows
// after it was read and the take-out recorded; giftd credits exactly what
// LinkV took, round by round.
func TestMove_BalanceChangedBetweenReadAndTakeOut(t *testing.T) {
	for _, tt := range []struct {
		name     string
		changeTo int64
		credits  int
	}{{"fell", 40, 1}, {"grew", 150, 2}} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			open := w.fake.AddUser("u1", "", 100)
			users := []platforms.MoveUser{{UserID: "u1", OpenID: open}}
			m := w.mover()
			platforms.CrashAfter(m, "recorded") // read 100, recorded, not sent
			m.Move(context.Background(), users, false)
			w.fake.SetBalance(open, tt.changeTo)
			sum := w.mover().Move(context.Background(), users, false)
			if r := sum.Results[0]; r.Outcome != platforms.OutcomeDone || r.Moved != tt.changeTo {
				t.Fatalf("resumed run %+v, want %d moved", sum, tt.changeTo)
			}
			w.books(t, "u1", open, 0, tt.changeTo, tt.credits)
		})
	}
}

// TestMove_LostStepAfterCreditNeverCreditsTwice: the credit and its step
// commit together, but should the step be lost (restored from an old
// backup, edited by hand), the credit's key still stops a second credit.
func TestMove_LostStepAfterCreditNeverCreditsTwice(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	open := w.fake.AddUser("u1", "", 100)
	users := []platforms.MoveUser{{UserID: "u1", OpenID: open}}
	m := w.mover()
	platforms.CrashAfter(m, "taken")
	m.Move(ctx, users, false)
	taken, err := w.store.WalletMove(ctx, linkvApp, "u1")
	if err != nil || taken.State != ledger.MoveTaken {
		t.Fatalf("step %+v %v", taken, err)
	}
	if _, _, err := w.store.CreditWalletMove(ctx, taken, "test"); err != nil {
		t.Fatal(err)
	}
	// Put the step back where it was before the credit.
	_, err = w.store.Pool().Exec(ctx, `UPDATE linkv_wallet_moves SET state = 'taken', round = $2, request_id = $3,
		amount = $4, expriation = $5, moved = 0 WHERE user_id = $1`, "u1", taken.Round, taken.RequestID, taken.Amount, taken.Expiration)
	if err != nil {
		t.Fatal(err)
	}
	sum := w.mover().Move(ctx, users, false)
	if r := sum.Results[0]; r.Outcome != platforms.OutcomeDone {
		t.Fatalf("resumed run %+v", sum)
	}
	w.books(t, "u1", open, 0, 100, 1)
}

func TestMove_ConcurrentRunsMoveOnce(t *testing.T) {
	w := newWorld(t)
	var users []platforms.MoveUser
	opens := map[string]string{}
	for _, u := range []string{"a", "b", "c", "d", "e"} {
		opens[u] = w.fake.AddUser(u, "", 10)
		users = append(users, platforms.MoveUser{UserID: u, OpenID: opens[u]})
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { w.mover().Move(context.Background(), users, false) })
	}
	wg.Wait()
	// Users a run found busy are finished by one more run.
	w.mover().Move(context.Background(), users, false)
	for u, open := range opens {
		w.books(t, u, open, 0, 10, 1)
	}
}
