package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
	"giftd/internal/webhook"
)

// received is one request a receiver got.
type received struct {
	id        string
	partition int
	position  int64
}

// TestDeliverPartitioned_EveryEventOnceInPartitionOrderAcrossAKilledWorker
// creates an endpoint through the partitioned store (so on both
// partitions), writes events on both, and delivers them with a worker
// whose connection to a partition is closed in the middle of a batch (a
// kill: the requests it sent are not recorded, its lease is left to run
// out), then with another worker: every event of both partitions reaches
// the endpoint, each webhook-id once after the receiver drops repeats, and
// each partition's events arrive in position order.
func TestDeliverPartitioned_EveryEventOnceInPartitionOrderAcrossAKilledWorker(t *testing.T) {
	l := pgtest.Partitioned(t, 2)
	ctx := context.Background()
	var parts, killable []*ledger.Store
	for _, u := range l.PartitionURLs {
		parts = append(parts, open(t, u, ledger.WithBatching(ledger.Batching{MaxBatch: 1})))
		p, err := ledger.Open(ctx, u, ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
		if err != nil {
			t.Fatal(err)
		}
		killable = append(killable, p)
	}
	defer func() {
		for _, p := range killable {
			p.Close()
		}
	}()
	store := open(t, l.ProxyURL, ledger.WithPartitions(2, partition.For), ledger.WithPartitionStores(parts))

	var mu sync.Mutex
	var got []received
	killed := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p webhook.Payload
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &p); err != nil || p.Partition == nil || p.ID != r.Header.Get("webhook-id") {
			t.Errorf("payload %s: %v", body, err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, received{id: p.ID, partition: *p.Partition, position: p.Position})
		n := len(got)
		mu.Unlock()
		if n == 6 {
			// The kill, while the worker waits for this answer: what it
			// sent in this batch is never recorded.
			killable[*p.Partition].Close()
			close(killed)
		}
	}))
	defer srv.Close()
	ep, err := store.CreateEndpoint(ctx, ledger.Endpoint{ID: "ep_p", URL: srv.URL, EventTypes: []string{}, Enabled: true,
		Secrets: []string{webhook.NewSecret()}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ep.Partitions) != 2 || ep.Partitions[1].State != "active" {
		t.Fatalf("endpoint's deliveries: %+v; want active on both partitions", ep.Partitions)
	}
	// Events on both partitions: top-ups of users of each.
	for i := range 40 {
		u := fmt.Sprint("user-", i)
		if _, err := store.TopUp(ctx, ledger.TopUp{UserID: u, Amount: 5, Key: fmt.Sprint("k", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var want []ledger.Event
	for i, p := range parts {
		for {
			evs, upTo, err := p.Events(ctx, 0, 500)
			if err != nil {
				t.Fatal(err)
			}
			if upTo >= ep.Partitions[i].Cursor && len(evs) > 0 && evs[len(evs)-1].Position == upTo {
				want = append(want, evs...)
				break
			}
		}
	}
	if len(want) != 40 {
		t.Fatalf("%d events in the outboxes, want 40", len(want))
	}

	cfg := webhook.DefaultConfig()
	cfg.AllowPrivate, cfg.Batch, cfg.Timeout = true, 4, 100*time.Millisecond
	// The first worker: killed in its second batch, after the receiver got
	// the batch's second event.
	a := webhook.NewPartitioned(func() []*ledger.Store { return killable }, cfg, prometheus.NewRegistry(), quiet())
	for {
		busy, err := a.Once(ctx)
		select {
		case <-killed:
		default:
			if !busy && err == nil {
				t.Fatal("the first worker ran out of work before it was killed")
			}
			continue
		}
		if err == nil {
			t.Fatal("the killed worker recorded its batch")
		}
		break
	}
	// The second worker carries on once the lease of the first has run out.
	b := webhook.NewPartitioned(func() []*ledger.Store { return parts }, cfg, prometheus.NewRegistry(), quiet())
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := b.Once(ctx); err != nil {
			t.Fatal(err)
		}
		e, err := store.Endpoint(ctx, ep.ID)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		ids := map[string]bool{}
		for _, r := range got {
			ids[r.id] = true
		}
		mu.Unlock()
		if len(ids) >= len(want) || time.Now().After(deadline) {
			if len(e.Partitions) != 2 {
				t.Errorf("endpoint's deliveries: %+v", e.Partitions)
			}
			break
		}
	}

	mu.Lock()
	defer mu.Unlock()
	first := map[string]received{}
	last := map[int]int64{}
	repeats := 0
	for _, r := range got {
		if _, ok := first[r.id]; ok {
			repeats++
			continue
		}
		first[r.id] = r
		if r.position <= last[r.partition] {
			t.Errorf("partition %d: position %d delivered after %d", r.partition, r.position, last[r.partition])
		}
		last[r.partition] = r.position
	}
	for _, e := range want {
		r, ok := first[e.ID]
		if !ok {
			t.Errorf("event %s (position %d) never delivered", e.ID, e.Position)
			continue
		}
		if r.position != e.Position {
			t.Errorf("event %s delivered as position %d, want %d", e.ID, r.position, e.Position)
		}
	}
	if len(first) != len(want) {
		t.Errorf("%d distinct webhook-ids delivered, want %d", len(first), len(want))
	}
	if repeats == 0 {
		t.Error("no event was sent again after the kill: the test did not kill mid-batch")
	}
	t.Logf("%d requests for %d events (%d repeats after the kill)", len(got), len(want), repeats)
}
