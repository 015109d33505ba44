package partition_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// TestReshard_FenceRefusesEveryWriteOfAMovingUser writes, during the
// pause, to a moving user's rows on its old partition by paths that never
// call giftd_check_users (partition migration 1's unchecked top-up, as a
// reversal or a payout would write; a plain UPDATE of the wallet): each is
// refused with the fence's GD003, while the same unchecked write of a user
// staying goes on. After the resharding the fence's trigger is disabled on
// every partition, so writes pay nothing for it.
func TestReshard_FenceRefusesEveryWriteOfAMovingUser(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	requireLogical(t, l.ProxyURL)
	newURLs := newPartitions(t, l)
	bg := context.Background()
	mover, stayer := usersOn(2, 4, 1)[0], usersOn(0, 4, 1)[0]
	proxy := connect(t, l.ProxyURL)
	for _, u := range []string{mover, stayer} {
		if _, err := topUpThroughProxy(bg, proxy, u, 100, "seed-"+u); err != nil {
			t.Fatal(err)
		}
	}
	old := connect(t, l.PartitionURLs[0])
	unchecked := func(user string, amount int64, key string) error {
		_, err := old.Exec(bg, `SELECT * FROM giftd_topup_unchecked($1, $2, $3, 'test')`, user, amount, key)
		return err
	}
	var moverTopUp, moverUpdate, moverEvent, stayerTopUp error
	paused := false
	r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(step string) {
		if step != "sequences" { // fenced, the copy cut off
			return
		}
		paused = true
		moverTopUp = unchecked(mover, 5, "unchecked-mover")
		_, moverUpdate = old.Exec(bg, `UPDATE wallets SET gold = gold + 1 WHERE user_id = $1`, mover)
		_, moverEvent = old.Exec(bg, `INSERT INTO events (type, data) VALUES ('debit.reversed', jsonb_build_object('user_id', $1::text))`, mover)
		stayerTopUp = unchecked(stayer, 7, "unchecked-stayer")
	})
	if _, err := partition.Reshard(bg, r); err != nil {
		t.Fatal(err)
	}
	if !paused {
		t.Fatal("the resharding never reached its pause")
	}
	for what, err := range map[string]error{"an unchecked top-up": moverTopUp, "an UPDATE of the wallet": moverUpdate,
		"an INSERT of an event": moverEvent} {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "GD003" {
			t.Errorf("%s of a moving user during the pause: %v; want refused with GD003", what, err)
		}
	}
	if stayerTopUp != nil {
		t.Errorf("an unchecked top-up of a user staying during the pause: %v; want accepted", stayerTopUp)
	}
	for u, want := range map[string]int64{mover: 100, stayer: 107} {
		var gold int64
		if err := proxy.QueryRow(bg, `SELECT gold FROM giftd_wallet($1)`, u).Scan(&gold); err != nil || gold != want {
			t.Errorf("wallet %s after the resharding: %d, %v; want %d", u, gold, err, want)
		}
	}
	after := append(append([]string{}, l.PartitionURLs...), newURLs...)
	for p, u := range after {
		var triggers, enabled int
		err := connect(t, u).QueryRow(bg, `SELECT count(*), count(*) FILTER (WHERE tgenabled <> 'D') FROM pg_trigger
			WHERE tgname = 'giftd_reshard_fence'`).Scan(&triggers, &enabled)
		if err != nil || triggers != 8 || enabled != 0 {
			t.Errorf("partition %d: %d fence triggers, %d enabled, %v; want 8, all disabled after the resharding", p, triggers, enabled, err)
		}
	}
	for p, ps := range stores(t, after) {
		if r, err := ps.Audit(bg); err != nil || !r.OK() {
			t.Errorf("audit of partition %d: %+v, %v", p, r, err)
		}
	}
}

// TestReshard_CopiesTheConfiguration sets a catalogue, an app's and a
// user's spending policies and a room's receiver on the old partitions,
// and debits two moving users before and after the resharding: on the new
// partition each debit is price-checked by the same catalogue and refused
// by the same policies (the user's own cap, the app's for the other user),
// every configuration table is the old partition's whole, and a change of
// policy there takes a history id of its own.
func TestReshard_CopiesTheConfiguration(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	requireLogical(t, l.ProxyURL)
	newURLs := newPartitions(t, l)
	bg := context.Background()
	s, err := ledger.Open(bg, l.ProxyURL, ledger.WithPartitions(2, partition.For),
		ledger.WithBatching(ledger.Batching{MaxBatch: 1}), ledger.WithEconomy(ledger.Economy{PriceCheck: true}),
		ledger.WithSafeguards(ledger.Safeguards{On: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	movers := usersOn(2, 4, 2) // on partition 0 of 2, moving to 2 of 4
	capped, uncapped := movers[0], movers[1]
	for _, u := range movers {
		if _, err := s.TopUp(bg, ledger.TopUp{UserID: u, Amount: 10_000, Key: "seed-" + u}); err != nil {
			t.Fatal(err)
		}
	}
	max := func(v int64) *int64 { return &v }
	for p, ps := range stores(t, l.PartitionURLs) {
		if _, err := ps.CreateGift(bg, ledger.CatalogueGift{Platform: "linkv", GiftID: "rose", Name: "Rose", Price: 10, Active: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := ps.PutPolicy(bg, ledger.PolicyKey{Scope: "app", Subject: "linkv/app"}, ledger.Policy{MaxDebit: max(100)}, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := ps.SetRoomReceiver(bg, "linkv", "room", "host"); err != nil {
			t.Fatal(err)
		}
		if _, err := ps.CreateEndpoint(bg, ledger.Endpoint{ID: "ep-1", URL: "https://merchant.example/hooks", EventTypes: []string{},
			Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, Enabled: true}); err != nil {
			t.Fatal(err)
		}
		if p == partition.For(capped, 2) {
			if _, err := ps.PutPolicy(bg, ledger.PolicyKey{Scope: "user", Subject: capped}, ledger.Policy{MaxDebit: max(50)}, "test"); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		user   string
		count  int64
		gold   int64
		status ledger.DebitStatus
		limit  int64
	}{
		{capped, 1, 10, ledger.Debited, 0},
		{capped, 1, 11, ledger.Refused, 0}, // not the catalogue's price
		{capped, 6, 60, ledger.PolicyRefused, 50},
		{uncapped, 6, 60, ledger.Debited, 0},
		{uncapped, 11, 110, ledger.PolicyRefused, 100},
	}
	debitAll := func(when string) {
		t.Helper()
		for k, c := range cases {
			id := fmt.Sprintf("%s-%d", when, k)
			res, err := s.Debit(bg, ledger.Debit{
				Key:    ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id},
				UserID: c.user, Gold: c.gold, Fingerprint: sha256.Sum256([]byte(id)),
				ExpiresAt: time.Now().Add(time.Hour), Details: map[string]string{"gift_id": "rose"},
				Gift: ledger.Gift{GiftID: "rose", RoomID: "room", Count: c.count},
			})
			if err != nil || res.Status != c.status || (c.status == ledger.PolicyRefused && res.Limit != c.limit) {
				t.Errorf("%s the resharding, %d rose(s) for %d gold by %s: %+v, %v; want %d (limit %d)",
					when, c.count, c.gold, c.user, res, err, c.status, c.limit)
			}
		}
	}
	debitAll("before")
	if _, err := partition.Reshard(bg, partition.Resharding{Layout: l, NewPartitionURLs: newURLs}); err != nil {
		t.Fatal(err)
	}
	debitAll("after")
	for i, u := range l.PartitionURLs {
		old, neu := connect(t, u), connect(t, newURLs[i])
		for _, table := range []string{"gift_catalogue", "gift_catalogue_history", "room_receivers", "room_receivers_history",
			"spend_policies", "spend_policy_history", "webhook_endpoints"} {
			q := `SELECT coalesce(array_agg(t::text ORDER BY t::text), '{}') FROM ` + table + ` AS t`
			var want, got []string
			if err := old.QueryRow(bg, q).Scan(&want); err != nil {
				t.Fatal(err)
			}
			if err := neu.QueryRow(bg, q).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if len(want) == 0 || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s of partition %d: %v; want partition %d's %v", table, i+2, got, i, want)
			}
		}
	}
	moved := stores(t, newURLs)[0]
	if _, err := moved.PutPolicy(bg, ledger.PolicyKey{Scope: "user", Subject: capped}, ledger.Policy{MaxDebit: max(40)}, "test"); err != nil {
		t.Errorf("a change of the moved user's policy on its new partition: %v", err)
	}
}
