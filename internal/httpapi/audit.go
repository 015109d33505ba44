package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"giftd/internal/credits"
	"giftd/internal/ledger"
)

// partitionAudit is one partition's audit in the partitioned audit's answer.
type partitionAudit struct {
	Partition int  `json:"partition"`
	OK        bool `json:"ok"`
	ledger.AuditReport
}

// creditsAudit is credits.Report in the answer (problems: its NotSwitched
// lines, then its Problems).
type creditsAudit struct {
	OK           bool     `json:"ok"`
	Credits      int      `json:"credits"`
	Moved        int      `json:"moved"`
	InFlight     int      `json:"in_flight"`
	Taken        int64    `json:"taken"`
	MovedGold    int64    `json:"moved_gold"`
	InFlightGold int64    `json:"in_flight_gold"`
	Problems     []string `json:"problems"`
}

// keysAudit is ledger.ReusedKeys in the answer: the keys found on more
// than one partition (keys: the first 100).
type keysAudit struct {
	OK     bool     `json:"ok"`
	Reused int      `json:"reused"`
	Keys   []string `json:"keys"`
}

// handleAuditPartitioned is the audit of a partitioned giftd, as giftd audit
// runs it: each partition's own audit on a direct connection (partitions()
// in use now), then
// the cross-partition credits (credits.Audit), then the keys found on more
// than one partition (ledger.ReusedKeys). The answer has the fields of
// a single server's, each the sum over the partitions (findings: the first
// 100 of all; checked_at: the last partition's; reshard_not_forgotten: the
// largest), "ok" true only when every
// partition's audit, the credits' and the keys' are, and "partitions",
// "credits" and "keys" with each part (docs/scale-out.md#reads-across-partitions). A partition
// that cannot be reached answers 503, never a partial audit; so do fewer
// partitions in use than the proxy routes over (partitions_not_connected).
func handleAuditPartitioned(store *ledger.Store, partitions func() []*ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), auditTimeout)
		defer cancel()
		fail := func(what string, err error) {
			if ledger.IsUnreachable(err) {
				err = fmt.Errorf("%s: %w: %w", what, ledger.ErrPartitionUnreachable, err)
			}
			writeLedgerError(w, log, err)
		}
		// Every partition the proxy routes over, or no answer: the credits
		// to a partition left out would look lost.
		parts := partitions()
		if n := store.Partitions(); len(parts) < n {
			fail("audit", fmt.Errorf("%w: the proxy routes over %d partitions, this giftd uses %d",
				ledger.ErrPartitionsNotConnected, n, len(parts)))
			return
		}
		var sum ledger.AuditReport
		each := make([]partitionAudit, len(parts))
		ok := true
		for i, p := range parts {
			rep, err := p.Audit(ctx)
			if err != nil {
				fail(fmt.Sprintf("audit of partition %d", i), err)
				return
			}
			each[i] = partitionAudit{Partition: i, OK: rep.OK(), AuditReport: rep}
			ok = ok && rep.OK()
			sum.Wallets += rep.Wallets
			sum.Entries += rep.Entries
			sum.TotalGold += rep.TotalGold
			sum.EarningsAccounts += rep.EarningsAccounts
			sum.TotalEarnings += rep.TotalEarnings
			sum.TotalOwed += rep.TotalOwed
			sum.House += rep.House
			sum.Gifts += rep.Gifts
			sum.Unassigned += rep.Unassigned
			sum.Unsettled += rep.Unsettled
			sum.Mismatched += rep.Mismatched
			sum.Negative += rep.Negative
			sum.Unbalanced += rep.Unbalanced
			sum.ReshardNotForgotten = max(sum.ReshardNotForgotten, rep.ReshardNotForgotten)
			sum.Findings = append(sum.Findings, rep.Findings[:min(len(rep.Findings), 100-len(sum.Findings))]...)
			sum.CheckedAt = rep.CheckedAt
		}
		cr, err := credits.Audit(ctx, parts)
		if err != nil {
			fail("audit of the credits across partitions", err)
			return
		}
		ok = ok && cr.OK()
		reused, nReused, err := ledger.ReusedKeys(ctx, parts, 100)
		if err != nil {
			fail("audit of the keys across partitions", err)
			return
		}
		keys := keysAudit{OK: nReused == 0, Reused: nReused, Keys: []string{}}
		for _, k := range reused {
			keys.Keys = append(keys.Keys, k.String())
		}
		ok = ok && keys.OK
		if !ok {
			log.Error("audit failed", "mismatched", sum.Mismatched, "negative", sum.Negative,
				"credit_problems", len(cr.Problems), "reused_keys", nReused)
		}
		if sum.Findings == nil {
			sum.Findings = []ledger.AuditFinding{}
		}
		writeJSON(w, http.StatusOK, struct {
			OK bool `json:"ok"`
			ledger.AuditReport
			Partitions []partitionAudit `json:"partitions"`
			Credits    creditsAudit     `json:"credits"`
			Keys       keysAudit        `json:"keys"`
		}{ok, sum, each, creditsAudit{OK: cr.OK(), Credits: cr.Credits, Moved: cr.Moved, InFlight: cr.InFlight,
			Taken: cr.Taken, MovedGold: cr.MovedGold, InFlightGold: cr.InFlightGold,
			Problems: append(append([]string{}, cr.NotSwitched...), cr.Problems...)}, keys})
	}
}
