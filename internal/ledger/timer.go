package ledger

import "time"

// The operations a Store reports to its Timer, as the op label of
// giftd_db_duration_seconds.
const (
	OpDebit    = "debit"
	OpTopUp    = "topup"
	OpReversal = "reversal"
	OpWallet   = "wallet"
	OpEntries  = "entries"
	// OpFindDebit is FindDebit, an operator looking a debit up.
	OpFindDebit = "find_debit"
	OpAudit     = "audit"
	OpPrune     = "prune"
	// The economy's operations (docs/economy.md).
	OpCatalogue = "catalogue"
	OpEarnings  = "earnings"
	OpPayout    = "payout"
	// OpReport is a report or leaderboard (reports.go).
	OpReport = "report"
	// OpPolicy is the safeguards' admin operations (docs/safeguards.md).
	OpPolicy = "policy"
	// The events' operations (docs/events.md): the feed, and the webhook
	// endpoints' management and delivery state.
	OpEvents   = "events"
	OpWebhooks = "webhooks"
)

// Ops returns every operation a Timer may be told about, so that a
// metric can show each one at zero before it first happens.
func Ops() []string {
	return []string{OpDebit, OpTopUp, OpReversal, OpWallet, OpEntries, OpFindDebit, OpAudit, OpPrune, OpCatalogue, OpEarnings, OpPayout,
		OpReport, OpPolicy, OpEvents, OpWebhooks}
}

// Timer is told how long one Store operation took, whatever its result.
// It is called on the operation's goroutine and must be quick.
type Timer func(op string, d time.Duration)

// SetTimer makes s report the duration of each exported operation to obs
// (nil stops it). It may be called at any time, also while s is in use.
func (s *Store) SetTimer(obs Timer) {
	if obs == nil {
		s.timer.Store(nil)
		return
	}
	s.timer.Store(&obs)
}

// observe reports an operation that started at start to the timer, if
// any. Use it as: defer s.observe(OpWallet, time.Now()).
func (s *Store) observe(op string, start time.Time) {
	if obs := s.timer.Load(); obs != nil {
		(*obs)(op, time.Since(start))
	}
}
