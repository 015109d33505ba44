package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrMoveConflict: a wallet move's step was not where the caller saw it:
// another run moved it on meanwhile. Read the move again.
var ErrMoveConflict = errors.New("wallet move changed by another run")

// linkvPlatform is the platform of the ledger entries a wallet move credits:
// coins that came from LinkV's wallet.
const linkvPlatform = "linkv"

// SaveLinkVAccount remembers userID's live_open_id under LinkV app appID
// (replacing an earlier one). Partitioned, a user a reshard is moving is
// refused during its pause: ErrReshardPaused.
func (s *Store) SaveLinkVAccount(ctx context.Context, appID, userID, openID string) error {
	sql := `
		INSERT INTO linkv_accounts (app_id, user_id, open_id) VALUES ($1, $2, $3)
		ON CONFLICT (app_id, user_id) DO UPDATE SET open_id = excluded.open_id, updated_at = now()
		WHERE linkv_accounts.open_id <> excluded.open_id`
	if s.partitions > 0 {
		sql = `SELECT giftd_save_linkv_account($1, $2, $3)` // the same, on the user's partition
	}
	if _, err := s.pool.Exec(ctx, sql, appID, userID, openID); err != nil {
		return fmt.Errorf("save linkv account %s: %w", userID, s.userWriteErr(ctx, userID, err))
	}
	return nil
}

// LinkVOpenID returns the live_open_id saved for userID under appID, or
// ErrNotFound.
func (s *Store) LinkVOpenID(ctx context.Context, appID, userID string) (string, error) {
	var open string
	sql := `SELECT open_id FROM linkv_accounts WHERE app_id = $1 AND user_id = $2`
	if s.partitions > 0 {
		sql = `SELECT open_id FROM giftd_linkv_account($1, $2)`
	}
	err := s.pool.QueryRow(ctx, sql, appID, userID).Scan(&open)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("linkv account %s: %w", userID, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("linkv account %s: %w", userID, s.routed(err))
	}
	return open, nil
}

// MoveState is where a user's move out of LinkV's wallet stands
// (migrations/000005 says what each means).
type MoveState string

// The states of a wallet move.
const (
	MovePending MoveState = "pending"
	MoveTaking  MoveState = "taking"
	MoveTaken   MoveState = "taken"
	MoveDone    MoveState = "done"
)

// WalletMove is one user's move out of LinkV's wallet into giftd's.
type WalletMove struct {
	AppID  string    `json:"app_id"`
	UserID string    `json:"user_id"`
	OpenID string    `json:"live_open_id"`
	State  MoveState `json:"state"`
	Round  int       `json:"round"`
	// RequestID, Amount and Expiration are the current round's changeGold,
	// set while State is taking or taken.
	RequestID  string `json:"request_id,omitempty"`
	Amount     int64  `json:"amount,omitempty"`
	Expiration int64  `json:"expriation,omitempty"`
	// Moved is the coins credited to giftd's wallet by every round so far.
	Moved     int64     `json:"moved"`
	LastError string    `json:"last_error,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

const moveColumns = `app_id, user_id, open_id, state, round, coalesce(request_id, ''), coalesce(amount, 0),
	coalesce(expriation, 0), moved, last_error, updated_at`

func scanMove(row pgx.Row) (WalletMove, error) {
	var m WalletMove
	err := row.Scan(&m.AppID, &m.UserID, &m.OpenID, &m.State, &m.Round, &m.RequestID, &m.Amount,
		&m.Expiration, &m.Moved, &m.LastError, &m.UpdatedAt)
	return m, err
}

// WalletMove returns userID's move under appID, or ErrNotFound when none
// was started.
func (s *Store) WalletMove(ctx context.Context, appID, userID string) (WalletMove, error) {
	sql := `SELECT ` + moveColumns + ` FROM linkv_wallet_moves WHERE app_id = $1 AND user_id = $2`
	if s.partitions > 0 {
		sql = `SELECT ` + moveColumns + ` FROM giftd_wallet_move($1, $2)`
	}
	m, err := scanMove(s.pool.QueryRow(ctx, sql, appID, userID))
	if errors.Is(err, pgx.ErrNoRows) {
		return WalletMove{}, fmt.Errorf("wallet move of %s: %w", userID, ErrNotFound)
	}
	if err != nil {
		return WalletMove{}, fmt.Errorf("wallet move of %s: %w", userID, s.routed(err))
	}
	return m, nil
}

// StartWalletMove returns userID's move under appID, starting it (pending,
// round 1, for openID) if there is none. A move already started keeps its
// own open id: its round in flight was sent for that one.
func (s *Store) StartWalletMove(ctx context.Context, appID, userID, openID string) (WalletMove, error) {
	m, err := s.startWalletMove(ctx, appID, userID, openID)
	if errors.Is(err, pgx.ErrNoRows) {
		// A concurrent start committed after this statement's snapshot:
		// its row is visible now.
		m, err = s.startWalletMove(ctx, appID, userID, openID)
	}
	if err != nil {
		return WalletMove{}, fmt.Errorf("start wallet move of %s: %w", userID, s.userWriteErr(ctx, userID, err))
	}
	return m, nil
}

func (s *Store) startWalletMove(ctx context.Context, appID, userID, openID string) (WalletMove, error) {
	if s.partitions > 0 {
		return scanMove(s.pool.QueryRow(ctx, `SELECT `+moveColumns+` FROM giftd_wallet_move_start($1, $2, $3)`,
			appID, userID, openID))
	}
	return scanMove(s.pool.QueryRow(ctx, `
		WITH ins AS (
			INSERT INTO linkv_wallet_moves (app_id, user_id, open_id) VALUES ($1, $2, $3)
			ON CONFLICT (app_id, user_id) DO NOTHING
			RETURNING `+moveColumns+`
		)
		SELECT * FROM ins
		UNION ALL
		SELECT `+moveColumns+` FROM linkv_wallet_moves WHERE app_id = $1 AND user_id = $2
		LIMIT 1`, appID, userID, openID))
}

// step moves m from its state and round to the one set, or returns
// ErrMoveConflict when another run moved it first. Partitioned, the
// partition's giftd_wallet_move_step does the same for op, with the new
// request id, amount and expiration (op take_out) or why (op refused) in p.
func (s *Store) step(ctx context.Context, what string, m WalletMove, op string, p moveStep, set string, args ...any) (WalletMove, error) {
	var row pgx.Row
	if s.partitions > 0 {
		row = s.pool.QueryRow(ctx, `SELECT `+moveColumns+` FROM giftd_wallet_move_step($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			m.AppID, m.UserID, m.State, m.Round, m.RequestID, op, p.requestID, p.amount, p.expiration, p.why)
	} else {
		args = append([]any{m.AppID, m.UserID, m.State, m.Round, m.RequestID}, args...)
		row = s.pool.QueryRow(ctx, `
			UPDATE linkv_wallet_moves SET `+set+`, updated_at = now()
			WHERE app_id = $1 AND user_id = $2 AND state = $3 AND round = $4 AND coalesce(request_id, '') = $5
			RETURNING `+moveColumns, args...)
	}
	next, err := scanMove(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return WalletMove{}, fmt.Errorf("%s of %s (round %d): %w", what, m.UserID, m.Round, ErrMoveConflict)
	}
	if err != nil {
		return WalletMove{}, fmt.Errorf("%s of %s (round %d): %w", what, m.UserID, m.Round, s.userWriteErr(ctx, m.UserID, err))
	}
	return next, nil
}

// moveStep is what a step sets besides its state (see step).
type moveStep struct {
	requestID          string
	amount, expiration int64
	why                string
}

// RecordTakeOut records, before it is sent, the changeGold that takes
// amount coins out of LinkV in m's round (m pending): from now on the
// round's request is replayed, never replaced, until LinkV answers for
// certain.
func (s *Store) RecordTakeOut(ctx context.Context, m WalletMove, requestID string, amount, expiration int64) (WalletMove, error) {
	if m.State != MovePending || amount < 1 {
		return WalletMove{}, fmt.Errorf("record take-out of %s: %w", m.UserID, ErrMoveConflict)
	}
	return s.step(ctx, "record take-out", m, "take_out", moveStep{requestID: requestID, amount: amount, expiration: expiration},
		`state = 'taking', request_id = $6, amount = $7, expriation = $8, last_error = ''`, requestID, amount, expiration)
}

// RecordTaken records that LinkV answered 200 to m's changeGold (m taking).
func (s *Store) RecordTaken(ctx context.Context, m WalletMove) (WalletMove, error) {
	if m.State != MoveTaking {
		return WalletMove{}, fmt.Errorf("record taken of %s: %w", m.UserID, ErrMoveConflict)
	}
	return s.step(ctx, "record taken", m, "taken", moveStep{}, `state = 'taken', last_error = ''`)
}

// RecordTakeOutRefused records that LinkV refused m's changeGold for
// certain (a status other than 200 and 500), so nothing was taken: the move
// goes on with the next round, which reads the balance again under a new
// request_id.
func (s *Store) RecordTakeOutRefused(ctx context.Context, m WalletMove, why string) (WalletMove, error) {
	if m.State != MoveTaking {
		return WalletMove{}, fmt.Errorf("record refusal of %s: %w", m.UserID, ErrMoveConflict)
	}
	return s.step(ctx, "record refusal", m, "refused", moveStep{why: why}, `state = 'pending', round = round + 1,
		request_id = NULL, amount = NULL, expriation = NULL, last_error = $6`, why)
}

// FinishWalletMove records that LinkV's balance read 0 with m pending: the
// move is done.
func (s *Store) FinishWalletMove(ctx context.Context, m WalletMove) (WalletMove, error) {
	if m.State != MovePending {
		return WalletMove{}, fmt.Errorf("finish wallet move of %s: %w", m.UserID, ErrMoveConflict)
	}
	return s.step(ctx, "finish wallet move", m, "finish", moveStep{}, `state = 'done', last_error = ''`)
}

// NoteWalletMoveError records why m's last step did not get through (an
// uncertain answer, an unreachable LinkV), leaving its state as it is.
func (s *Store) NoteWalletMoveError(ctx context.Context, m WalletMove, why string) error {
	sql := `UPDATE linkv_wallet_moves SET last_error = $3, updated_at = now() WHERE app_id = $1 AND user_id = $2`
	if s.partitions > 0 {
		sql = `SELECT giftd_wallet_move_note($1, $2, $3)`
	}
	if _, err := s.pool.Exec(ctx, sql, m.AppID, m.UserID, why); err != nil {
		return fmt.Errorf("note wallet move error of %s: %w", m.UserID, s.userWriteErr(ctx, m.UserID, err))
	}
	return nil
}

// CreditWalletMove credits the coins LinkV took in m's round (m taken) to
// the user's giftd wallet and moves m to the next round, in one
// transaction: a top-up entry of platform "linkv", keyed by the round's
// request_id. A credit already made under that key (which only a lost step
// could cause) is not made again: it is checked and the move steps on. It
// returns ErrMoveConflict when m is no longer taken at its round,
// ErrKeyReused when the key holds another user's or amount's credit, and
// ErrBalanceOverflow.
func (s *Store) CreditWalletMove(ctx context.Context, m WalletMove, note string) (WalletMove, Credit, error) {
	defer s.observe(OpTopUp, time.Now())
	if s.partitions > 0 {
		return s.creditWalletMovePartitioned(ctx, m, note)
	}
	var next WalletMove
	var c Credit
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The row lock serialises every run's steps of this user: no one
		// else credits this key while it is held.
		cur, err := scanMove(tx.QueryRow(ctx, `SELECT `+moveColumns+` FROM linkv_wallet_moves
			WHERE app_id = $1 AND user_id = $2 FOR UPDATE`, m.AppID, m.UserID))
		if err != nil {
			return err
		}
		if cur.State != MoveTaken || cur.Round != m.Round || cur.RequestID != m.RequestID {
			return ErrMoveConflict
		}
		c = Credit{UserID: cur.UserID, Amount: cur.Amount}
		err = tx.QueryRow(ctx, `
			SELECT user_id, amount, balance_after, id FROM ledger_entries
			WHERE kind = 'topup' AND platform = $1 AND app_id = $2 AND ref = $3`,
			linkvPlatform, cur.AppID, cur.RequestID).Scan(&c.UserID, &c.Amount, &c.Balance, &c.EntryID)
		switch {
		case err == nil:
			if c.UserID != cur.UserID || c.Amount != cur.Amount {
				return ErrKeyReused
			}
			c.Replay = true
		case errors.Is(err, pgx.ErrNoRows):
			err = tx.QueryRow(ctx, `
				WITH w AS (
					INSERT INTO wallets AS w (user_id, gold) VALUES ($1, $2)
					ON CONFLICT (user_id) DO UPDATE SET gold = w.gold + excluded.gold, updated_at = now()
					RETURNING gold
				), e AS (
					INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, app_id, ref, details)
					SELECT $1, 'topup', $2, gold, $3, $4, $5, jsonb_build_object('note', $6::text,
						'live_open_id', $7::text, 'round', $8::int, 'source', 'linkv wallet move')
					FROM w
					RETURNING id, balance_after, created_at
				), ev AS (
					INSERT INTO events (type, created_at, data)
					SELECT 'wallet.topped_up', created_at, jsonb_build_object('user_id', $1::text, 'amount', $2::bigint,
						'balance_after', balance_after, 'entry_id', id, 'platform', $3::text, 'app_id', $4::text,
						'key', $5::text, 'note', $6::text, 'source', 'linkv wallet move')
					FROM e
				)
				SELECT id, balance_after FROM e`,
				cur.UserID, cur.Amount, linkvPlatform, cur.AppID, cur.RequestID, note, cur.OpenID, cur.Round,
			).Scan(&c.EntryID, &c.Balance)
			if isOverflow(err) {
				return ErrBalanceOverflow
			}
			if err != nil {
				return err
			}
		default:
			return err
		}
		next, err = scanMove(tx.QueryRow(ctx, `
			UPDATE linkv_wallet_moves SET state = 'pending', round = round + 1, request_id = NULL, amount = NULL,
				expriation = NULL, moved = moved + amount, last_error = '', updated_at = now()
			WHERE app_id = $1 AND user_id = $2
			RETURNING `+moveColumns, cur.AppID, cur.UserID))
		return err
	})
	if err != nil {
		return WalletMove{}, Credit{}, fmt.Errorf("credit wallet move of %s (round %d): %w", m.UserID, m.Round, err)
	}
	return next, c, nil
}

// creditWalletMovePartitioned is CreditWalletMove on the user's partition,
// by its giftd_wallet_move_credit: the same transaction there.
func (s *Store) creditWalletMovePartitioned(ctx context.Context, m WalletMove, note string) (WalletMove, Credit, error) {
	var status string
	var user *string
	var amount, balance, entry *int64
	var next WalletMove
	var app, moveUser, open, state, lastError *string
	var round *int
	var requestID *string
	var mvAmount, expiration, moved *int64
	var updated *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT status, credit_user, credit_amount, credit_balance, credit_entry, app_id, user_id, open_id, state, round,
			request_id, amount, expriation, moved, last_error, updated_at
		FROM giftd_wallet_move_credit($1, $2, $3, $4, $5)`, m.AppID, m.UserID, m.Round, m.RequestID, note,
	).Scan(&status, &user, &amount, &balance, &entry, &app, &moveUser, &open, &state, &round,
		&requestID, &mvAmount, &expiration, &moved, &lastError, &updated)
	switch {
	case isOverflow(err):
		err = ErrBalanceOverflow
	case err != nil:
		err = s.userWriteErr(ctx, m.UserID, err)
	case status == "missing":
		err = pgx.ErrNoRows
	case status == "conflict":
		err = ErrMoveConflict
	case status == "key_reused":
		err = ErrKeyReused
	}
	if err != nil {
		return WalletMove{}, Credit{}, fmt.Errorf("credit wallet move of %s (round %d): %w", m.UserID, m.Round, err)
	}
	c := Credit{UserID: *user, Amount: *amount, Balance: *balance, EntryID: *entry, Replay: status == "replay"}
	next = WalletMove{AppID: *app, UserID: *moveUser, OpenID: *open, State: MoveState(*state), Round: *round,
		Moved: *moved, LastError: *lastError, UpdatedAt: *updated}
	if requestID != nil {
		next.RequestID = *requestID
	}
	if mvAmount != nil {
		next.Amount = *mvAmount
	}
	if expiration != nil {
		next.Expiration = *expiration
	}
	return next, c, nil
}
