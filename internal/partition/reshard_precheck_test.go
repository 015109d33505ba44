package partition_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"giftd/internal/ledger"
	"giftd/internal/partition"
)

// TestReshard_ChecksTheCopyBeforeTheSwitch: a moved user's row lost or
// changed on the new partition (as replication writes: an entry, a debit
// record, an event or the wallet) stops the run
// before the switch: found before the pause (the rows copied so far, at
// "precheck"), nothing is fenced and the copy is dropped; found inside it
// (a row written after that check, tampered with once the copy is cut, at
// "check"), the fences are lifted and the proxy does not switch. Either
// way the mover's gifts go on on the old partition, and the run again
// copies anew and switches, every row of the mover's on its new partition.
func TestReshard_ChecksTheCopyBeforeTheSwitch(t *testing.T) {
	cases := []struct {
		name, at, what, table string
		// row picks the mover's ($1) last row of the table.
		row string
		// tamper loses or changes that row.
		tamper string
		want   string
	}{
		{name: "EntryLostBeforeThePause", at: "precheck", what: "the ledger entries", table: "ledger_entries",
			row: `id = (SELECT max(id) FROM ledger_entries WHERE user_id = $1)`,
			// The wallet set back with it: each partition's audit passes.
			tamper: `WITH last AS (DELETE FROM ledger_entries WHERE id = (SELECT max(id) FROM ledger_entries WHERE user_id = $1) RETURNING *)
				UPDATE wallets SET gold = gold - (SELECT amount FROM last) WHERE user_id = $1`,
			want: "nothing fenced"},
		{name: "EntryLostInThePause", at: "check", what: "the ledger entries", table: "ledger_entries",
			row: `id = (SELECT max(id) FROM ledger_entries WHERE user_id = $1)`,
			tamper: `WITH last AS (DELETE FROM ledger_entries WHERE id = (SELECT max(id) FROM ledger_entries WHERE user_id = $1) RETURNING *)
				UPDATE wallets SET gold = gold - (SELECT amount FROM last) WHERE user_id = $1`,
			want: "nothing switched"},
		{name: "DebitRecordLostInThePause", at: "check", what: "the debit records (with an entry)", table: "debit_requests",
			row:    `entry_id = (SELECT max(entry_id) FROM debit_requests WHERE user_id = $1)`,
			tamper: `DELETE FROM debit_requests WHERE entry_id = (SELECT max(entry_id) FROM debit_requests WHERE user_id = $1)`,
			want:   "nothing switched"},
		{name: "EventChangedInThePause", at: "check", what: "the events", table: "events",
			row: `position = (SELECT max(position) FROM events WHERE data->>'user_id' = $1)`,
			tamper: `UPDATE events SET data = data || '{"changed": true}'
				WHERE position = (SELECT max(position) FROM events WHERE data->>'user_id' = $1)`,
			want: "nothing switched"},
		{name: "WalletChangedBeforeThePause", at: "precheck", what: "wallets of the users", table: "wallets",
			row: `user_id = $1`, tamper: `UPDATE wallets SET gold = gold + 1 WHERE user_id = $1`,
			want: "are not the sum of their entries"},
		{name: "WalletChangedInThePause", at: "check", what: "the wallets of the users", table: "wallets",
			row: `user_id = $1`, tamper: `UPDATE wallets SET gold = gold + 1 WHERE user_id = $1`,
			want: "nothing switched"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, newURLs, ctx, s := oneToTwo(t)
			mover := usersOn(1, 2, 1)[0]
			proxy, old, moved := connect(t, l.ProxyURL), connect(t, l.PartitionURLs[0]), connect(t, newURLs[0])
			// An endpoint that delivers nothing: every event is compared.
			if _, err := old.Exec(ctx, `INSERT INTO webhook_endpoints (id, url, secrets, cursor)
				VALUES ('hook', 'http://127.0.0.1:9/', '{whsec_test}', 0)`); err != nil {
				t.Fatal(err)
			}
			debit, debits := seedMover(t, ctx, s, mover)
			for k := range 3 {
				debit(fmt.Sprintf("early-%d", k))
			}
			r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(step string) {
				switch step {
				case "fence": // after the check before the pause: a row for the pause to compare
					debit("late")
				case tc.at:
					if err := keepAndTamper(ctx, moved, tc.table, tc.row, tc.tamper, mover); err != nil {
						t.Errorf("tamper with the mover's %s on the new partition at %q: %v", tc.table, tc.at, err)
					}
				}
			})
			_, err := partition.Reshard(ctx, r)
			if err == nil || !strings.Contains(err.Error(), "the copy differs: "+tc.what) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("reshard over a copy with the mover's last row of %s tampered with at %q: %v; want the copy differing in %s, %s",
					tc.table, tc.at, err, tc.what, tc.want)
			}

			// Nothing switched, nothing fenced, the copy dropped: the
			// mover's gifts go on on the old partition.
			var count, fences, subs int
			if err := proxy.QueryRow(ctx, `SELECT giftd_partition_count()`).Scan(&count); err != nil || count != 1 {
				t.Errorf("the proxy's partition count after the failed check: %d, %v; want 1", count, err)
			}
			if err := old.QueryRow(ctx, `SELECT count(*) FROM giftd_reshard_fence`).Scan(&fences); err != nil || fences != 0 {
				t.Errorf("fences on the old partition after the failed check: %d, %v; want 0", fences, err)
			}
			if err := moved.QueryRow(ctx, `SELECT count(*) FROM pg_subscription
				WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&subs); err != nil || subs != 0 {
				t.Errorf("subscriptions on the new partition after the failed check: %d, %v; want 0 (the copy dropped)", subs, err)
			}
			debit("between")

			// The run again copies anew: every row of the mover's there.
			if _, err := partition.Reshard(ctx, partition.Resharding{Layout: l, NewPartitionURLs: newURLs}); err != nil {
				t.Fatalf("reshard again: %v", err)
			}
			var same int
			if err := moved.QueryRow(ctx, `SELECT count(*) FROM kept AS k WHERE EXISTS (SELECT 1 FROM `+tc.table+` AS t WHERE t::text = k::text)`).
				Scan(&same); tc.table != "wallets" && (err != nil || same != 1) { // a wallet changed since: its gold is checked below
				t.Errorf("the row tampered with, on the new partition after the run again: %d as it was, %v; want 1", same, err)
			}
			moverBooksRight(t, ctx, l, newURLs, proxy, moved, mover, debits())
		})
	}
}

// TestReshard_CheckFailingBeforeThePauseKeepsTheCopy: a check before the
// pause that fails for want of the database (its session on the old
// partition ended), not for a difference, fences nothing and keeps the copy:
// the run again carries on from the same subscription and switches.
func TestReshard_CheckFailingBeforeThePauseKeepsTheCopy(t *testing.T) {
	l, newURLs, ctx, s := oneToTwo(t)
	mover := usersOn(1, 2, 1)[0]
	proxy, old, moved := connect(t, l.ProxyURL), connect(t, l.PartitionURLs[0]), connect(t, newURLs[0])
	debit, debits := seedMover(t, ctx, s, mover)
	debit("early")
	subscription := func() (oid uint32) {
		t.Helper()
		if err := moved.QueryRow(ctx, `SELECT coalesce(max(oid), 0) FROM pg_subscription
			WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&oid); err != nil {
			t.Fatal(err)
		}
		return oid
	}

	r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(step string) {
		if step != "precheck" {
			return
		}
		var ended int
		if err := old.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 60000)) FROM pg_stat_activity
			WHERE application_name = $1 AND datname = current_database()`, partition.ReshardApplicationName).Scan(&ended); err != nil || ended != 1 {
			t.Errorf("end giftd reshard's session on the old partition: %d ended, %v; want 1", ended, err)
		}
	})
	_, err := partition.Reshard(ctx, r)
	if err == nil || strings.Contains(err.Error(), "the copy differs") || !strings.Contains(err.Error(), "is kept") {
		t.Fatalf("reshard with its session on the old partition ended at the check before the pause: %v; "+
			"want a failure that keeps the copy", err)
	}
	kept := subscription()
	if kept == 0 {
		t.Fatal("no subscription on the new partition after a check that failed for want of the database; want the copy kept")
	}
	var count, fences int
	if err := proxy.QueryRow(ctx, `SELECT giftd_partition_count()`).Scan(&count); err != nil || count != 1 {
		t.Errorf("the proxy's partition count after the failed check: %d, %v; want 1", count, err)
	}
	if err := old.QueryRow(ctx, `SELECT count(*) FROM giftd_reshard_fence`).Scan(&fences); err != nil || fences != 0 {
		t.Errorf("fences on the old partition after the failed check: %d, %v; want 0", fences, err)
	}
	debit("between")

	again := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(step string) {
		if step == "precheck" {
			if now := subscription(); now != kept {
				t.Errorf("the new partition's subscription at the run again's check: oid %d; want %d, the one kept", now, kept)
			}
		}
	})
	if _, err := partition.Reshard(ctx, again); err != nil {
		t.Fatalf("reshard again: %v", err)
	}
	moverBooksRight(t, ctx, l, newURLs, proxy, moved, mover, debits())
}

// seedMover tops up mover with 100 gold through s, and returns a debit of
// it, which must go through, and the count of those made.
func seedMover(t *testing.T, ctx context.Context, s *ledger.Store, mover string) (debit func(id string), debits func() int) {
	t.Helper()
	if _, err := s.TopUp(ctx, ledger.TopUp{UserID: mover, Amount: 100, Key: "seed"}); err != nil {
		t.Fatal(err)
	}
	n := 0
	debit = func(id string) {
		t.Helper()
		if res, err := s.Debit(ctx, reshardDebit(id, mover)); err != nil || res.Status != ledger.Debited {
			t.Errorf("debit %s of the mover: %+v, %v; want debited", id, res, err)
			return
		}
		n++
	}
	return debit, func() int { return n }
}

// moverBooksRight checks, after a reshard of l onto newURLs, the seeded
// mover's entries on its new partition (moved) and its wallet through the
// proxy after debits, and every partition's audit.
func moverBooksRight(t *testing.T, ctx context.Context, l partition.Layout, newURLs []string, proxy, moved *pgx.Conn, mover string, debits int) {
	t.Helper()
	var entries, gold int64
	if err := moved.QueryRow(ctx, `SELECT count(*) FROM ledger_entries WHERE user_id = $1`, mover).Scan(&entries); err != nil ||
		entries != int64(1+debits) {
		t.Errorf("the mover's entries on its new partition: %d, %v; want %d", entries, err, 1+debits)
	}
	if err := proxy.QueryRow(ctx, `SELECT gold FROM giftd_wallet($1)`, mover).Scan(&gold); err != nil || gold != int64(100-debits) {
		t.Errorf("the mover's wallet through the proxy: %d, %v; want %d", gold, err, 100-debits)
	}
	auditsClean(t, ctx, stores(t, append(append([]string(nil), l.PartitionURLs...), newURLs...)))
}
