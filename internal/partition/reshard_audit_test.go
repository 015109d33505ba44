package partition_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"giftd/internal/credits"
	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// audits is everything giftd audit reads of a cluster: each partition's
// audit (its time left out), the credits' audit and the keys found on more
// than one partition.
type audits struct {
	Partitions []ledger.AuditReport
	Credits    credits.Report
	Reused     []ledger.ReusedKey
	NReused    int
}

func auditAll(t *testing.T, ctx context.Context, parts []*ledger.Store) audits {
	t.Helper()
	var a audits
	for p, s := range parts {
		r, err := s.Audit(ctx)
		if err != nil {
			t.Fatalf("audit of partition %d: %v", p, err)
		}
		r.CheckedAt = time.Time{}
		a.Partitions = append(a.Partitions, r)
	}
	var err error
	if a.Credits, err = credits.Audit(ctx, parts); err != nil {
		t.Fatalf("credits audit: %v", err)
	}
	if a.Reused, a.NReused, err = ledger.ReusedKeys(ctx, parts, 100); err != nil {
		t.Fatalf("reused keys: %v", err)
	}
	return a
}

// reads is everything the admin API reads of a cluster on every partition
// through the proxy (RUN ON ALL): the gift report by each group, the room's
// two boards (their window's times left out), each receiver's period,
// whole earnings ledger (read in pages of 3) and earnings account (when
// readAll is asked to), each gift's debit as FindDebit finds it, and the
// wallet totals.
type reads struct {
	Reports  map[ledger.ReportGroup][]ledger.GiftReportRow
	Boards   map[ledger.BoardSide][]ledger.Leader
	Periods  []ledger.ReceiverPeriod
	Ledgers  [][]ledger.EarningsEntry
	Accounts []ledger.EarningsAccount
	Debits   []ledger.DebitView
	Wallets  [2]int64
}

func readAll(t *testing.T, ctx context.Context, s *ledger.Store, proxyURL string, from, to time.Time,
	receivers []string, keys []ledger.DebitKey, accounts bool) reads {
	t.Helper()
	r := reads{Reports: map[ledger.ReportGroup][]ledger.GiftReportRow{}, Boards: map[ledger.BoardSide][]ledger.Leader{}}
	for _, g := range ledger.ReportGroups() {
		rows, err := s.GiftReport(ctx, g, ledger.GiftFilter{From: from, To: to}, 1000, 0)
		if err != nil || len(rows) == 0 {
			t.Fatalf("gift report by %s: %d rows, %v", g, len(rows), err)
		}
		r.Reports[g] = rows
	}
	for _, side := range []ledger.BoardSide{ledger.Senders, ledger.Receivers} {
		b, err := s.RoomLeaderboard(ctx, "linkv", "room", side, 24*time.Hour, 100)
		if err != nil || len(b.Leaders) == 0 {
			t.Fatalf("board of %s: %+v, %v", side, b, err)
		}
		r.Boards[side] = b.Leaders
	}
	for _, rcv := range receivers {
		p, err := s.ReceiverPeriod(ctx, rcv, from, to)
		if err != nil {
			t.Fatalf("period of %s: %v", rcv, err)
		}
		r.Periods = append(r.Periods, p)
		var all []ledger.EarningsEntry
		var before *ledger.EarningsCursor
		for {
			page, err := s.EarningsLedger(ctx, rcv, before, 3)
			if err != nil {
				t.Fatalf("earnings ledger of %s: %v", rcv, err)
			}
			if len(page) == 0 {
				break
			}
			all = append(all, page...)
			before = &page[len(page)-1].Cursor
		}
		r.Ledgers = append(r.Ledgers, all)
		if !accounts {
			continue
		}
		a, err := s.Earnings(ctx, rcv)
		if err != nil {
			t.Fatalf("earnings of %s: %v", rcv, err)
		}
		r.Accounts = append(r.Accounts, a)
	}
	for _, k := range keys {
		v, err := s.FindDebit(ctx, k)
		if err != nil {
			t.Fatalf("find debit %s: %v", k, err)
		}
		r.Debits = append(r.Debits, v)
	}
	if err := connect(t, proxyURL).QueryRow(ctx, `SELECT sum(wallets)::bigint, sum(gold)::bigint FROM giftd_wallet_totals()`).
		Scan(&r.Wallets[0], &r.Wallets[1]); err != nil {
		t.Fatalf("wallet totals: %v", err)
	}
	return r
}

// diffReads names each read of a that differs from b's.
func diffReads(t *testing.T, when string, a, b reads) {
	t.Helper()
	av, bv := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range av.NumField() {
		if x, y := av.Field(i).Interface(), bv.Field(i).Interface(); !reflect.DeepEqual(x, y) {
			t.Errorf("%s, %s:\n%+v\nafter the forget:\n%+v", when, av.Type().Field(i).Name, x, y)
		}
	}
}

// readStore is a Store on the proxy that reads as serve does, with an
// earnings hold of an hour (every gift of the test young: maturing counts
// them all).
func readStore(t *testing.T, ctx context.Context, proxyURL string) *ledger.Store {
	t.Helper()
	s, err := ledger.Open(ctx, proxyURL, ledger.WithPartitions(2, partition.For),
		ledger.WithSafeguards(ledger.Safeguards{EarningsHold: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestReshard_AuditsBetweenTheSwitchAndTheForgetAsAfter stops giftd reshard
// 2 → 4 after the proxy's switch and before step 4 (every partition's
// giftd_reshard_forget), on a cluster with gifts from senders of all four
// partitions-to-be to receivers of all four, the credits moved, payouts,
// reversals of gifts of both partitions and their claw-backs, then gifts
// older than the earnings hold and young ones. Old partition
// i then still holds the rows of the users who moved to i + n and the
// economy rows under the pre-split's cut it gave away; new partition i + n
// the rows of the users who stayed. Every partition's audit, the credits'
// audit and the keys' then read exactly what they read once the run again
// has forgotten those rows: clean, every wallet, gift and leg counted once
// across the partitions; each partition's report says that a reshard to 4
// has not forgotten yet. So do the reads the proxy runs on every partition
// (reads: the gift reports, the room's boards, each receiver's period,
// earnings ledger and account, each gift's debit, the wallet totals): each
// equals the same read after the forget; and the rows those reads leave out
// on each partition are exactly those the audits leave out.
func TestReshard_AuditsBetweenTheSwitchAndTheForgetAsAfter(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	requireLogical(t, l.ProxyURL)
	newURLs := newPartitions(t, l)
	after := append(append([]string{}, l.PartitionURLs...), newURLs...)
	ctx, cancelAll := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancelAll()
	s := economyStore(t, ctx, l.ProxyURL, ledger.Batching{MaxBatch: 1})
	senders, receivers := economyUsers(t, ctx, s, 4, 2, 1000)
	startConsumer(t, ctx, l.PartitionURLs)
	since, until := time.Now().Add(-3*time.Hour), time.Now().Add(time.Hour)
	var keys []ledger.DebitKey
	give := func(rounds ...string) {
		for _, round := range rounds {
			for _, from := range senders {
				for _, to := range receivers {
					id := fmt.Sprintf("%s-%s-%s", round, from, to)
					keys = append(keys, ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id})
					if res, err := s.Debit(ctx, giftDebit(id, from, to)); err != nil || res.Status != ledger.Debited {
						t.Fatalf("gift %s: %+v, %v", id, res, err)
					}
				}
			}
		}
		waitDrained(ctx, t, l.PartitionURLs)
	}
	give("a", "b")
	// Each receiver is paid 70 of their 80, then a gift of a sender of
	// each partition of 2 is reversed (the other partition's by a
	// claw-back), one of them taking back more than is left (owed).
	for _, r := range receivers {
		if _, err := s.Payout(ctx, ledger.Payout{ReceiverID: r, Amount: 70, Key: "pay-" + r}); err != nil {
			t.Fatalf("payout of %s: %v", r, err)
		}
		for _, from := range []string{senders[0], senders[len(senders)-1], senders[2]} {
			id := fmt.Sprintf("a-%s-%s", from, r)
			if _, err := s.Reverse(ctx, ledger.Reversal{Debit: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id},
				Key: "rev-" + id}); err != nil {
				t.Fatalf("reverse %s: %v", id, err)
			}
		}
	}
	waitDrained(ctx, t, l.PartitionURLs)
	// Earnings kept, older than the hold of an hour (their gifts' times
	// set back 2 hours), then young ones: an account's maturing (its young
	// earnings) is below its balance, so a young gift counted twice shows.
	give("c")
	for _, u := range l.PartitionURLs {
		c := connect(t, u)
		for _, q := range []string{`SET session_replication_role = replica`, // past the append-only trigger
			`UPDATE gift_entries SET created_at = created_at - interval '2 hours'`} {
			if _, err := c.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	give("d")

	cut, cancel := context.WithCancel(ctx)
	defer cancel()
	r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs, EarningsHold: time.Hour}, func(step string) {
		if step == "forget" {
			cancel()
		}
	})
	if _, err := partition.Reshard(cut, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("reshard stopped before the forget: %v; want context.Canceled", err)
	}
	// The window: routed over 4, and every partition still holding rows
	// of users it no longer owns.
	var routed int
	if err := connect(t, l.ProxyURL).QueryRow(ctx, `SELECT count(*) FROM giftd_partitions`).Scan(&routed); err != nil || routed != 4 {
		t.Fatalf("the proxy routes over %d partitions, %v; want 4", routed, err)
	}
	for p, u := range after {
		var foreign int
		if err := connect(t, u).QueryRow(ctx, `SELECT count(*) FROM wallets WHERE giftd_placement(user_id) & 3 <> $1`, p).
			Scan(&foreign); err != nil || foreign == 0 {
			t.Fatalf("partition %d holds %d wallets of other partitions, %v; want some before the forget", p, foreign, err)
		}
	}
	for p, u := range l.PartitionURLs {
		var gifts int
		if err := connect(t, u).QueryRow(ctx, `SELECT count(*) FROM gift_entries WHERE giftd_placement(sender_id) & 3 <> $1`, p).
			Scan(&gifts); err != nil || gifts == 0 {
			t.Fatalf("old partition %d holds %d gifts of moved senders, %v; want some before the forget", p, gifts, err)
		}
	}
	parts := stores(t, after)
	window := auditAll(t, ctx, parts)
	for p := range window.Partitions {
		if got := window.Partitions[p].ReshardNotForgotten; got != 4 {
			t.Errorf("partition %d before the forget: reshard_not_forgotten %d; want 4", p, got)
		}
		window.Partitions[p].ReshardNotForgotten = 0
	}
	sameAsGivenAway(t, ctx, after)
	rs := readStore(t, ctx, l.ProxyURL)
	windowReads := readAll(t, ctx, rs, l.ProxyURL, since, until, receivers, keys, true)
	for _, a := range windowReads.Accounts {
		if a.Maturing == 0 || a.Maturing >= a.Balance {
			t.Errorf("earnings of %s before the forget: %+v; want some maturing, below the balance", a.ReceiverID, a)
		}
	}

	if _, err := partition.Reshard(ctx, partition.Resharding{Layout: l, NewPartitionURLs: newURLs, EarningsHold: time.Hour}); err != nil {
		t.Fatalf("reshard again: %v", err)
	}
	done := auditAll(t, ctx, parts)
	diffReads(t, "read before the forget", windowReads, readAll(t, ctx, rs, l.ProxyURL, since, until, receivers, keys, true))
	for p, a := range done.Partitions {
		if !a.OK() {
			t.Errorf("audit of partition %d after the forget: %+v", p, a)
		}
	}
	if !done.Credits.OK() || done.Credits.Reshards == 0 || done.NReused != 0 {
		t.Errorf("after the forget: credits %+v, keys on two partitions %v", done.Credits, done.Reused)
	}
	for p := range done.Partitions {
		if w, d := window.Partitions[p], done.Partitions[p]; !reflect.DeepEqual(w, d) {
			t.Errorf("audit of partition %d before the forget:\n%+v\nafter:\n%+v", p, w, d)
		}
	}
	if !reflect.DeepEqual(window.Credits, done.Credits) {
		t.Errorf("credits audit before the forget:\n%+v\nafter:\n%+v", window.Credits, done.Credits)
	}
	if window.NReused != done.NReused {
		t.Errorf("keys on two partitions before the forget: %d %v; after: %d", window.NReused, window.Reused, done.NReused)
	}
	var wallets, gifts int64
	for _, a := range window.Partitions {
		wallets += a.Wallets
		gifts += a.Gifts
	}
	if want := int64(len(senders)); wallets != want {
		t.Errorf("%d wallets across the partitions before the forget; want %d", wallets, want)
	}
	if want := int64(4 * len(senders) * len(receivers)); gifts != want {
		t.Errorf("%d gifts across the partitions before the forget; want %d", gifts, want)
	}
}

// sameAsGivenAway checks, on each partition of urls between the switch and
// the forget, that the rows the reads leave out (giftd_reshard_keeps_gift
// and giftd_reshard_keeps_entry false) are exactly those the audits leave
// out and the forget deletes (giftd_reshard_given_away), some on each old
// partition.
func sameAsGivenAway(t *testing.T, ctx context.Context, urls []string) {
	t.Helper()
	for p, u := range urls {
		var onlyReads, onlyGiven, given, claimed int
		err := connect(t, u).QueryRow(ctx, `
			WITH c AS (SELECT * FROM giftd_reshard_read_claim()),
			reads AS (
				SELECT g.id AS gift, NULL::bigint AS entry FROM gift_entries AS g, c
				WHERE NOT giftd_reshard_keeps_gift(g.id, g.sender_id, c.partition, c.partitions, c.gift_cut)
				UNION ALL
				SELECT NULL, a.id FROM account_entries AS a, c
				WHERE NOT giftd_reshard_keeps_entry(a, c.partition, c.partitions, c.entry_cut)),
			given AS (SELECT DISTINCT gift, entry FROM giftd_reshard_given_away()) -- a gift twice
			SELECT (SELECT count(*) FROM (SELECT * FROM reads EXCEPT ALL SELECT * FROM given) AS x),
			       (SELECT count(*) FROM (SELECT * FROM given EXCEPT ALL SELECT * FROM reads) AS x),
			       (SELECT count(*) FROM given),
			       (SELECT count(*) FROM c)`).Scan(&onlyReads, &onlyGiven, &given, &claimed)
		if err != nil {
			t.Fatalf("partition %d: %v", p, err)
		}
		if claimed != 1 || onlyReads != 0 || onlyGiven != 0 || (p < len(urls)/2 && given == 0) {
			t.Errorf("partition %d: %d claims read by, %d rows left out by the reads only, %d by the audits only, of %d given away; want 1, 0, 0",
				p, claimed, onlyReads, onlyGiven, given)
		}
	}
}

// TestReshard_AuditSaysAReshardStoppedBeforeTheSwitch stops giftd reshard
// 2 → 4 once the claims moved (before the economy's split) and once the
// economy is split (before the proxy's switch), and audits the 2 partitions
// the proxy still routes over: each partition's audit clean (after the
// split, of the rows each owns under its claim), and the credits' audit not
// OK with one line per partition saying that the reshard has not switched,
// no mismatch claimed (a credit moved in on a new partition, not read, or a
// resharding leg without its pair there). The reads the proxy runs on every
// partition (reads) still read every row of the old partitions, the only
// ones it reaches: each equals the same read after the run again; but a
// receiver's earnings account, which would read wrong there, is refused
// (ErrReshardPaused, partition migration 25). The run again switches,
// forgets, and the audits over 4 are clean, the accounts read.
func TestReshard_AuditSaysAReshardStoppedBeforeTheSwitch(t *testing.T) {
	for _, step := range []string{"split", "switch"} {
		t.Run(step, func(t *testing.T) {
			l := pgtest.Partitioned(t, 2)
			requireLogical(t, l.ProxyURL)
			newURLs := newPartitions(t, l)
			ctx, cancelAll := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancelAll()
			s := economyStore(t, ctx, l.ProxyURL, ledger.Batching{MaxBatch: 1})
			senders, receivers := economyUsers(t, ctx, s, 4, 1, 1000)
			startConsumer(t, ctx, l.PartitionURLs)
			since, until := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
			var keys []ledger.DebitKey
			for _, from := range senders {
				for _, to := range receivers {
					id := fmt.Sprintf("a-%s-%s", from, to)
					keys = append(keys, ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id})
					if res, err := s.Debit(ctx, giftDebit(id, from, to)); err != nil || res.Status != ledger.Debited {
						t.Fatalf("gift %s: %+v, %v", id, res, err)
					}
				}
			}
			waitDrained(ctx, t, l.PartitionURLs)
			cut, cancel := context.WithCancel(ctx)
			defer cancel()
			r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(s string) {
				if s == step {
					cancel()
				}
			})
			if _, err := partition.Reshard(cut, r); !errors.Is(err, context.Canceled) {
				t.Fatalf("reshard stopped at %s: %v; want context.Canceled", step, err)
			}
			a := auditAll(t, ctx, stores(t, l.PartitionURLs))
			rs := readStore(t, ctx, l.ProxyURL)
			stopped := readAll(t, ctx, rs, l.ProxyURL, since, until, receivers, keys, false)
			for _, r := range receivers {
				if a, err := rs.Earnings(ctx, r); !errors.Is(err, ledger.ErrReshardPaused) {
					t.Errorf("earnings of %s before the switch: %+v, %v; want ErrReshardPaused", r, a, err)
				}
			}
			for p, pa := range a.Partitions {
				if want := map[string]int{"split": 0, "switch": 4}[step]; !pa.OK() || pa.ReshardNotForgotten != want {
					t.Errorf("audit of partition %d: %+v; want OK, reshard_not_forgotten %d", p, pa, want)
				}
			}
			if a.Credits.OK() || len(a.Credits.Problems) != 0 || len(a.Credits.NotSwitched) != 2 {
				t.Errorf("credits audit: %+v; want not OK, no problems, a line for each partition not switched", a.Credits)
			}
			for p, line := range a.Credits.NotSwitched {
				if want := fmt.Sprintf("partition %d: claimed as %d of 4, audited as one of 2: giftd reshard moved the claims but has not switched the proxy", p, p); !strings.HasPrefix(line, want) {
					t.Errorf("credits audit: %q; want it to start %q", line, want)
				}
			}
			if _, err := partition.Reshard(ctx, partition.Resharding{Layout: l, NewPartitionURLs: newURLs}); err != nil {
				t.Fatalf("reshard again: %v", err)
			}
			done := auditAll(t, ctx, stores(t, append(append([]string{}, l.PartitionURLs...), newURLs...)))
			again := readAll(t, ctx, rs, l.ProxyURL, since, until, receivers, keys, true)
			for _, a := range again.Accounts {
				if a.Balance == 0 {
					t.Errorf("earnings of %s after the run again: %+v; want a balance", a.ReceiverID, a)
				}
			}
			again.Accounts = nil
			// A moved sender's gift is listed from its old partition, then
			// from its new one: the same entry, at another place.
			for _, r := range []reads{stopped, again} {
				for _, l := range r.Ledgers {
					for i := range l {
						l[i].Cursor.Partition = 0
					}
				}
			}
			diffReads(t, "read before the switch", stopped, again)
			for p, pa := range done.Partitions {
				if !pa.OK() || pa.ReshardNotForgotten != 0 {
					t.Errorf("audit of partition %d after the run again: %+v", p, pa)
				}
			}
			if !done.Credits.OK() || done.Credits.Reshards == 0 || done.NReused != 0 {
				t.Errorf("after the run again: credits %+v, keys on two partitions %v", done.Credits, done.Reused)
			}
		})
	}
}
