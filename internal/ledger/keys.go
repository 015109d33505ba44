package ledger

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ReusedKey is an idempotency key found on more than one partition
// (docs/scale-out.md#keys-across-partitions): a debit's request key, or an
// operator's top-up, reversal or payout key, that one server would have
// refused the second time (its unique index).
type ReusedKey struct {
	// Kind is "debit", "topup", "reversal" or "payout"; Platform and AppID
	// are empty for a payout (its key is the operator's alone).
	Kind, Platform, AppID, Key string
	// Partitions are the partitions holding it, in order.
	Partitions []int
}

func (k ReusedKey) String() string {
	parts := make([]string, len(k.Partitions))
	for i, p := range k.Partitions {
		parts[i] = fmt.Sprint(p)
	}
	return fmt.Sprintf("%s key %s/%s/%s on partitions %s", k.Kind, k.Platform, k.AppID, k.Key, strings.Join(parts, ", "))
}

// keysOfPartition is every key one partition holds, each once, in byte
// order (COLLATE "C", Go's order of strings), so that the partitions'
// lists merge in one pass: debits' (their records, pruned in time, and
// their entries, kept: a refused debit has a record only), top-ups' and
// reversals' (ledger_entries_key) and payouts' (account_entries_key).
//
// Between a reshard's switch and its forget, only the keys of the rows the
// partition owns: its users' (by its claim, giftd_reshard_unforgotten, no
// row outside that window) and the payouts it did not give away (kept).
const keysOfPartition = `
	SELECT kind, platform, app_id, key FROM (
		SELECT 'debit' AS kind, platform, app_id, request_id AS key FROM debit_requests AS d
		WHERE NOT EXISTS (SELECT 1 FROM giftd_reshard_unforgotten() AS c
		                  WHERE giftd_placement(d.user_id) & (c.partitions - 1) <> c.partition)
		UNION
		SELECT kind, platform, app_id, ref FROM ledger_entries AS e WHERE kind IN ('debit', 'topup', 'reversal')
		  AND NOT EXISTS (SELECT 1 FROM giftd_reshard_unforgotten() AS c
		                  WHERE giftd_placement(e.user_id) & (c.partitions - 1) <> c.partition)
		UNION ALL
		SELECT 'payout', '', '', ref FROM account_entries AS a WHERE account = 'earnings' AND kind = 'payout' AND ` + kept + `
	) AS k
	ORDER BY kind COLLATE "C", platform COLLATE "C", app_id COLLATE "C", key COLLATE "C"`

// ReusedKeys reads every key of parts (a Store on each partition, in
// order), each partition in one snapshot, and returns those found on more
// than one partition: the first limit of them, and how many there are. It
// reads every key of every partition at once (one connection each): an
// operator's audit, not something to call per request. Errors are the
// databases'.
func ReusedKeys(ctx context.Context, parts []*Store, limit int) ([]ReusedKey, int, error) {
	var out []ReusedKey
	total := 0
	scan := func(rows pgx.Rows) (k [4]string, err error) {
		err = rows.Scan(&k[0], &k[1], &k[2], &k[3])
		return k, err
	}
	err := mergePartitions(ctx, parts, "keys", keysOfPartition, scan, compareKeys, func(held []*[4]string) {
		var holders []int
		var key *[4]string
		for p, k := range held {
			if k != nil {
				holders, key = append(holders, p), k
			}
		}
		if len(holders) > 1 {
			total++
			if len(out) < limit {
				out = append(out, ReusedKey{Kind: key[0], Platform: key[1], AppID: key[2], Key: key[3], Partitions: holders})
			}
		}
	})
	if err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

// mergePartitions runs query on every partition of parts at once (one
// connection each, each in its own snapshot), whose rows come in the order
// compare gives them, and merges them in one pass: visit gets each row
// once, with the partitions' rows equal to it under compare (nil where a
// partition has none), in partition order. what names the rows in errors.
func mergePartitions[T any](ctx context.Context, parts []*Store, what, query string, scan func(pgx.Rows) (T, error),
	compare func(a, b T) int, visit func(held []*T)) error {
	type cursor struct {
		rows pgx.Rows
		row  T
		ok   bool
	}
	curs := make([]*cursor, len(parts))
	defer func() {
		for _, c := range curs {
			if c != nil {
				c.rows.Close()
			}
		}
	}()
	next := func(p int) (err error) {
		c := curs[p]
		if c.ok = c.rows.Next(); !c.ok {
			err = c.rows.Err()
		} else {
			c.row, err = scan(c.rows)
		}
		if err != nil {
			return fmt.Errorf("%s of partition %d: %w", what, p, err)
		}
		return nil
	}
	for p, s := range parts {
		rows, err := s.pool.Query(ctx, query)
		if err != nil {
			return fmt.Errorf("%s of partition %d: %w", what, p, err)
		}
		curs[p] = &cursor{rows: rows}
		if err := next(p); err != nil {
			return err
		}
	}
	held := make([]*T, len(parts))
	for {
		// The least row among the partitions' current ones, and who holds it.
		var least *T
		for p, c := range curs {
			switch {
			case !c.ok:
				held[p] = nil
			case least == nil || compare(c.row, *least) < 0:
				clear(held[:p])
				least, held[p] = &c.row, &c.row
			case compare(c.row, *least) == 0:
				held[p] = &c.row
			default:
				held[p] = nil
			}
		}
		if least == nil {
			return nil
		}
		visit(held)
		for p, h := range held {
			if h != nil {
				if err := next(p); err != nil {
					return err
				}
			}
		}
	}
}

// compareKeys orders keys as the partitions sort them (byte order, field
// by field).
func compareKeys(a, b [4]string) int {
	for i := range a {
		if c := strings.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}
