package ledger_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// readGift is a gift of the reads' tests, written straight into the tables
// at a chosen time; with a receiver, a reversed one has its takeback entry
// too, and a payout may follow.
type readGift struct {
	seeded
	payout int64 // > 0: the receiver is paid this much an hour after the gift
}

// seedRead writes g into pool: the gift as seed does, its reversal's
// takeback of the earnings, and its payout.
func seedRead(t *testing.T, pool *pgxpool.Pool, g readGift) {
	t.Helper()
	ctx := context.Background()
	var receiver *string
	earnings := int64(0)
	if g.receiver != "" {
		receiver = &g.receiver
		earnings = g.gold * int64(g.share) / 10000
	}
	var id int64
	err := pool.QueryRow(ctx, `
		WITH w AS (
			INSERT INTO wallets (user_id, gold) VALUES ($4, 1000000) ON CONFLICT (user_id) DO NOTHING
		), e AS (
			INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, app_id, ref, created_at)
			VALUES ($4, 'debit', -$9::bigint, 0, $2, $3, $10, $1) RETURNING id
		)
		INSERT INTO gift_entries (debit_entry, platform, app_id, request_id, sender_id, receiver_id, room_id, gift_id,
			count, gold, share_bp, earnings, house, house_slot, created_at)
		SELECT e.id, $2, $3, $10, $4, $5, $6, $7, $8, $9, $11, $12, $9::bigint - $12::bigint, 0, $1 FROM e
		RETURNING id`,
		g.at, g.platform, g.app, g.sender, receiver, g.room, g.giftID, g.count, g.gold, g.req, g.share, earnings).Scan(&id)
	if err != nil {
		t.Fatalf("seed %s: %v", g.req, err)
	}
	if !g.reversedAt.IsZero() {
		_, err = pool.Exec(ctx, `
			INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, ref, reverses, created_at)
			SELECT user_id, 'reversal', -amount, 0, 'admin', 'rev-' || ref, id, $2 FROM ledger_entries
			WHERE kind = 'debit' AND ref = $1`, g.req, g.reversedAt)
		if err == nil && earnings > 0 {
			_, err = pool.Exec(ctx, `
				INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, gift_entry, ref, created_at)
				VALUES ('earnings', $1, 'reversal', -$2::bigint, 0, $3, 'rev-' || $4, $5)`,
				g.receiver, earnings, id, g.req, g.reversedAt)
		}
		if err != nil {
			t.Fatalf("seed the reversal of %s: %v", g.req, err)
		}
	}
}

// seedPayout writes a payout of receiver at at into pool.
func seedPayout(t *testing.T, pool *pgxpool.Pool, receiver, key string, amount int64, at time.Time) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `
		INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, created_at)
		VALUES ('earnings', $1, 'payout', -$2::bigint, 0, $3, $4)`, receiver, amount, key, at)
	if err != nil {
		t.Fatalf("seed payout %s: %v", key, err)
	}
}

// readsFixture is one store on one database and one partitioned store on a
// proxy and two partitions, fed the same gifts: each gift on its sender's
// partition (where the debit writes it), each payout on its receiver's.
type readsFixture struct {
	one, parted *ledger.Store
	layout      partition.Layout
	parts       []*ledger.Store // direct, one per partition
	senders     []string
	receivers   []string
	rooms       []string
	now         time.Time
}

func newReadsFixture(t *testing.T, seedGifts func(f *readsFixture) []readGift) *readsFixture {
	t.Helper()
	f := &readsFixture{one: openStore(t)}
	f.parted, f.layout = openPartitioned(t, 2)
	for _, u := range f.layout.PartitionURLs {
		f.parts = append(f.parts, partitionStore(t, u))
	}
	for _, us := range usersOn(2, 6) {
		f.senders = append(f.senders, us...)
	}
	for i, us := range usersOn(2, 3) {
		for _, u := range us {
			f.receivers = append(f.receivers, fmt.Sprintf("host-%d-%s", i, u))
		}
	}
	// host-… ids are placed by their own text: put them where they land.
	f.rooms = []string{"R1", "R2", "+hot"}
	f.now = time.Now().UTC().Truncate(time.Microsecond)
	for _, g := range seedGifts(f) {
		seedRead(t, f.one.Pool(), g)
		seedRead(t, f.parts[partition.For(g.sender, 2)].Pool(), g)
		if g.payout > 0 {
			key, at := "pay-"+g.req, g.at.Add(time.Hour)
			seedPayout(t, f.one.Pool(), g.receiver, key, g.payout, at)
			seedPayout(t, f.parts[partition.For(g.receiver, 2)].Pool(), g.receiver, key, g.payout, at)
		}
	}
	return f
}

// manyGifts is 400 gifts over the two days before now from 12 senders to 6
// receivers (and none) in 3 rooms of two platforms, golds chosen from a few
// values so that totals tie, about one in 15 reversed, some paid out.
func manyGifts(f *readsFixture) []readGift {
	r := rand.New(rand.NewPCG(20, 4))
	var out []readGift
	for i := range 400 {
		g := readGift{seeded: seeded{
			at:       f.now.Add(-time.Duration(r.IntN(48*3600)) * time.Second).Add(-time.Duration(i) * time.Microsecond),
			platform: []string{"linkv", "polyv"}[r.IntN(2)], app: []string{"a1", "a2"}[r.IntN(2)],
			req: fmt.Sprintf("g%03d", i), sender: f.senders[r.IntN(len(f.senders))],
			room: f.rooms[r.IntN(len(f.rooms))], giftID: []string{"rose", "car", "=cmd"}[r.IntN(3)],
			count: int64(1 + r.IntN(3)), gold: []int64{10, 20, 50, 100}[r.IntN(4)], share: 5000,
		}}
		// A leaderboard's window ends when it is read, up to minutes after
		// f.now: no gift in the first 10 minutes of a window, so that both
		// stores' windows hold the same gifts.
		for _, w := range []time.Duration{time.Hour, 24 * time.Hour} {
			if start := f.now.Add(-w); !g.at.Before(start) && g.at.Before(start.Add(10*time.Minute)) {
				g.at = g.at.Add(-10 * time.Minute)
			}
		}
		if r.IntN(8) > 0 {
			g.receiver = f.receivers[r.IntN(len(f.receivers))]
		}
		if r.IntN(15) == 0 {
			g.reversedAt = g.at.Add(time.Duration(r.IntN(3600)) * time.Second)
		}
		if g.receiver != "" && r.IntN(20) == 0 {
			g.payout = 1
		}
		out = append(out, g)
	}
	return out
}

// TestPartitionedReads_AnswerAsOneServer asks a store on one database and a
// partitioned store, fed the same gifts, the same reports, leaderboards,
// spends, periods and ledger pages, and wants the same answers (less the
// ids each database numbers for itself).
func TestPartitionedReads_AnswerAsOneServer(t *testing.T) {
	f := newReadsFixture(t, manyGifts)
	ctx := context.Background()
	day := ledger.GiftFilter{From: f.now.Add(-24 * time.Hour), To: f.now}
	both := ledger.GiftFilter{From: f.now.Add(-72 * time.Hour), To: f.now.Add(time.Hour)}
	// full counts the comparisons of answers that are not empty: a test
	// of empty answers would prove nothing.
	full := 0
	t.Run("gift reports", func(t *testing.T) {
		for _, group := range ledger.ReportGroups() {
			for _, flt := range []ledger.GiftFilter{day, both, {From: both.From, To: both.To, Platform: "polyv"},
				{From: day.From, To: day.To, AppID: "a2"}, {From: day.From, To: day.From.Add(time.Hour)}} {
				for _, page := range [][2]int{{100, 0}, {1, 0}, {3, 0}, {3, 3}, {4, 5}, {2, 40}} {
					want, err := f.one.GiftReport(ctx, group, flt, page[0], page[1])
					if err != nil {
						t.Fatal(err)
					}
					got, err := f.parted.GiftReport(ctx, group, flt, page[0], page[1])
					if err != nil {
						t.Fatal(err)
					}
					same(t, fmt.Sprintf("by %s, %+v, limit %d offset %d", group, flt, page[0], page[1]), want, got)
					full += min(len(want), 1)
				}
			}
		}
	})
	t.Run("leaderboards", func(t *testing.T) {
		for _, platform := range []string{"linkv", "polyv"} {
			for _, room := range append(f.rooms, "nowhere") {
				for _, side := range []ledger.BoardSide{ledger.Senders, ledger.Receivers} {
					for _, w := range []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
						for _, limit := range []int{1, 2, 5, 100} {
							want, err := f.one.RoomLeaderboard(ctx, platform, room, side, w, limit)
							if err != nil {
								t.Fatal(err)
							}
							got, err := f.parted.RoomLeaderboard(ctx, platform, room, side, w, limit)
							if err != nil {
								t.Fatal(err)
							}
							if d := got.To.Sub(got.From); d != w {
								t.Errorf("%s %s %s: window %v, want %v", platform, room, side, d, w)
							}
							same(t, fmt.Sprintf("%s/%s %s over %v, top %d", platform, room, side, w, limit), want.Leaders, got.Leaders)
							full += min(len(want.Leaders), 1)
						}
					}
				}
			}
		}
	})
	t.Run("spend", func(t *testing.T) {
		for _, u := range append(f.senders, "never-seen") {
			want, err := f.one.SenderSpend(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.parted.SenderSpend(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("spend of %s: got %+v, want %+v", u, got, want)
			}
		}
	})
	t.Run("receiver periods", func(t *testing.T) {
		for _, u := range append(f.receivers, "never-seen") {
			for _, flt := range []ledger.GiftFilter{day, both, {From: day.From.Add(-30 * time.Minute), To: day.From.Add(5 * time.Hour)}} {
				want, err := f.one.ReceiverPeriod(ctx, u, flt.From, flt.To)
				if err != nil {
					t.Fatal(err)
				}
				got, err := f.parted.ReceiverPeriod(ctx, u, flt.From, flt.To)
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("period of %s from %s: got %+v, want %+v", u, flt.From, got, want)
				}
			}
		}
	})
	t.Run("earnings ledgers", func(t *testing.T) {
		for _, u := range append(f.receivers, "never-seen") {
			for _, limit := range []int{500, 7, 1} {
				want := ledgerPages(t, f.one, u, limit)
				got := ledgerPages(t, f.parted, u, limit)
				same(t, fmt.Sprintf("ledger of %s in pages of %d", u, limit), want, got)
				full += min(len(want), 1)
			}
		}
	})
	if full < 200 {
		t.Errorf("only %d answers were not empty", full)
	}
}

// ledgerPages reads receiver's whole earnings ledger in pages of limit,
// each entry without the ids its database numbered (cursor, gift_entry).
func ledgerPages(t *testing.T, s *ledger.Store, receiver string, limit int) []ledger.EarningsEntry {
	t.Helper()
	var out []ledger.EarningsEntry
	var before *ledger.EarningsCursor
	for {
		page, err := s.EarningsLedger(context.Background(), receiver, before, limit)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			e.Cursor, e.GiftEntry = ledger.EarningsCursor{}, nil
			out = append(out, e)
		}
		if len(page) < limit {
			return out
		}
		c := page[len(page)-1].Cursor
		// The cursor's text form, as the API pages.
		if c, err = ledger.ParseEarningsCursor(c.String()); err != nil {
			t.Fatal(err)
		}
		before = &c
		if len(out) > 10000 {
			t.Fatalf("ledger of %s: pages never end", receiver)
		}
	}
}

// TestPartitionedReads_LedgerPagesAcrossTiesOfTime gives a receiver gifts
// from both partitions at the very same instants: the pages, put end to
// end, are the whole ledger once, in the order of the whole read at once.
func TestPartitionedReads_LedgerPagesAcrossTiesOfTime(t *testing.T) {
	f := newReadsFixture(t, func(f *readsFixture) []readGift {
		var out []readGift
		at := f.now.Add(-time.Hour)
		for i := range 30 {
			out = append(out, readGift{seeded: seeded{at: at.Add(time.Duration(i/6) * time.Second), platform: "linkv", app: "a1",
				req: fmt.Sprintf("t%02d", i), sender: f.senders[(i%2)*6+(i/2)%6], receiver: f.receivers[0],
				room: "R1", giftID: "rose", count: 1, gold: int64(10 + i), share: 5000}, payout: int64(i % 4 / 3)})
		}
		return out
	})
	all := ledgerPages(t, f.parted, f.receivers[0], 500)
	if len(all) != 30+7 {
		t.Fatalf("ledger: %d entries, want 37", len(all))
	}
	for _, limit := range []int{1, 2, 5, 6, 7} {
		same(t, fmt.Sprintf("pages of %d", limit), all, ledgerPages(t, f.parted, f.receivers[0], limit))
	}
}

// TestPartitionedReads_RefuseToRankPastTheBound: past the bound on the rows
// to sum, a report of groups that are not partition-local and a room's
// receivers fail with ErrTooManyToMerge instead of ranking a part; a
// report by sender, which needs only each partition's first rows, answers.
func TestPartitionedReads_RefuseToRankPastTheBound(t *testing.T) {
	f := newReadsFixture(t, manyGifts)
	ctx := context.Background()
	ledger.SetMergeBound(t, 4) // 6 receivers, 12 senders
	all := ledger.GiftFilter{From: f.now.Add(-72 * time.Hour), To: f.now}
	if _, err := f.parted.GiftReport(ctx, ledger.ByReceiver, all, 1, 0); !errors.Is(err, ledger.ErrTooManyToMerge) {
		t.Errorf("report by receiver: %v, want ErrTooManyToMerge", err)
	}
	if _, err := f.parted.RoomLeaderboard(ctx, "linkv", "R1", ledger.Receivers, 7*24*time.Hour, 1); !errors.Is(err, ledger.ErrTooManyToMerge) {
		t.Errorf("receivers of R1: %v, want ErrTooManyToMerge", err)
	}
	want, err := f.one.GiftReport(ctx, ledger.BySender, all, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.parted.GiftReport(ctx, ledger.BySender, all, 3, 1)
	if err != nil {
		t.Fatalf("report by sender, 3 from 1: %v", err)
	}
	same(t, "report by sender, 3 from 1", want, got)
	if _, err := f.parted.GiftReport(ctx, ledger.BySender, all, 3, 2); !errors.Is(err, ledger.ErrTooManyToMerge) {
		t.Errorf("report by sender, 3 from 2 (5 rows of each partition, past the bound): %v, want ErrTooManyToMerge", err)
	}
}

// TestPartitionedReads_ConsentsOnEachUsersPartition: the display rule's
// consents are read from each user's partition.
func TestPartitionedReads_ConsentsOnEachUsersPartition(t *testing.T) {
	s, l := openPartitioned(t, 2)
	users := usersOn(2, 2)
	for _, us := range users {
		for i, u := range us {
			p := partitionStore(t, l.PartitionURLs[partition.For(u, 2)])
			if _, err := p.Pool().Exec(context.Background(),
				`INSERT INTO spend_policies (scope, subject, consent, updated_by) VALUES ('user', $1, $2, 'test')`, u, i == 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := s.Consents(context.Background(), []string{users[0][0], users[0][1], users[1][0], users[1][1], "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{users[0][0]: true, users[0][1]: false, users[1][0]: true, users[1][1]: false, "nobody": false}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("consents: got %v, want %v", got, want)
	}
}

// TestPartitionedReads_PartitionDownFailsEveryReadOfAll: with a partition
// down, a read of every partition fails as ErrPartitionUnreachable, never
// a partial answer; a sender of the other partition still gets their spend.
func TestPartitionedReads_PartitionDownFailsEveryReadOfAll(t *testing.T) {
	f := newReadsFixture(t, manyGifts)
	ctx := context.Background()
	pgtest.StopPartition(t, f.layout.PartitionURLs[1])
	defer pgtest.StartPartition(t, f.layout.PartitionURLs[1])
	up := usersOn(2, 1)[0][0]
	for name, read := range map[string]func() error{
		"report": func() error {
			_, err := f.parted.GiftReport(ctx, ledger.BySender, ledger.GiftFilter{From: f.now.Add(-time.Hour), To: f.now}, 10, 0)
			return err
		},
		"senders": func() error {
			_, err := f.parted.RoomLeaderboard(ctx, "linkv", "R1", ledger.Senders, time.Hour, 10)
			return err
		},
		"receivers": func() error {
			_, err := f.parted.RoomLeaderboard(ctx, "linkv", "R1", ledger.Receivers, time.Hour, 10)
			return err
		},
		"period": func() error {
			_, err := f.parted.ReceiverPeriod(ctx, f.receivers[0], f.now.Add(-time.Hour), f.now)
			return err
		},
		"ledger": func() error {
			_, err := f.parted.EarningsLedger(ctx, f.receivers[0], nil, 10)
			return err
		},
		"earnings": func() error {
			_, err := f.parted.Earnings(ctx, f.receivers[0])
			return err
		},
	} {
		if err := read(); !errors.Is(err, ledger.ErrPartitionUnreachable) {
			t.Errorf("%s with partition 1 down: %v, want ErrPartitionUnreachable", name, err)
		}
	}
	if _, err := f.parted.SenderSpend(ctx, up); err != nil {
		t.Errorf("spend of %s, on partition 0: %v", up, err)
	}
}

// TestPartitionedEarnings_CountsACreditInTransitOnce gives a receiver gifts
// from senders of both partitions through the debit, then moves the credits
// of the other partition leg by leg: before, between and after the legs,
// the account is the one a single server fed the same gifts shows.
func TestPartitionedEarnings_CountsACreditInTransitOnce(t *testing.T) {
	ctx := context.Background()
	shares := ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000})
	one, err := ledger.Open(ctx, pgtest.URL(t), append(pgtest.StoreOptions(), shares)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(one.Close)
	l := pgtest.Partitioned(t, 2)
	parted, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(2, partition.For), shares)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(parted.Close)
	users := usersOn(2, 2)
	receiver := users[1][1] // on partition 1
	gifts := []struct {
		sender string
		gold   int64
	}{{users[0][0], 100}, {users[0][1], 60}, {users[1][0], 40}, {users[0][0], 30}}
	for i, g := range gifts {
		for _, s := range []*ledger.Store{one, parted} {
			if _, err := s.TopUp(ctx, ledger.TopUp{UserID: g.sender, Amount: g.gold, Key: fmt.Sprintf("t%d", i)}); err != nil {
				t.Fatal(err)
			}
			req := fmt.Sprintf("e%d", i)
			res, err := s.Debit(ctx, ledger.Debit{
				Key: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: req}, UserID: g.sender, Gold: g.gold,
				Fingerprint: sha256.Sum256([]byte(req)), ExpiresAt: time.Now().Add(time.Hour),
				Gift: ledger.Gift{ReceiverID: receiver, RoomID: "R1", GiftID: "rose", Count: 1},
			})
			if err != nil || res.Status != ledger.Debited {
				t.Fatalf("gift %d: %+v, %v", i, res, err)
			}
		}
	}
	want, err := one.Earnings(ctx, receiver)
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		got, err := parted.Earnings(ctx, receiver)
		if err != nil {
			t.Fatal(err)
		}
		got.UpdatedAt = want.UpdatedAt
		if got != want {
			t.Errorf("%s: got %+v, want %+v", when, got, want)
		}
	}
	check("all in transit")
	src, dst := partitionStore(t, l.PartitionURLs[0]), partitionStore(t, l.PartitionURLs[1])
	from, ok, err := src.LeaseCredits(ctx, "test", time.Minute)
	if err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	ev, err := src.CreditEvents(ctx, from, 100)
	if err != nil {
		t.Fatal(err)
	}
	var moves []ledger.CreditMove
	for _, m := range ev.Gifts {
		if partition.For(m.ReceiverID, ev.Partitions) != ev.Partition {
			moves = append(moves, m)
		}
	}
	if len(moves) != 3 {
		t.Fatalf("pending: %d credits; want 3", len(moves))
	}
	if _, err := dst.CreditsIn(ctx, 0, moves[:2]); err != nil {
		t.Fatal(err)
	}
	check("two credits moved in, none out")
	if _, err := dst.CreditsIn(ctx, 0, moves); err != nil {
		t.Fatal(err)
	}
	check("every credit moved in, none out")
	if err := src.CreditOutRenewing(ctx, "test", from, ev.UpTo, moves, 0); err != nil {
		t.Fatal(err)
	}
	check("every credit moved")
	if _, err := parted.Earnings(ctx, "nobody"); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("earnings of nobody: %v, want ErrNotFound", err)
	}
}

// seedBench writes gifts gifts of two days into pool straight into the
// tables (the same rows whichever database, for the same gifts): 5,000
// senders, 200 receivers, 500 rooms of which room-0 takes a quarter; with
// partitions > 0, only the gifts of senders placed on partition p. Then
// every receiver's earnings account (on a partition, the transit accounts:
// every credit in transit).
func seedBench(b *testing.B, pool *pgxpool.Pool, gifts, p, partitions int) {
	b.Helper()
	only := "true"
	if partitions > 0 {
		only = fmt.Sprintf("giftd_placement('fan-' || (i %% 5000)) & %d = %d", partitions-1, p)
	}
	ctx := context.Background()
	_, err := pool.Exec(ctx, `
		CREATE TEMP TABLE g AS
		SELECT i, 'fan-' || (i % 5000) AS sender, 'host-' || (i * 7 % 200) AS receiver,
			'room-' || CASE WHEN i % 4 = 0 THEN 0 ELSE i % 500 END AS room, 'gift-' || (i % 50) AS gift,
			10 * (1 + i % 13)::bigint AS gold, now() - (i % 172800) * interval '1 second' - i * interval '1 microsecond' AS at
		FROM generate_series(1, `+strconv.Itoa(gifts)+`) AS i WHERE `+only+`;
		INSERT INTO wallets (user_id, gold) SELECT DISTINCT sender, 1000000 FROM g;
		INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, app_id, ref, created_at)
		SELECT sender, 'debit', -gold, 0, 'linkv', 'app', 'b' || i, at FROM g;
		INSERT INTO gift_entries (debit_entry, platform, app_id, request_id, sender_id, receiver_id, room_id, gift_id,
			count, gold, share_bp, earnings, house, house_slot, created_at)
		SELECT l.id, 'linkv', 'app', 'b' || g.i, g.sender, g.receiver, g.room, g.gift, 1, g.gold, 5000, g.gold / 2,
			g.gold - g.gold / 2, 0, g.at
		FROM g JOIN ledger_entries l ON l.platform = 'linkv' AND l.app_id = 'app' AND l.ref = 'b' || g.i AND l.kind = 'debit';
		INSERT INTO earnings_accounts (receiver_id, balance) SELECT receiver_id, sum(earnings) FROM gift_entries GROUP BY 1;
		DROP TABLE g;
		ANALYZE`)
	if err != nil {
		b.Fatalf("seed: %v", err)
	}
}

// BenchmarkReads_PartitionedAgainstOneServer gives the same gifts (200,000
// unless GIFTD_BENCH_READS_GIFTS says otherwise) to a store on one
// database and to a partitioned store on a proxy and two partitions (all on
// the test's one server), then asks both each read of the admin API in
// turns, one at a time, b.N rounds, and prints p50 and p99 of each read for
// each store. Short runs only on a shared machine:
//
//	go test -run '^$' -bench Reads_PartitionedAgainstOneServer -benchtime 40x ./internal/ledger/
func BenchmarkReads_PartitionedAgainstOneServer(b *testing.B) {
	gifts := 200_000
	if s := os.Getenv("GIFTD_BENCH_READS_GIFTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal("GIFTD_BENCH_READS_GIFTS: want a number of gifts")
		}
		gifts = n
	}
	ctx := context.Background()
	one, err := ledger.Open(ctx, pgtest.URL(b), ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(one.Close)
	l := pgtest.Partitioned(b, 2)
	parted, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(2, partition.For), ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(parted.Close)
	seedBench(b, one.Pool(), gifts, 0, 0)
	for p, u := range l.PartitionURLs {
		pool, err := pgxpool.New(ctx, u)
		if err != nil {
			b.Fatal(err)
		}
		seedBench(b, pool, gifts, p, 2)
		pool.Close()
	}
	now := time.Now()
	day := ledger.GiftFilter{From: now.Add(-24 * time.Hour), To: now}
	reads := []struct {
		name string
		read func(*ledger.Store) error
	}{
		{"hot room, senders 24h", func(s *ledger.Store) error {
			_, err := s.RoomLeaderboard(ctx, "linkv", "room-0", ledger.Senders, 24*time.Hour, 20)
			return err
		}},
		{"hot room, receivers 24h", func(s *ledger.Store) error {
			_, err := s.RoomLeaderboard(ctx, "linkv", "room-0", ledger.Receivers, 24*time.Hour, 20)
			return err
		}},
		{"typical room, senders 24h", func(s *ledger.Store) error {
			_, err := s.RoomLeaderboard(ctx, "linkv", "room-7", ledger.Senders, 24*time.Hour, 20)
			return err
		}},
		{"sender spend", func(s *ledger.Store) error { _, err := s.SenderSpend(ctx, "fan-42"); return err }},
		{"receiver report 24h", func(s *ledger.Store) error {
			_, err := s.ReceiverPeriod(ctx, "host-3", day.From, day.To)
			return err
		}},
		{"receiver ledger, 50", func(s *ledger.Store) error { _, err := s.EarningsLedger(ctx, "host-3", nil, 50); return err }},
		{"earnings account", func(s *ledger.Store) error { _, err := s.Earnings(ctx, "host-3"); return err }},
		{"gifts by receiver, a day, 100", func(s *ledger.Store) error {
			_, err := s.GiftReport(ctx, ledger.ByReceiver, day, 100, 0)
			return err
		}},
		{"gifts by sender, a day, 100", func(s *ledger.Store) error {
			_, err := s.GiftReport(ctx, ledger.BySender, day, 100, 0)
			return err
		}},
	}
	stores := []*ledger.Store{one, parted}
	took := make([][2][]time.Duration, len(reads))
	b.ResetTimer()
	for round := range b.N {
		for i, r := range reads {
			for k := range 2 {
				k = (k + round) % 2 // each first in turn
				t0 := time.Now()
				if err := r.read(stores[k]); err != nil {
					b.Fatalf("%s: %v", r.name, err)
				}
				took[i][k] = append(took[i][k], time.Since(t0))
			}
		}
	}
	b.StopTimer()
	q := func(d []time.Duration, f float64) float64 {
		slices.Sort(d)
		return float64(d[min(len(d)-1, int(f*float64(len(d))))].Microseconds()) / 1000
	}
	fmt.Printf("%d gifts, %d rounds; ms           one p50    p99   partitioned p50    p99\n", gifts, b.N)
	for i, r := range reads {
		fmt.Printf("%-32s %10.1f %6.1f %18.1f %6.1f\n", r.name, q(took[i][0], 0.5), q(took[i][0], 0.99),
			q(took[i][1], 0.5), q(took[i][1], 0.99))
	}
	b.ReportMetric(0, "ns/op")
}
