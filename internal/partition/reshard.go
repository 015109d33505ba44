package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"giftd/internal/ledger"
)

// userTables are the tables holding a user's rows outside the gift economy:
// giftd reshard copies them from partition i to the new partition i + n,
// and fences them (partition migration 11's trigger giftd_reshard_fence on
// each, enabled only from the fence to the forget).
var userTables = []string{"wallets", "ledger_entries", "debit_requests", "spend_windows", "spend_reminders",
	"linkv_accounts", "linkv_wallet_moves", "events"}

// configTables are every partition's configuration, which debits read on
// the sender's partition: the gift catalogue, the Polyv channels' receivers
// and the spending policies (app and user), each with its history; and the
// webhook endpoints, each with its delivery of partition i's events: the
// new partition i + n carries on delivering the moved users' events from
// the cursor reached when the copy stopped (the events keep their ids, so
// one delivered by both sides around the switch is one webhook-id twice).
// giftd reshard copies them whole from partition i to i + n, and nothing
// forgets them.
var configTables = []string{"gift_catalogue", "gift_catalogue_history", "room_receivers", "room_receivers_history",
	"spend_policies", "spend_policy_history", "webhook_endpoints"}

// economyTables are the gift economy: giftd reshard copies them whole from
// partition i to i + n, decides before the pause which side owns each row
// copied so far (partition migration 17's giftd_reshard_presplit), then,
// inside the pause, the rows written since, and each side keeps what it
// owns and squares each receiver's accounts (giftd_reshard_split). From the
// fence to that split, the trigger
// giftd_reshard_freeze on the entries' tables refuses every economy write
// but the credit consumer's legs.
var economyTables = []string{"gift_entries", "account_entries", "earnings_accounts", "house_slots"}

// frozenTables carry partition migration 12's trigger giftd_reshard_freeze.
var frozenTables = []string{"gift_entries", "account_entries"}

// copiedTables are the tables giftd reshard copies from partition i to the
// new partition i + n: the users', the configuration's and the economy's;
// the operators' key claims (partition migration 13), placed by their key
// as users are, so that a claim moves with its key (each side forgets the
// keys it no longer owns, partition migration 14); and the fence and marks
// that prove the copy caught up.
var copiedTables = append(append(append(append([]string(nil), userTables...), configTables...), economyTables...),
	"giftd_key_claims", "giftd_reshard_fence", "giftd_reshard_marks")

// copiedSequences give the ids of copied rows: the new partition's go on
// from the old one's, so that its new rows never take a copied id.
var copiedSequences = []string{"ledger_entries_id_seq", "events_position_seq", "room_receivers_history_id_seq",
	"spend_policy_history_id_seq", "gift_entries_id_seq", "account_entries_id_seq"}

// A Resharding doubles a partitioned giftd (docs/scale-out.md#resharding-n--2n).
type Resharding struct {
	// Layout is the cluster as the proxy routes it today: n partitions.
	Layout Layout
	// NewPartitionURLs are n new, empty databases: partition n + i's at
	// index i. NewProxyPartitionURLs are the same as the proxy reaches
	// them, in the same order; set both or neither of it and
	// Layout.ProxyPartitionURLs.
	NewPartitionURLs      []string
	NewProxyPartitionURLs []string
	// Log gets one line per step (nil: none).
	Log *slog.Logger
	// DrainTimeout bounds how long the pause waits for the credit
	// consumer to move every credit of the old count (0: 10 s).
	DrainTimeout time.Duration
	// EarningsHold is giftd serve's GIFTD_EARNINGS_HOLD (0: none). The
	// earnings of gifts younger than it at the first pre-split that the
	// split moves to their receiver's home arrive there in a held leg,
	// which giftd_payout holds for this long from the split (partition
	// migration 19).
	EarningsHold time.Duration
	// BeforeForget, when set, runs once the proxy routes over 2n and the
	// configuration is levelled, right before step 4's forget deletes from
	// each partition the rows it no longer owns: on old partition i the
	// only other copy of the rows of the users it gave away. An error
	// stops the run there, nothing forgotten; a run again goes on from
	// that point (giftd reshard audits the 2n partitions here).
	BeforeForget func(ctx context.Context) error
	// onStep, when set (tests), runs at the pause's steps: "presplit"
	// between the economy's two pre-splits, "precheck" before the copy
	// check before the pause, "fence" before the first fence, "drain" once
	// every fence has reached its copy, before the drain, "sequences" once
	// every subscription is dropped, "check" before the copy check inside
	// the pause, "split" once every claim has moved, "switch" once every
	// partition's economy is split, "record" after the switch, before it is recorded
	// on the partitions, "forget" after the checks before the forget,
	// right before it.
	onStep func(step string)
	// onePhase (tests) leaves out the pre-split: the whole economy is
	// split inside the pause, as before partition migration 17.
	onePhase bool
}

// A ReshardReport is what Reshard did.
type ReshardReport struct {
	// Partitions is the count the proxy routes over at the end (2n).
	Partitions int
	// Pauses are, for each old partition i, how long its moving users'
	// writes were refused: from its fence to the proxy's switch. Empty when
	// the switch had happened before this run.
	Pauses []time.Duration
	// Forgotten are the wallets each of the 2n partitions forgot: on old
	// partition i those that moved to i + n, on new partition i + n those
	// that stayed on i.
	Forgotten []int64
	// ConfigDrift is how the configuration every partition holds (the
	// catalogue, rooms' receivers, apps' policies, webhook endpoints)
	// differed from partition 0's after the switch: none, nothing drifted;
	// otherwise ConfigSync is the copy of partition 0's to every partition
	// that levelled it.
	ConfigDrift []ledger.Drift
	ConfigSync  ledger.SyncReport
	// PolicyDrift are the partitions whose users' spending policies
	// differed from partition 0's after the switch (kind
	// ledger.ConfigUserPolicies): not copied, since the proxy writes each
	// on every partition and none is its home; put them again.
	PolicyDrift []ledger.Drift
}

// After is the layout that routes over all 2n partitions.
func (r Resharding) After() Layout {
	l := Layout{ProxyURL: r.Layout.ProxyURL,
		PartitionURLs: append(append([]string(nil), r.Layout.PartitionURLs...), r.NewPartitionURLs...)}
	if len(r.Layout.ProxyPartitionURLs) != 0 || len(r.NewProxyPartitionURLs) != 0 {
		l.ProxyPartitionURLs = append(append([]string(nil), r.Layout.ProxyPartitionURLs...), r.NewProxyPartitionURLs...)
	}
	return l
}

// ReshardingOf is the Resharding of all, the cluster as giftd serve's
// replicas are given it for a reshard: the n partitions the proxy routes
// over today, then the n new ones, 2n in all (and as many ProxyPartitionURLs,
// if any). It reads how many partitions the proxy routes over: half of all's
// gives the doubling onto the second half; all of them, a run after the
// switch (Reshard then has only its step 4, the forget, left). Any other
// count, or fewer than 2 partitions, is a *LayoutError on PartitionURLs
// naming both counts; a layout Check refuses is its error; the proxy's
// errors are returned as they are.
func ReshardingOf(ctx context.Context, all Layout) (Resharding, error) {
	if err := all.Check(); err != nil {
		return Resharding{}, err
	}
	total := len(all.PartitionURLs)
	routed, err := Routed(ctx, all.ProxyURL)
	if err != nil {
		return Resharding{}, err
	}
	if total < 2 || (routed != total/2 && routed != total) {
		return Resharding{}, &LayoutError{"PartitionURLs", fmt.Sprintf("%d URLs, but the proxy routes over %d partitions: "+
			"want twice as many URLs as it routes over, its partitions' then the new ones' (or as many, to finish a reshard whose switch is done)",
			total, routed)}
	}
	n := total / 2
	r := Resharding{Layout: all.First(n), NewPartitionURLs: all.PartitionURLs[n:]}
	if len(all.ProxyPartitionURLs) != 0 {
		r.NewProxyPartitionURLs = all.ProxyPartitionURLs[n:]
	}
	return r, nil
}

// Check returns an error when r cannot be run: a layout Layout.Check
// refuses (for the cluster before and after), or new URLs of another
// count than the partitions'.
func (r Resharding) Check() error {
	if err := r.Layout.Check(); err != nil {
		return err
	}
	n := len(r.Layout.PartitionURLs)
	if len(r.NewPartitionURLs) != n {
		return &LayoutError{"NewPartitionURLs", fmt.Sprintf("%d URLs for %d partitions: want one new database per partition", len(r.NewPartitionURLs), n)}
	}
	if (len(r.Layout.ProxyPartitionURLs) == 0) != (len(r.NewProxyPartitionURLs) == 0) {
		return &LayoutError{"NewProxyPartitionURLs", "set for the old partitions and the new ones, or for neither"}
	}
	return r.After().Check()
}

// Reshard doubles the cluster from n to 2n partitions under load
// (docs/scale-out.md#resharding-n--2n): the users of partition i whose
// placement has bit n set move to the new partition i + n.
//
//  1. It migrates the old cluster to this binary's sets, migrates each new
//     database and claims it as partition i + n of 2n.
//  2. It copies each old partition's user, configuration (the catalogue,
//     room receivers, policies) and gift economy tables to its new one by logical
//     replication (a publication, a slot, a subscription with copy_data),
//     waits for the initial copy, then for the copy to catch up with a mark.
//     Then it splits the gift economy up to a cut before the pause
//     (presplit): each side sums what it gives away of those rows, and
//     i + n deletes it.
//  3. The pause: it fences each old partition (its moving users' writes
//     refused with SQLSTATE GD003, a retryable error, by giftd_check_users
//     and by a trigger on every user table; the users staying are never
//     refused), freezes its gift economy (every gift, payout and
//     reversal refused with GD003 but the credit consumer's legs) and its
//     configuration (every write of it refused with GD003, partition
//     migration 23, until the switch), waits
//     for the fence to arrive on the new partition (the copy then holds
//     every write before it), for the credit consumer to move every credit
//     of the old count and for the copy to catch up again, drops the
//     subscription (and refuses configuration writes on the new partition
//     too), carries the sequences on, moves each old claim to i of
//     2n, splits the economy on every partition (giftd_reshard_split, one
//     transaction each, reading only the rows past the cut, which ends the
//     freeze) and, in one proxy
//     transaction, registers the 2n partitions, checking every claim
//     through the proxy.
//  4. It accepts configuration writes again on every partition
//     (configWritable) and records the switch on every partition
//     (recordSwitch: from then to the forget, the reads the proxy runs on
//     every partition leave out the rows a partition no longer owns). When
//     the configuration every partition holds differs anywhere from
//     partition 0's (the safety net: the pause refused every change), it
//     copies partition 0's to every partition, and reports users' policies
//     that differ (levelConfig). Before the forget it checks that the
//     rows each old partition gave away are on its new one (checkCopies),
//     then runs r.BeforeForget (giftd reshard's audit): either failing
//     stops the run, nothing forgotten. It drops the slots
//     and publications, and each partition forgets the users it no longer owns
//     (giftd_reshard_forget), and old partition i the economy rows under
//     the cut it gave away.
//
// Run again after a failure, it carries on: before the switch, a failed
// pause lifts the fences (and marks a copy cut off as to be made again);
// after it, only step 4 is left. Reshard needs a superuser on every
// partition (CREATE SUBSCRIPTION, session_replication_role) and wal_level =
// logical on the old partitions' servers. Its errors name databases by host
// and name, never a password.
func Reshard(ctx context.Context, r Resharding, opts ...ledger.MigrateOption) (ReshardReport, error) {
	if err := r.Check(); err != nil {
		return ReshardReport{}, err
	}
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := len(r.Layout.PartitionURLs)
	after := r.After()
	rs := &resharding{Resharding: r, log: log, n: n, after: after}
	registered, err := registeredCount(ctx, r.Layout.ProxyURL)
	if err != nil {
		return ReshardReport{}, err
	}
	rep := ReshardReport{Partitions: 2 * n}
	switch registered {
	case 2 * n:
		log.Info("reshard: the proxy routes over the new count already; forgetting what each partition no longer owns")
	case n:
		if err := rs.open(ctx); err != nil {
			return rep, err
		}
		defer rs.close()
		if rep.Pauses, err = rs.copyAndSwitch(ctx, opts); err != nil {
			return rep, err
		}
	default:
		return rep, fmt.Errorf("reshard: the proxy %s routes over %d partitions; %d given, to double to %d",
			Where(r.Layout.ProxyURL), registered, n, 2*n)
	}
	if rs.conns == nil {
		if err := rs.open(ctx); err != nil {
			return rep, err
		}
		defer rs.close()
	}
	if err := rs.configWritable(ctx); err != nil {
		return rep, err
	}
	if err := rs.recordSwitch(ctx); err != nil {
		return rep, err
	}
	if rep.ConfigDrift, rep.ConfigSync, rep.PolicyDrift, err = rs.levelConfig(ctx); err != nil {
		return rep, err
	}
	if err := rs.beforeForget(ctx); err != nil {
		return rep, fmt.Errorf("reshard: switched to %d partitions, nothing forgotten (each old partition keeps the rows "+
			"of the users it gave away): the check before the forget failed; once resolved, run giftd reshard again "+
			"to forget them: %w", 2*n, err)
	}
	rep.Forgotten, err = rs.finish(ctx)
	return rep, err
}

// recordSwitch writes on each of the 2n partitions that the proxy routes
// over them (ledger.RecordReshardSwitch: giftd_reshard_switched, partition
// migration 22), at once after the switch and again in a run again: from
// then until its forget, the reads the proxy runs on every partition (the
// period reports, boards, earnings, wallet totals) leave out, on each, the
// rows it no longer owns, which its pair holds too. Before it, old
// partition i is the only one the proxy reaches holding its moved users'
// rows, and reads them all. A partition without migration 22 (a run of an
// earlier release carried on by this one, the cluster not migrated since)
// has no such reads: nothing is written. giftd serve writes the same row
// when it finds a reshard not forgotten without it (a run stopped between
// the switch and this step: ledger.Store.RecordReshardSwitches).
func (rs *resharding) recordSwitch(ctx context.Context) error {
	rs.step("record")
	for p := range 2 * rs.n {
		if _, err := ledger.RecordReshardSwitch(ctx, rs.conns[p], 2*rs.n); err != nil {
			return fmt.Errorf("reshard: %s: record the switch (run giftd reshard again): %w", rs.where(p), err)
		}
	}
	return nil
}

// levelConfig is the first part of step 4: when the configuration of any of
// the 2n partitions differs from partition 0's, it copies partition 0's to
// every partition, as POST /admin/v1/config/sync does
// (ledger.Store.SyncConfig, through a Store on the 2n partitions). The pause
// refuses every configuration write from the fence to the switch (partition
// migration 23), so the new partitions hold their old ones' configuration
// at the switch: this is the safety net, for a write made as replication
// does (session_replication_role = replica, by hand), a copy refused in the
// pause whose change partition 0 made before its fence (then old partitions
// differ from one another, as after any copy that failed), or a giftd of an
// earlier release. It returns the drift found and the copy (none when
// nothing drifted), and an error when partition 0 or a copy failed: run
// again, it copies again.
//
// The users' policies are compared too, and never copied: they have no
// home partition (the proxy writes each on every partition). The
// partitions whose users' policies differ from partition 0's are returned
// as policies, for the operator to put those policies again.
func (rs *resharding) levelConfig(ctx context.Context) (drift []ledger.Drift, copied ledger.SyncReport, policies []ledger.Drift, err error) {
	var parts []*ledger.Store
	defer func() {
		for _, p := range parts {
			p.Close()
		}
	}()
	for p, u := range rs.after.PartitionURLs {
		ps, err := ledger.Open(ctx, u, ledger.WithBatching(ledger.Batching{MaxBatch: 1}), ledger.WithMaxConns(2))
		if err != nil {
			return nil, copied, nil, fmt.Errorf("reshard: %s: %w", rs.where(p), err)
		}
		parts = append(parts, ps)
	}
	s, err := ledger.Open(ctx, rs.after.ProxyURL, ledger.WithPartitions(2*rs.n, For), ledger.WithPartitionStores(parts),
		ledger.WithBatching(ledger.Batching{MaxBatch: 1}), ledger.WithMaxConns(2))
	if err != nil {
		return nil, copied, nil, fmt.Errorf("reshard: the proxy %s: %w", Where(rs.after.ProxyURL), err)
	}
	defer s.Close()
	s.SetConfigLog(rs.log)
	if policies, err = s.ConfigDrift(ctx, ledger.ConfigUserPolicies); err != nil {
		return nil, copied, nil, fmt.Errorf("reshard: compare the partitions' user policies: %w", err)
	}
	if len(policies) > 0 {
		rs.log.Warn("reshard: users' policies differ between partitions (put each again: PUT /admin/v1/policies/users/{user_id} "+
			"writes it on every partition)", "drifted", ledger.DriftText(policies))
	}
	if drift, err = s.ConfigDrift(ctx, ledger.CopiedConfigKinds()...); err != nil {
		return nil, copied, policies, fmt.Errorf("reshard: compare the partitions' configuration: %w", err)
	}
	if len(drift) == 0 {
		rs.log.Info("reshard: every partition holds partition 0's configuration; nothing drifted, nothing copied")
		return nil, copied, policies, nil
	}
	copied, err = s.SyncConfig(ctx)
	if err == nil && len(copied.Failed) > 0 {
		err = fmt.Errorf("%d of %d keys not copied everywhere: %s", len(copied.Failed), copied.Keys, strings.Join(copied.Failed, "; "))
	}
	if err != nil {
		return drift, copied, policies, fmt.Errorf("reshard: copy partition 0's configuration to every partition (run giftd reshard again, "+
			"or POST /admin/v1/config/sync): drifted %s: %w", ledger.DriftText(drift), err)
	}
	rs.log.Info("reshard: copied partition 0's configuration to every partition", "drifted", ledger.DriftText(drift), "keys", copied.Keys)
	return drift, copied, policies, nil
}

// resharding is one run of Reshard: its connections, old partition i's at
// conns[i] and new partition n + i's at conns[n + i].
type resharding struct {
	Resharding
	log     *slog.Logger
	n       int
	after   Layout
	cluster string
	conns   []*pgx.Conn
	// young is, per old partition i, the time a gift must be younger than
	// for its earnings to be held across the split (nil: none): readYoung.
	young []*time.Time
	// checked is, per old partition i and per copyChecks entry checked
	// before the switch (since set), the last key precheck compared: the
	// pause compares the rows past it.
	checked [][]int64
}

// ReshardApplicationName is the application_name of giftd reshard's own
// sessions on each partition, unless the partition's URL sets one.
const ReshardApplicationName = "giftd reshard"

func (rs *resharding) open(ctx context.Context) error {
	var err error
	if rs.cluster, err = clusterID(ctx, rs.Layout.ProxyURL); err != nil {
		return err
	}
	for p, u := range rs.after.PartitionURLs {
		cfg, err := pgx.ParseConfig(u)
		if err != nil {
			rs.close()
			return fmt.Errorf("reshard: partition %d: %s: %w", p, Where(u), err)
		}
		// pg_stat_activity names the run's sessions, as giftd migrate's.
		if cfg.RuntimeParams["application_name"] == "" {
			cfg.RuntimeParams["application_name"] = ReshardApplicationName
		}
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			rs.close()
			return fmt.Errorf("reshard: partition %d: connect to %s: %w", p, Where(u), err)
		}
		rs.conns = append(rs.conns, c)
	}
	return nil
}

func (rs *resharding) close() {
	for _, c := range rs.conns {
		c.Close(context.Background())
	}
}

// where names partition p's database.
func (rs *resharding) where(p int) string {
	return fmt.Sprintf("partition %d (%s)", p, Where(rs.after.PartitionURLs[p]))
}

// slot is the replication slot copying old partition i: slot names are the
// server's, so they carry the cluster's id.
func (rs *resharding) slot(i int) string {
	return fmt.Sprintf("giftd_reshard_%s_%d", strings.ReplaceAll(rs.cluster, "-", "")[:12], rs.n+i)
}

// copyAndSwitch is steps 1 to 3; it returns each old partition's pause.
func (rs *resharding) copyAndSwitch(ctx context.Context, opts []ledger.MigrateOption) ([]time.Duration, error) {
	n := rs.n
	for i := range n {
		var claimed int
		if err := rs.conns[i].QueryRow(ctx, `SELECT partitions FROM giftd_partition_identity`).Scan(&claimed); err != nil {
			return nil, fmt.Errorf("reshard: %s: read its claim: %w", rs.where(i), err)
		}
		if claimed == 2*n {
			// A run cut short while it moved the claims, after the pause's
			// every other step: only the claims and the switch are left.
			rs.log.Info("reshard: the claims are moving already; moving the rest and switching the proxy")
			return nil, rs.switchOver(ctx)
		}
	}
	rs.log.Info("reshard: migrating the cluster", "partitions", n)
	if err := Migrate(ctx, rs.Layout, opts...); err != nil {
		return nil, err
	}
	if err := rs.liftLeftFences(ctx); err != nil {
		return nil, err
	}
	for i := range n {
		if err := rs.startCopy(ctx, i, opts); err != nil {
			return nil, err
		}
	}
	for i := range n {
		if err := rs.waitCopied(ctx, i); err != nil {
			return nil, err
		}
	}
	if err := rs.readYoung(ctx); err != nil {
		return nil, err
	}
	// Twice: the first over the economy, the second over what was written
	// meanwhile, so that the pause has only what is written after that.
	for round := range 2 {
		if round == 1 {
			rs.step("presplit")
		}
		for i := range n {
			if rs.onePhase {
				break
			}
			if err := rs.presplit(ctx, i, round); err != nil {
				return nil, err
			}
		}
	}
	rs.step("precheck")
	rs.checked = make([][]int64, n)
	for round := range 2 {
		for i := range n {
			if err := rs.precheck(ctx, i, round); err != nil {
				return nil, err
			}
		}
	}
	if err := rs.consumerRunning(ctx); err != nil {
		return nil, err
	}
	return rs.pause(ctx)
}

// creditEvent is true of an event the credit consumer's cursor must pass
// before the economy is split: a settled gift with earnings (a credit to
// move when its receiver is on another partition; a home gift would become
// one once the claims move, were its receiver moving), a reversal with a
// claw-back.
const creditEvent = `((e.type = 'gift.debited' AND (e.data->>'settled')::boolean AND (e.data->>'earnings')::bigint > 0)
	OR (e.type = 'debit.reversed' AND coalesce((e.data->'gift'->>'clawback')::bigint, 0) > 0))`

// consumerRunning refuses to pause when an old partition has credits or
// claw-backs past its cursor and no credit consumer holds its lease: the
// drain would wait in vain for DrainTimeout, every gift of the old
// partitions refused meanwhile by the freeze, before the fences were
// lifted. A running consumer renews its lease at least every half of it,
// idle or not. (One that stops after this check still makes the drain time
// out.)
func (rs *resharding) consumerRunning(ctx context.Context) error {
	for i := range rs.n {
		var pending, leased bool
		err := rs.conns[i].QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM events AS e, credit_cursor AS c WHERE e.position > c.position AND `+creditEvent+`),
			       coalesce((SELECT lease_until > now() FROM credit_cursor), false)`).Scan(&pending, &leased)
		if err != nil {
			return fmt.Errorf("reshard: %s: read the credits pending: %w", rs.where(i), err)
		}
		if pending && !leased {
			return fmt.Errorf("reshard: %s: credits are pending and no credit consumer holds its lease: start giftd serve "+
				"(its consumer moves them, and the pause waits for it), then run giftd reshard again; nothing fenced, "+
				"the copy goes on", rs.where(i))
		}
	}
	return nil
}

// presplit splits, before the pause, the gift economy rows old partition i
// and its copy on n + i hold up to a cut, past an earlier round's
// (partition migration 17): each side sums what it gives away of them, and
// n + i, which serves nobody yet, deletes it; the split inside the pause
// then reads only the rows written since. The cut is the gift and account
// entry ids handed out when it is taken, once every transaction that was
// running then has ended: a row under it is then committed, or never will
// be. (An id is taken inside a transaction, so one running when the cut is
// read; every transaction holds its virtual transaction id's lock to its
// end.) A mark then proves the copy holds those rows too. Run again, each
// side carries on from the cut it reached.
func (rs *resharding) presplit(ctx context.Context, i, round int) error {
	j := rs.n + i
	old := rs.conns[i]
	var gcut, ecut int64
	// The entries' cut first: a leg's gift has its id before the leg.
	err := old.QueryRow(ctx, `
		SELECT (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM account_entries_id_seq),
		       (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM gift_entries_id_seq)`).Scan(&ecut, &gcut)
	if err != nil {
		return fmt.Errorf("reshard: %s: read the economy's ids: %w", rs.where(i), err)
	}
	waited, err := rs.waitRunning(ctx, i)
	if err != nil {
		return fmt.Errorf("reshard: %s: wait for the transactions running at the economy's cut: %w", rs.where(i), err)
	}
	rs.log.Info("reshard: cut the gift economy", "partition", rs.where(i), "round", round+1, "gift_cut", gcut, "entry_cut", ecut,
		"waited", waited.Round(time.Millisecond))
	for k, p := range []int{i, j} {
		if k == 1 {
			if err := rs.mark(ctx, i, fmt.Sprintf("cut %d %d", round, time.Now().UnixNano())); err != nil {
				return err
			}
		}
		start := time.Now()
		var rows int64
		if err := rs.conns[p].QueryRow(ctx, `SELECT giftd_reshard_presplit($1, $2, $3, $4)`, 2*rs.n, gcut, ecut, rs.young[i]).Scan(&rows); err != nil {
			return fmt.Errorf("reshard: %s: split the gift economy before the pause: %w", rs.where(p), err)
		}
		rs.log.Info("reshard: split the gift economy before the pause", "partition", rs.where(p), "round", round+1, "rows", rows,
			"took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// waitRunning waits until every transaction running on old partition i
// when it is called has ended (each holds its virtual transaction id's lock
// to its end), and says how long that took.
func (rs *resharding) waitRunning(ctx context.Context, i int) (time.Duration, error) {
	var running []string
	err := rs.conns[i].QueryRow(ctx, `SELECT coalesce(array_agg(virtualxid), '{}') FROM pg_locks
		WHERE locktype = 'virtualxid' AND granted AND pid <> pg_backend_pid()`).Scan(&running)
	if err != nil {
		return 0, fmt.Errorf("read the transactions running: %w", err)
	}
	start := time.Now()
	err = poll(ctx, 5*time.Millisecond, func() (bool, error) {
		var left bool
		err := rs.conns[i].QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'virtualxid' AND virtualxid = ANY ($1))`,
			running).Scan(&left)
		return !left, err
	})
	return time.Since(start), err
}

// readYoung sets rs.young: for each old partition i, the time its first
// pre-split of this count recorded (partition migration 19), else its
// clock now less EarningsHold (nil when there is no hold). Both sides of the
// pair pre-split and split with it: new partition i + n, copied anew after
// a run cut short, loses its own record, never old partition i. Any time at
// or before the split keeps the hold whole: the earnings of a gift older
// than it have matured by the split.
func (rs *resharding) readYoung(ctx context.Context) error {
	rs.young = make([]*time.Time, rs.n)
	for i := range rs.n {
		err := rs.conns[i].QueryRow(ctx, `
			SELECT coalesce((SELECT s.young_after FROM giftd_reshard_presplit AS s WHERE s.partitions = $1),
			                CASE WHEN NOT EXISTS (SELECT 1 FROM giftd_reshard_presplit AS s WHERE s.partitions = $1)
			                      AND $2::interval > '0' THEN now() - $2::interval END)`,
			2*rs.n, rs.EarningsHold).Scan(&rs.young[i])
		if err != nil {
			return fmt.Errorf("reshard: %s: read the earnings hold's time: %w", rs.where(i), err)
		}
	}
	return nil
}

// subscribed reports whether new partition p has giftd reshard's
// subscription, and whether the fence of 2n has reached it.
func (rs *resharding) subscribed(ctx context.Context, p int) (sub, fenced bool, err error) {
	err = rs.conns[p].QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM pg_subscription
		               WHERE subname = 'giftd_reshard' AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())),
		       EXISTS (SELECT 1 FROM giftd_reshard_fence WHERE partitions = $1)`, 2*rs.n).Scan(&sub, &fenced)
	if err != nil {
		err = fmt.Errorf("reshard: %s: %w", rs.where(p), err)
	}
	return sub, fenced, err
}

// startCopy is step 1 for new partition n + i and the start of step 2.
func (rs *resharding) startCopy(ctx context.Context, i int, opts []ledger.MigrateOption) error {
	j, u := rs.n+i, rs.after.PartitionURLs[rs.n+i]
	old, neu := rs.conns[i], rs.conns[j]
	for _, set := range []ledger.MigrationSet{ledger.MainMigrations(), ledger.PartitionMigrations()} {
		if err := ledger.Migrate(u, withSet(opts, set)...); err != nil {
			return fmt.Errorf("reshard: %s, %s migrations: %w", rs.where(j), set, err)
		}
	}
	if err := claimPartition(ctx, u, claim{rs.cluster, j, 2 * rs.n}); err != nil {
		return err
	}
	sub, _, err := rs.subscribed(ctx, j)
	if err != nil || sub {
		return err
	}
	rs.log.Info("reshard: copying", "from", rs.where(i), "to", rs.where(j))
	// A new partition with no subscription has no copy, or one cut off
	// (its fence, if it reached it, lifted by liftLeftFences): it never
	// served, so it starts again.
	err = pgx.BeginFunc(ctx, neu, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`)
		if err == nil {
			// With the copy goes what a pre-split made of it.
			_, err = tx.Exec(ctx, `TRUNCATE `+strings.Join(copiedTables, ", ")+`, giftd_reshard_presplit, giftd_reshard_gone, giftd_reshard_cut`)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("reshard: %s: empty the copied tables: %w", rs.where(j), err)
	}
	_, err = old.Exec(ctx, `DO $$ BEGIN
		IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'giftd_reshard') THEN
			CREATE PUBLICATION giftd_reshard FOR TABLE `+strings.Join(copiedTables, ", ")+`;
		END IF; END $$`)
	if err != nil {
		return fmt.Errorf("reshard: %s: create the publication: %w", rs.where(i), err)
	}
	if err := rs.dropSlot(ctx, i); err != nil {
		return err
	}
	// The slot first, then a subscription that does not create one: the
	// only way when both databases share a server, and as good otherwise.
	if _, err := old.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, rs.slot(i)); err != nil {
		return fmt.Errorf("reshard: %s: create the replication slot: %w", rs.where(i), err)
	}
	conninfo, err := ConnString(rs.Layout.PartitionURLs[i])
	if err != nil {
		return fmt.Errorf("reshard: partition %d: %w", i, err)
	}
	_, err = neu.Exec(ctx, `CREATE SUBSCRIPTION giftd_reshard CONNECTION `+literal(conninfo)+
		` PUBLICATION giftd_reshard WITH (create_slot = false, slot_name = `+literal(rs.slot(i))+`, copy_data = true)`)
	if err != nil {
		// PostgreSQL's errors here do not quote the connection string.
		return fmt.Errorf("reshard: %s: subscribe to %s: %w", rs.where(j), rs.where(i), err)
	}
	return nil
}

// literal quotes s as an SQL string literal.
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// dropSlot drops old partition i's slot if it is there, waiting while a
// walsender still holds it (a subscription just dropped).
func (rs *resharding) dropSlot(ctx context.Context, i int) error {
	for {
		var active *bool
		err := rs.conns[i].QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, rs.slot(i)).Scan(&active)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return nil
		case err != nil:
			return fmt.Errorf("reshard: %s: look for the replication slot: %w", rs.where(i), err)
		case !*active:
			if _, err := rs.conns[i].Exec(ctx, `SELECT pg_drop_replication_slot($1)`, rs.slot(i)); err != nil {
				return fmt.Errorf("reshard: %s: drop the replication slot: %w", rs.where(i), err)
			}
			return nil
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("reshard: %s: the replication slot stays in use: %w", rs.where(i), err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// poll runs check every d until it reports done, fails, or ctx ends.
func poll(ctx context.Context, d time.Duration, check func() (bool, error)) error {
	for {
		done, err := check()
		if err != nil || done {
			return err
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

// waitCopied waits until new partition n + i has copied every table and
// caught up with a mark inserted on partition i.
func (rs *resharding) waitCopied(ctx context.Context, i int) error {
	j := rs.n + i
	sub, _, err := rs.subscribed(ctx, j)
	if err != nil || !sub {
		return err
	}
	start := time.Now()
	err = poll(ctx, 50*time.Millisecond, func() (bool, error) {
		var ready, all int
		err := rs.conns[j].QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE r.srsubstate = 'r'), count(*) FROM pg_subscription_rel AS r
			JOIN pg_subscription AS s ON s.oid = r.srsubid
			WHERE s.subname = 'giftd_reshard' AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`).
			Scan(&ready, &all)
		return all == len(copiedTables) && ready == all, err
	})
	if err != nil {
		return fmt.Errorf("reshard: %s: wait for the initial copy: %w", rs.where(j), err)
	}
	copied := time.Since(start)
	start = time.Now()
	if err := rs.mark(ctx, i, fmt.Sprintf("caught up %d", time.Now().UnixNano())); err != nil {
		return err
	}
	rs.log.Info("reshard: copied", "to", rs.where(j), "initial_copy", copied.Round(time.Millisecond),
		"catch_up", time.Since(start).Round(time.Millisecond))
	return nil
}

// mark inserts mark on old partition i and waits until it is on new
// partition n + i: replication applies transactions in commit order, so
// the copy then holds everything committed on i before it.
func (rs *resharding) mark(ctx context.Context, i int, mark string) error {
	if _, err := rs.conns[i].Exec(ctx, `INSERT INTO giftd_reshard_marks (mark) VALUES ($1)`, mark); err != nil {
		return fmt.Errorf("reshard: %s: mark: %w", rs.where(i), err)
	}
	err := poll(ctx, 2*time.Millisecond, func() (bool, error) {
		var there bool
		err := rs.conns[rs.n+i].QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM giftd_reshard_marks WHERE mark = $1)`, mark).Scan(&there)
		return there, err
	})
	if err != nil {
		return fmt.Errorf("reshard: %s: wait for the copy to catch up: %w", rs.where(rs.n+i), err)
	}
	return nil
}

// pause is step 3. Until the claims move, a failure lifts the fences.
func (rs *resharding) pause(ctx context.Context) (pauses []time.Duration, err error) {
	n := rs.n
	fencedAt := make([]time.Time, n)
	cut := make([]bool, n) // the subscription of n + i dropped in this run
	switched := false
	defer func() {
		if err != nil && !switched {
			if uerr := rs.unfence(cut, nil); uerr != nil {
				err = fmt.Errorf("%w; and lifting the fences failed, so the moving users stay refused until giftd reshard is run again: %w", err, uerr)
			}
		}
	}()
	rs.step("fence")
	for i := range n {
		fencedAt[i] = time.Now()
		if err := rs.fence(ctx, i); err != nil {
			return nil, err
		}
	}
	for i := range n {
		j := n + i
		err := poll(ctx, 2*time.Millisecond, func() (bool, error) {
			_, fenced, err := rs.subscribed(ctx, j)
			return fenced, err
		})
		if err != nil {
			return nil, fmt.Errorf("reshard: %s: wait for the fence to arrive: %w", rs.where(j), err)
		}
	}
	rs.step("drain")
	for i := range n {
		if err := rs.drain(ctx, i); err != nil {
			return nil, err
		}
	}
	// The copy must hold the legs the drain wrote (on every old partition).
	for i := range n {
		if err := rs.mark(ctx, i, fmt.Sprintf("drained %d", time.Now().UnixNano())); err != nil {
			return nil, err
		}
	}
	for i := range n {
		j := n + i
		sub, _, err := rs.subscribed(ctx, j)
		if err != nil {
			return nil, err
		}
		if sub {
			cut[i] = true
			if err := rs.dropSubscription(ctx, j); err != nil {
				return nil, err
			}
		}
		// No longer a copy: configuration writes are refused here too
		// until the switch, as on its old partition, so that a giftd
		// growing onto it at the switch meets the same refusal on all 2n.
		if _, err := rs.conns[j].Exec(ctx, strings.Join(configTriggers(true), "; ")); err != nil {
			return nil, fmt.Errorf("reshard: %s: refuse configuration changes: %w", rs.where(j), err)
		}
		// On j's clock, before the switch: the check before the forget
		// leaves out the rows j writes after it (inPlaceChecks).
		if _, err := rs.conns[j].Exec(ctx, `INSERT INTO giftd_reshard_cut (partitions) VALUES ($1) ON CONFLICT DO NOTHING`, 2*n); err != nil {
			return nil, fmt.Errorf("reshard: %s: record the copy's cut: %w", rs.where(j), err)
		}
	}
	rs.step("sequences")
	for i := range n {
		j := n + i
		for _, seq := range copiedSequences {
			var last int64
			if err := rs.conns[i].QueryRow(ctx, `SELECT last_value FROM `+seq).Scan(&last); err != nil {
				return nil, fmt.Errorf("reshard: %s: read %s: %w", rs.where(i), seq, err)
			}
			if _, err := rs.conns[j].Exec(ctx, `SELECT setval($1, greatest($2, (SELECT last_value FROM `+seq+`)))`, seq, last); err != nil {
				return nil, fmt.Errorf("reshard: %s: carry %s on: %w", rs.where(j), seq, err)
			}
		}
	}
	rs.step("check")
	if err := rs.checkPaused(ctx); err != nil {
		return nil, err
	}
	switched = true // from the first claim moved, only going forward is safe
	if err := rs.switchOver(ctx); err != nil {
		return nil, err
	}
	end := time.Now()
	for i := range n {
		pauses = append(pauses, end.Sub(fencedAt[i]))
	}
	rs.log.Info("reshard: the proxy routes over the new count", "partitions", 2*n, "pauses", pauses)
	return pauses, nil
}

// dropSubscription drops new partition j's subscription: DISABLE, then no
// slot, so that DROP stops the workers without reaching the publisher (the
// slot goes in step 4, or when a run again copies anew).
func (rs *resharding) dropSubscription(ctx context.Context, j int) error {
	_, err := rs.conns[j].Exec(ctx, `ALTER SUBSCRIPTION giftd_reshard DISABLE`)
	if err == nil {
		_, err = rs.conns[j].Exec(ctx, `ALTER SUBSCRIPTION giftd_reshard SET (slot_name = NONE)`)
	}
	if err == nil {
		_, err = rs.conns[j].Exec(ctx, `DROP SUBSCRIPTION giftd_reshard`)
	}
	if err != nil {
		return fmt.Errorf("reshard: %s: drop the subscription: %w", rs.where(j), err)
	}
	return nil
}

// switchOver moves each old claim from i of n to i of 2n, then registers the
// 2n partitions on the proxy in one transaction, which checks every claim
// through the proxy before it commits.
func (rs *resharding) switchOver(ctx context.Context) error {
	n := rs.n
	for i := range n {
		want := claim{rs.cluster, i, 2 * n}
		var got claim
		err := rs.conns[i].QueryRow(ctx, `SELECT cluster_id::text, partition, partitions FROM giftd_reshard_claim($1, $2)`,
			rs.cluster, 2*n).Scan(&got.cluster, &got.partition, &got.partitions)
		if err != nil {
			return fmt.Errorf("reshard: %s: move the claim (run giftd reshard again: the moving users are refused until it succeeds): %w", rs.where(i), err)
		}
		if got != want {
			return fmt.Errorf("%w: reshard: %s is %s, not %s", ErrWrongPartition, rs.where(i), got, want)
		}
	}
	if rs.young == nil {
		if err := rs.readYoung(ctx); err != nil {
			return err
		}
	}
	rs.step("split")
	// Each partition's split is its own transaction, and none waits for
	// another: all at once, the pause being as long as the slowest.
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for p := range 2 * n {
		wg.Go(func() {
			start := time.Now()
			var legs int64
			if err := rs.conns[p].QueryRow(ctx, `SELECT giftd_reshard_split($1, $2)`, 2*n, rs.young[p%n]).Scan(&legs); err != nil {
				errs[p] = fmt.Errorf("reshard: %s: split the gift economy (run giftd reshard again: the moving users are refused until it succeeds): %w", rs.where(p), err)
				return
			}
			var rows int64
			if err := rs.conns[p].QueryRow(ctx, `SELECT coalesce(rows, 0) FROM giftd_reshard_split WHERE partitions = $1`, 2*n).Scan(&rows); err != nil {
				errs[p] = fmt.Errorf("reshard: %s: read its split: %w", rs.where(p), err)
				return
			}
			rs.log.Info("reshard: split the gift economy", "partition", rs.where(p), "resharding_legs", legs, "rows", rows,
				"took", time.Since(start).Round(time.Millisecond))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	rs.step("switch")
	if err := register(ctx, rs.after.ProxyURL, rs.after.proxyURLs(), true); err != nil {
		return fmt.Errorf("reshard: switch the proxy (run giftd reshard again: the moving users are refused until it succeeds): %w", err)
	}
	return nil
}

func (rs *resharding) step(name string) {
	if rs.onStep != nil {
		rs.onStep(name)
	}
}

// fence fences old partition i's moving users (partition migration 8) and
// enables the trigger that refuses their rows in every user table whatever
// writes them (partition migration 11), in one transaction. Taking the
// fence table's ACCESS EXCLUSIVE lock waits for every write that has passed
// the check, and holds back every checked write until the fence commits;
// ENABLE TRIGGER takes SHARE ROW EXCLUSIVE on each user table, which does
// the same for every write of that table, checked or not (a reversal, a
// payout, plain SQL): so every write in flight has committed before the
// fence does (replication delivers it before the fence row), and every
// write after it runs the trigger and sees the fence. The same holds for
// the configuration tables (partition migration 23); a read of them (every
// debit's) takes ACCESS SHARE, which SHARE ROW EXCLUSIVE does not conflict
// with: it never waits for the fence's locks there.
//
// While it waits for the locks, every write of the partition (the users
// staying too) waits behind it: a write stuck in a long transaction must
// not hold them all, so the wait is bounded (a second) and tried again a
// few times before the run fails and lifts the fences. A write that took a
// user table before a checked call in its transaction deadlocks with the
// fence: the fence looks first (its deadlock_timeout is short) and gives
// way, as for a lock it waited too long for.
func (rs *resharding) fence(ctx context.Context, i int) error {
	var err error
	for range 3 {
		err = pgx.BeginFunc(ctx, rs.conns[i], func(tx pgx.Tx) error {
			for _, q := range append([]string{`SET LOCAL lock_timeout = '1s'`, `SET LOCAL deadlock_timeout = '100ms'`,
				`LOCK TABLE giftd_reshard_fence IN ACCESS EXCLUSIVE MODE`}, fenceTriggers(true)...) {
				if _, err := tx.Exec(ctx, q); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, `INSERT INTO giftd_reshard_fence (partitions) VALUES ($1) ON CONFLICT DO NOTHING`, 2*rs.n)
			return err
		})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "55P03" && pgErr.Code != "40P01") { // lock_not_available, deadlock_detected
			break
		}
		rs.log.Warn("reshard: the fence waited a second for a write in progress, or deadlocked with one; trying again", "partition", rs.where(i))
	}
	if err != nil {
		return fmt.Errorf("reshard: %s: fence the moving users: %w", rs.where(i), err)
	}
	return nil
}

// fenceTriggers are the statements enabling (on) or disabling partition
// migration 11's trigger on every user table, migration 12's freeze
// of the gift economy and migration 23's refusal of configuration writes
// (configTriggers).
func fenceTriggers(on bool) []string {
	verb := triggerVerb(on)
	var qs []string
	for _, t := range userTables {
		qs = append(qs, `ALTER TABLE `+t+` `+verb+` TRIGGER giftd_reshard_fence`)
	}
	for _, t := range frozenTables {
		qs = append(qs, `ALTER TABLE `+t+` `+verb+` TRIGGER giftd_reshard_freeze`)
	}
	return append(qs, configTriggers(on)...)
}

// configTriggers are the statements enabling (on) or disabling partition
// migration 23's trigger giftd_reshard_config_fence on every configuration
// table: enabled, it refuses every configuration write (but a webhook
// endpoint's delivery state) while the partition holds a fence. It is
// enabled from the fence to the switch: on old partition i in the fence's
// transaction, on new partition i + n once its subscription is dropped.
func configTriggers(on bool) []string {
	verb := triggerVerb(on)
	var qs []string
	for _, t := range configTables {
		qs = append(qs, `ALTER TABLE `+t+` `+verb+` TRIGGER giftd_reshard_config_fence`)
	}
	return qs
}

func triggerVerb(on bool) string {
	if on {
		return "ENABLE"
	}
	return "DISABLE"
}

// configWritable disables migration 23's trigger on every one of the 2n
// partitions: the proxy has switched, so a configuration change reaches
// them all (a giftd that has not learned the switch is refused by its own
// recount, ErrPartitionsNotConnected). Run right after the switch, and
// before step 4 in a run again after it. (A run stopped in between leaves
// the configuration refused until the switch is recorded on the partition,
// which giftd serve does too: partition migration 26.)
func (rs *resharding) configWritable(ctx context.Context) error {
	for p := range rs.conns {
		// Without arguments, one simple query: the statements in one transaction.
		if _, err := rs.conns[p].Exec(ctx, strings.Join(configTriggers(false), "; ")); err != nil {
			return fmt.Errorf("reshard: %s: end the refusal of configuration changes (run giftd reshard again: "+
				"they are refused until it succeeds): %w", rs.where(p), err)
		}
	}
	rs.log.Info("reshard: configuration changes accepted again on every partition")
	return nil
}

// drain waits, behind old partition i's fence and economy freeze, until
// its credit cursor is past every gift and claw-back event written under
// the old count: every credit moved both ways, every claw-back applied,
// and no home gift of a receiver who moves left for the consumer to take
// for a credit once the claim is of 2n. The freeze holds back every new
// one, so the last such event is at or below the events' position now. The
// credit consumer (giftd serve's) does the moving; without one running the
// pause fails after DrainTimeout and the fences are lifted.
func (rs *resharding) drain(ctx context.Context, i int) error {
	var upto int64
	if err := rs.conns[i].QueryRow(ctx, `SELECT last_value FROM events_position_seq`).Scan(&upto); err != nil {
		return fmt.Errorf("reshard: %s: read the events' position: %w", rs.where(i), err)
	}
	timeout := rs.DrainTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	err := poll(dctx, 10*time.Millisecond, func() (bool, error) {
		var pending bool
		err := rs.conns[i].QueryRow(dctx, `
			SELECT EXISTS (SELECT 1 FROM events AS e, credit_cursor AS c
			               WHERE e.position > c.position AND e.position <= $1 AND `+creditEvent+`)`,
			upto).Scan(&pending)
		return !pending, err
	})
	if err != nil {
		return fmt.Errorf("reshard: %s: wait for the credit consumer to move the credits up to position %d, %s at most "+
			"(is giftd serve running?): %w", rs.where(i), upto, timeout, err)
	}
	rs.log.Info("reshard: credits drained", "partition", rs.where(i), "wait", time.Since(start).Round(time.Millisecond))
	return nil
}

// disableFence disables the fence's trigger on partition p, once its fence
// row is gone (it would refuse nothing more, at a cost to every write).
func (rs *resharding) disableFence(ctx context.Context, p int) error {
	// Without arguments, one simple query: the statements in one transaction.
	if _, err := rs.conns[p].Exec(ctx, strings.Join(fenceTriggers(false), "; ")); err != nil {
		return fmt.Errorf("reshard: %s: disable the fence's trigger: %w", rs.where(p), err)
	}
	return nil
}

// liftLeftFences lifts, at the start of a run again that has not moved the
// claims, the fences a pause cut short left up: its lifting failed (a
// partition unreachable then) or never ran (the run killed). The moving
// users are refused until then. A new partition whose subscription is gone
// loses its fence first, as unfence does for one cut in its own run: its
// copy stopped at the fence and misses every write made once the old
// partition's fence is lifted, so startCopy copies it anew. (Taken as
// complete, such a copy made the run again wait forever for a mark that
// could not arrive, its moving users refused meanwhile, or, once a later
// run cut short had lifted the old partitions' fences alone, switched over
// a copy missing the writes made since.)
func (rs *resharding) liftLeftFences(ctx context.Context) error {
	cut := make([]bool, rs.n)
	blank := make([]bool, rs.n) // a new database not migrated yet
	left := false
	for i := range rs.n {
		var fenced bool
		if err := rs.conns[i].QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM giftd_reshard_fence WHERE partitions = $1)`,
			2*rs.n).Scan(&fenced); err != nil {
			return fmt.Errorf("reshard: %s: look for a fence: %w", rs.where(i), err)
		}
		// A new database not migrated yet has neither a copy nor a fence.
		var sub, fenceable bool
		if err := rs.conns[rs.n+i].QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM pg_subscription
			               WHERE subname = 'giftd_reshard' AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())),
			       to_regclass('giftd_reshard_fence') IS NOT NULL`).Scan(&sub, &fenceable); err != nil {
			return fmt.Errorf("reshard: %s: look for a copy: %w", rs.where(rs.n+i), err)
		}
		left = left || fenced
		cut[i] = !sub && fenceable
		blank[i] = !fenceable
	}
	if !left {
		return nil
	}
	rs.log.Warn("reshard: a pause cut short left the moving users fenced; lifting the fences before copying again")
	if err := rs.unfence(cut, blank); err != nil {
		return fmt.Errorf("reshard: lift the fences a pause cut short left up: %w", err)
	}
	return nil
}

// unfence lifts the fences of a pause cut short, and disables their
// triggers; blank (nil: none) marks new partitions not migrated yet. A new
// partition whose subscription was dropped loses its fence first, so that
// a run again copies it anew: its copy would otherwise miss the writes
// after the fence is lifted.
//
// It connects anew, without the run's context: a pause cut short by that
// context ending (an operator's Ctrl-C) may have closed the connections.
func (rs *resharding) unfence(cut, blank []bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exec := func(p int, sql string, args ...any) error {
		c, err := pgx.Connect(ctx, rs.after.PartitionURLs[p])
		if err != nil {
			return fmt.Errorf("%s: %w", rs.where(p), err)
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, sql, args...); err != nil {
			return fmt.Errorf("%s: %w", rs.where(p), err)
		}
		return nil
	}
	for i := range rs.n {
		if cut[i] {
			if err := exec(rs.n+i, `DELETE FROM giftd_reshard_fence`); err != nil {
				return err
			}
		}
		// Enabled once its subscription was dropped, in this run or one
		// before: nothing is refused there before the next pause. (A new
		// database not migrated yet, blank, has no such trigger.)
		if blank != nil && blank[i] {
			continue
		}
		if err := exec(rs.n+i, strings.Join(configTriggers(false), "; ")); err != nil {
			return err
		}
	}
	var errs []error
	for i := range rs.n {
		err := exec(i, `DELETE FROM giftd_reshard_fence WHERE partitions = $1`, 2*rs.n)
		if err == nil {
			err = exec(i, strings.Join(fenceTriggers(false), "; "))
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// finish is step 4: slots and publications dropped, and every partition
// forgets the users it does not own and disables the fence's trigger.
func (rs *resharding) finish(ctx context.Context) ([]int64, error) {
	rs.step("forget")
	for i := range rs.n {
		if err := rs.dropSlot(ctx, i); err != nil {
			return nil, err
		}
		if _, err := rs.conns[i].Exec(ctx, `DROP PUBLICATION IF EXISTS giftd_reshard`); err != nil {
			return nil, fmt.Errorf("reshard: %s: drop the publication: %w", rs.where(i), err)
		}
	}
	forgotten := make([]int64, 2*rs.n)
	for p := range 2 * rs.n {
		err := rs.conns[p].QueryRow(ctx, `SELECT giftd_reshard_forget()`).Scan(&forgotten[p])
		if err != nil {
			return nil, fmt.Errorf("reshard: %s: forget the users it no longer owns: %w", rs.where(p), err)
		}
		// The fence is gone with the forget: its trigger goes too, so
		// that writes pay nothing for it until the next reshard.
		if err := rs.disableFence(ctx, p); err != nil {
			return nil, err
		}
	}
	rs.log.Info("reshard: done", "partitions", 2*rs.n, "wallets_forgotten", forgotten)
	return forgotten, nil
}

// beforeForget checks, once switched, what the forget would otherwise make
// final: the copies (checkCopies), then the caller's BeforeForget.
func (rs *resharding) beforeForget(ctx context.Context) error {
	if err := rs.checkCopies(ctx); err != nil {
		return err
	}
	if rs.BeforeForget != nil {
		return rs.BeforeForget(ctx)
	}
	return nil
}

// A copyCheck is one table's rows that old partition i gave away to its new
// partition j = i + n and that the forget deletes on i, compared on both by
// checkCopies.
type copyCheck struct {
	// what names the rows in errors.
	what  string
	table string
	// key orders the table's rows: i's last of the rows compared bounds
	// them on both sides, since the rows j writes after the switch come
	// after it (its sequences carried past i's, or its entries').
	key string
	// rows is the SQL condition choosing the rows compared on either side:
	// @mask is 2n - 1, @to is j, @floor the greater of floor's value on i
	// and on j.
	rows string
	// floor, when set, is a query giving a bigint on each side: the rows
	// at or below it may legitimately differ (pruned on one side only).
	floor string
	// since, when set, is the SQL condition choosing, through an index,
	// the rows whose key is past @from, and last a query giving, through
	// an index, a key no row of the table committed so far is past: the
	// check's rows are then compared before the switch too (precheck,
	// then inside the pause past what it compared). Unset: the economy's
	// rows, which the split inside the switch still moves, are compared
	// only after it.
	since, last string
}

// copyChecks are the rows checkCopies compares, each a table the forget
// deletes the moved rows of on old partition i:
//
//   - ledger entries, all of them;
//   - debit records with an entry (a debit that wrote), expiring after
//     the later of both sides' clocks plus 10 minutes: expired ones are
//     pruned on each side on its own (giftd prune). Refusals (402, 403)
//     have no entry to bound them by, and i + n records the moved users'
//     new ones after the switch: not compared (they hold no gold: a
//     refusal lost lets a retry of its request be decided again);
//   - events of a user, past both sides' lowest webhook cursor: those
//     behind it (every event of a side with no endpoint) are delivered and
//     may be pruned on one side only;
//   - the gift and account entries under the pre-split's cuts that i gave
//     away (giftd_reshard_given_away, partition migration 20, on i), which
//     are the rows j holds under those cuts (its pre-split deleted the
//     others; none on a partition split in one step, which deleted them in
//     the pause).
//
// Not compared here: wallets (a wallet is its entries' sum, which each
// partition's audit checks, and precheck and the pause compare them), and
// the rows updated in place with no key to bound them by, which
// inPlaceChecks compare as they were at the switch.
var copyChecks = []copyCheck{
	{what: "ledger entries of the users", table: "ledger_entries", key: "id",
		rows:  `giftd_placement(user_id) & @mask = @to`,
		since: `id > @from`, last: `SELECT coalesce(max(id), 0) FROM ledger_entries`},
	{what: "debit records (with an entry) of the users", table: "debit_requests", key: "entry_id",
		rows:  `giftd_placement(user_id) & @mask = @to AND entry_id IS NOT NULL AND expires_at > to_timestamp(@floor::bigint)`,
		floor: `SELECT extract(epoch FROM now() + interval '10 minutes')::bigint`,
		// entry_id has no index: a debit record's entry is the debit
		// entry of its key, written with it, found through the ledger's
		// primary key (a condition on the entry's kind would let the
		// planner read every debit entry through the ledger's key index).
		since: `entry_id > @from AND (platform, app_id, request_id) IN
			(SELECT l.platform, l.app_id, l.ref FROM ledger_entries AS l WHERE l.id > @from)`,
		last: `SELECT coalesce(max(id), 0) FROM ledger_entries`},
	{what: "events of the users", table: "events", key: "position",
		rows:  `giftd_placement(data->>'user_id') & @mask = @to AND position > @floor`,
		floor: `SELECT coalesce(min(cursor), 9223372036854775807) FROM webhook_endpoints`,
		since: `position > @from`, last: `SELECT coalesce(max(position), 0) FROM events`},
	{what: "gift entries", table: "gift_entries", key: "id",
		rows: `(id IN (SELECT x.gift FROM giftd_reshard_given_away() AS x WHERE x.gift IS NOT NULL))
			= ((SELECT i.partition FROM giftd_partition_identity AS i) <> @to)`},
	{what: "account entries", table: "account_entries", key: "id",
		rows: `(id IN (SELECT x.entry FROM giftd_reshard_given_away() AS x WHERE x.entry IS NOT NULL))
			= ((SELECT i.partition FROM giftd_partition_identity AS i) <> @to)`},
}

// errCopyDiffers is a copy check's finding: the new partition lost or
// changed a row the old one gave away.
var errCopyDiffers = errors.New("the copy differs")

// copyDigestSettings make a row's text the same on every server, whatever
// its defaults: the digest hashes it.
const copyDigestSettings = `SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres';
	SET LOCAL bytea_output = 'hex'; SET LOCAL extra_float_digits = 1`

// checkCopies compares, on each old partition i and its new partition
// i + n, the rows of each of copyChecks that i gave away, up to the last one
// i holds (the fence stopped the moved users' writes there, the split the
// economy's; the rows i + n has written since the switch come after it):
// their count and a digest of them (the sum of a 64-bit hash of each whole
// row) must be the same on both, or the copy lost or changed one. The audit
// checks each partition on its own, which a user missing from the copy as a
// whole, or copied as of an earlier moment (wallet and entries alike), would
// pass; the forget would then delete the only copy. A run again after a
// forget that stopped midway compares what is left (nothing on an old
// partition that forgot). Then the rows updated in place, as they were at
// the switch (inPlaceChecks, compareInPlace).
func (rs *resharding) checkCopies(ctx context.Context) error {
	for i := range rs.n {
		for _, c := range copyChecks {
			upto, err := rs.lastGivenAway(ctx, c, i)
			if err == nil {
				err = rs.compareCopy(ctx, c, i, 0, upto)
			}
			if err != nil {
				return err
			}
		}
		var unforgotten bool
		if err := rs.conns[i].QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM giftd_reshard_unforgotten())`).Scan(&unforgotten); err != nil {
			return fmt.Errorf("reshard: %s: read whether it forgot: %w", rs.where(i), err)
		}
		if !unforgotten { // a run before forgot: i holds none of those rows
			continue
		}
		var cut time.Time
		err := rs.conns[rs.n+i].QueryRow(ctx, `SELECT cut_at FROM giftd_reshard_cut WHERE partitions = $1`, 2*rs.n).Scan(&cut)
		var pgErr *pgconn.PgError
		if errors.Is(err, pgx.ErrNoRows) || errors.As(err, &pgErr) && pgErr.Code == "42P01" {
			rs.log.Warn("reshard: no cut recorded (a run of an earlier release switched, or the partition lacks migration 27): "+
				"the spending counters and reminders, "+
				"LinkV rows and key claims the partition gave away are not compared", "partition", rs.where(rs.n+i))
			continue
		}
		if err != nil {
			return fmt.Errorf("reshard: %s: read the copy's cut: %w", rs.where(rs.n+i), err)
		}
		start, since := time.Now(), int64(0)
		for _, c := range inPlaceChecks {
			rewritten, err := rs.compareInPlace(ctx, c, i, cut)
			if err != nil {
				return err
			}
			since += rewritten
		}
		rs.log.Info("reshard: the rows updated in place compared as at the switch", "partition", rs.where(i),
			"rewritten_since", since, "took", time.Since(start).Round(time.Millisecond))
	}
	rs.log.Info("reshard: every old partition's rows it gave away are on its new partition")
	return nil
}

// An inPlaceCheck is a table of the users' rows updated in place, with no
// key to bound the rows by, that the forget deletes the moved rows of on
// old partition i: checkCopies compares them as they were at the switch.
type inPlaceCheck struct {
	what, table string
	// rows is the SQL condition of the rows i gave away to @to.
	rows string
	// stamp is the column every write sets to its transaction's now().
	stamp string
	// keys are the primary key's columns, types their types.
	keys, types []string
}

// inPlaceChecks: the moved users' spending counters and reminders, LinkV
// accounts and wallet moves, and the operators' key claims the keys'
// placement moved. None is pruned, so neither side deletes one before the
// forget.
var inPlaceChecks = []inPlaceCheck{
	{what: "spending counters of the users", table: "spend_windows", rows: `giftd_placement(user_id) & @mask = @to`,
		stamp: "updated_at", keys: []string{"user_id"}, types: []string{"text"}},
	{what: "spending reminders of the users", table: "spend_reminders", rows: `giftd_placement(user_id) & @mask = @to`,
		stamp: "created_at", keys: []string{"user_id", "day"}, types: []string{"text", "date"}},
	{what: "LinkV accounts of the users", table: "linkv_accounts", rows: `giftd_placement(user_id) & @mask = @to`,
		stamp: "updated_at", keys: []string{"app_id", "user_id"}, types: []string{"text", "text"}},
	{what: "LinkV wallet moves of the users", table: "linkv_wallet_moves", rows: `giftd_placement(user_id) & @mask = @to`,
		stamp: "updated_at", keys: []string{"app_id", "user_id"}, types: []string{"text", "text"}},
	{what: "operators' key claims", table: "giftd_key_claims", rows: `giftd_placement(key) & @mask = @to`,
		stamp: "updated_at", keys: []string{"kind", "key"}, types: []string{"text", "text"}},
}

// rowHash is a row t's 64-bit hash, the digests' term.
const rowHash = `('x' || left(md5(t::text), 16))::bit(64)::bigint::numeric`

// tally is a count of rows and the sum of their rowHash.
type tally struct {
	rows   int64
	digest big.Int
}

func (t *tally) scan(row pgx.Row) error {
	var digest string
	if err := row.Scan(&t.rows, &digest); err != nil {
		return err
	}
	if _, ok := t.digest.SetString(digest, 10); !ok {
		return fmt.Errorf("a digest that is not an integer: %q", digest)
	}
	return nil
}

// compareInPlace compares c's rows old partition i gave away to j = i + n
// as they were at the switch: i's (final since its fence) less those whose
// key j has written since its copy was cut (stamped at or after cut, on j's
// clock: every transaction of j's own after the switch started after it),
// against j's stamped before it, in one snapshot of j. The keys j wrote
// since are read there and looked up on i 10,000 at a time. A row stamped
// on i after cut (i's clock ahead of j's) is left out on both sides. It
// returns how many of i's rows were left out so.
func (rs *resharding) compareInPlace(ctx context.Context, c inPlaceCheck, i int, cut time.Time) (int64, error) {
	j := rs.n + i
	args := pgx.NamedArgs{"mask": 2*rs.n - 1, "to": j, "cut": cut}
	keys := strings.Join(c.keys, ", ")
	cols := make([]string, len(c.keys))
	texts := make([]string, len(c.keys))
	unnest := make([]string, len(c.keys))
	for k, col := range c.keys {
		cols[k] = fmt.Sprintf("x.%s::%s", col, c.types[k])
		texts[k] = col + "::text"
		unnest[k] = fmt.Sprintf("@k%d::text[]", k)
	}
	lookup := `SELECT count(*), coalesce(sum(` + rowHash + `), 0)::text FROM ` + c.table + ` AS t
		WHERE (` + c.rows + `) AND (` + keys + `) IN (SELECT ` + strings.Join(cols, ", ") + `
			FROM unnest(` + strings.Join(unnest, ", ") + `) AS x (` + keys + `))`
	var kept, all, rewritten tally
	err := pgx.BeginTxFunc(ctx, rs.conns[j], pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tj pgx.Tx) error {
		return pgx.BeginFunc(ctx, rs.conns[i], func(ti pgx.Tx) error {
			for _, tx := range []pgx.Tx{tj, ti} {
				if _, err := tx.Exec(ctx, copyDigestSettings); err != nil {
					return err
				}
			}
			err := kept.scan(tj.QueryRow(ctx, `SELECT count(*), coalesce(sum(`+rowHash+`), 0)::text FROM `+c.table+` AS t
				WHERE (`+c.rows+`) AND `+c.stamp+` < @cut`, args))
			if err == nil {
				err = all.scan(ti.QueryRow(ctx, `SELECT count(*), coalesce(sum(`+rowHash+`), 0)::text FROM `+c.table+` AS t
					WHERE `+c.rows, args))
			}
			if err != nil {
				return err
			}
			rows, err := tj.Query(ctx, `SELECT ARRAY[`+strings.Join(texts, ", ")+`] FROM `+c.table+` AS t WHERE (`+c.rows+`) AND `+c.stamp+` >= @cut`, args)
			if err != nil {
				return err
			}
			defer rows.Close()
			batch := make([][]string, len(c.keys))
			flush := func() error {
				if len(batch[0]) == 0 {
					return nil
				}
				look := pgx.NamedArgs{"mask": 2*rs.n - 1, "to": j}
				for k := range batch {
					look[fmt.Sprintf("k%d", k)] = batch[k]
				}
				var part tally
				if err := part.scan(ti.QueryRow(ctx, lookup, look)); err != nil {
					return err
				}
				rewritten.rows += part.rows
				rewritten.digest.Add(&rewritten.digest, &part.digest)
				for k := range batch {
					batch[k] = batch[k][:0]
				}
				return nil
			}
			for rows.Next() {
				var key []string
				if err := rows.Scan(&key); err != nil {
					return err
				}
				for k := range batch {
					batch[k] = append(batch[k], key[k])
				}
				if len(batch[0]) == 10_000 {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			if err := rows.Err(); err != nil {
				return err
			}
			return flush()
		})
	})
	if err != nil {
		return 0, fmt.Errorf("reshard: %s and %s: compare the %s partition %d gave away: %w", rs.where(i), rs.where(j), c.what, i, err)
	}
	var was tally
	was.rows = all.rows - rewritten.rows
	was.digest.Sub(&all.digest, &rewritten.digest)
	if was.rows != kept.rows || was.digest.Cmp(&kept.digest) != 0 {
		return 0, fmt.Errorf("reshard: %w: the %s partition %d gave away to %d, as at the switch: %d rows, digest %s on %s "+
			"(less %d that %d wrote since), %d rows, digest %s on %s", errCopyDiffers, c.what, i, j,
			was.rows, was.digest.String(), rs.where(i), rewritten.rows, j, kept.rows, kept.digest.String(), rs.where(j))
	}
	return rewritten.rows, nil
}

// checkedBeforeSwitch are the copyChecks compared before the switch too.
var checkedBeforeSwitch = func() (cs []copyCheck) {
	for _, c := range copyChecks {
		if c.since != "" {
			cs = append(cs, c)
		}
	}
	return cs
}()

// walletsCheck compares, inside the pause, the moved users' wallets written
// since the check before it: those of users with a ledger entry past @from
// (every wallet write has its entry). Wallets have no key: before the
// pause, while they change, precheck checks instead that each one on the
// copy is the sum of its entries there (walletsAddUp), the entries being
// compared with the old partition's.
var walletsCheck = copyCheck{what: "wallets of the users", table: "wallets",
	rows:  `giftd_placement(user_id) & @mask = @to`,
	since: `user_id IN (SELECT l.user_id FROM ledger_entries AS l WHERE l.id > @from)`}

// checkedInThePause are checkedBeforeSwitch, then walletsCheck.
var checkedInThePause = append(append([]copyCheck(nil), checkedBeforeSwitch...), walletsCheck)

// ledgerKey is, of keys (one per checkedBeforeSwitch), the ledger entries'.
func ledgerKey(keys []int64) int64 {
	for k, c := range checkedBeforeSwitch {
		if c.table == "ledger_entries" {
			return keys[k]
		}
	}
	panic("reshard: no ledger entries in checkedBeforeSwitch")
}

// walletsAddUp checks, on new partition j = i + n, that the wallet of each
// user old partition i gave away with a ledger entry past from and up to
// upto (every one when from is 0) is the sum of its entries there, as on i:
// a wallet write the copy lost or changed. (Replication applies each
// transaction whole, so either side is consistent whenever it is read.) A
// wallet that does not add up on i either was copied as it is: that is the
// audit's to report (giftd reshard's before the forget), not the copy's.
func (rs *resharding) walletsAddUp(ctx context.Context, i int, from, upto int64) error {
	j := rs.n + i
	users := ``
	if from > 0 {
		users = `AND w.user_id IN (SELECT l.user_id FROM ledger_entries AS l WHERE l.id > @from AND l.id <= @upto)`
	}
	args := pgx.NamedArgs{"mask": 2*rs.n - 1, "to": j, "from": from, "upto": upto}
	wrong := func(p int, users string) ([]string, error) {
		var ids []string
		err := rs.conns[p].QueryRow(ctx, `
			SELECT coalesce(array_agg(user_id ORDER BY user_id), '{}') FROM (
				SELECT w.user_id FROM wallets AS w
				WHERE giftd_placement(w.user_id) & @mask = @to `+users+`
				  AND w.gold <> coalesce((SELECT sum(e.amount) FROM ledger_entries AS e WHERE e.user_id = w.user_id), 0)
				ORDER BY w.user_id LIMIT 100) AS x`, args).Scan(&ids)
		if err != nil {
			return nil, fmt.Errorf("reshard: %s: add up the wallets partition %d gave away: %w", rs.where(p), i, err)
		}
		return ids, nil
	}
	onCopy, err := wrong(j, users)
	if err != nil || len(onCopy) == 0 {
		return err
	}
	args["ids"] = onCopy
	onOld, err := wrong(i, `AND w.user_id = ANY (@ids)`)
	if err != nil {
		return err
	}
	var copied []string
	for _, u := range onCopy {
		if !slices.Contains(onOld, u) {
			copied = append(copied, u)
		}
	}
	if len(copied) > 0 {
		return fmt.Errorf("reshard: %w: wallets of the users partition %d gave away to %d are not the sum "+
			"of their entries on %s, as they are on %s: %s", errCopyDiffers, i, j, rs.where(j), rs.where(i), strings.Join(copied, ", "))
	}
	rs.log.Warn("reshard: wallets that do not add up on the old partition either, copied as they are (the audit reports them)",
		"partition", rs.where(i), "users", onCopy)
	return nil
}

// precheck compares, before the pause, the rows of each of
// checkedBeforeSwitch that old partition i has given away so far, past
// those an earlier round compared, on i and on its copy: it reads each
// table's last key on i (of any user's row: the next round starts past it,
// whoever wrote it), waits until every transaction running then has ended
// (a key under it not committed yet is one of theirs: keys come from
// sequences, inside transactions), proves by a mark that the copy holds
// what they wrote, then compares both sides up to those keys. Two rounds
// over every old partition, as the pre-split's: the first over everything,
// the second over what was written meanwhile, so that the pause compares
// only what is written after that. A copy that differs is dropped, nothing
// fenced: a run again copies it anew.
func (rs *resharding) precheck(ctx context.Context, i, round int) error {
	j := rs.n + i
	if round == 0 {
		rs.checked[i] = make([]int64, len(checkedBeforeSwitch))
	}
	start := time.Now()
	upto, err := rs.compareSoFar(ctx, i, round)
	switch {
	case errors.Is(err, errCopyDiffers):
		if derr := rs.dropSubscription(ctx, j); derr != nil {
			return fmt.Errorf("%w; and dropping that copy failed: %w", err, derr)
		}
		return fmt.Errorf("%w; nothing fenced: the copy on %s is dropped, and giftd reshard run again copies it anew", err, rs.where(j))
	case err != nil:
		// A database or connection failure says nothing of the copy: a
		// run again carries on from it.
		return fmt.Errorf("%w; nothing fenced: the copy on %s is kept, and giftd reshard run again checks it again", err, rs.where(j))
	}
	rs.checked[i] = upto
	rs.log.Info("reshard: the copy checked before the pause", "partition", rs.where(i), "round", round+1, "up_to", upto,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// compareSoFar is precheck's work on old partition i: the keys it compared
// up to, or why not.
func (rs *resharding) compareSoFar(ctx context.Context, i, round int) ([]int64, error) {
	from := rs.checked[i]
	upto := make([]int64, len(checkedBeforeSwitch))
	for k, c := range checkedBeforeSwitch {
		if err := rs.conns[i].QueryRow(ctx, c.last).Scan(&upto[k]); err != nil {
			return nil, fmt.Errorf("reshard: %s: read the last key of the %s: %w", rs.where(i), c.what, err)
		}
	}
	if _, err := rs.waitRunning(ctx, i); err != nil {
		return nil, fmt.Errorf("reshard: %s: wait for the transactions running at the copy check: %w", rs.where(i), err)
	}
	if err := rs.mark(ctx, i, fmt.Sprintf("checked %d %d", round, time.Now().UnixNano())); err != nil {
		return nil, err
	}
	for k, c := range checkedBeforeSwitch {
		if err := rs.compareCopy(ctx, c, i, from[k], upto[k]); err != nil {
			return nil, err
		}
	}
	return upto, rs.walletsAddUp(ctx, i, ledgerKey(from), ledgerKey(upto))
}

// checkPaused compares, inside the pause, the rows of each of
// checkedBeforeSwitch that each old partition i gave away past those
// precheck compared, and the wallets of the users with a ledger entry past
// it (walletsCheck): the fence stopped the moved users' writes on i, the
// drain's mark brought the last of them to the copy, and the copy is cut,
// so both sides are final. It runs before the claims move, on every old
// partition at once: a copy that differs fails the run with the fences
// lifted and nothing switched.
func (rs *resharding) checkPaused(ctx context.Context) error {
	errs := make([]error, rs.n)
	var wg sync.WaitGroup
	for i := range rs.n {
		wg.Go(func() {
			for k, c := range checkedInThePause {
				from := ledgerKey(rs.checked[i])
				if k < len(checkedBeforeSwitch) {
					from = rs.checked[i][k]
				}
				// Unbounded: neither side writes a moved user's row.
				if err := rs.compareCopy(ctx, c, i, from, math.MaxInt64); err != nil {
					errs[i] = fmt.Errorf("%w; nothing switched: the fences are lifted, and giftd reshard run again copies %s anew",
						err, rs.where(rs.n+i))
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// copyArgs are the arguments of c's conditions for old partition i's rows
// past key from.
func (rs *resharding) copyArgs(ctx context.Context, c copyCheck, i int, from int64) (pgx.NamedArgs, error) {
	j := rs.n + i
	args := pgx.NamedArgs{"mask": 2*rs.n - 1, "to": j, "floor": int64(0), "from": from}
	if c.floor != "" {
		var floor [2]int64
		for k, p := range []int{i, j} {
			if err := rs.conns[p].QueryRow(ctx, c.floor).Scan(&floor[k]); err != nil {
				return nil, fmt.Errorf("reshard: %s: read the floor of the %s partition %d gave away: %w", rs.where(p), c.what, i, err)
			}
		}
		args["floor"] = max(floor[0], floor[1])
	}
	return args, nil
}

// givenAway is the SQL condition of c's rows past key from (0: all).
func (c copyCheck) givenAway(from int64) string {
	if from == 0 {
		return `(` + c.rows + `)`
	}
	return `(` + c.rows + `) AND ` + c.since
}

// lastGivenAway is the last key of c's rows old partition i gave away (0:
// none).
func (rs *resharding) lastGivenAway(ctx context.Context, c copyCheck, i int) (int64, error) {
	args, err := rs.copyArgs(ctx, c, i, 0)
	if err != nil {
		return 0, err
	}
	var upto int64
	err = rs.conns[i].QueryRow(ctx, `SELECT coalesce(max(`+c.key+`), 0) FROM `+c.table+` WHERE `+c.givenAway(0), args).Scan(&upto)
	if err != nil {
		return 0, fmt.Errorf("reshard: %s: read the last of the %s it gave away: %w", rs.where(i), c.what, err)
	}
	return upto, nil
}

// compareCopy compares c's rows on old partition i and its new partition,
// their keys past from and up to upto (unbounded: math.MaxInt64), both
// sides at once.
func (rs *resharding) compareCopy(ctx context.Context, c copyCheck, i int, from, upto int64) error {
	j := rs.n + i
	args, err := rs.copyArgs(ctx, c, i, from)
	if err != nil {
		return err
	}
	args["upto"] = upto
	where := c.givenAway(from)
	if upto != math.MaxInt64 {
		where += ` AND ` + c.key + ` <= @upto`
	}
	var digest [2]string
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for k, p := range []int{i, j} {
		wg.Go(func() {
			err := pgx.BeginFunc(ctx, rs.conns[p], func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, copyDigestSettings); err != nil {
					return err
				}
				return tx.QueryRow(ctx, `SELECT format('%s rows, digest %s', count(*),
					coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint::numeric), 0))
					FROM `+c.table+` AS t WHERE `+where, args).Scan(&digest[k])
			})
			if err != nil {
				errs[k] = fmt.Errorf("reshard: %s: digest the %s partition %d gave away: %w", rs.where(p), c.what, i, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if digest[0] != digest[1] {
		span := fmt.Sprintf("up to %s %d", c.key, upto)
		switch {
		case upto == math.MaxInt64 && c.key == "":
			span = fmt.Sprintf("of those with a ledger entry past id %d", from)
		case upto == math.MaxInt64:
			span = fmt.Sprintf("past %s %d", c.key, from)
		case from > 0:
			span = fmt.Sprintf("%s %d to %d", c.key, from+1, upto)
		}
		return fmt.Errorf("reshard: %w: the %s partition %d gave away to %d, %s: %s on %s, %s on %s",
			errCopyDiffers, c.what, i, j, span, digest[0], rs.where(i), digest[1], rs.where(j))
	}
	return nil
}

// registeredCount is the number of partitions the proxy routes over.
func registeredCount(ctx context.Context, proxyURL string) (int, error) {
	conn, err := pgx.Connect(ctx, proxyURL)
	if err != nil {
		return 0, fmt.Errorf("connect to the proxy %s: %w", Where(proxyURL), err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM giftd_partitions`).Scan(&n); err != nil {
		return 0, fmt.Errorf("read the partitions of the proxy %s: %w", Where(proxyURL), err)
	}
	return n, nil
}
