package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// maxAuditFindings bounds how many wallets an AuditReport lists; the counts
// are always complete.
const maxAuditFindings = 100

// AuditReport is what Audit found, all from one snapshot of the database.
type AuditReport struct {
	Wallets int64 `json:"wallets"`
	Entries int64 `json:"entries"`
	// TotalGold is the sum of every balance.
	TotalGold int64 `json:"total_gold"`
	// Mismatched counts the wallets whose balance differs from the sum of
	// their ledger entries; Negative those whose balance is below zero.
	Mismatched int64 `json:"mismatched"`
	Negative   int64 `json:"negative"`
	// Findings lists up to 100 of those wallets, by user id.
	Findings []AuditFinding `json:"findings"`
	// CheckedAt is the time of the snapshot.
	CheckedAt time.Time `json:"checked_at"`
}

// OK reports whether every balance equals its ledger and none is negative.
func (r AuditReport) OK() bool { return r.Mismatched == 0 && r.Negative == 0 }

// AuditFinding is one wallet that fails the audit.
type AuditFinding struct {
	UserID string `json:"user_id"`
	// Gold is the wallet's balance; LedgerSum the sum of its entries.
	Gold      int64 `json:"gold"`
	LedgerSum int64 `json:"ledger_sum"`
}

// Audit checks, in one read-only snapshot, that every wallet's balance
// equals the sum of its ledger entries and that no balance is negative. A
// failed check is not an error: it is in the report (see AuditReport.OK).
// Errors are the database's. It reads every wallet and entry: an operator's
// command, not something to call per request.
func (s *Store) Audit(ctx context.Context) (AuditReport, error) {
	defer s.observe(OpAudit, time.Now())
	var r AuditReport
	// Repeatable read: the totals and the findings see the same snapshot.
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			err := tx.QueryRow(ctx, `
				WITH sums AS (
					SELECT user_id, sum(amount) AS total FROM ledger_entries GROUP BY user_id
				), checked AS (
					SELECT w.gold, coalesce(e.total, 0) AS total FROM wallets w LEFT JOIN sums e USING (user_id)
				)
				SELECT count(*),
					coalesce(sum(gold), 0)::bigint,
					count(*) FILTER (WHERE gold <> total),
					count(*) FILTER (WHERE gold < 0),
					(SELECT count(*) FROM ledger_entries),
					now()
				FROM checked`,
			).Scan(&r.Wallets, &r.TotalGold, &r.Mismatched, &r.Negative, &r.Entries, &r.CheckedAt)
			if err != nil || r.OK() {
				return err
			}
			rows, err := tx.Query(ctx, `
				SELECT w.user_id, w.gold, coalesce(e.total, 0)::bigint
				FROM wallets w
				LEFT JOIN (SELECT user_id, sum(amount) AS total FROM ledger_entries GROUP BY user_id) e USING (user_id)
				WHERE w.gold <> coalesce(e.total, 0) OR w.gold < 0
				ORDER BY w.user_id
				LIMIT $1`, maxAuditFindings)
			if err != nil {
				return err
			}
			r.Findings, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditFinding, error) {
				var f AuditFinding
				err := row.Scan(&f.UserID, &f.Gold, &f.LedgerSum)
				return f, err
			})
			return err
		})
	if err != nil {
		return AuditReport{}, fmt.Errorf("audit: %w", err)
	}
	if r.Findings == nil {
		r.Findings = []AuditFinding{}
	}
	r.CheckedAt = r.CheckedAt.UTC()
	return r, nil
}
