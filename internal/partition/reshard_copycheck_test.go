package partition_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// TestReshard_ChecksTheCopyBeforeTheForget: a moved user whose copy on the
// new partition lacks its last entry, its wallet as of the entry before
// (each partition's audit passes: the wallet is the sum of its entries),
// stops the run after the switch with nothing forgotten: the old partition
// still holds the user's rows. Once the entry is there again, the run
// again forgets them.
func TestReshard_ChecksTheCopyBeforeTheForget(t *testing.T) {
	l := pgtest.Partitioned(t, 1)
	requireLogical(t, l.ProxyURL)
	newURLs := newPartitions(t, l)
	bg := context.Background()
	mover, stayer := usersOn(1, 2, 1)[0], usersOn(0, 2, 1)[0]
	proxy := connect(t, l.ProxyURL)
	for k := range 3 {
		for _, u := range []string{mover, stayer} {
			if _, err := topUpThroughProxy(bg, proxy, u, 10, fmt.Sprintf("seed-%s-%d", u, k)); err != nil {
				t.Fatal(err)
			}
		}
	}
	old, moved := connect(t, l.PartitionURLs[0]), connect(t, newURLs[0])
	wallets := func() (n int) {
		t.Helper()
		if err := old.QueryRow(bg, `SELECT count(*) FROM wallets WHERE user_id = $1`, mover).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The mover's last entry, as the copy would have lost it: kept aside,
	// then deleted on the new partition with the wallet set back, as
	// replication writes (the ledger's triggers refuse it otherwise).
	const lose = `
		WITH last AS (DELETE FROM ledger_entries WHERE id = (SELECT max(id) FROM ledger_entries WHERE user_id = $1) RETURNING *)
		UPDATE wallets SET gold = gold - (SELECT amount FROM last) WHERE user_id = $1`
	r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(step string) {
		if step != "switch" { // the copy cut, the proxy about to switch
			return
		}
		tx, err := moved.Begin(bg)
		if err == nil {
			_, err = tx.Exec(bg, `CREATE TABLE lost AS SELECT * FROM ledger_entries WHERE id = (SELECT max(id) FROM ledger_entries WHERE user_id = $1)`, mover)
		}
		if err == nil {
			_, err = tx.Exec(bg, `SET LOCAL session_replication_role = replica`)
		}
		if err == nil {
			_, err = tx.Exec(bg, lose, mover)
		}
		if err == nil {
			err = tx.Commit(bg)
		}
		if err != nil {
			t.Errorf("lose the mover's last entry on the new partition: %v", err)
		}
	})
	_, err := partition.Reshard(bg, r)
	if err == nil || !strings.Contains(err.Error(), "nothing forgotten") || !strings.Contains(err.Error(), "the copy differs: the ledger entries") ||
		!strings.Contains(err.Error(), "2 rows") || !strings.Contains(err.Error(), "3 rows") {
		t.Fatalf("reshard over a copy missing an entry: %v; want the copy check failing with 3 entries against 2, nothing forgotten", err)
	}
	if n := wallets(); n != 1 {
		t.Errorf("old partition 0 holds %d wallets of the mover after the failed check; want 1 (not forgotten)", n)
	}
	// What the audit would not have seen: each partition's books agree.
	for p, u := range []string{l.PartitionURLs[0], newURLs[0]} {
		s, err := ledger.Open(bg, u, ledger.WithBatching(ledger.Batching{MaxBatch: 1}))
		if err != nil {
			t.Fatal(err)
		}
		if a, err := s.Audit(bg); err != nil || !a.OK() {
			t.Errorf("partition %d's audit with the copy missing an entry: %+v, %v; want it OK (only the copy check sees it)", p, a, err)
		}
		s.Close()
	}
	var gold int64
	if err := proxy.QueryRow(bg, `SELECT gold FROM giftd_wallet($1)`, mover).Scan(&gold); err != nil || gold != 20 {
		t.Fatalf("the mover's wallet through the proxy, switched: %d, %v; want 20 (the copy as the test left it)", gold, err)
	}

	// Repaired: the entry back, the wallet with it; the run again forgets.
	tx, err := moved.Begin(bg)
	if err == nil {
		_, err = tx.Exec(bg, `SET LOCAL session_replication_role = replica`)
	}
	if err == nil {
		_, err = tx.Exec(bg, `INSERT INTO ledger_entries SELECT * FROM lost`)
	}
	if err == nil {
		_, err = tx.Exec(bg, `UPDATE wallets SET gold = gold + (SELECT amount FROM lost) WHERE user_id = $1`, mover)
	}
	if err == nil {
		err = tx.Commit(bg)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := partition.Reshard(bg, partition.Resharding{Layout: l, NewPartitionURLs: newURLs}); err != nil {
		t.Fatalf("reshard again once repaired: %v", err)
	}
	if n := wallets(); n != 0 {
		t.Errorf("old partition 0 holds %d wallets of the mover after the run again; want 0 (forgotten)", n)
	}
	if err := proxy.QueryRow(bg, `SELECT gold FROM giftd_wallet($1)`, mover).Scan(&gold); err != nil || gold != 30 {
		t.Errorf("the mover's wallet through the proxy: %d, %v; want 30", gold, err)
	}
}

// TestReshard_ChecksEveryCopiedTableBeforeTheForget: for each table the
// copy check compares besides the ledger entries, a moved user's row of it
// lost or changed on the new partition (as replication writes, at the
// switch) stops the run after the switch with nothing forgotten; once the
// row is as it was, the run again forgets.
func TestReshard_ChecksEveryCopiedTableBeforeTheForget(t *testing.T) {
	cases := []struct {
		name, what, table, key string
		// row picks one of the mover's ($1) rows of the table.
		row string
		// change, when set, changes the row (SET clause); else it is lost.
		change string
	}{
		{name: "DebitRecordLost", what: "the debit records (with an entry)", table: "debit_requests", key: "entry_id",
			row: `entry_id = (SELECT max(entry_id) FROM debit_requests WHERE user_id = $1)`},
		{name: "EventChanged", what: "the events", table: "events", key: "position",
			row:    `position = (SELECT max(position) FROM events WHERE data->>'user_id' = $1)`,
			change: `data = data || '{"changed": true}'`},
		{name: "GiftEntryChanged", what: "the gift entries", table: "gift_entries", key: "id",
			row:    `id = (SELECT min(id) FROM gift_entries WHERE sender_id = $1)`,
			change: `room_id = 'elsewhere'`},
		{name: "AccountEntryLost", what: "the account entries", table: "account_entries", key: "id",
			row: `id = (SELECT max(a.id) FROM account_entries AS a JOIN gift_entries AS g ON g.id = a.gift_entry WHERE g.sender_id = $1)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, newURLs, ctx, s := oneToTwo(t, ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000}))
			mover, receiver := usersOn(1, 2, 1)[0], usersOn(0, 2, 1)[0]
			startConsumer(t, ctx, l.PartitionURLs)
			old, moved := connect(t, l.PartitionURLs[0]), connect(t, newURLs[0])
			// An endpoint that delivers nothing (its cursor at 0): every
			// event is past it, so every one is compared.
			if _, err := old.Exec(ctx, `INSERT INTO webhook_endpoints (id, url, secrets, cursor)
				VALUES ('hook', 'http://127.0.0.1:9/', '{whsec_test}', 0)`); err != nil {
				t.Fatal(err)
			}
			if _, err := s.TopUp(ctx, ledger.TopUp{UserID: mover, Amount: 100, Key: "seed"}); err != nil {
				t.Fatal(err)
			}
			for k := range 3 {
				id := fmt.Sprintf("gift-%d", k)
				if res, err := s.Debit(ctx, giftDebit(id, mover, receiver)); err != nil || res.Status != ledger.Debited {
					t.Fatalf("gift %s: %+v, %v", id, res, err)
				}
			}
			if _, err := s.Reverse(ctx, ledger.Reversal{Debit: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: "gift-2"},
				Key: "rev-gift-2"}); err != nil {
				t.Fatal(err)
			}
			waitDrained(ctx, t, l.PartitionURLs)
			wallets := func() (n int) {
				t.Helper()
				if err := old.QueryRow(ctx, `SELECT count(*) FROM wallets WHERE user_id = $1`, mover).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			// The row kept aside, then lost or changed as replication
			// writes (past the append-only triggers).
			tamper := `DELETE FROM ` + tc.table + ` WHERE ` + tc.row
			if tc.change != "" {
				tamper = `UPDATE ` + tc.table + ` SET ` + tc.change + ` WHERE ` + tc.row
			}
			r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(step string) {
				if step != "switch" {
					return
				}
				if err := keepAndTamper(ctx, moved, tc.table, tc.row, tamper, mover); err != nil {
					t.Errorf("tamper with the mover's %s on the new partition: %v", tc.table, err)
				}
			})
			_, err := partition.Reshard(ctx, r)
			if err == nil || !strings.Contains(err.Error(), "nothing forgotten") ||
				!strings.Contains(err.Error(), "the copy differs: "+tc.what) {
				t.Fatalf("reshard over a copy with a row of %s tampered with: %v; want the copy check failing on %s, nothing forgotten",
					tc.table, err, tc.what)
			}
			if n := wallets(); n != 1 {
				t.Errorf("old partition 0 holds %d wallets of the mover after the failed check; want 1 (not forgotten)", n)
			}

			// Repaired: the row as it was; the run again forgets.
			err = pgx.BeginFunc(ctx, moved, func(tx pgx.Tx) error {
				for _, q := range []string{`SET LOCAL session_replication_role = replica`,
					`DELETE FROM ` + tc.table + ` WHERE ` + tc.key + ` IN (SELECT ` + tc.key + ` FROM kept)`,
					`INSERT INTO ` + tc.table + ` SELECT * FROM kept`} {
					if _, err := tx.Exec(ctx, q); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := partition.Reshard(ctx, partition.Resharding{Layout: l, NewPartitionURLs: newURLs}); err != nil {
				t.Fatalf("reshard again once repaired: %v", err)
			}
			if n := wallets(); n != 0 {
				t.Errorf("old partition 0 holds %d wallets of the mover after the run again; want 0 (forgotten)", n)
			}
		})
	}
}

// oneToTwo is a cluster of 1 partition and a new one to reshard it onto,
// a context of 3 minutes, and a Store through the proxy, batching off, with
// opts.
func oneToTwo(t *testing.T, opts ...ledger.Option) (l partition.Layout, newURLs []string, ctx context.Context, s *ledger.Store) {
	t.Helper()
	l = pgtest.Partitioned(t, 1)
	requireLogical(t, l.ProxyURL)
	newURLs = newPartitions(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	s, err := ledger.Open(ctx, l.ProxyURL, append([]ledger.Option{ledger.WithPartitions(1, partition.For),
		ledger.WithBatching(ledger.Batching{MaxBatch: 1})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return l, newURLs, ctx, s
}

// keepAndTamper keeps aside, in a table kept, the rows of table that row
// picks for user ($1), then runs tamper for user as replication writes
// (past the append-only triggers): it must change one row.
func keepAndTamper(ctx context.Context, conn *pgx.Conn, table, row, tamper, user string) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TABLE kept AS SELECT * FROM `+table+` WHERE `+row, user); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, tamper, user)
		if err == nil && tag.RowsAffected() != 1 {
			err = fmt.Errorf("%d rows of the user's, want 1", tag.RowsAffected())
		}
		return err
	})
}

// TestReshard_CopyCheckLeavesOutWhatMayDiffer: what either side may
// delete on its own between the switch and the forget is not compared, so
// the run forgets with the new partition lacking it: a moved user's debit
// record expiring within 10 minutes (giftd prune's, once expired), their
// refusal (no entry to bound it by), and their events at or behind the
// webhook endpoint's cursor (delivered: giftd prune's past the retention).
// The new partition's database shows times and dates in another form: the
// digest hashes each row's text as every server writes it with the check's
// settings.
func TestReshard_CopyCheckLeavesOutWhatMayDiffer(t *testing.T) {
	l, newURLs, ctx, s := oneToTwo(t)
	mover := usersOn(1, 2, 1)[0]
	old, moved := connect(t, l.PartitionURLs[0]), connect(t, newURLs[0])
	if _, err := moved.Exec(ctx, `DO $$ BEGIN
		EXECUTE format('ALTER DATABASE %I SET TimeZone = ''Asia/Tokyo''', current_database());
		EXECUTE format('ALTER DATABASE %I SET DateStyle = ''SQL, DMY''', current_database());
		END $$`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TopUp(ctx, ledger.TopUp{UserID: mover, Amount: 10, Key: "seed"}); err != nil {
		t.Fatal(err)
	}
	soon := reshardDebit("soon", mover)
	soon.ExpiresAt = time.Now().Add(time.Minute)
	broke := reshardDebit("broke", mover)
	broke.Gold = 1000
	for _, d := range []struct {
		debit ledger.Debit
		want  ledger.DebitStatus
	}{{soon, ledger.Debited}, {broke, ledger.Insufficient}} {
		if res, err := s.Debit(ctx, d.debit); err != nil || res.Status != d.want {
			t.Fatalf("debit %s: %+v, %v; want %d", d.debit.Key.RequestID, res, err, d.want)
		}
	}
	// Every event so far delivered; the next debit's is not.
	if _, err := old.Exec(ctx, `INSERT INTO webhook_endpoints (id, url, secrets, cursor)
		VALUES ('hook', 'http://127.0.0.1:9/', '{whsec_test}', (SELECT max(position) FROM events))`); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Debit(ctx, reshardDebit("later", mover)); err != nil || res.Status != ledger.Debited {
		t.Fatalf("debit later: %+v, %v", res, err)
	}
	r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(step string) {
		if step != "switch" {
			return
		}
		err := pgx.BeginFunc(ctx, moved, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
				return err
			}
			for _, q := range []string{`DELETE FROM debit_requests WHERE user_id = $1 AND request_id = 'soon'`,
				`DELETE FROM debit_requests WHERE user_id = $1 AND request_id = 'broke'`,
				`DELETE FROM events WHERE data->>'user_id' = $1 AND position <= (SELECT min(cursor) FROM webhook_endpoints)`} {
				tag, err := tx.Exec(ctx, q, mover)
				if err == nil && tag.RowsAffected() == 0 {
					err = fmt.Errorf("%s: no row", q)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("delete on the new partition what may differ: %v", err)
		}
	})
	if _, err := partition.Reshard(ctx, r); err != nil {
		t.Fatalf("reshard over a copy lacking only what may differ: %v; want it done", err)
	}
	var n int
	if err := old.QueryRow(ctx, `SELECT count(*) FROM wallets WHERE user_id = $1`, mover).Scan(&n); err != nil || n != 0 {
		t.Errorf("old partition 0 holds %d wallets of the mover, %v; want 0 (forgotten)", n, err)
	}
}
