package ledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// configRows counts each partition's configuration rows: gifts, rooms'
// receivers, app policies, webhook endpoints.
func configRows(t *testing.T, parts []*ledger.Store) [][4]int {
	t.Helper()
	out := make([][4]int, len(parts))
	for i, p := range parts {
		err := p.Pool().QueryRow(context.Background(), `SELECT (SELECT count(*) FROM gift_catalogue),
			(SELECT count(*) FROM room_receivers), (SELECT count(*) FROM spend_policies WHERE scope = 'app'),
			(SELECT count(*) FROM webhook_endpoints)`).Scan(&out[i][0], &out[i][1], &out[i][2], &out[i][3])
		if err != nil {
			t.Fatalf("partition %d: %v", i, err)
		}
	}
	return out
}

// TestConfig_AStoreThatHasNotRecountedIsRefusedOnceTheProxyGrows: a store
// opened over 1 partition, given both partitions' stores, whose proxy has
// since come to route over 2 (giftd reshard switched it; the store has
// neither debited nor probed readiness since), refuses every configuration
// change and a sync with ErrPartitionsNotConnected, nothing written on
// either partition: it reads the proxy's count before changing anything,
// instead of copying to the one partition it knew.
func TestConfig_AStoreThatHasNotRecountedIsRefusedOnceTheProxyGrows(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	parts := []*ledger.Store{partitionStore(t, l.PartitionURLs[0]), partitionStore(t, l.PartitionURLs[1])}
	s, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(1, partition.For), ledger.WithPartitionStores(parts),
		ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	max := int64(500)
	for _, c := range []struct {
		name   string
		change func() error
	}{
		{"create a gift", func() error {
			_, err := s.CreateGift(ctx, ledger.CatalogueGift{Platform: "linkv", GiftID: "rose", Name: "Rose", Price: 10, Active: true})
			return err
		}},
		{"set a room's receiver", func() error { _, err := s.SetRoomReceiver(ctx, "polyv", "ch-1", "host-1"); return err }},
		{"put an app's policy", func() error {
			_, err := s.PutPolicy(ctx, ledger.PolicyKey{Scope: ledger.ScopeApp, Subject: "linkv/app"}, ledger.Policy{MaxDebit: &max}, "test")
			return err
		}},
		{"create a webhook endpoint", func() error {
			_, err := s.CreateEndpoint(ctx, ledger.Endpoint{ID: "ep_1", URL: "https://example.com/hook", EventTypes: []string{},
				Enabled: true, Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
			return err
		}},
		{"sync", func() error { _, err := s.SyncConfig(ctx); return err }},
	} {
		if err := c.change(); !errors.Is(err, ledger.ErrPartitionsNotConnected) {
			t.Errorf("%s through a store routing over 1 of the proxy's 2 partitions: %v; want ErrPartitionsNotConnected", c.name, err)
		}
	}
	if got := configRows(t, parts); got[0] != [4]int{} || got[1] != [4]int{} {
		t.Errorf("after the refusals the partitions hold %v configuration rows (gifts, rooms, app policies, endpoints); want none", got)
	}
	if s.Partitions() != 2 {
		t.Errorf("the store routes over %d partitions after the refusals; want 2 (it read the proxy's count)", s.Partitions())
	}
}

// TestConfig_ASwitchDuringAChangeIsSeenBeforeItsCopies: the proxy comes to
// route over 2 partitions while a store routing over 1 makes a change on
// partition 0 (held there, past the store's first read of the count, by a
// trigger waiting for the test's lock). giftd reshard's own copy of the
// configuration may have read partition 0 before that change committed, so
// the store must not copy it to partition 0 only and answer success: it
// reads the count again before copying and says the change is partly
// applied (not connected to partition 1). The same request again, once the
// store uses both partitions, puts the gift on both.
func TestConfig_ASwitchDuringAChangeIsSeenBeforeItsCopies(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	parts := []*ledger.Store{partitionStore(t, l.PartitionURLs[0]), partitionStore(t, l.PartitionURLs[1])}
	proxy, home := connect(t, l.ProxyURL), connect(t, l.PartitionURLs[0])
	for _, q := range []string{
		// The proxy's count as the test says, 1 until the switch.
		`CREATE TABLE test_count (n integer NOT NULL)`, `INSERT INTO test_count VALUES (1)`,
		`CREATE OR REPLACE FUNCTION giftd_partition_count() RETURNS integer LANGUAGE sql STABLE RETURN (SELECT n FROM test_count)`,
	} {
		if _, err := proxy.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{
		`CREATE FUNCTION test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NEW; END $$`,
		`CREATE TRIGGER test_hold BEFORE INSERT ON gift_catalogue FOR EACH ROW EXECUTE FUNCTION test_hold()`,
		`SELECT pg_advisory_lock(4242)`,
	} {
		if _, err := home.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	s, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(1, partition.For), ledger.WithPartitionStores(parts),
		ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	rose := ledger.CatalogueGift{Platform: "linkv", GiftID: "rose", Name: "Rose", Price: 10, Active: true}
	done := make(chan error, 1)
	go func() {
		_, err := s.CreateGift(ctx, rose)
		done <- err
	}()
	for deadline := time.Now().Add(time.Minute); ; {
		var held bool
		if err := home.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted)`).
			Scan(&held); err != nil {
			t.Fatal(err)
		}
		if held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gift's insert on partition 0 never came to wait for the test's lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := proxy.Exec(ctx, `UPDATE test_count SET n = 2`); err != nil { // the switch
		t.Fatal(err)
	}
	if _, err := home.Exec(ctx, `SELECT pg_advisory_unlock(4242)`); err != nil {
		t.Fatal(err)
	}
	err = <-done
	if !errors.Is(err, ledger.ErrPartlyApplied) || !errors.Is(err, ledger.ErrPartitionsNotConnected) {
		t.Errorf("a gift created across the switch: %v; want ErrPartlyApplied, not connected", err)
	}
	if g := giftsOf(t, parts); len(g[0]) != 1 || len(g[1]) != 0 {
		t.Errorf("after it the partitions hold %v; want the gift on partition 0 only", g)
	}
	if n, err := s.GrowPartitionStores(ctx); n != 2 || err != nil {
		t.Fatalf("grow onto partition 1: %d in use, %v; want 2", n, err)
	}
	if _, err := s.CreateGift(ctx, rose); err != nil {
		t.Fatalf("the same gift again: %v", err)
	}
	if g := giftsOf(t, parts); len(g[0]) != 1 || len(g[1]) != 1 {
		t.Errorf("after the retry the partitions hold %v; want the gift on both", g)
	}
}
