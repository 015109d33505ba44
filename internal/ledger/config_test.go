package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/credits"
	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// openConfigured opens a partitioned store on a fresh proxy and n
// partitions with direct stores of each (ledger.WithPartitionStores), the
// price check on; it returns them too.
func openConfigured(t *testing.T, n int, opts ...ledger.Option) (*ledger.Store, []*ledger.Store, partition.Layout) {
	t.Helper()
	l := pgtest.Partitioned(t, n)
	var parts []*ledger.Store
	for _, u := range l.PartitionURLs {
		parts = append(parts, partitionStore(t, u))
	}
	s, err := ledger.Open(context.Background(), l.ProxyURL, append([]ledger.Option{ledger.WithPartitions(n, partition.For),
		ledger.WithPartitionStores(parts), ledger.WithEconomy(ledger.Economy{Earnings: true, PriceCheck: true})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, parts, l
}

// giftsOf lists every partition's catalogue.
func giftsOf(t *testing.T, parts []*ledger.Store) [][]ledger.CatalogueGift {
	t.Helper()
	out := make([][]ledger.CatalogueGift, len(parts))
	for i, p := range parts {
		g, err := p.Gifts(context.Background(), "")
		if err != nil {
			t.Fatalf("partition %d: %v", i, err)
		}
		out[i] = g
	}
	return out
}

func wantDrift(t *testing.T, s *ledger.Store, want []ledger.Drift) {
	t.Helper()
	got, err := s.ConfigDrift(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("drift: %+v, want %+v", got, want)
	}
}

// TestConfig_PartlyAppliedChangeConvergesOnRetryAndDebitsPriceByOneCatalogue
// changes the catalogue, a room's receiver and an app's policy while
// partition 1 is down: each change lands on partition 0 only and says so,
// debits on partition 1 meanwhile price by its older catalogue, drift is
// reported, and the same request again (or a sync) makes every partition
// agree, version for version; a stale copy never overwrites a newer one.
func TestConfig_PartlyAppliedChangeConvergesOnRetryAndDebitsPriceByOneCatalogue(t *testing.T) {
	s, parts, l := openConfigured(t, 2)
	ctx := context.Background()
	users := usersOn(2, 1)
	for _, us := range users {
		topUp(t, s, us[0], 10_000)
	}
	// priced debits a gift of count 2 at unit price from the user of each
	// partition and returns each one's status.
	n := 0
	priced := func(unit int64) [2]ledger.DebitStatus {
		t.Helper()
		var out [2]ledger.DebitStatus
		for p, us := range users {
			n++
			d := gift(fmt.Sprintf("d-%d", n), us[0], 2*unit, "receiver-x", "rose", 2)
			d.Gift.UnitPrice = unit
			r, err := s.Debit(ctx, d)
			if err != nil {
				// The proxy's connection to a partition just restarted
				// fails once; a retry with the same key is exact.
				r, err = s.Debit(ctx, d)
			}
			if err != nil {
				t.Fatalf("debit on partition %d: %v", p, err)
			}
			out[p] = r.Status
		}
		return out
	}

	created := addGift(t, s, "linkv", "rose", 10, 5000)
	if created.Version != 1 {
		t.Errorf("created at version %d, want 1", created.Version)
	}
	all := giftsOf(t, parts)
	if !reflect.DeepEqual(all[0], all[1]) || len(all[0]) != 1 {
		t.Fatalf("catalogues after a create: partition 0 %+v, partition 1 %+v", all[0], all[1])
	}
	if got, want := priced(10), [2]ledger.DebitStatus{ledger.Debited, ledger.Debited}; got != want {
		t.Errorf("at the catalogue's price: %v, want %v", got, want)
	}
	if got, want := priced(11), [2]ledger.DebitStatus{ledger.Refused, ledger.Refused}; got != want {
		t.Errorf("off the catalogue's price: %v, want %v", got, want)
	}
	if _, err := s.SetRoomReceiver(ctx, "polyv", "ch-1", "host-1"); err != nil {
		t.Fatal(err)
	}
	max := int64(500)
	app := ledger.PolicyKey{Scope: ledger.ScopeApp, Subject: "linkv/app"}
	if _, err := s.PutPolicy(ctx, app, ledger.Policy{MaxDebit: &max}, "test"); err != nil {
		t.Fatal(err)
	}
	wantDrift(t, s, nil)

	// Partition 1 down: every change reaches partition 0 only.
	pgtest.StopPartition(t, l.PartitionURLs[1])
	price := int64(12)
	change := ledger.GiftChange{Price: &price}
	if _, err := s.UpdateGift(ctx, "linkv", "rose", change); !errors.Is(err, ledger.ErrPartlyApplied) {
		t.Fatalf("UpdateGift with partition 1 down: %v, want ErrPartlyApplied", err)
	}
	if _, err := s.SetRoomReceiver(ctx, "polyv", "ch-1", "host-2"); !errors.Is(err, ledger.ErrPartlyApplied) {
		t.Fatalf("SetRoomReceiver with partition 1 down: %v, want ErrPartlyApplied", err)
	}
	if err := s.ClearPolicy(ctx, app, "test"); !errors.Is(err, ledger.ErrPartlyApplied) {
		t.Fatalf("ClearPolicy with partition 1 down: %v, want ErrPartlyApplied", err)
	}
	var unreachable []ledger.Drift
	for _, k := range ledger.ConfigKinds() {
		unreachable = append(unreachable, ledger.Drift{Kind: k, Partition: 1, Reason: "unreachable"})
	}
	wantDrift(t, s, unreachable)
	pgtest.StartPartition(t, l.PartitionURLs[1])
	wantDrift(t, s, []ledger.Drift{{Kind: ledger.ConfigGifts, Partition: 1, Reason: "differs"},
		{Kind: ledger.ConfigRooms, Partition: 1, Reason: "differs"}, {Kind: ledger.ConfigAppPolicies, Partition: 1, Reason: "differs"}})
	// Meanwhile each partition prices by its own copy: the new price on 0,
	// the old one on 1.
	if got, want := priced(12), [2]ledger.DebitStatus{ledger.Debited, ledger.Refused}; got != want {
		t.Errorf("at the new price while partition 1 missed it: %v, want %v", got, want)
	}

	// The same requests again: nothing changes on partition 0, partition 1
	// catches up.
	again, err := s.UpdateGift(ctx, "linkv", "rose", change)
	if err != nil {
		t.Fatalf("UpdateGift again: %v", err)
	}
	if again.Version != 2 {
		t.Errorf("the retried change is version %d, want 2 (no new version on partition 0)", again.Version)
	}
	all = giftsOf(t, parts)
	if !reflect.DeepEqual(all[0], all[1]) {
		t.Errorf("catalogues after the retry: partition 0 %+v, partition 1 %+v", all[0], all[1])
	}
	// Clearing again finds nothing to clear on partition 0 (404) and still
	// clears partition 1's copy.
	if err := s.ClearPolicy(ctx, app, "test"); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("ClearPolicy again: %v, want ErrNotFound", err)
	}
	if _, err := parts[1].GetPolicy(ctx, app); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("partition 1's app policy after the clear was retried: %v, want cleared", err)
	}
	// The room by a sync instead.
	rep, err := s.SyncConfig(ctx)
	if err != nil || len(rep.Failed) > 0 {
		t.Fatalf("SyncConfig: %+v, %v", rep, err)
	}
	wantDrift(t, s, nil)
	if got, want := priced(12), [2]ledger.DebitStatus{ledger.Debited, ledger.Debited}; got != want {
		t.Errorf("at the new price once converged: %v, want %v", got, want)
	}
	for i, p := range parts {
		rooms, err := p.RoomReceivers(ctx, "polyv")
		if err != nil || len(rooms) != 1 || rooms[0].ReceiverID != "host-2" {
			t.Errorf("partition %d's rooms: %+v, %v; want ch-1 to host-2", i, rooms, err)
		}
		if _, err := p.GetPolicy(ctx, app); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("partition %d's app policy: %v, want cleared", i, err)
		}
		hist, err := p.GiftHistory(ctx, "linkv", "rose")
		if err != nil || len(hist) != 2 || hist[0].Price != 12 || hist[1].Price != 10 {
			t.Errorf("partition %d's history of the gift: %+v, %v; want versions 2 (12) and 1 (10)", i, hist, err)
		}
	}

	// A stale copy (an older change of the room arriving late) is skipped.
	var applied bool
	if err := parts[1].Pool().QueryRow(ctx, `SELECT giftd_copy_room('polyv', 'ch-1', 'host-1', 1)`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied {
		t.Error("a stale copy of a room was applied over a newer one")
	}
	var staleGift bool
	if err := parts[1].Pool().QueryRow(ctx, `SELECT giftd_copy_gift('linkv', 'rose', 1, 'old', 10, 5000, true, now(), now())`).Scan(&staleGift); err != nil {
		t.Fatal(err)
	}
	if staleGift {
		t.Error("a stale copy of a gift was applied over a newer version")
	}
	wantDrift(t, s, nil)

	// A creation retried after it reached partition 0 only is made, not 409.
	pgtest.StopPartition(t, l.PartitionURLs[1])
	lily := ledger.CatalogueGift{Platform: "linkv", GiftID: "lily", Name: "lily", Price: 5, ShareBP: 100, Active: true}
	if _, err := s.CreateGift(ctx, lily); !errors.Is(err, ledger.ErrPartlyApplied) {
		t.Fatalf("CreateGift with partition 1 down: %v, want ErrPartlyApplied", err)
	}
	pgtest.StartPartition(t, l.PartitionURLs[1])
	if g, err := s.CreateGift(ctx, lily); err != nil || g.Version != 1 {
		t.Errorf("CreateGift again: %+v, %v; want version 1", g, err)
	}
	if _, err := s.CreateGift(ctx, ledger.CatalogueGift{Platform: "linkv", GiftID: "lily", Name: "other", Price: 6, Active: true}); !errors.Is(err, ledger.ErrGiftExists) {
		t.Errorf("CreateGift of another gift with the same id: %v, want ErrGiftExists", err)
	}
	wantDrift(t, s, nil)
	auditPartitions(t, l)
}

// TestEventsPartitioned_OneCursorPositionPerPartitionAndPrunePerPartition
// reads the partitioned feed in small pages: every event of both
// partitions once, each partition's in position order; with a partition
// down the other's events still come and the cursor keeps the down one's
// place. Pruning then deletes each partition's expired debit records and
// the events its own webhook cursors have passed, and leaves each
// partition's audit clean.
func TestEventsPartitioned_OneCursorPositionPerPartitionAndPrunePerPartition(t *testing.T) {
	s, parts, l := openConfigured(t, 2)
	ctx := context.Background()
	users := usersOn(2, 5)
	addGift(t, s, "linkv", "rose", 1, 0)
	for _, us := range users {
		for _, u := range us {
			topUp(t, s, u, 100)
			for i := range 2 {
				d := gift(fmt.Sprintf("%s-%d", u, i), u, 1, "", "rose", 1)
				d.ExpiresAt = time.Now().Add(time.Minute)
				if r, err := s.Debit(ctx, d); err != nil || r.Status != ledger.Debited {
					t.Fatalf("debit: %+v %v", r, err)
				}
			}
		}
	}
	// 5 users × (1 top-up + 2 debits) on each partition.
	const each = 15
	seen := map[string]bool{}
	last := [2]int64{}
	var cursor []int64
	for deadline := time.Now().Add(time.Minute); len(seen) < 2*each; {
		page, err := s.EventsPartitioned(ctx, cursor, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) > 4 || len(page.Unavailable) > 0 {
			t.Fatalf("page of %d events, unavailable %v", len(page.Events), page.Unavailable)
		}
		for _, e := range page.Events {
			p := *e.Partition
			if seen[e.ID] || e.Position <= last[p] {
				t.Fatalf("event %s of partition %d at position %d after %d (seen before: %t)", e.ID, p, e.Position, last[p], seen[e.ID])
			}
			seen[e.ID], last[p] = true, e.Position
		}
		cursor = page.Next
		if time.Now().After(deadline) {
			t.Fatalf("%d events read, want %d", len(seen), 2*each)
		}
	}
	if cursor[0] != last[0] || cursor[1] != last[1] {
		t.Errorf("cursor %v, want the last positions read %v", cursor, last)
	}

	// Partition 1 down: partition 0's new events come, 1 keeps its place.
	ep, err := s.CreateEndpoint(ctx, ledger.Endpoint{ID: "ep_1", URL: "https://example.com/hook", EventTypes: []string{},
		Enabled: true, Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
	if err != nil {
		t.Fatal(err)
	}
	pgtest.StopPartition(t, l.PartitionURLs[1])
	// A user of partition 0 whose top-up key is claimed there too
	// (docs/scale-out.md#keys-across-partitions).
	late := users[0][0] + "-late"
	for i := 0; partition.For(late, 2) != 0 || partition.For("seed-"+late, 2) != 0; i++ {
		late = fmt.Sprintf("%s-late%d", users[0][0], i)
	}
	topUp(t, s, late, 1)
	for deadline := time.Now().Add(time.Minute); ; {
		page, err := s.EventsPartitioned(ctx, cursor, 4)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(page.Unavailable, []int{1}) || page.Next[1] != cursor[1] {
			t.Fatalf("with partition 1 down: unavailable %v, next %v; want [1] and partition 1 at %d", page.Unavailable, page.Next, cursor[1])
		}
		if len(page.Events) > 0 || time.Now().After(deadline) {
			if len(page.Events) != 1 || *page.Events[0].Partition != 0 {
				t.Fatalf("with partition 1 down: %+v; want partition 0's new top-up", page.Events)
			}
			break
		}
	}
	pgtest.StartPartition(t, l.PartitionURLs[1])

	// The credit consumer passes every event (a trigger of partition
	// migration 4 keeps those it has not).
	consumer := credits.New(parts, credits.DefaultConfig("test"), prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	for p, ps := range parts {
		for deadline := time.Now().Add(time.Minute); ; {
			// An error is a connection the restarted partition ended: again.
			_, err := consumer.Step(ctx, p)
			var behind bool
			if err == nil {
				err = ps.Pool().QueryRow(ctx, `SELECT (SELECT position FROM credit_cursor) < (SELECT max(position) FROM events)`).Scan(&behind)
			}
			if err == nil && !behind {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("partition %d: the credit cursor stays behind (%v)", p, err)
			}
		}
	}

	// Prune: every record has expired by then; every event before the
	// endpoint's cursor on its partition goes, the ones after stay.
	later := time.Now().Add(time.Hour)
	var n int64
	for {
		// The first call after the restart may meet a connection the
		// partition ended.
		if n, err = s.PruneRequests(ctx, later, 7); err == nil {
			break
		}
	}
	if n != 2*each-10 {
		t.Errorf("pruned %d debit records, want %d", n, 2*each-10)
	}
	if _, err := s.PruneEvents(ctx, later, 7); err != nil {
		t.Fatal(err)
	}
	for i, p := range parts {
		var records, events, kept int64
		if err := p.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM debit_requests), (SELECT count(*) FROM events),
			(SELECT count(*) FROM events WHERE position <= $1)`, ep.Partitions[i].Cursor).Scan(&records, &events, &kept); err != nil {
			t.Fatal(err)
		}
		if records != 0 || kept != 0 {
			t.Errorf("partition %d after pruning: %d debit records, %d events behind the endpoint's cursor %d; want none",
				i, records, kept, ep.Partitions[i].Cursor)
		}
		if i == 0 && events != 1 {
			t.Errorf("partition 0 after pruning: %d events, want the late top-up's, which the endpoint has not passed", events)
		}
	}
	auditPartitions(t, l)
}

// TestRemindersPartitioned_MergedAcrossPartitionsAndAnAppPolicyEverywhere
// sets an app's policy through the partitioned store, which debits on
// both partitions then enforce, and lists the daily reminders of senders
// of both partitions: merged oldest first, a user's from its partition.
func TestRemindersPartitioned_MergedAcrossPartitionsAndAnAppPolicyEverywhere(t *testing.T) {
	s, _, _ := openConfigured(t, 2, ledger.WithEconomy(ledger.Economy{Earnings: true}),
		ledger.WithSafeguards(ledger.Safeguards{On: true, RemindDay: 5, TimeZone: "UTC"}))
	ctx := context.Background()
	max := int64(50)
	if _, err := s.PutPolicy(ctx, ledger.PolicyKey{Scope: ledger.ScopeApp, Subject: "linkv/app"}, ledger.Policy{MaxDebit: &max}, "test"); err != nil {
		t.Fatal(err)
	}
	users := usersOn(2, 2)
	var order []string
	for i := range 2 {
		for p := range 2 {
			u := users[p][i]
			topUp(t, s, u, 1000)
			if r, err := s.Debit(ctx, debit(u+"-big", u, 60)); err != nil || r.Status != ledger.PolicyRefused {
				t.Errorf("a debit of 60 by %s (partition %d) over the app's max of 50: %+v %v; want refused", u, p, r, err)
			}
			if r, err := s.Debit(ctx, debit(u+"-10", u, 10)); err != nil || r.Status != ledger.Debited || !r.Reminded {
				t.Fatalf("a debit of 10 by %s: %+v %v; want debited and reminded", u, r, err)
			}
			order = append(order, u)
		}
	}
	all, err := s.Reminders(ctx, "", time.Time{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range all {
		got = append(got, r.UserID)
	}
	if !reflect.DeepEqual(got, order) {
		t.Errorf("every reminder: %v, want %v (oldest first, both partitions)", got, order)
	}
	three, err := s.Reminders(ctx, "", time.Time{}, 3)
	if err != nil || len(three) != 3 || three[2].UserID != order[2] {
		t.Errorf("the first 3 reminders: %+v, %v; want %v", three, err, order[:3])
	}
	one, err := s.Reminders(ctx, users[1][1], time.Time{}, 10)
	if err != nil || len(one) != 1 || one[0].UserID != users[1][1] {
		t.Errorf("%s's reminders: %+v, %v", users[1][1], one, err)
	}
}
