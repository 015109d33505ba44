package partition_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/pgtest"
)

// TestDebitEntry_RunsOnlyWhatThePartitionOwns calls a partition's debit
// entry (giftd_debit_gifts_on) and its checked top-up directly, with a
// fence row of 4 partitions in place (as giftd reshard's pause leaves it,
// without the pause's triggers, so that the entry's own check is what
// refuses): a batch for another partition number and a user placed on the
// other partition are refused with GD001, a moving user with GD003, a batch
// mixing a moving user and a staying one whole; nothing of a refused batch
// is written; the staying user is debited. Once the fence is gone, the
// moving user is debited too.
func TestDebitEntry_RunsOnlyWhatThePartitionOwns(t *testing.T) {
	bg := context.Background()
	l := pgtest.Partitioned(t, 2)
	proxy, p0 := connect(t, l.ProxyURL), connect(t, l.PartitionURLs[0])
	mover, stayer, elsewhere := usersOn(2, 4, 1)[0], usersOn(0, 4, 1)[0], usersOn(1, 2, 1)[0]
	for _, u := range []string{mover, stayer, elsewhere} {
		if _, err := topUpThroughProxy(bg, proxy, u, 100, "seed-"+u); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p0.Exec(bg, `INSERT INTO giftd_reshard_fence (partitions) VALUES (4)`); err != nil {
		t.Fatal(err)
	}
	n := 0
	debit := func(partition int, users ...string) error {
		keys := make([]string, len(users))
		for i := range users {
			n++
			keys[i] = fmt.Sprint("entry-", n)
		}
		rows, err := p0.Query(bg, `SELECT status FROM giftd_debit_gifts_on($1::int,
			array_fill('linkv'::text, ARRAY[$3::int]), array_fill('app'::text, ARRAY[$3::int]), $2::text[],
			array_fill('\x00'::bytea, ARRAY[$3::int]), $4::text[], array_fill(1::bigint, ARRAY[$3::int]),
			array_fill(now() + interval '1 hour', ARRAY[$3::int]), array_fill('{}'::jsonb, ARRAY[$3::int]),
			array_fill(NULL::text, ARRAY[$3::int]), array_fill(NULL::text, ARRAY[$3::int]),
			array_fill(NULL::text, ARRAY[$3::int]), array_fill(NULL::bigint, ARRAY[$3::int]),
			array_fill(NULL::bigint, ARRAY[$3::int]), false, false, 0, NULL::jsonb, now())`,
			partition, keys, len(users), users)
		if err != nil {
			return err
		}
		statuses, err := pgx.CollectRows(rows, pgx.RowTo[int16])
		if err == nil && (len(statuses) != len(users) || statuses[0] != 200) {
			err = errors.New("not debited")
		}
		return err
	}
	code := func(err error) string {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return pgErr.Code
		}
		return ""
	}
	for _, c := range []struct {
		what      string
		partition int
		users     []string
		want      string
	}{
		{"a batch for partition 1", 1, []string{stayer}, "GD001"},
		{"a user of partition 1", 0, []string{elsewhere}, "GD001"},
		{"a moving user", 0, []string{mover}, "GD003"},
		{"a staying user and a moving one", 0, []string{stayer, mover}, "GD003"},
	} {
		if err := debit(c.partition, c.users...); code(err) != c.want {
			t.Errorf("%s: %v; want refused with %s", c.what, err, c.want)
		}
	}
	if _, err := p0.Exec(bg, `SELECT * FROM giftd_topup($1, 5, 'fenced-topup', 'test')`, mover); code(err) != "GD003" {
		t.Errorf("a checked top-up of a moving user: %v; want refused with GD003", err)
	}
	if err := debit(0, stayer); err != nil {
		t.Errorf("a staying user behind the fence: %v; want debited", err)
	}
	if _, err := p0.Exec(bg, `DELETE FROM giftd_reshard_fence`); err != nil {
		t.Fatal(err)
	}
	if err := debit(0, mover); err != nil {
		t.Errorf("the moving user once the fence is gone: %v; want debited", err)
	}
	for u, want := range map[string]int64{mover: 99, stayer: 99, elsewhere: 100} {
		var gold int64
		if err := proxy.QueryRow(bg, `SELECT gold FROM giftd_wallet($1)`, u).Scan(&gold); err != nil || gold != want {
			t.Errorf("wallet %s: %d, %v; want %d", u, gold, err, want)
		}
	}
}
