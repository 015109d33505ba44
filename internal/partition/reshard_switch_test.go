package partition_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// TestReshard_ServeRecordsASwitchTheRunDidNot: giftd reshard 1 → 2 cut
// short, with gifts from senders of both partitions-to-be, while a Store
// runs as giftd serve runs it (over the proxy, with direct Stores of both
// partitions; its readiness check, its growth and RecordReshardSwitches on
// every tick).
//
// Cut after the proxy's switch and before the run records it on the
// partitions ("record"): both partitions hold every wallet and gift, and
// the reads the proxy runs on every partition (the wallet totals, the gift
// report by sender) count each twice until serve records the switch on
// both; then they read what they read before the reshard, and after the
// run again's forget.
//
// Cut before the proxy's switch ("switch": the claims moved, the economy
// split, the proxy still routing over 1): serve records nothing anywhere
// (partition 0 is claimed as one of 2, which the proxy does not route over
// yet; the new partition is not in use), and the reads are exact.
func TestReshard_ServeRecordsASwitchTheRunDidNot(t *testing.T) {
	for _, step := range []string{"record", "switch"} {
		t.Run(step, func(t *testing.T) {
			l := pgtest.Partitioned(t, 1)
			requireLogical(t, l.ProxyURL)
			newURLs := newPartitions(t, l)
			after := append(append([]string{}, l.PartitionURLs...), newURLs...)
			ctx, cancelAll := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancelAll()
			// serve's Store: given both URLs before the reshard, it uses
			// the one the proxy routes over.
			s, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(1, partition.For),
				ledger.WithBatching(ledger.Batching{MaxBatch: 1}), ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000}),
				ledger.WithPartitionStores(stores(t, after)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			senders, receivers := economyUsers(t, ctx, s, 2, 2, 1000)
			startConsumer(t, ctx, l.PartitionURLs)
			since, until := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
			for _, from := range senders {
				for _, to := range receivers {
					id := fmt.Sprintf("%s-%s", from, to)
					if res, err := s.Debit(ctx, giftDebit(id, from, to)); err != nil || res.Status != ledger.Debited {
						t.Fatalf("gift %s: %+v, %v", id, res, err)
					}
				}
			}
			waitDrained(ctx, t, l.PartitionURLs)

			rs := readStore(t, ctx, l.ProxyURL)
			proxy := connect(t, l.ProxyURL)
			conns := []*pgx.Conn{connect(t, after[0]), connect(t, after[1])}
			read := func() (switchReads, error) {
				var r switchReads
				if err := proxy.QueryRow(ctx, `SELECT sum(wallets)::bigint, sum(gold)::bigint FROM giftd_wallet_totals()`).
					Scan(&r.Wallets, &r.Gold); err != nil {
					return r, fmt.Errorf("wallet totals: %w", err)
				}
				var err error
				if r.BySender, err = rs.GiftReport(ctx, ledger.BySender, ledger.GiftFilter{From: since, To: until}, 1000, 0); err != nil {
					return r, fmt.Errorf("gift report by sender: %w", err)
				}
				return r, nil
			}
			want, err := read()
			if err != nil || want.Wallets != int64(len(senders)) || len(want.BySender) != len(senders) {
				t.Fatalf("before the reshard: %v, %v; want %d wallets and senders", want, err, len(senders))
			}
			records := func() (n [2]int) {
				t.Helper()
				for p, c := range conns {
					if err := c.QueryRow(ctx, `SELECT count(*) FROM giftd_reshard_switched`).Scan(&n[p]); err != nil {
						t.Fatalf("partition %d: %v", p, err)
					}
				}
				return n
			}

			cut, cancel := context.WithCancel(ctx)
			defer cancel()
			r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(s string) {
				if s == step {
					cancel()
				}
			})
			if _, err := partition.Reshard(cut, r); !errors.Is(err, context.Canceled) {
				t.Fatalf("reshard cut short at %s: %v; want context.Canceled", step, err)
			}
			if n := records(); n != [2]int{} {
				t.Fatalf("switches recorded after the cut: %v; want none", n)
			}
			got, err := read()
			if err != nil {
				t.Fatal(err)
			}
			if step == "record" && got.Wallets != 2*want.Wallets {
				t.Fatalf("wallet totals in the window, the switch not recorded: %v; want every wallet counted twice, %d", got, 2*want.Wallets)
			}

			// serve, ticking until the test ends: as cmd/giftd's readiness
			// probe and growth loop (one after the other here).
			serveCtx, stopServe := context.WithCancel(ctx)
			var ticks atomic.Int64
			var lastErr atomic.Value
			var wg sync.WaitGroup
			wg.Go(func() {
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					errs := []error{s.Ready(serveCtx)}
					_, err := s.GrowPartitionStores(serveCtx)
					errs = append(errs, err)
					_, err = s.RecordReshardSwitches(serveCtx)
					lastErr.Store(fmt.Sprint(errors.Join(append(errs, err)...)))
					ticks.Add(1)
					select {
					case <-serveCtx.Done():
						return
					case <-tick.C:
					}
				}
			})
			defer func() { stopServe(); wg.Wait() }()

			switch step {
			case "record":
				// Until serve has recorded the switch on both partitions.
				wait, stop := context.WithTimeout(ctx, 30*time.Second)
				defer stop()
				for got, err = read(); err != nil || !reflect.DeepEqual(got, want); got, err = read() {
					select {
					case <-wait.Done():
						t.Fatalf("reads in the window with serve running: %v, %v; want %v (serve's last errors: %v; switches recorded %v)",
							got, err, want, lastErr.Load(), records())
					case <-time.After(20 * time.Millisecond):
					}
				}
				if n := records(); n != [2]int{1, 1} {
					t.Errorf("switches recorded by serve: %v; want one on each partition", n)
				}
			case "switch":
				// Three whole ticks of serve after its first one read the
				// cut.
				from := ticks.Load() + 1
				for ticks.Load() < from+3 {
					select {
					case <-ctx.Done():
						t.Fatalf("serve's ticks: %v", ctx.Err())
					case <-time.After(20 * time.Millisecond):
					}
				}
				if n := records(); n != [2]int{} {
					t.Errorf("switches recorded by serve before the proxy's switch: %v; want none (serve's last errors: %v)", n, lastErr.Load())
				}
				if got, err := read(); err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("reads before the switch with serve running: %v, %v; want %v", got, err, want)
				}
			}

			if _, err := partition.Reshard(ctx, partition.Resharding{Layout: l, NewPartitionURLs: newURLs}); err != nil {
				t.Fatalf("reshard again: %v", err)
			}
			if got, err := read(); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("reads after the forget: %v, %v; want %v", got, err, want)
			}
		})
	}
}

// switchReads are the reads TestReshard_ServeRecordsASwitchTheRunDidNot
// compares: the wallet totals and the gift report by sender.
type switchReads struct {
	Wallets, Gold int64
	BySender      []ledger.GiftReportRow
}

func (r switchReads) String() string {
	out := fmt.Sprintf("%d wallets, %d gold; gifts by sender:", r.Wallets, r.Gold)
	for _, row := range r.BySender {
		key := "none"
		if row.Key != nil {
			key = *row.Key
		}
		out += fmt.Sprintf(" %s %d (%d gold)", key, row.Gifts, row.Gold)
	}
	return out
}
