package partition_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// economyRows writes round r of an economy on partition databaseURL as the
// gift and credit functions would leave it, as plain rows (its balances
// recomputed from its entries): 60 gifts from senders to receivers of both
// partitions of 2 (some to no receiver), reversals of a fifth of the gifts
// so far (of this round's and earlier rounds': in round 1, of gifts under
// the pre-split's cut), shortfalls of half of those, and per receiver one leg of
// each other kind, transfer_out and clawback_in keyed by partition 0. It
// returns how many gift and account entries it wrote.
func economyRows(t *testing.T, ctx context.Context, databaseURL string, r int, senders, receivers []string) int64 {
	t.Helper()
	c := connect(t, databaseURL)
	var n int64
	err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		tag := fmt.Sprintf("r%d", r)
		steps := []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO gift_entries (debit_entry, platform, app_id, request_id, sender_id, receiver_id, room_id, gift_id,
			      count, gold, share_bp, earnings, house, house_slot)
			  SELECT $1::bigint * 100000 + k, 'linkv', 'app', $2 || '-g' || k, ($3::text[])[1 + k % cardinality($3::text[])],
			         CASE WHEN k % 7 = 0 THEN NULL ELSE ($4::text[])[1 + k / 3 % cardinality($4::text[])] END,
			         'room', 'rose', 1, 10, 5000, CASE WHEN k % 7 = 0 THEN 0 ELSE 5 END, CASE WHEN k % 7 = 0 THEN 10 ELSE 5 END, k % 16
			  FROM generate_series(1, 60) AS k`, []any{r, tag, senders, receivers}},
			{`INSERT INTO account_entries (account, receiver_id, house_slot, kind, amount, balance_after, gift_entry, ref)
			  SELECT v.account, v.receiver_id, v.slot, v.kind, v.amount, NULL, g.id, 'rev-' || g.request_id
			  FROM gift_entries AS g,
			       LATERAL (VALUES ('earnings', g.receiver_id, NULL::smallint, 'reversal', -g.earnings),
			                       ('house', NULL, g.house_slot, 'reversal', -g.house),
			                       ('receivable', g.receiver_id, NULL, 'shortfall', CASE WHEN g.id % 2 = 0 THEN 2 ELSE 0 END)) AS v (account, receiver_id, slot, kind, amount)
			  WHERE (g.id + $1) % 5 = 0 AND g.receiver_id IS NOT NULL AND v.amount <> 0
			    AND NOT EXISTS (SELECT 1 FROM account_entries AS x WHERE x.gift_entry = g.id)
			  ORDER BY g.id, v.account`, []any{r}},
			{`INSERT INTO account_entries (account, receiver_id, kind, amount, ref)
			  SELECT v.account, rc, v.kind, v.amount, v.ref
			  FROM unnest($1::text[]) WITH ORDINALITY AS u (rc, o),
			       LATERAL (VALUES ('earnings', 'transfer_in', 3, '1:' || $2 || o),
			                       ('earnings', 'transfer_out', -1, '0:' || $2 || o),
			                       ('earnings', 'clawback_in', 1, '0:' || $2 || o || 'c'),
			                       ('earnings', 'clawback', -1, '1:' || $2 || o || 'c'),
			                       ('receivable', 'clawback', 1, '1:' || $2 || o || 'c'),
			                       ('earnings', 'payout', -2, 'pay-' || $2 || o),
			                       ('receivable', 'recovery', -1, 'pay-' || $2 || o),
			                       ('earnings', 'reshard_in', 1, 'reshard:1:0:' || $2 || rc),
			                       ('earnings', 'reshard_out', -1, 'reshard:1:0:' || $2 || rc)) AS v (account, kind, amount, ref)
			  ORDER BY o, v.kind, v.account`, []any{receivers, tag}},
			{`INSERT INTO earnings_accounts AS a (receiver_id, balance, owed)
			  SELECT x.rc, coalesce(sum(x.amount) FILTER (WHERE x.account = 'earnings'), 0),
			         coalesce(sum(x.amount) FILTER (WHERE x.account = 'receivable'), 0)
			  FROM (SELECT receiver_id AS rc, 'earnings' AS account, earnings AS amount FROM gift_entries WHERE receiver_id IS NOT NULL
			        UNION ALL SELECT receiver_id, account, amount FROM account_entries WHERE receiver_id IS NOT NULL) AS x
			  GROUP BY x.rc
			  ON CONFLICT (receiver_id) DO UPDATE SET balance = excluded.balance, owed = excluded.owed`, nil},
			{`UPDATE house_slots AS h SET balance = x.amount
			  FROM (SELECT y.slot, sum(y.amount) AS amount
			        FROM (SELECT house_slot AS slot, house AS amount FROM gift_entries
			              UNION ALL SELECT house_slot, amount FROM account_entries WHERE account = 'house') AS y
			        GROUP BY y.slot) AS x
			  WHERE h.slot = x.slot`, nil},
		}
		for _, s := range steps[:3] {
			tag, err := tx.Exec(ctx, s.sql, s.args...)
			if err != nil {
				return err
			}
			n += tag.RowsAffected()
		}
		for _, s := range steps[3:] {
			if _, err := tx.Exec(ctx, s.sql, s.args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("economy round %d: %v", r, err)
	}
	return n
}

// economyOf is every economy row of a partition, its split and its credit
// cursor, as sorted text: ids kept, times left out.
func economyOf(t *testing.T, ctx context.Context, databaseURL string) []string {
	t.Helper()
	rows, err := connect(t, databaseURL).Query(ctx, `
		SELECT t || ' ' || r::text FROM (
			SELECT 'gift' AS t, to_jsonb(g) - 'created_at' AS r FROM gift_entries AS g
			UNION ALL SELECT 'entry', to_jsonb(a) - 'created_at' FROM account_entries AS a
			UNION ALL SELECT 'account', to_jsonb(e) - 'created_at' - 'updated_at' FROM earnings_accounts AS e
			UNION ALL SELECT 'house', to_jsonb(h) - 'updated_at' FROM house_slots AS h
			UNION ALL SELECT 'cursor', jsonb_build_object('position', c.position, 'floor', c.floor) FROM credit_cursor AS c
			UNION ALL SELECT 'split', jsonb_build_object('partitions', s.partitions, 'floor', s.floor) FROM giftd_reshard_split AS s
		) AS x ORDER BY t, r`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReshard_PreSplitEndsAsTheOneStepSplit doubles two clusters of 1
// holding the same economy, 1 → 2, one with the whole split inside the
// pause (as before partition migration 17), the other split before the
// fence: a first round of rows before the reshard, a second between the
// two pre-splits, a third after them and before the fence (the second and
// third reversing gifts of the rounds before). Both end with the same rows
// on each partition: every gift and entry (ids included), each receiver's
// balance and what they owe, the house slots, the credit cursors and the
// splits' floors. And the split inside the pause read only the third
// round's rows on each partition, the pre-splits the first two; the
// one-step split, all three.
func TestReshard_PreSplitEndsAsTheOneStepSplit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	senders := append(placed("sender", 0, 2, 3), placed("sender", 1, 2, 3)...)
	receivers := append(placed("receiver", 0, 2, 2), placed("receiver", 1, 2, 2)...)
	// The rows written before the reshard, between the pre-splits, and
	// between the second and the fence.
	var before, between, since int64
	reshard := func(onePhase bool) []string {
		l := pgtest.Partitioned(t, 1)
		requireLogical(t, l.ProxyURL)
		newURLs := newPartitions(t, l)
		lo := l.PartitionURLs[0]
		// reversed checks that the last round reversed gifts of earlier
		// ones, by senders of both partitions of 2.
		reversed := func(after int64, round int) {
			t.Helper()
			var senders int
			err := connect(t, lo).QueryRow(ctx, `SELECT count(DISTINCT giftd_placement(g.sender_id) & 1)
				FROM account_entries AS a JOIN gift_entries AS g ON g.id = a.gift_entry
				WHERE a.id > $1 AND g.request_id NOT LIKE $2`, after, fmt.Sprintf("r%d-%%", round)).Scan(&senders)
			if err != nil || senders != 2 {
				t.Errorf("round %d reversed gifts of earlier rounds of senders of %d partitions of 2; want both: %v", round, senders, err)
			}
		}
		lastEntry := func() int64 {
			t.Helper()
			var last int64
			if err := connect(t, lo).QueryRow(ctx, `SELECT max(id) FROM account_entries`).Scan(&last); err != nil {
				t.Fatal(err)
			}
			return last
		}
		before = economyRows(t, ctx, lo, 0, senders, receivers)
		r := partition.Resharding{Layout: l, NewPartitionURLs: newURLs, EarningsHold: time.Hour}
		if onePhase {
			r = partition.WithoutPreSplit(r)
		}
		r = partition.WithOnStep(r, func(step string) {
			switch step {
			case "presplit":
				last := lastEntry()
				between = economyRows(t, ctx, lo, 1, senders, receivers)
				reversed(last, 1)
			case "fence":
				last := lastEntry()
				since = economyRows(t, ctx, lo, 2, senders, receivers)
				reversed(last, 2)
			}
		})
		if _, err := partition.Reshard(ctx, r); err != nil {
			t.Fatalf("reshard (one phase: %v): %v", onePhase, err)
		}
		return append(append([]string{}, l.PartitionURLs...), newURLs...)
	}
	one := reshard(true)
	two := reshard(false)
	t.Logf("economy rows: %d before the reshard, %d between the pre-splits, %d between the second and the fence", before, between, since)
	for p := range 2 {
		want, got := economyOf(t, ctx, one[p]), economyOf(t, ctx, two[p])
		if len(want) < 100 {
			t.Errorf("partition %d: %d economy rows after the one-step split; the test wants more", p, len(want))
		}
		shown := 0
		for k := 0; k < max(len(want), len(got)) && shown < 5; k++ {
			var w, g string
			if k < len(want) {
				w = want[k]
			}
			if k < len(got) {
				g = got[k]
			}
			if w != g {
				t.Errorf("partition %d (%d rows after the one-step split, %d after the pre-split), row %d:\none-step: %s\npre-split: %s",
					p, len(want), len(got), k, w, g)
				shown++
			}
		}
	}

	// What each step read.
	read := func(databaseURL, table string) int64 {
		t.Helper()
		var n int64
		err := connect(t, databaseURL).QueryRow(ctx, `SELECT coalesce((SELECT rows FROM `+table+` WHERE partitions = 2), -1)`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for p := range 2 {
		if got := read(one[p], "giftd_reshard_split"); got != before+between+since {
			t.Errorf("one-step, partition %d: the split read %d rows inside the pause; want all %d", p, got, before+between+since)
		}
		if got := read(one[p], "giftd_reshard_presplit"); got != -1 {
			t.Errorf("one-step, partition %d: a pre-split of %d rows", p, got)
		}
		if got := read(two[p], "giftd_reshard_presplit"); got != before+between {
			t.Errorf("partition %d: the pre-splits read %d rows; want the %d written before the second", p, got, before+between)
		}
		if got := read(two[p], "giftd_reshard_split"); got != since {
			t.Errorf("partition %d: the split read %d rows inside the pause; want only the %d written since the second pre-split", p, got, since)
		}
	}
}

// TestReshard_SplitReadsOnlyTheRowsPastTheCut splits a partition's economy
// of 40 rounds of rows, pre-split, then one more round written, and counts
// what the split inside the pause read of the gift and account entries
// (PostgreSQL's counters for its own transaction, rolled back): no
// sequential scan of either, rows fetched by index in proportion to the
// last round's rows only, and the rows it reports reading the last round's.
func TestReshard_SplitReadsOnlyTheRowsPastTheCut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := pgtest.Partitioned(t, 1)
	u := l.PartitionURLs[0]
	senders := append(placed("sender", 0, 2, 3), placed("sender", 1, 2, 3)...)
	receivers := append(placed("receiver", 0, 2, 2), placed("receiver", 1, 2, 2)...)
	var before int64
	for r := range 40 {
		before += economyRows(t, ctx, u, r, senders, receivers)
	}
	c := connect(t, u)
	var pre int64
	if err := c.QueryRow(ctx, `SELECT giftd_reshard_presplit(2, (SELECT max(id) FROM gift_entries), (SELECT max(id) FROM account_entries))`).
		Scan(&pre); err != nil || pre != before {
		t.Fatalf("the pre-split read %d rows; want %d: %v", pre, before, err)
	}
	since := economyRows(t, ctx, u, 40, senders, receivers)
	if _, err := c.Exec(ctx, `ANALYZE gift_entries, account_entries`); err != nil {
		t.Fatal(err)
	}
	type read struct {
		table        string
		seq, fetched int64
	}
	var reads []read
	var rows int64
	// A connection of its own: PostgreSQL's counters for a transaction
	// also hold what the session read before, until they are flushed.
	err := pgx.BeginFunc(ctx, connect(t, u), func(tx pgx.Tx) error {
		for _, q := range []string{`INSERT INTO giftd_reshard_fence (partitions) VALUES (2)`,
			`SELECT giftd_reshard_claim(cluster_id, 2) FROM giftd_partition_identity`, `SELECT giftd_reshard_split(2)`} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		if err := tx.QueryRow(ctx, `SELECT rows FROM giftd_reshard_split WHERE partitions = 2`).Scan(&rows); err != nil {
			return err
		}
		rs, err := tx.Query(ctx, `SELECT relname, coalesce(seq_tup_read, 0), coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
			WHERE relname IN ('gift_entries', 'account_entries') ORDER BY relname`)
		if err != nil {
			return err
		}
		reads, err = pgx.CollectRows(rs, func(r pgx.CollectableRow) (read, error) {
			var x read
			return x, r.Scan(&x.table, &x.seq, &x.fetched)
		})
		if err != nil {
			return err
		}
		return errors.New("roll back")
	})
	if err == nil || err.Error() != "roll back" {
		t.Fatalf("split: %v", err)
	}
	t.Logf("economy rows: %d pre-split, %d since; the split read %+v", before, since, reads)
	if rows != since {
		t.Errorf("the split read %d rows inside the pause; want the %d written since the pre-split", rows, since)
	}
	for _, r := range reads {
		if r.seq != 0 || r.fetched > 4*since {
			t.Errorf("the split read %s: %d rows by sequential scan, %d fetched by index; want none, and at most 4 × the %d rows past the cut",
				r.table, r.seq, r.fetched, since)
		}
	}
}
