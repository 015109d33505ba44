package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// TestAudit_PartitionedFailsOnADebitKeyOfTwoPartitions: a request id
// debited for a user of each partition (debits claim no key: each
// partition knows its own) makes giftd audit partitioned fail, naming the
// key and its partitions; before it, the keys are reported OK.
func TestAudit_PartitionedFailsOnADebitKeyOfTwoPartitions(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	ctx := context.Background()
	store, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(2, partition.For), ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var users [2]string
	for i := 0; users[0] == "" || users[1] == ""; i++ {
		u := fmt.Sprintf("viewer-%d", i)
		users[partition.For(u, 2)] = u
	}
	debit := func(u string) {
		t.Helper()
		if _, err := store.TopUp(ctx, ledger.TopUp{UserID: u, Amount: 10, Key: "seed-" + u}); err != nil {
			t.Fatal(err)
		}
		r, err := store.Debit(ctx, ledger.Debit{Key: ledger.DebitKey{Platform: "linkv", AppID: "app1", RequestID: "dup"},
			UserID: u, Gold: 1, Fingerprint: sha256.Sum256([]byte(u)), ExpiresAt: time.Now().Add(time.Hour)})
		if err != nil || r.Status != ledger.Debited {
			t.Fatalf("debit of %s: %+v, %v", u, r, err)
		}
	}
	env := map[string]string{"GIFTD_PROXY_URL": l.ProxyURL, "GIFTD_PARTITION_URLS": strings.Join(l.PartitionURLs, " ")}
	audit := func() (string, error) {
		var out strings.Builder
		err := run(ctx, []string{"giftd", "audit"}, func(k string) string { return env[k] }, &out, io.Discard)
		return out.String(), err
	}
	debit(users[0])
	if out, err := audit(); err != nil || !strings.Contains(out, "keys OK") {
		t.Fatalf("giftd audit with the key on partition 0 only: %v\n%s", err, out)
	}
	debit(users[1])
	out, err := audit()
	if err == nil || !strings.Contains(out, "REUSED debit key linkv/app1/dup on partitions 0, 1") ||
		!strings.Contains(err.Error(), "keys: 1 found on more than one partition") {
		t.Errorf("giftd audit with the key on both partitions: %v\n%s; want a failure naming it", err, out)
	}
}
