package platforms_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"giftd/internal/ledger"
	"giftd/internal/linkvapi/linkvfake"
	"giftd/internal/partition"
	"giftd/internal/pgtest"
	"giftd/internal/platforms"
)

// TestMove_PartitionedMovesEveryCoinOnce runs wallet moves through a
// partitioned giftd (a proxy and two partitions) for users of both
// partitions: a move crashed after each of its steps and resumed, and three
// concurrent runs over the same users. Every coin arrives once, in the
// wallet on the user's own partition, and nowhere else.
func TestMove_PartitionedMovesEveryCoinOnce(t *testing.T) {
	ctx := context.Background()
	l := pgtest.Partitioned(t, 2)
	store, err := ledger.Open(ctx, l.ProxyURL, append(pgtest.StoreOptions(), ledger.WithPartitions(2, partition.For))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	f := linkvfake.New(t, linkvApp, linkvSecret)
	w := world{fake: f, store: store, c: linkvClient(t, f)}
	// books: LinkV holds linkv, the user's partition gold from credits
	// top-ups, the other partition nothing of theirs.
	books := func(user, open string, linkv, gold int64, credits int) {
		t.Helper()
		if b := f.Balance(open); b != linkv {
			t.Errorf("%s: LinkV holds %d, want %d", user, b, linkv)
		}
		for p, u := range l.PartitionURLs {
			conn, err := pgx.Connect(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			var have, n int64
			err = conn.QueryRow(ctx, `
				SELECT coalesce((SELECT gold FROM wallets WHERE user_id = $1), 0),
				       (SELECT count(*) FROM ledger_entries WHERE user_id = $1 AND kind = 'topup' AND platform = 'linkv')`,
				user).Scan(&have, &n)
			conn.Close(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wantGold, wantCredits := gold, int64(credits)
			if partition.For(user, 2) != p {
				wantGold, wantCredits = 0, 0
			}
			if have != wantGold || n != wantCredits {
				t.Errorf("%s on partition %d: wallet %d from %d credits, want %d from %d", user, p, have, n, wantGold, wantCredits)
			}
		}
	}
	var users []platforms.MoveUser
	opens := map[string]string{}
	for i := range 6 {
		u := fmt.Sprintf("mover-%d", i)
		opens[u] = f.AddUser(u, "", int64(10*(i+1)))
		users = append(users, platforms.MoveUser{UserID: u, OpenID: opens[u]})
	}
	// One crash after each step, on users of both partitions.
	for i, step := range []string{"recorded", "sent", "taken", "credited", "finished"} {
		u := users[i : i+1]
		m := w.mover()
		platforms.CrashAfter(m, step)
		if sum := m.Move(ctx, u, false); sum.Outcomes[platforms.OutcomeCrashed] != 1 {
			t.Fatalf("%s: first run %+v, want it to crash after %s", u[0].UserID, sum, step)
		}
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { w.mover().Move(ctx, users, false) })
	}
	wg.Wait()
	// Users a run found busy are finished by one more run.
	if sum := w.mover().Move(ctx, users, false); !sum.OK() {
		t.Errorf("last run %+v", sum)
	}
	for i, u := range users {
		books(u.UserID, opens[u.UserID], 0, int64(10*(i+1)), 1)
		if open, err := store.LinkVOpenID(ctx, linkvApp, u.UserID); err == nil && open != opens[u.UserID] {
			t.Errorf("%s: linked to %s, want %s", u.UserID, open, opens[u.UserID])
		}
	}
	if f.Applied() != len(users) {
		t.Errorf("%d changeGold applied, want %d", f.Applied(), len(users))
	}
}
