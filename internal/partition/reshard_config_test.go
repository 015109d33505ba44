package partition_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// TestReshard_RefusesConfigurationChangesDuringThePause changes the
// configuration, as a replica routing over the old partitions would, inside
// the pause: once the subscriptions are dropped, and once the claims have
// moved and the economy is split, just before the proxy switches. A gift's
// new price, an app's policy, a user's policy put and another's cleared
// (through the proxy, on every partition), and a copy to a partition, old
// or new, are each refused as retryable (ledger.ErrReshardPaused, GD003),
// and every partition, old and new, still holds the same configuration;
// a webhook endpoint's delivery state goes on. After the switch the same
// changes land on all 4 partitions and the moved users' debits obey them.
// A change written as replication does (by hand) on the old partitions
// only is levelled by the command's step 4; a user's policy made to differ
// on one partition by hand is reported, by the drift check and by a run
// again, and a gift created by hand on the old partitions only after the
// switch is levelled by that run.
func TestReshard_RefusesConfigurationChangesDuringThePause(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	requireLogical(t, l.ProxyURL)
	newURLs := newPartitions(t, l)
	bg := context.Background()
	old := stores(t, l.PartitionURLs)
	replica, err := ledger.Open(bg, l.ProxyURL, ledger.WithPartitions(2, partition.For), ledger.WithPartitionStores(old),
		ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(replica.Close)
	if _, err := replica.CreateGift(bg, ledger.CatalogueGift{Platform: "linkv", GiftID: "rose", Name: "Rose", Price: 10, Active: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := replica.CreateEndpoint(bg, ledger.Endpoint{ID: "ep-1", URL: "https://merchant.example/hooks", EventTypes: []string{},
		Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	movers := []string{usersOn(2, 4, 1)[0], usersOn(3, 4, 1)[0]} // from partitions 0 and 1 of 2
	cleared, capped := ledger.PolicyKey{Scope: ledger.ScopeUser, Subject: movers[0]}, ledger.PolicyKey{Scope: ledger.ScopeUser, Subject: movers[1]}
	app := ledger.PolicyKey{Scope: ledger.ScopeApp, Subject: "linkv/app"}
	debits, err := ledger.Open(bg, l.ProxyURL, ledger.WithPartitions(2, partition.For),
		ledger.WithBatching(ledger.Batching{MaxBatch: 1}), ledger.WithEconomy(ledger.Economy{PriceCheck: true}),
		ledger.WithSafeguards(ledger.Safeguards{On: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(debits.Close)
	n := 0
	debit := func(user string, count, gold int64) ledger.DebitResult {
		t.Helper()
		n++
		id := fmt.Sprintf("d-%d", n)
		res, err := debits.Debit(bg, ledger.Debit{
			Key:    ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id},
			UserID: user, Gold: gold, Fingerprint: sha256.Sum256([]byte(id)),
			ExpiresAt: time.Now().Add(time.Hour), Details: map[string]string{"gift_id": "rose"},
			Gift: ledger.Gift{GiftID: "rose", RoomID: "room", Count: count},
		})
		if err != nil {
			t.Fatalf("debit %s of %s: %v", id, user, err)
		}
		return res
	}
	for _, u := range movers {
		if _, err := debits.TopUp(bg, ledger.TopUp{UserID: u, Amount: 10_000, Key: "seed-" + u}); err != nil {
			t.Fatal(err)
		}
		if res := debit(u, 1, 10); res.Status != ledger.Debited {
			t.Fatalf("a rose at 10 by %s before the resharding: %+v; want debited", u, res)
		}
	}
	v := func(x int64) *int64 { return &x }
	if _, err := replica.PutPolicy(bg, cleared, ledger.Policy{MaxDebit: v(1000)}, "test"); err != nil {
		t.Fatal(err)
	}

	all := append(append([]string{}, l.PartitionURLs...), newURLs...)
	var parts []*ledger.Store // all 4, opened once the new ones are migrated
	price, appMax, userMax := int64(20), int64(100), int64(30)
	// The changes a replica routing over 2 makes, and a copy on partition p.
	changes := map[string]func() error{
		"a gift's price": func() error {
			_, err := replica.UpdateGift(bg, "linkv", "rose", ledger.GiftChange{Price: &price})
			return err
		},
		"an app's policy": func() error {
			_, err := replica.PutPolicy(bg, app, ledger.Policy{MaxDebit: &appMax}, "test")
			return err
		},
		"a user's policy put": func() error {
			_, err := replica.PutPolicy(bg, capped, ledger.Policy{MaxDebit: &userMax}, "test")
			return err
		},
		"a user's policy cleared": func() error { return replica.ClearPolicy(bg, cleared, "test") },
	}
	copyTo := func(p int) error {
		_, err := connect(t, all[p]).Exec(bg, `SELECT giftd_copy_gift('linkv', 'rose', 99, 'Rose', 99, 0, true, now(), now())`)
		return err
	}
	paused := map[string]bool{}
	r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(step string) {
		// Once the copy is cut off; and once the claims have moved, the
		// partitions' fence no longer above their claim.
		if step != "sequences" && step != "switch" {
			return
		}
		paused[step] = true
		if parts == nil {
			parts = stores(t, all)
		}
		for what, change := range changes {
			if err := change(); !errors.Is(err, ledger.ErrReshardPaused) {
				t.Errorf("%s at %q: %v; want ErrReshardPaused", what, step, err)
			}
		}
		for _, p := range []int{1, 2} {
			var pgErr *pgconn.PgError
			if err := copyTo(p); !errors.As(err, &pgErr) || pgErr.Code != "GD003" {
				t.Errorf("a gift's copy to partition %d at %q: %v; want refused with GD003", p, step, err)
			}
		}
		// Delivery goes on: a redelivery changes the endpoint's state only.
		if _, err := old[0].Redeliver(bg, "ep-1", 0); err != nil {
			t.Errorf("a redelivery on partition 0 at %q: %v; want accepted", step, err)
		}
		if drift, err := ledger.ConfigDriftOf(bg, parts, nil); err != nil || len(drift) != 0 {
			t.Errorf("the 4 partitions' configuration at %q: %s, %v; want alike", step, ledger.DriftText(drift), err)
		}
		for p, ps := range parts {
			if _, err := ps.GetPolicy(bg, capped); !errors.Is(err, ledger.ErrNotFound) {
				t.Errorf("%s's policy on partition %d at %q: %v; want none", capped.Subject, p, step, err)
			}
			if pol, err := ps.GetPolicy(bg, cleared); err != nil || pol.Policy.MaxDebit == nil || *pol.Policy.MaxDebit != 1000 {
				t.Errorf("%s's policy on partition %d at %q: %+v, %v; want max_debit 1000", cleared.Subject, p, step, pol, err)
			}
		}
		if step == "switch" {
			// Written as replication does, on the old partitions only: the
			// command's step 4 must level it.
			for _, u := range l.PartitionURLs {
				err := pgx.BeginFunc(bg, connect(t, u), func(tx pgx.Tx) error {
					_, err := tx.Exec(bg, `SET LOCAL session_replication_role = replica`)
					if err == nil {
						_, err = tx.Exec(bg, `UPDATE gift_catalogue SET price = 30, version = version + 1 WHERE gift_id = 'rose'`)
					}
					return err
				})
				if err != nil {
					t.Errorf("a price written as replication does at %q: %v", step, err)
				}
			}
		}
	})
	rep, err := partition.Reshard(bg, r)
	if err != nil {
		t.Fatal(err)
	}
	if !paused["sequences"] || !paused["switch"] {
		t.Fatalf("the resharding never reached its pause: %v", paused)
	}
	t.Logf("configuration drift after the switch: %s; copied %+v", ledger.DriftText(rep.ConfigDrift), rep.ConfigSync)
	want := []ledger.Drift{{Kind: ledger.ConfigGifts, Partition: 2, Reason: "differs"}, {Kind: ledger.ConfigGifts, Partition: 3, Reason: "differs"}}
	if fmt.Sprint(rep.ConfigDrift) != fmt.Sprint(want) || len(rep.ConfigSync.Failed) != 0 || rep.ConfigSync.Keys == 0 || len(rep.PolicyDrift) != 0 {
		t.Errorf("the report: drift %v, copy %+v, policies %v; want the gifts of partitions 2 and 3 copied, and nothing else", rep.ConfigDrift, rep.ConfigSync, rep.PolicyDrift)
	}
	for _, u := range movers {
		if res := debit(u, 1, 30); res.Status != ledger.Debited {
			t.Errorf("a rose at 30 by %s, moved to partition %d: %+v; want debited (the price step 4 levelled)", u, partition.For(u, 4), res)
		}
	}
	for p, u := range all {
		var triggers, enabled int
		err := connect(t, u).QueryRow(bg, `SELECT count(*), count(*) FILTER (WHERE tgenabled <> 'D') FROM pg_trigger
			WHERE tgname = 'giftd_reshard_config_fence'`).Scan(&triggers, &enabled)
		if err != nil || triggers != 7 || enabled != 0 {
			t.Errorf("partition %d: %d configuration fence triggers, %d enabled, %v; want 7, all disabled after the resharding", p, triggers, enabled, err)
		}
	}

	// The same changes again, through a replica using the 4: on all 4.
	after, err := ledger.Open(bg, l.ProxyURL, ledger.WithPartitions(4, partition.For), ledger.WithPartitionStores(parts),
		ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(after.Close)
	replica = after
	for what, change := range changes {
		if err := change(); err != nil {
			t.Errorf("%s again after the switch: %v", what, err)
		}
	}
	if drift, err := ledger.ConfigDriftOf(bg, parts, nil); err != nil || len(drift) != 0 {
		t.Errorf("the 4 partitions' configuration after the changes again: %s, %v; want alike", ledger.DriftText(drift), err)
	}
	for p, ps := range parts {
		if pol, err := ps.GetPolicy(bg, capped); err != nil || pol.Policy.MaxDebit == nil || *pol.Policy.MaxDebit != userMax {
			t.Errorf("%s's policy on partition %d: %+v, %v; want max_debit %d", capped.Subject, p, pol, err, userMax)
		}
		if _, err := ps.GetPolicy(bg, cleared); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("%s's policy on partition %d: %v; want cleared", cleared.Subject, p, err)
		}
	}
	for _, c := range []struct {
		user        string
		count, gold int64
		want        ledger.DebitStatus
	}{
		{movers[0], 1, 20, ledger.Debited},
		{movers[0], 1, 30, ledger.Refused},        // the price before
		{movers[0], 6, 120, ledger.PolicyRefused}, // the app's policy
		{movers[1], 2, 40, ledger.PolicyRefused},  // the user's own
	} {
		if res := debit(c.user, c.count, c.gold); res.Status != c.want {
			t.Errorf("%d rose(s) for %d by %s, moved to partition %d: %+v; want status %d", c.count, c.gold, c.user, partition.For(c.user, 4), res, c.want)
		}
	}

	// A user's policy that differs on one partition (a write that reached
	// some partitions only) is reported; a gift created on the old
	// partitions only after the switch (by hand, or by a giftd that does
	// not reread the proxy's count) is levelled by a run again.
	if _, err := connect(t, all[3]).Exec(bg, `UPDATE spend_policies SET max_debit = 7 WHERE scope = 'user' AND subject = $1`, capped.Subject); err != nil {
		t.Fatal(err)
	}
	policyDrift := []ledger.Drift{{Kind: ledger.ConfigUserPolicies, Partition: 3, Reason: "differs"}}
	if drift, err := ledger.ConfigDriftOf(bg, parts, nil); err != nil || fmt.Sprint(drift) != fmt.Sprint(policyDrift) {
		t.Errorf("the drift check with a user's policy changed on partition 3: %s, %v; want %v", ledger.DriftText(drift), err, policyDrift)
	}
	users, total, err := ledger.UserPolicyDivergences(bg, parts, 10)
	if want := []ledger.PolicyDivergence{{Subject: capped.Subject, Differs: []int{3}}}; err != nil || total != 1 || fmt.Sprint(users) != fmt.Sprint(want) {
		t.Errorf("the users whose policies differ: %v (%d), %v; want %v", users, total, err, want)
	}
	for _, ps := range parts[:2] {
		if _, err := ps.CreateGift(bg, ledger.CatalogueGift{Platform: "linkv", GiftID: "tulip", Name: "Tulip", Price: 5, Active: true}); err != nil {
			t.Fatal(err)
		}
	}
	rep, err = partition.Reshard(bg, partition.Resharding{Layout: l, NewPartitionURLs: newURLs})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rep.ConfigDrift) != fmt.Sprint(want) || rep.ConfigSync.Keys != 4 || len(rep.ConfigSync.Failed) != 0 ||
		fmt.Sprint(rep.PolicyDrift) != fmt.Sprint(policyDrift) {
		t.Errorf("the run again: drift %s, copy %+v, policies %s; want the gifts of partitions 2 and 3, every key (2 gifts, 1 app policy, 1 endpoint) copied, "+
			"and the users' policies of partition 3", ledger.DriftText(rep.ConfigDrift), rep.ConfigSync, ledger.DriftText(rep.PolicyDrift))
	}
	if drift, err := ledger.ConfigDriftOf(bg, parts, nil, ledger.CopiedConfigKinds()...); err != nil || len(drift) != 0 {
		t.Errorf("the 4 partitions' configuration after the run again: %s, %v; want partition 0's everywhere", ledger.DriftText(drift), err)
	}
}
