package partition_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"giftd/internal/partition"
)

// TestReshard_ComparesTheRowsUpdatedInPlace: the moved users' spending
// counters and reminders, LinkV accounts and wallet moves, and the key
// claims whose keys move, which the forget deletes on the old partition
// and which have no key to bound them by, are compared before the forget as
// they were at the switch. One mover's rows are written on the new
// partition after the switch, as its own writes would: never a difference.
// The other mover's row, changed or lost on the new partition once the
// copy is cut (as replication writes, its stamp unchanged), stops the run
// after the switch with nothing forgotten; put back, the run again forgets.
func TestReshard_ComparesTheRowsUpdatedInPlace(t *testing.T) {
	cases := []struct {
		name, what, table string
		row, tamper       string // the tampered mover's ($1) row, and what is done to it
		// noCut: the cut taken out after the switch, as a switch by an
		// earlier release leaves none: nothing compared, the run forgets.
		noCut bool
	}{
		{name: "Clean"},
		{name: "NoCutRecorded", table: "spend_windows", noCut: true,
			row: `user_id = $1`, tamper: `UPDATE spend_windows SET day_gold = day_gold + 1 WHERE user_id = $1`},
		{name: "SpendingCounterChanged", what: "spending counters", table: "spend_windows",
			row: `user_id = $1`, tamper: `UPDATE spend_windows SET day_gold = day_gold + 1 WHERE user_id = $1`},
		{name: "ReminderLost", what: "spending reminders", table: "spend_reminders",
			row: `user_id = $1`, tamper: `DELETE FROM spend_reminders WHERE user_id = $1`},
		{name: "LinkVAccountChanged", what: "LinkV accounts", table: "linkv_accounts",
			row: `user_id = $1`, tamper: `UPDATE linkv_accounts SET open_id = 'other' WHERE user_id = $1`},
		{name: "WalletMoveChanged", what: "LinkV wallet moves", table: "linkv_wallet_moves",
			row: `user_id = $1`, tamper: `UPDATE linkv_wallet_moves SET moved = moved + 1 WHERE user_id = $1`},
		{name: "KeyClaimLost", what: "operators' key claims", table: "giftd_key_claims",
			row: `key = $1`, tamper: `DELETE FROM giftd_key_claims WHERE key = $1`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, newURLs, ctx, _ := oneToTwo(t)
			movers := usersOn(1, 2, 2)
			tampered, rewritten := movers[0], movers[1]
			old, moved := connect(t, l.PartitionURLs[0]), connect(t, newURLs[0])
			for _, u := range movers {
				for _, q := range []string{
					`INSERT INTO spend_windows (user_id, hour_last, hours, day, day_gold, month, month_gold)
						VALUES ($1, 1, array_fill(0::bigint, ARRAY[25]), current_date, 5, date_trunc('month', now())::date, 5)`,
					`INSERT INTO spend_reminders (user_id, day, threshold, day_gold, platform, app_id, request_id, created_at)
						VALUES ($1, current_date, 5, 5, 'linkv', 'app', 'r-' || $1, now())`,
					`INSERT INTO linkv_accounts (app_id, user_id, open_id) VALUES ('app', $1, 'open-' || $1)`,
					`INSERT INTO linkv_wallet_moves (app_id, user_id, open_id, moved) VALUES ('app', $1, 'open-' || $1, 3)`,
					`INSERT INTO giftd_key_claims (kind, key, content, in_flight) VALUES ('topup', $1, '{"amount": 5}', 0)`,
				} {
					if _, err := old.Exec(ctx, q, u); err != nil {
						t.Fatal(err)
					}
				}
			}
			// What the rewritten mover's writes do on its new partition
			// once served from it: each row stamped with its transaction's
			// now().
			rewrite := []string{
				`UPDATE spend_windows SET day_gold = day_gold + 1, month_gold = month_gold + 1, updated_at = now() WHERE user_id = $1`,
				`INSERT INTO spend_reminders (user_id, day, threshold, day_gold, platform, app_id, request_id, created_at)
					VALUES ($1, current_date + 1, 5, 6, 'linkv', 'app', 'r2-' || $1, now())`,
				// Reminders are only inserted; one rewritten all the same,
				// for the lookup of a key with a date in it.
				`UPDATE spend_reminders SET day_gold = 7, created_at = now() WHERE user_id = $1 AND day = current_date`,
				`UPDATE linkv_accounts SET open_id = 'new-' || $1, updated_at = now() WHERE user_id = $1`,
				`UPDATE linkv_wallet_moves SET last_error = 'LinkV down', updated_at = now() WHERE user_id = $1`,
				`UPDATE giftd_key_claims SET in_flight = 1, updated_at = now() WHERE key = $1`,
				`INSERT INTO giftd_key_claims (kind, key, content) VALUES ('payout', $1, '{"amount": 1}')`,
			}
			r := partition.WithOnStep(partition.Resharding{Layout: l, NewPartitionURLs: newURLs}, func(step string) {
				switch step {
				case "check": // the copy cut, before the switch
					if tc.table != "" {
						if err := keepAndTamper(ctx, moved, tc.table, tc.row, tc.tamper, tampered); err != nil {
							t.Errorf("tamper with the mover's %s on the new partition: %v", tc.table, err)
						}
					}
				case "record": // switched: the new partition serves the movers
					if tc.noCut {
						if _, err := moved.Exec(ctx, `DELETE FROM giftd_reshard_cut`); err != nil {
							t.Error(err)
						}
					}
					for _, q := range rewrite {
						if _, err := moved.Exec(ctx, q, rewritten); err != nil {
							t.Errorf("the rewritten mover's writes on its new partition: %v", err)
						}
					}
				}
			})
			_, err := partition.Reshard(ctx, r)
			if tc.table == "" || tc.noCut {
				if err != nil {
					t.Fatalf("reshard with a mover's rows rewritten on its new partition after the switch: %v; want done", err)
				}
				var open string
				if err := moved.QueryRow(ctx, `SELECT open_id FROM linkv_accounts WHERE user_id = $1`, rewritten).Scan(&open); err != nil ||
					open != "new-"+rewritten {
					t.Errorf("the rewritten mover's LinkV account on its new partition: %q, %v; want the rewrite's", open, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "the copy differs: the "+tc.what) || !strings.Contains(err.Error(), "nothing forgotten") {
				t.Fatalf("reshard over a copy with the mover's %s tampered with: %v; want the copy differing in the %s, nothing forgotten",
					tc.table, err, tc.what)
			}
			var there int
			if err := old.QueryRow(ctx, `SELECT count(*) FROM `+tc.table+` WHERE `+tc.row, tampered).Scan(&there); err != nil || there != 1 {
				t.Errorf("the mover's %s on the old partition after the failed check: %d, %v; want 1 (not forgotten)", tc.table, there, err)
			}

			// Put back as it was, the run again forgets.
			if err := putBack(ctx, moved, tc.table, tc.row, tampered); err != nil {
				t.Fatal(err)
			}
			if _, err := partition.Reshard(ctx, partition.Resharding{Layout: l, NewPartitionURLs: newURLs}); err != nil {
				t.Fatalf("reshard again, the row put back: %v", err)
			}
			if err := old.QueryRow(ctx, `SELECT count(*) FROM `+tc.table+` WHERE `+tc.row, tampered).Scan(&there); err != nil || there != 0 {
				t.Errorf("the mover's %s on the old partition after the run again: %d, %v; want 0 (forgotten)", tc.table, there, err)
			}
		})
	}
}

// putBack puts the rows keepAndTamper kept of user's in table back in
// place of what is there now, as replication writes.
func putBack(ctx context.Context, conn *pgx.Conn, table, row, user string) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE `+row, user); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO `+table+` SELECT * FROM kept; DROP TABLE kept`)
		return err
	})
}
