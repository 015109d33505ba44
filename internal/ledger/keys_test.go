package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"giftd/internal/ledger"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
)

// keyUses counts, over every partition of l, the rows written under an
// operator's key: top-ups and reversals (ledger entries of kind), payouts
// (account entries).
func keyUses(t *testing.T, l partition.Layout, kind, key string) int {
	t.Helper()
	q := `SELECT count(*) FROM ledger_entries WHERE kind = $1 AND ref = $2`
	if kind == "payout" {
		q = `SELECT count(*) FROM account_entries WHERE kind = $1 AND ref = $2`
	}
	n := 0
	for _, u := range l.PartitionURLs {
		conn, err := pgx.Connect(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		var c int
		err = conn.QueryRow(context.Background(), q, kind, key).Scan(&c)
		conn.Close(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n += c
	}
	return n
}

// keyOn returns a key placed on partition p of n, starting with prefix.
func keyOn(prefix string, p, n int) string {
	for i := 0; ; i++ {
		if k := fmt.Sprintf("%s-%d", prefix, i); partition.For(k, n) == p {
			return k
		}
	}
}

// TestKeys_ReusedForUsersOfTwoPartitionsAnswerAsOneServer uses each
// operator's key (top-up, payout, reversal) for a user of partition 0, then
// for a user of partition 1: one server answers the second 409
// (ErrKeyReused) and runs nothing; so must the partitioned giftd, whose
// partitions each know only their own keys. Replays and fresh keys answer
// alike too, and the wallets and ledgers end the same.
func TestKeys_ReusedForUsersOfTwoPartitionsAnswerAsOneServer(t *testing.T) {
	ctx := context.Background()
	x := newSideBySide(t)
	users := usersOn(2, 2)
	a, ra, b, rb := users[0][0], users[0][1], users[1][0], users[1][1]
	topUp := func(user, key string) func(s *ledger.Store) (any, error) {
		return func(s *ledger.Store) (any, error) {
			c, err := s.TopUp(ctx, ledger.TopUp{UserID: user, Amount: 1000, Key: key})
			c.EntryID = 0
			return c, err
		}
	}
	payout := func(receiver, key string) func(s *ledger.Store) (any, error) {
		return func(s *ledger.Store) (any, error) {
			p, err := s.Payout(ctx, ledger.Payout{ReceiverID: receiver, Amount: 10, Key: key})
			p.EntryID = 0
			return p, err
		}
	}
	reverse := func(req, key string) func(s *ledger.Store) (any, error) {
		return func(s *ledger.Store) (any, error) {
			c, err := s.Reverse(ctx, ledger.Reversal{Debit: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: req}, Key: key})
			c.EntryID = 0
			return c, err
		}
	}
	gift := func(id, sender, receiver string) func(s *ledger.Store) (any, error) {
		return func(s *ledger.Store) (any, error) {
			r, err := s.Debit(ctx, giftOf(id, sender, receiver, 100))
			return r.Status, err
		}
	}
	steps := []struct {
		name string
		call func(s *ledger.Store) (any, error)
	}{
		{"top-up of a", topUp(a, "t")},
		{"top-up of b under a's key", topUp(b, "t")},
		{"top-up of a replayed", topUp(a, "t")},
		{"top-up of b", topUp(b, "t2")},
		{"gift of a", gift("ga", a, ra)},
		{"gift of b", gift("gb", b, rb)},
		{"payout to ra", payout(ra, "p")},
		{"payout to rb under ra's key", payout(rb, "p")},
		{"payout to ra replayed", payout(ra, "p")},
		{"payout to rb", payout(rb, "p2")},
		// A key whose calls were all refused before writing is free.
		{"payout of too much to ra", func(s *ledger.Store) (any, error) {
			p, err := s.Payout(ctx, ledger.Payout{ReceiverID: ra, Amount: 1000, Key: "q"})
			return p, err
		}},
		{"payout to rb under the refused key", payout(rb, "q")},
		{"reversal of a's gift", reverse("ga", "r")},
		{"reversal of b's gift under a's key", reverse("gb", "r")},
		{"reversal of a's gift replayed", reverse("ga", "r")},
		{"reversal of b's gift", reverse("gb", "r2")},
		{"reversal of nothing", reverse("none", "rn")},
		{"reversal of a's gift under the refused key: already reversed", reverse("ga", "rn")},
	}
	for _, st := range steps {
		one, oneErr := st.call(x.one)
		parted, partedErr := st.call(x.parted)
		oj, _ := json.Marshal(one)
		pj, _ := json.Marshal(parted)
		if string(oj)+errKind(oneErr) != string(pj)+errKind(partedErr) {
			t.Errorf("%s: one server %s, %v; partitioned %s, %v", st.name, oj, oneErr, pj, partedErr)
		}
	}
	for _, u := range []string{a, b} {
		for _, s := range []*ledger.Store{x.one, x.parted} {
			w, err := s.Wallet(ctx, u)
			es, eerr := s.Entries(ctx, u, 0, 100)
			if err != nil || eerr != nil || w.Gold != 1000 || len(es) != 3 {
				t.Errorf("%s: wallet %+v, %v; %d entries, %v; want 1000 gold, a top-up, a gift, its reversal", u, w, err, len(es), eerr)
			}
		}
	}
	for _, r := range []string{ra, rb} {
		one, oneErr := x.one.Earnings(ctx, r)
		parted, partedErr := x.parted.Earnings(ctx, r)
		one.UpdatedAt, parted.UpdatedAt = time.Time{}, time.Time{}
		if oneErr != nil || partedErr != nil || one.Owed == 0 || fmt.Sprintf("%+v", one) != fmt.Sprintf("%+v", parted) {
			t.Errorf("earnings of %s: one server %+v, %v; partitioned %+v, %v; want the same, some owed (paid out, then reversed)",
				r, one, oneErr, parted, partedErr)
		}
	}
	for kind, keys := range map[string][]string{"topup": {"t", "t2"}, "payout": {"p", "p2", "q"}, "reversal": {"r", "r2"}} {
		for _, k := range keys {
			if n := keyUses(t, x.layout, kind, k); n != 1 {
				t.Errorf("%s key %s: used %d times over the partitions, want once", kind, k, n)
			}
		}
	}
	auditPartitions(t, x.layout)
}

// TestKeys_RacingUsesOfOneKeyForTwoPartitionsRunOnce: 16 calls at once
// with one key, half for a user of partition 0, half for one of partition
// 1, for each operator's key: exactly one operation runs; every call for
// its user answers it (the others replays), every call for the other user
// ErrKeyReused.
func TestKeys_RacingUsesOfOneKeyForTwoPartitionsRunOnce(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	s, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(2, partition.For),
		ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	users := usersOn(2, 2)
	a, ra, b, rb := users[0][0], users[0][1], users[1][0], users[1][1]
	for _, u := range []string{a, b} {
		if _, err := s.TopUp(ctx, ledger.TopUp{UserID: u, Amount: 1000, Key: "seed-" + u}); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []ledger.Debit{giftOf("ga", a, ra, 100), giftOf("gb", b, rb, 100)} {
		if r, err := s.Debit(ctx, g); err != nil || r.Status != ledger.Debited {
			t.Fatalf("gift %s: %+v, %v", g.Key.RequestID, r, err)
		}
	}
	const calls = 16
	for _, c := range []struct {
		kind, key string
		call      func(side int) error // side 0: a user of partition 0; 1: of partition 1
	}{
		{"topup", "race-t", func(side int) error {
			_, err := s.TopUp(ctx, ledger.TopUp{UserID: []string{a, b}[side], Amount: 10, Key: "race-t"})
			return err
		}},
		{"payout", "race-p", func(side int) error {
			_, err := s.Payout(ctx, ledger.Payout{ReceiverID: []string{ra, rb}[side], Amount: 10, Key: "race-p"})
			return err
		}},
		{"reversal", "race-r", func(side int) error {
			_, err := s.Reverse(ctx, ledger.Reversal{
				Debit: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: []string{"ga", "gb"}[side]}, Key: "race-r"})
			return err
		}},
	} {
		errs := make([]error, calls)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = c.call(i % 2)
			}()
		}
		close(start)
		wg.Wait()
		won := map[int]bool{}
		for i, err := range errs {
			switch {
			case err == nil:
				won[i%2] = true
			case !errors.Is(err, ledger.ErrKeyReused):
				t.Errorf("%s, call %d: %v; want it run or ErrKeyReused", c.kind, i, err)
			}
		}
		if len(won) != 1 {
			t.Errorf("%s: calls for %d users went through, want 1: %v", c.kind, len(won), errs)
		}
		for i, err := range errs {
			if won[i%2] != (err == nil) {
				t.Errorf("%s, call %d for side %d: %v; the winning side's calls must all go through, the other's none", c.kind, i, i%2, err)
			}
		}
		if n := keyUses(t, l, c.kind, c.key); n != 1 {
			t.Errorf("%s key %s: used %d times over the partitions, want once", c.kind, c.key, n)
		}
	}
	auditPartitions(t, l)
}

// TestKeys_ARetryAfterTheClaimRunsOnce: a call whose key was claimed and
// committed, but whose operation did not run (its user's partition down;
// a crash between the two, played by claiming through the proxy by hand),
// runs when tried again with the same content, once; the key stays refused
// for other content.
func TestKeys_ARetryAfterTheClaimRunsOnce(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	s, err := ledger.Open(ctx, l.ProxyURL, ledger.WithPartitions(2, partition.For),
		ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	users := usersOn(2, 2)
	a, b, rb := users[0][0], users[1][0], users[1][1]

	// A top-up of b (partition 1) whose key lives on partition 0.
	key := keyOn("retry", 0, 2)
	pgtest.StopPartition(t, l.PartitionURLs[1])
	if _, err := s.TopUp(ctx, ledger.TopUp{UserID: b, Amount: 70, Key: key}); !errors.Is(err, ledger.ErrPartitionUnreachable) {
		t.Fatalf("top-up with b's partition down: %v; want ErrPartitionUnreachable", err)
	}
	pgtest.StartPartition(t, l.PartitionURLs[1])
	if n := keyUses(t, l, "topup", key); n != 0 {
		t.Fatalf("top-up key %s used %d times with b's partition down", key, n)
	}
	if _, err := s.TopUp(ctx, ledger.TopUp{UserID: a, Amount: 70, Key: key}); !errors.Is(err, ledger.ErrKeyReused) {
		t.Errorf("the claimed key for a: %v; want ErrKeyReused", err)
	}
	c, err := s.TopUp(ctx, ledger.TopUp{UserID: b, Amount: 70, Key: key})
	if err != nil || c.Replay || c.Balance != 70 {
		t.Errorf("top-up retried: %+v, %v; want it run", c, err)
	}
	if c, err := s.TopUp(ctx, ledger.TopUp{UserID: b, Amount: 70, Key: key}); err != nil || !c.Replay || c.Balance != 70 {
		t.Errorf("top-up retried again: %+v, %v; want a replay", c, err)
	}
	if n := keyUses(t, l, "topup", key); n != 1 {
		t.Errorf("top-up key %s used %d times, want once", key, n)
	}

	// A payout claimed by hand, as if giftd had crashed after the claim.
	if r, err := s.Debit(ctx, giftOf("g", b, rb, 60)); err != nil || r.Status != ledger.Debited {
		t.Fatalf("gift: %+v, %v", r, err)
	}
	var mine bool
	err = s.Pool().QueryRow(ctx, `SELECT giftd_claim_key('payout', 'pay', $1)`,
		map[string]any{"receiver_id": rb, "amount": 20}).Scan(&mine)
	if err != nil || !mine {
		t.Fatalf("claim by hand: %v, %v", mine, err)
	}
	if p, err := s.Payout(ctx, ledger.Payout{ReceiverID: rb, Amount: 20, Key: "pay"}); err != nil || p.Replay || p.Balance != 10 {
		t.Errorf("payout after its claim: %+v, %v; want it run", p, err)
	}
	if p, err := s.Payout(ctx, ledger.Payout{ReceiverID: rb, Amount: 20, Key: "pay"}); err != nil || !p.Replay {
		t.Errorf("payout again: %+v, %v; want a replay", p, err)
	}
	if _, err := s.Payout(ctx, ledger.Payout{ReceiverID: rb, Amount: 21, Key: "pay"}); !errors.Is(err, ledger.ErrKeyReused) {
		t.Errorf("payout of another amount: %v; want ErrKeyReused", err)
	}
	if n := keyUses(t, l, "payout", "pay"); n != 1 {
		t.Errorf("payout key used %d times, want once", n)
	}
	auditPartitions(t, l)
}

// TestReusedKeys_FindsADebitKeyOnTwoPartitions: a request id debited for
// users of two partitions (debits claim no key), one debited on one and
// refused on the other (a record only), and an operator's key used on two
// partitions before any claim existed (its claim deleted, as before the
// upgrade) are each reported once, with their partitions; no other key is.
func TestReusedKeys_FindsADebitKeyOnTwoPartitions(t *testing.T) {
	ctx := context.Background()
	s, l := openPartitioned(t, 2)
	users := usersOn(2, 2)
	a, b, poor := users[0][0], users[1][0], users[0][1]
	for _, u := range []string{a, b} {
		if _, err := s.TopUp(ctx, ledger.TopUp{UserID: u, Amount: 100, Key: "seed-" + u}); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []ledger.Debit{giftOf("twice", a, "", 5), giftOf("twice", b, "", 5),
		giftOf("refused", poor, "", 5), giftOf("refused", b, "", 5), giftOf("once", a, "", 5)} {
		d.Fingerprint[0] ^= byte(len(d.UserID)) // another user, another fingerprint
		if _, err := s.Debit(ctx, d); err != nil {
			t.Fatalf("debit %s of %s: %v", d.Key.RequestID, d.UserID, err)
		}
	}
	old := keyOn("old", 0, 2)
	if _, err := s.TopUp(ctx, ledger.TopUp{UserID: a, Amount: 1, Key: old}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, l.PartitionURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DELETE FROM giftd_key_claims WHERE key = $1`, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TopUp(ctx, ledger.TopUp{UserID: b, Amount: 1, Key: old}); err != nil {
		t.Fatal(err)
	}
	parts := []*ledger.Store{partitionStore(t, l.PartitionURLs[0]), partitionStore(t, l.PartitionURLs[1])}
	got, n, err := ledger.ReusedKeys(ctx, parts, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"debit key linkv/app/refused on partitions 0, 1",
		"debit key linkv/app/twice on partitions 0, 1",
		"topup key admin//" + old + " on partitions 0, 1",
	}
	var gotS []string
	for _, k := range got {
		gotS = append(gotS, k.String())
	}
	if fmt.Sprint(gotS) != fmt.Sprint(want) || n != 3 {
		t.Errorf("reused keys: %d, %q; want %q", n, gotS, want)
	}
	if got, n, err := ledger.ReusedKeys(ctx, parts, 1); err != nil || n != 3 || len(got) != 1 {
		t.Errorf("reused keys, at most 1: %d of %d, %v", len(got), n, err)
	}
}
