// Package platforms is giftd's work as a client of the platforms' server
// APIs (docs/platform-apis.md): linking an app user to LinkV (thGetToken),
// moving users' coins out of LinkV's wallet into giftd's, and setting up
// Polyv's point donations. The server's admin API and the giftd-platform
// command both run these jobs.
package platforms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/linkvapi"
)

// maxRounds bounds the rounds of one user's move in one run: a round
// starts again only when LinkV refused a take-out (the balance fell
// meanwhile) or the balance grew after a credit.
const maxRounds = 5

// moveReason is changeGold's reason of a take-out.
const moveReason = "moved to the merchant's wallet (giftd)"

// MoveUser is one user to move: the app's user id and, when giftd has not
// linked it, LinkV's live_open_id.
type MoveUser struct {
	UserID string `json:"user_id"`
	OpenID string `json:"live_open_id,omitempty"`
}

// Outcomes of one user's move in a run.
const (
	// OutcomeDone: LinkV's balance read 0 after this run's credits (if any).
	OutcomeDone = "done"
	// OutcomeAlreadyDone: an earlier run finished this user; nothing was called.
	OutcomeAlreadyDone = "already_done"
	// OutcomeWouldMove: a dry run read this balance.
	OutcomeWouldMove = "would_move"
	// OutcomeUnknown: LinkV's answer to a take-out is not known (500 or
	// none); the next run replays it under the same request_id.
	OutcomeUnknown = "unknown"
	// OutcomeFailed: a call or the database failed, or giftd reshard's
	// pause refused the step (the error says so); the next run resumes.
	OutcomeFailed = "failed"
	// OutcomeNoOpenID: giftd knows no live_open_id for the user.
	OutcomeNoOpenID = "no_open_id"
	// OutcomeBusy: another run was moving this user at the same time.
	OutcomeBusy = "busy"
	// OutcomeIncomplete: maxRounds rounds did not empty LinkV's balance.
	OutcomeIncomplete = "incomplete"
)

// MoveResult is what a run did for one user.
type MoveResult struct {
	UserID  string `json:"user_id"`
	OpenID  string `json:"live_open_id,omitempty"`
	Outcome string `json:"outcome"`
	// Moved is the coins credited to giftd's wallet in this run;
	// TotalMoved in every run so far.
	Moved      int64 `json:"moved"`
	TotalMoved int64 `json:"total_moved"`
	// LinkVBalance is the last balance read on LinkV (a dry run: what
	// would move), -1 when none was read.
	LinkVBalance int64 `json:"linkv_balance"`
	// InFlight is the coins of a take-out recorded but not yet credited.
	InFlight int64            `json:"in_flight,omitempty"`
	State    ledger.MoveState `json:"state,omitempty"`
	Round    int              `json:"round,omitempty"`
	Error    string           `json:"error,omitempty"`
}

// MoveSummary is a whole run.
type MoveSummary struct {
	DryRun bool `json:"dry_run"`
	Users  int  `json:"users"`
	// Coins is what this run credited (a dry run: what it would).
	Coins int64 `json:"coins"`
	// Outcomes counts the users of each outcome.
	Outcomes map[string]int `json:"outcomes"`
	Results  []MoveResult   `json:"results"`
}

// OK reports whether every user ended done or already done (or, in a dry
// run, was read).
func (s MoveSummary) OK() bool {
	for o, n := range s.Outcomes {
		if n > 0 && o != OutcomeDone && o != OutcomeAlreadyDone && o != OutcomeWouldMove {
			return false
		}
	}
	return true
}

// Mover moves users' coins out of LinkV's wallet into giftd's.
type Mover struct {
	LinkV *linkvapi.Client
	Store *ledger.Store
	Log   *slog.Logger
	// Progress, if set, is told each user's result as soon as it is known.
	Progress func(done, total int, r MoveResult)
	// Now is the clock of expriation (nil: time.Now).
	Now func() time.Time

	// crash, in tests only (CrashAfter), ends the run right after the
	// named step as if the process had died there: it returns true to stop.
	crash func(step string) bool
}

// CrashAfter is a test hook, for tests only (this package's and the
// resharding tests of internal/partition): it makes m's run stop right
// after the named step ("recorded", "sent", "taken", "refused", "credited",
// "finished"), as if the process had died there, the first time the step
// happens; the user's result is then OutcomeCrashed and the run ends. No
// production code calls it.
func CrashAfter(m *Mover, step string) {
	fired := false
	m.crash = func(s string) bool {
		if s == step && !fired {
			fired = true
			return true
		}
		return false
	}
}

// Move moves each user in turn, or with dryRun only reads their balances
// and steps. It stops early, between or inside a user's steps, when ctx
// ends: every step is recorded first, so the next run resumes.
func (m *Mover) Move(ctx context.Context, users []MoveUser, dryRun bool) MoveSummary {
	sum := MoveSummary{DryRun: dryRun, Users: len(users), Outcomes: map[string]int{}, Results: []MoveResult{}}
	for i, u := range users {
		if ctx.Err() != nil {
			break
		}
		var r MoveResult
		if dryRun {
			r = m.read(ctx, u)
			if r.Outcome == OutcomeWouldMove {
				sum.Coins += r.LinkVBalance + r.InFlight
			}
		} else {
			r = m.moveOne(ctx, u)
			sum.Coins += r.Moved
		}
		sum.Outcomes[r.Outcome]++
		sum.Results = append(sum.Results, r)
		m.log().Info("linkv wallet move", "user_id", r.UserID, "outcome", r.Outcome, "moved", r.Moved,
			"total_moved", r.TotalMoved, "round", r.Round, "dry_run", dryRun, "error", r.Error)
		if m.Progress != nil {
			m.Progress(i+1, len(users), r)
		}
		if r.Outcome == OutcomeCrashed {
			break
		}
	}
	return sum
}

// OutcomeCrashed is a test's crash point: the run stopped there.
const OutcomeCrashed = "crashed"

func (m *Mover) log() *slog.Logger {
	if m.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Log
}

func (m *Mover) now() time.Time {
	if m.Now == nil {
		return time.Now()
	}
	return m.Now()
}

// openID is u's live_open_id: given, or the one giftd saved when it linked
// the user.
func (m *Mover) openID(ctx context.Context, u MoveUser) (string, error) {
	if u.OpenID != "" {
		return u.OpenID, nil
	}
	return m.Store.LinkVOpenID(ctx, m.LinkV.AppID(), u.UserID)
}

// read is a dry run of one user: its recorded step and LinkV's balance.
func (m *Mover) read(ctx context.Context, u MoveUser) MoveResult {
	r := MoveResult{UserID: u.UserID, LinkVBalance: -1}
	mv, err := m.Store.WalletMove(ctx, m.LinkV.AppID(), u.UserID)
	switch {
	case err == nil:
		r.OpenID, r.State, r.Round, r.TotalMoved = mv.OpenID, mv.State, mv.Round, mv.Moved
		if mv.State == ledger.MoveDone {
			r.Outcome = OutcomeAlreadyDone
			return r
		}
		if mv.State == ledger.MoveTaking || mv.State == ledger.MoveTaken {
			r.InFlight = mv.Amount
		}
	case !errors.Is(err, ledger.ErrNotFound):
		return failed(r, err)
	}
	if r.OpenID == "" {
		if r.OpenID, err = m.openID(ctx, u); errors.Is(err, ledger.ErrNotFound) {
			r.Outcome = OutcomeNoOpenID
			return r
		} else if err != nil {
			return failed(r, err)
		}
	}
	if r.LinkVBalance, err = m.LinkV.UserTokens(ctx, r.OpenID); err != nil {
		r.LinkVBalance = -1
		return failed(r, err)
	}
	r.Outcome = OutcomeWouldMove
	return r
}

func failed(r MoveResult, err error) MoveResult {
	r.Outcome, r.Error = OutcomeFailed, err.Error()
	return r
}

// moveOne moves one user, resuming from its recorded step: read LinkV's
// balance; record the take-out (request_id derived from app, user and
// round); send changeGold, replaying it until LinkV answers for certain;
// record that LinkV took it; credit it and step to the next round, in one
// transaction; until the balance reads 0.
func (m *Mover) moveOne(ctx context.Context, u MoveUser) MoveResult {
	r := MoveResult{UserID: u.UserID, LinkVBalance: -1}
	app := m.LinkV.AppID()
	open, err := m.openID(ctx, u)
	if errors.Is(err, ledger.ErrNotFound) {
		// An earlier run may have started this user with an open id given then.
		mv, err2 := m.Store.WalletMove(ctx, app, u.UserID)
		if err2 != nil {
			r.Outcome = OutcomeNoOpenID
			return r
		}
		open, err = mv.OpenID, nil
	}
	if err != nil {
		return failed(r, err)
	}
	mv, err := m.Store.StartWalletMove(ctx, app, u.UserID, open)
	if err != nil {
		return failed(r, err)
	}
	if mv.State == ledger.MoveDone {
		r.OpenID, r.State, r.Round, r.TotalMoved, r.Outcome = mv.OpenID, mv.State, mv.Round, mv.Moved, OutcomeAlreadyDone
		return r
	}
	rounds := 0
	for {
		r.OpenID, r.State, r.Round, r.TotalMoved = mv.OpenID, mv.State, mv.Round, mv.Moved
		if mv.State == ledger.MoveTaking || mv.State == ledger.MoveTaken {
			r.InFlight = mv.Amount
		} else {
			r.InFlight = 0
		}
		if rounds >= maxRounds && mv.State == ledger.MovePending {
			r.Outcome = OutcomeIncomplete
			return r
		}
		var step string
		switch mv.State {
		case ledger.MoveDone:
			r.Outcome = OutcomeDone
			return r
		case ledger.MovePending:
			bal, err := m.LinkV.UserTokens(ctx, mv.OpenID)
			if err != nil {
				return m.stopped(ctx, r, mv, err)
			}
			r.LinkVBalance = bal
			if bal == 0 {
				mv, err = m.Store.FinishWalletMove(ctx, mv)
				step = "finished"
			} else {
				rid := linkvapi.RequestID("giftd linkv wallet move", app, u.UserID, fmt.Sprint(mv.Round))
				mv, err = m.Store.RecordTakeOut(ctx, mv, rid, bal, linkvapi.Expiration(m.now()))
				step = "recorded"
			}
			if err != nil {
				return m.stopped(ctx, r, mv, err)
			}
		case ledger.MoveTaking:
			err := m.LinkV.ChangeGold(ctx, linkvapi.GoldChange{OpenID: mv.OpenID, RequestID: mv.RequestID,
				Type: linkvapi.RemoveGold, Value: mv.Amount, Expiration: mv.Expiration, Reason: moveReason})
			switch {
			case err == nil:
				if m.crashAt("sent") {
					r.Outcome = OutcomeCrashed
					return r
				}
				mv, err = m.Store.RecordTaken(ctx, mv)
				step = "taken"
			case linkvapi.Uncertain(err):
				r.Outcome, r.Error = OutcomeUnknown, err.Error()
				m.note(mv, err)
				return r
			default:
				// Refused for certain: nothing was taken. Read the balance
				// again in the next round, under a new request_id.
				mv, err = m.Store.RecordTakeOutRefused(ctx, mv, err.Error())
				rounds++
				step = "refused"
			}
			if err != nil {
				return m.stopped(ctx, r, mv, err)
			}
		case ledger.MoveTaken:
			next, c, err := m.Store.CreditWalletMove(ctx, mv, moveReason)
			if err != nil {
				return m.stopped(ctx, r, mv, err)
			}
			r.Moved += c.Amount
			mv = next
			rounds++
			step = "credited"
		}
		if m.crashAt(step) {
			r.OpenID, r.State, r.Round, r.TotalMoved, r.Outcome = mv.OpenID, mv.State, mv.Round, mv.Moved, OutcomeCrashed
			return r
		}
	}
}

// stopped ends a user's run on err: busy when another run moved the step,
// failed otherwise (the next run resumes from the recorded step).
//
// A step refused by giftd reshard's pause (ledger.ErrReshardPaused: the
// user is moving to a new partition, its writes refused from the fence to
// the proxy's switch) is failed too, its error saying so, and is not noted
// on the row: the pause refuses that write as well. Nothing is lost or
// doubled: the step recorded before stands, and a run after the switch
// resumes from it on the user's new partition (a take-out LinkV applied
// while its record was refused is replayed under the same request_id, which
// LinkV answers without taking again).
func (m *Mover) stopped(ctx context.Context, r MoveResult, mv ledger.WalletMove, err error) MoveResult {
	if errors.Is(err, ledger.ErrMoveConflict) {
		r.Outcome, r.Error = OutcomeBusy, err.Error()
		return r
	}
	if errors.Is(err, ledger.ErrReshardPaused) {
		return failed(r, err)
	}
	if mv.UserID != "" {
		m.note(mv, err)
	}
	return failed(r, err)
}

// note records err on mv's row, for operators reading the steps.
func (m *Mover) note(mv ledger.WalletMove, err error) {
	// The run's context may be why it stopped; the note still goes in.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if nerr := m.Store.NoteWalletMoveError(ctx, mv, err.Error()); nerr != nil {
		m.log().Warn("linkv wallet move: could not record an error", "user_id", mv.UserID, "error", nerr.Error())
	}
}

func (m *Mover) crashAt(step string) bool { return m.crash != nil && m.crash(step) }
