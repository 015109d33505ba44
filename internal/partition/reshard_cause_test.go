package partition_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/pgtest"
	"giftd/migrations"
)

// The tests in this file look for the cause of the one failure of
// TestRun_ServeCarriesOnThroughAReshard (docs/scale-out.md, What is next,
// item 1): three wallets one coin above their ledger entries, every
// acknowledged debit's entry there once. At the time the fence's trigger
// was BEFORE ROW (partition migration 11 before commit afdb3de) and the
// debit was main migration 10's: step 4 locks the batch's wallets FOR
// UPDATE and reads their balances, step 6 writes the balances decided from
// them (gold = decided, WHERE gold <> decided), its row count unchecked.
//
// Each test drives one interleaving with locks, waiting on pg_locks, once
// against those old definitions (installed in the test's partition) and
// once against today's (the AFTER ROW trigger, migration 11's checked
// wallet write), and holds the books to the debits.

// oldFenceFunction is the fence's trigger function as it was when the
// failure was seen: the same check, returning the row, as a BEFORE ROW
// trigger should (afdb3de^:
// migrations/partition/000011_reshard_fence_every_write.up.sql).
const oldFenceFunction = `CREATE OR REPLACE FUNCTION giftd_reshard_fenced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    fence integer;
    me    integer;
    recs  jsonb[] := '{}';
BEGIN
    SELECT max(f.partitions) INTO fence FROM giftd_reshard_fence AS f;
    IF fence IS NOT NULL THEN
        SELECT i.partition INTO me FROM giftd_partition_identity AS i;
        IF TG_OP <> 'INSERT' THEN
            recs := recs || to_jsonb(OLD);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            recs := recs || to_jsonb(NEW);
        END IF;
        IF EXISTS (SELECT 1 FROM unnest(recs) AS r
                   WHERE giftd_placement(CASE WHEN TG_TABLE_NAME = 'events' THEN r->'data'->>'user_id'
                                              ELSE r->>'user_id' END) & (fence - 1) <> me) THEN
            RAISE EXCEPTION 'giftd: partition % is handing users over to the partitions of %: retry', me, fence
                USING ERRCODE = 'GD003', DETAIL = format('a write to %s of a fenced user', TG_TABLE_NAME);
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$`

// fencedTables are the tables the fence's trigger is on.
var fencedTables = []string{"wallets", "ledger_entries", "debit_requests", "spend_windows", "spend_reminders",
	"linkv_accounts", "linkv_wallet_moves", "events"}

// debitFunction returns the CREATE OR REPLACE FUNCTION giftd_debit_gifts
// statement of a main migration file (its last statement).
func debitFunction(t *testing.T, file string) string {
	t.Helper()
	b, err := fs.ReadFile(migrations.FS, file)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "CREATE OR REPLACE FUNCTION giftd_debit_gifts(")
	if i < 0 {
		t.Fatalf("%s holds no giftd_debit_gifts", file)
	}
	return s[i:]
}

// unlocked is a debit function's statement with step 4's FOR UPDATE taken
// out: the balances read without holding the wallets.
func unlocked(t *testing.T, fn string) string {
	t.Helper()
	const lock = "          FOR UPDATE) AS w;"
	if strings.Count(fn, lock) != 1 {
		t.Fatalf("giftd_debit_gifts does not lock its wallets with %q once", lock)
	}
	return strings.Replace(fn, lock, "          ) AS w;", 1)
}

// defs are the definitions an interleaving runs against: install changes
// a freshly migrated partition into them.
type defs struct {
	name    string
	before  bool // the fence's trigger BEFORE ROW once installed
	install func(t *testing.T, conn *pgx.Conn)
}

// oldDefs installs the fence's BEFORE ROW trigger (disabled, as the
// migration left it) and main migration 10's giftd_debit_gifts (or fn).
func oldDefs(fn string) func(t *testing.T, conn *pgx.Conn) {
	return func(t *testing.T, conn *pgx.Conn) {
		t.Helper()
		qs := []string{oldFenceFunction, fn}
		for _, table := range fencedTables {
			qs = append(qs, `DROP TRIGGER giftd_reshard_fence ON `+table,
				`CREATE TRIGGER giftd_reshard_fence BEFORE INSERT OR UPDATE OR DELETE ON `+table+
					` FOR EACH ROW EXECUTE FUNCTION giftd_reshard_fenced()`,
				`ALTER TABLE `+table+` DISABLE TRIGGER giftd_reshard_fence`)
		}
		for _, q := range qs {
			if _, err := conn.Exec(context.Background(), q); err != nil {
				t.Fatalf("install the old definitions: %v\n%.200s", err, q)
			}
		}
	}
}

// bothDefs are the old definitions and today's.
func bothDefs(t *testing.T) []defs {
	return []defs{
		{"BEFORE_trigger_migration_10", true, oldDefs(debitFunction(t, "000010_entry_ids_first.up.sql"))},
		{"today", false, func(*testing.T, *pgx.Conn) {}},
	}
}

// causeBed is old partition 1 of 2, seeded: staying users (1 of 4) and a
// moving one (3 of 4), 100 gold each.
type causeBed struct {
	url               string
	admin             *pgx.Conn
	stay1, stay2, mov string
}

func newCauseBed(t *testing.T, d defs) causeBed {
	t.Helper()
	l := pgtest.Partitioned(t, 2)
	stay, mov := usersOn(1, 4, 2), usersOn(3, 4, 1)
	b := causeBed{url: l.PartitionURLs[1], stay1: stay[0], stay2: stay[1], mov: mov[0]}
	b.admin = connect(t, b.url)
	d.install(t, b.admin)
	var before int
	err := b.admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_trigger
		WHERE tgname = 'giftd_reshard_fence' AND tgtype & 2 <> 0`).Scan(&before) // TRIGGER_TYPE_BEFORE
	if err != nil {
		t.Fatal(err)
	}
	if want := map[bool]int{true: len(fencedTables)}[d.before]; before != want {
		t.Fatalf("%d of the fence's triggers are BEFORE ROW; want %d", before, want)
	}
	for _, u := range []string{b.stay1, b.stay2, b.mov} {
		if _, err := b.admin.Exec(context.Background(), `SELECT * FROM giftd_topup($1, 100, $2, 'seed')`, u, "seed-"+u); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// fence puts partition 1 into the pause, as giftd reshard's fence does: the
// fence of 4 and the trigger enabled on every user table.
func (b causeBed) fence(t *testing.T) {
	t.Helper()
	qs := []string{`INSERT INTO giftd_reshard_fence (partitions) VALUES (4)`}
	for _, table := range fencedTables {
		qs = append(qs, `ALTER TABLE `+table+` ENABLE TRIGGER giftd_reshard_fence`)
	}
	for _, q := range qs {
		if _, err := b.admin.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
}

// debit runs one batch on partition 1 through giftd_debit_gifts_on, one
// coin from each user, with the safeguards on (an empty policy): step 4b
// then reads spend_windows after step 4 has locked the wallets.
func debit(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, ids []string, users ...string) error {
	n := len(users)
	plats, apps, fps := make([]string, n), make([]string, n), make([][]byte, n)
	golds, expires, details := make([]int64, n), make([]time.Time, n), make([]string, n)
	receivers, rooms, gifts, counts, prices := make([]*string, n), make([]string, n), make([]string, n), make([]int64, n), make([]*int64, n)
	for i := range users {
		fp := sha256.Sum256([]byte(ids[i]))
		plats[i], apps[i], fps[i], golds[i] = "linkv", "app", fp[:], 1
		expires[i], details[i], rooms[i], gifts[i], counts[i] = time.Now().Add(time.Hour), "{}", "room", "rose", 1
	}
	rows, err := q.Query(ctx, `SELECT status FROM giftd_debit_gifts_on(1, $1, $2, $3, $4, $5, $6, $7, $8::jsonb[],
		$9, $10, $11, $12, $13, false, false, 0, '{}'::jsonb, NULL)`,
		plats, apps, ids, fps, users, golds, expires, details, receivers, rooms, gifts, counts, prices)
	if err != nil {
		return err
	}
	var got []int
	for rows.Next() {
		var st int
		if err := rows.Scan(&st); err != nil {
			rows.Close()
			return err
		}
		got = append(got, st)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i, st := range got {
		if st != 200 {
			return fmt.Errorf("debit %s of %s: status %d", ids[i], users[i], st)
		}
	}
	return nil
}

// pid is conn's backend.
func pid(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var p int
	if err := conn.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitLock waits until backend p waits for a lock that pg_locks' where
// clause describes (its rows of p, not granted).
func (b causeBed) waitLock(t *testing.T, p int, what, where string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		var waiting bool
		err := b.admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted AND `+where+`)`, p).
			Scan(&waiting)
		if err != nil {
			t.Fatalf("waiting for the debit to wait for %s: %v", what, err)
		}
		if waiting {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for the debit to wait for %s: %v", what, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// heldWallets reports how many of users' wallets another transaction holds
// locked.
func (b causeBed) heldWallets(t *testing.T, users ...string) int {
	t.Helper()
	var free int
	err := b.admin.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT 1 FROM wallets WHERE user_id = ANY ($1)
		FOR UPDATE SKIP LOCKED) AS w`, users).Scan(&free)
	if err != nil {
		t.Fatal(err)
	}
	return len(users) - free
}

// books returns user's balance, the sum of its entries and the count of
// its debit entries.
func (b causeBed) books(t *testing.T, user string) (gold, entries int64, debits int) {
	t.Helper()
	err := b.admin.QueryRow(context.Background(), `SELECT (SELECT gold FROM wallets WHERE user_id = $1),
		(SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE user_id = $1),
		(SELECT count(*) FROM ledger_entries WHERE user_id = $1 AND kind = 'debit')`, user).Scan(&gold, &entries, &debits)
	if err != nil {
		t.Fatal(err)
	}
	return gold, entries, debits
}

// checkBooks holds each user's wallet to its entries and to want.
func (b causeBed) checkBooks(t *testing.T, want map[string]int64) {
	t.Helper()
	for u, w := range want {
		gold, entries, debits := b.books(t, u)
		if gold != entries || gold != w {
			t.Errorf("%s: wallet %d, its entries %d (%d debits); want both %d", u, gold, entries, debits, w)
		}
	}
}

// heldAtStep4b starts a debit batch of users on its own connection while
// a transaction holds spend_windows ACCESS EXCLUSIVE, and returns once the
// debit waits for it: step 4 has locked the batch's wallets and read their
// balances; step 6 has not written them. release lets it go on; wait
// returns its error.
func (b causeBed) heldAtStep4b(t *testing.T, ids []string, users ...string) (release func(), wait func() error) {
	t.Helper()
	ctx := context.Background()
	blocker := connect(t, b.url)
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE spend_windows IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	d := connect(t, b.url)
	dp := pid(t, d)
	done := make(chan error, 1)
	go func() { done <- debit(ctx, d, ids, users...) }()
	b.waitLock(t, dp, "spend_windows", `locktype = 'relation' AND relation = 'spend_windows'::regclass`)
	if n := b.heldWallets(t, users...); n != len(users) {
		t.Fatalf("the debit waits at step 4b holding %d of its %d wallets; want all", n, len(users))
	}
	return func() { _ = tx.Rollback(ctx) }, func() error { return <-done }
}

// exec runs qs in one transaction on a connection of its own, failing
// rather than waiting past a few seconds for a lock.
func (b causeBed) exec(t *testing.T, qs ...string) {
	t.Helper()
	ctx := context.Background()
	conn := connect(t, b.url)
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, q := range append([]string{`SET LOCAL lock_timeout = '10s'`}, qs...) {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// toggles are the statements setting the fence's trigger on every user
// table but spend_windows, which heldAtStep4b holds.
func toggles(verb string) []string {
	var qs []string
	for _, table := range fencedTables {
		if table != "spend_windows" {
			qs = append(qs, `ALTER TABLE `+table+` `+verb+` TRIGGER giftd_reshard_fence`)
		}
	}
	return qs
}

// TestReshard_FenceTriggerChangedBetweenADebitsLockAndWriteLosesNothing
// holds a debit batch between its lock of the wallets (step 4) and its
// write of them (step 6) while the fence's trigger is enabled with a fence
// (as the fence commits) or disabled with the fence gone (as the forget and
// disableFence do), and commits that change before the batch goes on (a
// batch holding a moving user is then refused whole, GD003). In
// giftd reshard the fence's lock keeps the first from happening (a debit
// holds the fence table from its start); the second can (the batch holds
// only ROW SHARE on wallets there, which ALTER TABLE's SHARE ROW EXCLUSIVE
// does not wait for). Either way, with the old BEFORE ROW trigger and
// migration 10's debit as with today's, every wallet is decremented once.
func TestReshard_FenceTriggerChangedBetweenADebitsLockAndWriteLosesNothing(t *testing.T) {
	for _, d := range bothDefs(t) {
		t.Run(d.name+"/enabled", func(t *testing.T) {
			b := newCauseBed(t, d)
			release, wait := b.heldAtStep4b(t, []string{"e1", "e2"}, b.stay1, b.stay2)
			b.exec(t, append([]string{`INSERT INTO giftd_reshard_fence (partitions) VALUES (4)`}, toggles("ENABLE")...)...)
			release()
			if err := wait(); err != nil {
				t.Fatalf("the batch after the trigger was enabled: %v", err)
			}
			b.checkBooks(t, map[string]int64{b.stay1: 99, b.stay2: 99, b.mov: 100})
		})
		t.Run(d.name+"/enabled_with_a_moving_user", func(t *testing.T) {
			b := newCauseBed(t, d)
			release, wait := b.heldAtStep4b(t, []string{"m1", "m2", "m3"}, b.stay1, b.stay2, b.mov)
			b.exec(t, append([]string{`INSERT INTO giftd_reshard_fence (partitions) VALUES (4)`}, toggles("ENABLE")...)...)
			release()
			var pgErr *pgconn.PgError
			if err := wait(); !errors.As(err, &pgErr) || pgErr.Code != "GD003" {
				t.Fatalf("the batch of a moving user after the trigger was enabled: %v; want refused whole with GD003", err)
			}
			b.checkBooks(t, map[string]int64{b.stay1: 100, b.stay2: 100, b.mov: 100})
		})
		t.Run(d.name+"/disabled", func(t *testing.T) {
			b := newCauseBed(t, d)
			b.fence(t)
			release, wait := b.heldAtStep4b(t, []string{"d1", "d2"}, b.stay1, b.stay2)
			b.exec(t, append([]string{`DELETE FROM giftd_reshard_fence`}, toggles("DISABLE")...)...)
			release()
			if err := wait(); err != nil {
				t.Fatalf("the batch after the trigger was disabled: %v", err)
			}
			b.checkBooks(t, map[string]int64{b.stay1: 99, b.stay2: 99, b.mov: 100})
		})
	}
}

// contended runs a debit of user in an open transaction, then a batch of
// users on another connection, waits until that batch waits for the first
// transaction, commits it, and returns the batch's error.
func (b causeBed) contended(t *testing.T, user string, users ...string) error {
	t.Helper()
	ctx := context.Background()
	first := connect(t, b.url)
	tx, err := first.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below; a rollback after it does nothing
	if err := debit(ctx, tx, []string{"first"}, user); err != nil {
		t.Fatal(err)
	}
	d := connect(t, b.url)
	dp := pid(t, d)
	done := make(chan error, 1)
	ids := make([]string, len(users))
	for i := range users {
		ids[i] = fmt.Sprintf("second-%d", i)
	}
	go func() { done <- debit(ctx, d, ids, users...) }()
	b.waitLock(t, dp, "the first debit's transaction", `locktype = 'transactionid'`)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return <-done
}

// TestReshard_DebitWaitingForItsWalletUnderTheFenceLosesNothing runs,
// during the pause (the fence's trigger enabled on every user table), a
// batch of two users staying, one of whose wallets another debit holds: the
// batch waits in step 4 for that debit's commit, then locks and reads the
// balance it left. With the old BEFORE ROW trigger taking the row again in
// step 6 (GetTupleForTrigger finds it locked by the batch itself: no
// EvalPlanQual) as with today's AFTER trigger, both debits are on the
// wallet.
func TestReshard_DebitWaitingForItsWalletUnderTheFenceLosesNothing(t *testing.T) {
	for _, d := range bothDefs(t) {
		t.Run(d.name, func(t *testing.T) {
			b := newCauseBed(t, d)
			b.fence(t)
			if err := b.contended(t, b.stay1, b.stay1, b.stay2); err != nil {
				t.Fatalf("the batch that waited for the wallet: %v", err)
			}
			b.checkBooks(t, map[string]int64{b.stay1: 98, b.stay2: 99})
		})
	}
}

// TestReshard_DebitDecidingFromAnUnlockedBalance is the control: the same
// interleaving as TestReshard_DebitWaitingForItsWalletUnderTheFenceLosesNothing
// with step 4's FOR UPDATE taken out of the debit. The batch reads the
// balance the other debit has not committed yet, decides from it, and its
// write then meets that debit's: under migration 10 the write is skipped
// (EvalPlanQual rechecks gold <> decided against the committed row, equal
// to it) and the batch commits its entry on a wallet one coin above its
// entries: the failure's signature. The BEFORE ROW trigger changes nothing
// (the same with it enabled and disabled). Today's checked write refuses
// the batch with GD005 instead.
func TestReshard_DebitDecidingFromAnUnlockedBalance(t *testing.T) {
	old := debitFunction(t, "000010_entry_ids_first.up.sql")
	today := debitFunction(t, "000011_checked_wallet_write.up.sql")
	for _, c := range []struct {
		name    string
		before  bool
		install func(*testing.T, *pgx.Conn)
		fence   bool
	}{
		{"BEFORE_trigger_migration_10/fenced", true, oldDefs(unlocked(t, old)), true},
		{"BEFORE_trigger_migration_10/not_fenced", true, oldDefs(unlocked(t, old)), false},
		{"today/fenced", false, func(t *testing.T, conn *pgx.Conn) {
			if _, err := conn.Exec(context.Background(), unlocked(t, today)); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newCauseBed(t, defs{name: c.name, before: c.before, install: c.install})
			if c.fence {
				b.fence(t)
			}
			err := b.contended(t, b.stay1, b.stay1, b.stay2)
			if strings.HasPrefix(c.name, "today") {
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "GD005" {
					t.Fatalf("the batch that decided from an unlocked balance: %v; want GD005", err)
				}
				b.checkBooks(t, map[string]int64{b.stay1: 99, b.stay2: 100})
				return
			}
			if err != nil {
				t.Fatalf("the batch that decided from an unlocked balance: %v", err)
			}
			gold, entries, debits := b.books(t, b.stay1)
			var afters []int64
			if err := b.admin.QueryRow(context.Background(), `SELECT array_agg(balance_after ORDER BY id) FROM ledger_entries
				WHERE user_id = $1 AND kind = 'debit'`, b.stay1).Scan(&afters); err != nil {
				t.Fatal(err)
			}
			if gold != 99 || entries != 98 || debits != 2 || fmt.Sprint(afters) != "[99 99]" {
				t.Errorf("%s: wallet %d, entries %d, %d debits leaving %v; want the failure's signature: 99, 98, 2 leaving [99 99]",
					b.stay1, gold, entries, debits, afters)
			}
			b.checkBooks(t, map[string]int64{b.stay2: 99})
		})
	}
}

// TestReshard_CopyStartedBetweenADebitsLockAndWriteLosesNothing holds a
// debit batch of the old partition's users (two staying, one moving)
// between its lock of the wallets and its write, before any fence (the
// trigger disabled: the one time a batch could hold all three users of the
// failure), while giftd reshard's copy starts there: the publication is
// created and committed, and the logical slot's creation waits for the
// batch to end. Every wallet is decremented once.
func TestReshard_CopyStartedBetweenADebitsLockAndWriteLosesNothing(t *testing.T) {
	for _, d := range bothDefs(t) {
		t.Run(d.name, func(t *testing.T) {
			b := newCauseBed(t, d)
			requireLogical(t, b.url)
			release, wait := b.heldAtStep4b(t, []string{"c1", "c2", "c3"}, b.stay1, b.stay2, b.mov)
			var published []string
			for _, table := range append(append([]string{}, fencedTables...), "giftd_reshard_fence", "giftd_reshard_marks") {
				if table != "spend_windows" { // held by heldAtStep4b
					published = append(published, table)
				}
			}
			b.exec(t, `CREATE PUBLICATION giftd_reshard FOR TABLE `+strings.Join(published, ", "))
			ctx := context.Background()
			slotter := connect(t, b.url)
			sp := pid(t, slotter)
			slot := fmt.Sprintf("giftd_cause_%d", time.Now().UnixNano())
			made := make(chan error, 1)
			go func() {
				_, err := slotter.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
				made <- err
			}()
			t.Cleanup(func() {
				if _, err := b.admin.Exec(ctx, `SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1`, slot); err != nil {
					t.Errorf("drop the slot %s: %v", slot, err)
				}
			})
			b.waitLock(t, sp, "the batch's transaction", `locktype = 'transactionid'`)
			release()
			if err := wait(); err != nil {
				t.Fatalf("the batch held while the copy started: %v", err)
			}
			if err := <-made; err != nil {
				t.Fatalf("the slot: %v", err)
			}
			b.checkBooks(t, map[string]int64{b.stay1: 99, b.stay2: 99, b.mov: 99})
		})
	}
}
