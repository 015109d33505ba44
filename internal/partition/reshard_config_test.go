package partition_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// TestReshard_LevelsAConfigurationChangedDuringThePause changes the
// configuration as a replica routing over the old partitions would, once
// the pause has dropped the subscriptions: a gift's new price and a new
// app policy, made on partition 0 and copied to partition 1 only (the new
// partitions are no longer copies, and the proxy still routes over 2). At
// its end giftd reshard must have copied them to the 2 new partitions: two
// moved users' debits there meet the new price and the new policy, every
// partition's configuration is partition 0's, and the report says what
// drifted. A run again, the switch done, levels a change made on the old
// partitions only after it.
func TestReshard_LevelsAConfigurationChangedDuringThePause(t *testing.T) {
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
	movers := []string{usersOn(2, 4, 1)[0], usersOn(3, 4, 1)[0]} // from partitions 0 and 1 of 2
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
	price, max := int64(20), int64(100)
	r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(step string) {
		if step != "sequences" {
			return
		}
		if _, err := replica.UpdateGift(bg, "linkv", "rose", ledger.GiftChange{Price: &price}); err != nil {
			t.Errorf("the price changed during the pause: %v", err)
		}
		if _, err := replica.PutPolicy(bg, ledger.PolicyKey{Scope: ledger.ScopeApp, Subject: "linkv/app"},
			ledger.Policy{MaxDebit: &max}, "test"); err != nil {
			t.Errorf("an app policy set during the pause: %v", err)
		}
	})
	rep, err := partition.Reshard(bg, r)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("configuration drift after the switch: %s; copied %+v", ledger.DriftText(rep.ConfigDrift), rep.ConfigSync)
	wantDrift := map[ledger.Drift]bool{}
	for _, kind := range []string{ledger.ConfigGifts, ledger.ConfigAppPolicies} {
		for p := 2; p < 4; p++ {
			wantDrift[ledger.Drift{Kind: kind, Partition: p, Reason: "differs"}] = true
		}
	}
	for _, d := range rep.ConfigDrift {
		if !wantDrift[d] {
			t.Errorf("drift reported %+v; want only the gifts and app policies of partitions 2 and 3", d)
		}
		delete(wantDrift, d)
	}
	if len(wantDrift) != 0 || len(rep.ConfigSync.Failed) != 0 || rep.ConfigSync.Keys == 0 {
		t.Errorf("the report: drift %v (missing %v), copy %+v; want every drifted partition named and copied", rep.ConfigDrift, wantDrift, rep.ConfigSync)
	}

	for _, u := range movers {
		for _, c := range []struct {
			count, gold int64
			want        ledger.DebitStatus
		}{
			{1, 20, ledger.Debited},
			{1, 10, ledger.Refused},        // the old price
			{6, 120, ledger.PolicyRefused}, // the app's policy set during the pause
		} {
			if res := debit(u, c.count, c.gold); res.Status != c.want {
				t.Errorf("%d rose(s) for %d by %s, moved to partition %d: %+v; want status %d", c.count, c.gold, u, partition.For(u, 4), res, c.want)
			}
		}
	}
	all := stores(t, append(append([]string{}, l.PartitionURLs...), newURLs...))
	drift, err := ledger.ConfigDriftOf(bg, all, nil)
	if err != nil || len(drift) != 0 {
		t.Errorf("the 4 partitions' configuration after the resharding: %s, %v; want partition 0's everywhere", ledger.DriftText(drift), err)
	}

	// A run again, the switch done, levels too: a gift created on the old
	// partitions only (by hand, or by a giftd that does not reread the
	// proxy's count) reaches the new ones.
	for _, ps := range all[:2] {
		if _, err := ps.CreateGift(bg, ledger.CatalogueGift{Platform: "linkv", GiftID: "tulip", Name: "Tulip", Price: 5, Active: true}); err != nil {
			t.Fatal(err)
		}
	}
	rep, err = partition.Reshard(bg, partition.Resharding{Layout: l, NewPartitionURLs: newURLs})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.ConfigDrift) != 2 || rep.ConfigSync.Keys != 3 || len(rep.ConfigSync.Failed) != 0 {
		t.Errorf("the run again: drift %s, copy %+v; want the gifts of partitions 2 and 3, every key (2 gifts, 1 policy) copied", ledger.DriftText(rep.ConfigDrift), rep.ConfigSync)
	}
	if drift, err := ledger.ConfigDriftOf(bg, all, nil); err != nil || len(drift) != 0 {
		t.Errorf("the 4 partitions' configuration after the run again: %s, %v; want partition 0's everywhere", ledger.DriftText(drift), err)
	}
}
