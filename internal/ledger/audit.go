package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// maxAuditFindings bounds how many accounts and gifts an AuditReport lists;
// the counts are always complete.
const maxAuditFindings = 100

// AuditReport is what Audit found, all from one snapshot of the database.
type AuditReport struct {
	Wallets int64 `json:"wallets"`
	Entries int64 `json:"entries"`
	// TotalGold is the sum of every wallet's balance.
	TotalGold int64 `json:"total_gold"`
	// The receiving side (docs/economy.md): earnings accounts, the sum of
	// their balances and of what receivers owe, the house's balance (the
	// sum of its slots).
	EarningsAccounts int64 `json:"earnings_accounts"`
	TotalEarnings    int64 `json:"total_earnings"`
	TotalOwed        int64 `json:"total_owed"`
	House            int64 `json:"house"`
	// Gifts counts settled gift debits; Unassigned those of them the house
	// took whole for want of a receiver; Unsettled the debits settled with
	// earnings off (gold taken, nothing credited: not a failure).
	Gifts      int64 `json:"gifts"`
	Unassigned int64 `json:"unassigned_gifts"`
	Unsettled  int64 `json:"unsettled_debits"`
	// Mismatched counts the accounts (wallets, earnings, receivables, house
	// slots) whose balance differs from the sum of their entries; Negative
	// those below zero; Unbalanced the gifts whose three sides do not
	// balance (gold taken ≠ earnings + house credited, or a reversal that
	// did not take back exactly what the gift credited).
	Mismatched int64 `json:"mismatched"`
	Negative   int64 `json:"negative"`
	Unbalanced int64 `json:"unbalanced_gifts"`
	// Findings lists up to 100 of those accounts and gifts.
	Findings []AuditFinding `json:"findings"`
	// ReshardNotForgotten is, on a partition between a reshard's switch and
	// its forget, the count it was resharded to (0: none, and always on one
	// server): the rows it gave away, which it still holds, are left out of
	// the report; giftd reshard run again forgets them.
	ReshardNotForgotten int `json:"reshard_not_forgotten,omitempty"`
	// CheckedAt is the time of the snapshot.
	CheckedAt time.Time `json:"checked_at"`
}

// OK reports whether every balance equals its entries, none is negative,
// and every gift balances.
func (r AuditReport) OK() bool { return r.Mismatched == 0 && r.Negative == 0 && r.Unbalanced == 0 }

// AuditFinding is one account or gift that fails the audit.
type AuditFinding struct {
	// Account is wallet, earnings, receivable, house or gift.
	Account string `json:"account"`
	// UserID is the wallet's user, the receiver, the house slot, or the
	// gift's debit key (platform/app_id/request_id).
	UserID string `json:"user_id"`
	// Gold is the balance (a gift's: the gold taken); LedgerSum the sum of
	// the entries (a gift's: what its receiving side got, net of reversals).
	Gold      int64 `json:"gold"`
	LedgerSum int64 `json:"ledger_sum"`
}

// auditRows names the rows the audit reads: audit_wallets, audit_ledger,
// audit_gifts and audit_legs are wallets, ledger_entries, gift_entries and
// account_entries, each read where it is used, as the table would be. On a
// partition between a reshard's switch and its forget (unforgotten:
// partition migration 20's giftd_reshard_unforgotten has a row), only the
// rows it owns under its claim: the wallets and ledger entries of the users
// placed on it, and the gift and account entries but those it gave away
// (giftd_reshard_given_away). giftd_reshard_forget deletes the others, and
// the split squared the partition's house slots and earnings accounts
// without them: so the report is the one after the forget, and the
// partitions' reports count nothing twice. (NOT IN: a hashed subplan, as
// kept.)
func auditRows(unforgotten bool) string {
	if !unforgotten {
		return `
	audit_wallets AS NOT MATERIALIZED (SELECT * FROM wallets),
	audit_ledger AS NOT MATERIALIZED (SELECT * FROM ledger_entries),
	audit_gifts AS NOT MATERIALIZED (SELECT * FROM gift_entries),
	audit_legs AS NOT MATERIALIZED (SELECT * FROM account_entries)`
	}
	return `
	claim AS MATERIALIZED (SELECT partition, partitions FROM giftd_reshard_unforgotten()),
	given AS MATERIALIZED (SELECT gift, entry FROM giftd_reshard_given_away()),
	audit_wallets AS NOT MATERIALIZED (
		SELECT w.* FROM wallets AS w, claim AS c WHERE giftd_placement(w.user_id) & (c.partitions - 1) = c.partition),
	audit_ledger AS NOT MATERIALIZED (
		SELECT e.* FROM ledger_entries AS e, claim AS c WHERE giftd_placement(e.user_id) & (c.partitions - 1) = c.partition),
	audit_gifts AS NOT MATERIALIZED (
		SELECT g.* FROM gift_entries AS g WHERE g.id NOT IN (SELECT x.gift FROM given AS x WHERE x.gift IS NOT NULL)),
	audit_legs AS NOT MATERIALIZED (
		SELECT a.* FROM account_entries AS a WHERE a.id NOT IN (SELECT x.entry FROM given AS x WHERE x.entry IS NOT NULL))`
}

// auditAccounts is every account with its balance and the sum of its
// entries: wallets, earnings accounts, receivables and house slots.
const auditAccounts = `
	accounts AS (
		-- Entries of a user with no wallet (which nothing writes: a wallet
		-- is never deleted, migration 10) show as a wallet whose balance is
		-- NULL: mismatched.
		SELECT 'wallet' AS account, user_id AS owner, w.gold AS balance, coalesce(e.total, 0) AS total
		FROM audit_wallets w FULL JOIN (SELECT user_id, sum(amount) AS total FROM audit_ledger GROUP BY user_id) e USING (user_id)
		UNION ALL
		SELECT v.account, coalesce(a.receiver_id, s.receiver_id),
			CASE v.account WHEN 'earnings' THEN coalesce(a.balance, 0) ELSE coalesce(a.owed, 0) END,
			CASE v.account WHEN 'earnings' THEN coalesce(s.earnings, 0) ELSE coalesce(s.owed, 0) END
		FROM earnings_accounts a
		FULL JOIN (
			SELECT receiver_id, sum(earnings) AS earnings, sum(owed) AS owed FROM (
				SELECT receiver_id, earnings, 0 AS owed FROM audit_gifts WHERE receiver_id IS NOT NULL
				UNION ALL
				SELECT receiver_id, CASE account WHEN 'earnings' THEN amount ELSE 0 END,
					CASE account WHEN 'receivable' THEN amount ELSE 0 END
				FROM audit_legs WHERE receiver_id IS NOT NULL
			) x GROUP BY receiver_id
		) s USING (receiver_id)
		CROSS JOIN (VALUES ('earnings'), ('receivable')) AS v (account)
		UNION ALL
		SELECT 'house', h.slot::text, coalesce(h.balance, 0), coalesce(s.total, 0)
		FROM house_slots h
		FULL JOIN (
			SELECT slot, sum(amount) AS total FROM (
				SELECT house_slot AS slot, house AS amount FROM audit_gifts
				UNION ALL
				SELECT house_slot, amount FROM audit_legs WHERE house_slot IS NOT NULL
			) x GROUP BY slot
		) s USING (slot)
	)`

// auditGifts is every gift whose sides do not balance: its gold taken
// against its debit entry and its split, and, when reversed, what the
// reversal gave back and took back.
const auditGifts = `
	gifts AS (
		SELECT g.platform || '/' || g.app_id || '/' || g.request_id AS owner, g.gold AS balance,
			g.earnings + g.house - coalesce(t.earnings + t.shortfall + t.house, 0) AS total
		FROM audit_gifts g
		LEFT JOIN audit_ledger d ON d.id = g.debit_entry
		LEFT JOIN audit_ledger r ON r.reverses = d.id
		LEFT JOIN (
			SELECT gift_entry,
				coalesce(-sum(amount) FILTER (WHERE account = 'earnings'), 0) AS earnings,
				coalesce(sum(amount) FILTER (WHERE account = 'receivable'), 0) AS shortfall,
				coalesce(-sum(amount) FILTER (WHERE account = 'house'), 0) AS house
			FROM audit_legs WHERE gift_entry IS NOT NULL GROUP BY gift_entry
		) t ON t.gift_entry = g.id
		WHERE d.id IS NULL OR d.kind <> 'debit' OR -d.amount <> g.gold OR d.user_id <> g.sender_id
		   OR (d.platform, d.app_id, d.ref) <> (g.platform, g.app_id, g.request_id)
		   OR g.earnings + g.house <> g.gold
		   OR (r.id IS NULL AND t.gift_entry IS NOT NULL)
		   OR (r.id IS NOT NULL AND (r.amount <> g.gold OR coalesce(t.earnings + t.shortfall, 0) <> g.earnings
		                             OR coalesce(t.house, 0) <> g.house))
	)`

// Audit checks, in one read-only snapshot, that every account (wallets,
// earnings accounts, receivables, house slots) equals the sum of its
// entries, that none is negative, and that every settled gift's three sides
// balance. A failed check is not an error: it is in the report (see
// AuditReport.OK). Errors are the database's. It reads every account and
// entry: an operator's command, not something to call per request. On a
// partition between a reshard's switch and its forget it reads only the
// rows the partition owns under its claim (auditRows).
func (s *Store) Audit(ctx context.Context) (AuditReport, error) {
	defer s.observe(OpAudit, time.Now())
	var r AuditReport
	// Repeatable read: the totals and the findings see the same snapshot.
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			var err error
			if r.ReshardNotForgotten, err = reshardUnforgotten(ctx, tx); err != nil {
				return err
			}
			with := `WITH ` + auditRows(r.ReshardNotForgotten > 0) + `, ` + auditAccounts + `, ` + auditGifts
			err = tx.QueryRow(ctx, with+`
				SELECT
					count(balance) FILTER (WHERE account = 'wallet'),
					coalesce(sum(balance) FILTER (WHERE account = 'wallet'), 0)::bigint,
					(SELECT count(*) FROM earnings_accounts),
					coalesce(sum(balance) FILTER (WHERE account = 'earnings'), 0)::bigint,
					coalesce(sum(balance) FILTER (WHERE account = 'receivable'), 0)::bigint,
					coalesce(sum(balance) FILTER (WHERE account = 'house'), 0)::bigint,
					count(*) FILTER (WHERE balance IS DISTINCT FROM total),
					count(*) FILTER (WHERE balance < 0),
					(SELECT count(*) FROM gifts),
					(SELECT count(*) FROM audit_ledger),
					(SELECT count(*) FROM audit_gifts),
					(SELECT count(*) FROM audit_gifts WHERE receiver_id IS NULL),
					(SELECT count(*) FROM audit_ledger d WHERE d.kind = 'debit'
					   AND NOT EXISTS (SELECT 1 FROM audit_gifts g WHERE g.debit_entry = d.id)),
					now()
				FROM accounts`,
			).Scan(&r.Wallets, &r.TotalGold, &r.EarningsAccounts, &r.TotalEarnings, &r.TotalOwed, &r.House,
				&r.Mismatched, &r.Negative, &r.Unbalanced, &r.Entries, &r.Gifts, &r.Unassigned, &r.Unsettled, &r.CheckedAt)
			if err != nil || r.OK() {
				return err
			}
			rows, _ := tx.Query(ctx, with+`
				SELECT account, owner, coalesce(balance, 0)::bigint, total::bigint FROM (
					SELECT account, owner, balance, total FROM accounts WHERE balance IS DISTINCT FROM total OR balance < 0
					UNION ALL
					SELECT 'gift', owner, balance, total FROM gifts
				) f
				ORDER BY account = 'gift', account <> 'wallet', account, owner
				LIMIT $1`, maxAuditFindings)
			r.Findings, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditFinding, error) {
				var f AuditFinding
				err := row.Scan(&f.Account, &f.UserID, &f.Gold, &f.LedgerSum)
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

// reshardUnforgotten is, when tx's database is a partition between a
// reshard's switch and its forget (partition migration 20), the count it was
// resharded to; else 0, and always on one server's database, which has no
// such function.
func reshardUnforgotten(ctx context.Context, tx pgx.Tx) (int, error) {
	var partition bool
	if err := tx.QueryRow(ctx, `SELECT to_regprocedure('giftd_reshard_unforgotten()') IS NOT NULL`).Scan(&partition); err != nil || !partition {
		return 0, err
	}
	var n int
	err := tx.QueryRow(ctx, `SELECT coalesce((SELECT partitions FROM giftd_reshard_unforgotten()), 0)`).Scan(&n)
	return n, err
}
