-- The reads the proxy runs on every partition (RUN ON ALL: the period
-- reports, the room boards, a receiver's period, earnings ledger and
-- maturing earnings, the wallet totals) read, between a reshard's switch and
-- its forget, only what the partition owns under its claim
-- (docs/scale-out.md#the-audit-between-the-switch-and-the-forget). Until
-- giftd_reshard_forget (step 4 of giftd reshard: seconds, or until the run
-- again of a run stopped there) old partition i still holds the rows of the
-- users who moved to i + n and the economy rows under the pre-split's cut it
-- gave away, and new partition i + n the rows of the users who stayed on i:
-- read as they stand, every moved sender's gift and every given-away leg
-- was counted on two partitions. Now a report in that window is the report
-- after the forget.
--
-- Only after the switch: before it (the split done, the proxy not switched
-- yet: the end of the pause, or a run stopped there) the proxy still routes
-- over the n old partitions alone, and old partition i must still read the
-- moved users' rows, which no other partition it reaches holds. A partition
-- cannot see the proxy's count, so giftd reshard records the switch on each
-- of the 2n partitions (giftd_reshard_switched) as soon as the proxy
-- routes over them, and the run again does it before its forget.
--
-- Outside the window each read costs what it did: PL/pgSQL that looks up
-- the window once per call, then runs the query as it was, planned anew
-- with the call's values (plan_cache_mode = force_custom_plan, as the
-- inlined SQL function was planned in the proxy's statement), so that the
-- filter "(w_partition IS NULL OR …)" folds to true at planning and the
-- plan is the old one.

-- The reshard counts whose switch giftd reshard saw: written on every one
-- of the 2n partitions once the proxy routes over them. Never deleted: a
-- row of a count this partition is no longer split at reads as nothing.
CREATE TABLE giftd_reshard_switched (
    partitions  integer PRIMARY KEY,
    switched_at timestamptz NOT NULL DEFAULT now()
);

-- This partition's claim and the pre-split's cuts (0 without one: a split in
-- one step deleted what it gave away) between the proxy's switch and the
-- forget: giftd_reshard_unforgotten (partition migration 20) once the switch
-- is recorded. No row otherwise.
CREATE FUNCTION giftd_reshard_read_claim()
    RETURNS TABLE (partition integer, partitions integer, gift_cut bigint, entry_cut bigint)
    LANGUAGE sql STABLE AS $$
    SELECT u.partition, u.partitions, coalesce(s.gift_cut, 0), coalesce(s.entry_cut, 0)
    FROM giftd_reshard_unforgotten() AS u
    LEFT JOIN giftd_reshard_presplit AS s ON s.partitions = u.partitions
    WHERE EXISTS (SELECT 1 FROM giftd_reshard_switched AS w WHERE w.partitions = u.partitions);
$$;

-- Whether partition p_partition of p_partitions owns its gift p_id of
-- sender p_sender in that window: every gift past the cut (the split
-- deleted those it did not own), and under it its own senders' (what
-- giftd_reshard_gone_rows does not give away). A plain SQL expression:
-- inlined where it is used.
CREATE FUNCTION giftd_reshard_keeps_gift(p_id bigint, p_sender text, p_partition integer, p_partitions integer,
                                         p_gift_cut bigint)
    RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_id > p_gift_cut OR giftd_placement(p_sender) & (p_partitions - 1) = p_partition;
$$;

-- The same for an account entry: every entry past the cut, and under it
-- those giftd_reshard_gone_rows does not give away (its rules, row by row:
-- a gift's leg with its gift, a credit's source leg with its source
-- partition, another leg with its receiver's home on the pair).
CREATE FUNCTION giftd_reshard_keeps_entry(p_entry account_entries, p_partition integer, p_partitions integer,
                                          p_entry_cut bigint)
    RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT (p_entry).id > p_entry_cut OR NOT coalesce(
        CASE WHEN (p_entry).gift_entry IS NOT NULL
             THEN coalesce((SELECT giftd_placement(g.sender_id) & (p_partitions - 1) FROM gift_entries AS g
                            WHERE g.id = (p_entry).gift_entry) <> p_partition, true)
             WHEN (p_entry).kind IN ('transfer_out', 'clawback_in')
             THEN split_part((p_entry).ref, ':', 1)::integer <> p_partition
             ELSE CASE WHEN (giftd_placement((p_entry).receiver_id) & (p_partitions - 1)) % (p_partitions / 2)
                            = p_partition % (p_partitions / 2)
                       THEN giftd_placement((p_entry).receiver_id) & (p_partitions - 1)
                       ELSE p_partition % (p_partitions / 2) END <> p_partition END, false);
$$;

-- Partition migration 5's gift report, the gifts this partition owns in the
-- window.
CREATE OR REPLACE FUNCTION giftd_report_gifts(p_group text, p_from timestamptz, p_to timestamptz, p_platform text,
                                              p_app_id text, p_limit int)
    RETURNS TABLE (platform text, key text, gifts bigint, items bigint, gold bigint, earnings bigint, house bigint)
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    col  text := CASE p_group WHEN 'receiver' THEN 'receiver_id' WHEN 'sender' THEN 'sender_id'
                              WHEN 'room' THEN 'room_id' WHEN 'gift' THEN 'gift_id' END;
    plat text := CASE WHEN p_group IN ('room', 'gift') THEN 'g.platform' ELSE '''''::text' END;
    w_partition  integer;
    w_partitions integer;
    w_gift_cut   bigint;
BEGIN
    IF col IS NULL THEN
        RAISE EXCEPTION 'giftd: unknown report group %', p_group USING ERRCODE = '22023';
    END IF;
    SELECT c.partition, c.partitions, c.gift_cut INTO w_partition, w_partitions, w_gift_cut
    FROM giftd_reshard_read_claim() AS c;
    RETURN QUERY EXECUTE format($q$
        SELECT * FROM (
            SELECT %1$s AS platform, g.%2$I AS key, count(*) AS gifts, coalesce(sum(g.count), 0)::bigint AS items,
                coalesce(sum(g.gold), 0)::bigint AS gold, coalesce(sum(g.earnings), 0)::bigint AS earnings,
                coalesce(sum(g.house), 0)::bigint AS house
            FROM gift_entries g
            WHERE g.created_at >= $1 AND g.created_at < $2
              AND ($3 = '' OR g.platform = $3) AND ($4 = '' OR g.app_id = $4)
              AND NOT EXISTS (SELECT 1 FROM ledger_entries r WHERE r.reverses = g.debit_entry
                              AND r.kind = 'reversal' AND r.created_at >= $1 - interval '1 hour')%3$s
            GROUP BY 1, 2) AS t
        ORDER BY t.gold DESC, t.platform COLLATE "C", t.key COLLATE "C"
        LIMIT $5$q$, plat, col,
        CASE WHEN w_partition IS NOT NULL THEN '
              AND giftd_reshard_keeps_gift(g.id, g.sender_id, $6, $7, $8)' ELSE '' END)
    USING p_from, p_to, p_platform, p_app_id, p_limit, w_partition, w_partitions, w_gift_cut;
END
$$;

-- Partition migration 5's room board, the gifts this partition owns in the
-- window.
CREATE OR REPLACE FUNCTION giftd_room_board(p_platform text, p_room_id text, p_side text, p_from timestamptz, p_limit int)
    RETURNS TABLE (id text, gifts bigint, gold bigint, earnings bigint)
    LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan AS $$
#variable_conflict use_column
DECLARE
    w_partition  integer;
    w_partitions integer;
    w_gift_cut   bigint;
BEGIN
    SELECT c.partition, c.partitions, c.gift_cut INTO w_partition, w_partitions, w_gift_cut
    FROM giftd_reshard_read_claim() AS c;
    RETURN QUERY
    SELECT * FROM (
        SELECT CASE WHEN p_side = 'senders' THEN g.sender_id ELSE g.receiver_id END AS id, count(*) AS gifts,
            sum(g.gold)::bigint AS gold, sum(g.earnings)::bigint AS earnings
        FROM gift_entries g
        WHERE g.platform = p_platform AND g.room_id = p_room_id AND g.created_at >= p_from
          AND (p_side = 'senders' OR g.receiver_id IS NOT NULL)
          AND NOT EXISTS (SELECT 1 FROM ledger_entries r WHERE r.reverses = g.debit_entry
                          AND r.kind = 'reversal' AND r.created_at >= p_from - interval '1 hour')
          AND (w_partition IS NULL OR giftd_reshard_keeps_gift(g.id, g.sender_id, w_partition, w_partitions, w_gift_cut))
        GROUP BY 1) AS t
    ORDER BY t.gold DESC, t.id COLLATE "C"
    LIMIT p_limit;
END
$$;

-- Partition migration 6's receiver period, the gifts and account entries
-- this partition owns in the window.
CREATE OR REPLACE FUNCTION giftd_receiver_period(p_receiver_id text, p_from timestamptz, p_to timestamptz)
    RETURNS TABLE (gifts bigint, gold bigint, earned bigint, taken bigint, shortfall bigint, recovered bigint, paid bigint)
    LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan AS $$
#variable_conflict use_column
DECLARE
    w_partition  integer;
    w_partitions integer;
    w_gift_cut   bigint;
    w_entry_cut  bigint;
BEGIN
    SELECT c.partition, c.partitions, c.gift_cut, c.entry_cut INTO w_partition, w_partitions, w_gift_cut, w_entry_cut
    FROM giftd_reshard_read_claim() AS c;
    RETURN QUERY
    SELECT g.n, g.gold, g.earned, a.taken, a.shortfall, a.recovered, a.paid FROM
        (SELECT count(*) AS n, coalesce(sum(x.gold), 0)::bigint AS gold, coalesce(sum(x.earnings), 0)::bigint AS earned
         FROM gift_entries x WHERE x.receiver_id = p_receiver_id AND x.created_at >= p_from AND x.created_at < p_to
           AND (w_partition IS NULL OR giftd_reshard_keeps_gift(x.id, x.sender_id, w_partition, w_partitions, w_gift_cut))) AS g,
        (SELECT coalesce(-sum(y.amount) FILTER (WHERE y.account = 'earnings' AND y.kind IN ('reversal', 'clawback_in', 'clawback')), 0)::bigint AS taken,
            coalesce(sum(y.amount) FILTER (WHERE y.kind = 'shortfall' OR (y.account = 'receivable' AND y.kind = 'clawback')), 0)::bigint AS shortfall,
            coalesce(-sum(y.amount) FILTER (WHERE y.account = 'earnings' AND y.kind = 'recovery'), 0)::bigint AS recovered,
            coalesce(-sum(y.amount) FILTER (WHERE y.kind = 'payout'), 0)::bigint AS paid
         FROM account_entries y WHERE y.receiver_id = p_receiver_id AND y.created_at >= p_from AND y.created_at < p_to
           AND (w_partition IS NULL OR giftd_reshard_keeps_entry(y, w_partition, w_partitions, w_entry_cut))) AS a;
END
$$;

-- Partition migration 12's earnings ledger, the gifts and account entries
-- this partition owns in the window (left out before each side's limit).
CREATE OR REPLACE FUNCTION giftd_earnings_ledger(p_receiver_id text, p_at timestamptz, p_src text, p_partition int,
                                                 p_id bigint, p_limit int)
    RETURNS TABLE (partition int, created_at timestamptz, src text, id bigint, kind text, account text, amount bigint,
                   balance_after bigint, platform text, app_id text, request_id text, sender_id text, room_id text,
                   gift_id text, gold bigint, share_bp int, gift_entry bigint, ref text)
    LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan AS $$
#variable_conflict use_column
DECLARE
    w_partition  integer;
    w_partitions integer;
    w_gift_cut   bigint;
    w_entry_cut  bigint;
BEGIN
    SELECT c.partition, c.partitions, c.gift_cut, c.entry_cut INTO w_partition, w_partitions, w_gift_cut, w_entry_cut
    FROM giftd_reshard_read_claim() AS c;
    RETURN QUERY
    SELECT i.partition, e.* FROM giftd_partition_identity AS i,
    LATERAL (SELECT CASE WHEN i.partition < p_partition THEN 9223372036854775807
                         WHEN i.partition = p_partition THEN p_id ELSE 0 END AS id) AS b,
    LATERAL (
        SELECT * FROM (
            (SELECT g.created_at, 'g'::text AS src, g.id, 'gift'::text AS kind, 'earnings'::text AS account,
                g.earnings AS amount, NULL::bigint AS balance_after, g.platform, g.app_id, g.request_id, g.sender_id,
                g.room_id, g.gift_id, g.gold, g.share_bp, g.id AS gift_entry, ''::text AS ref
             FROM gift_entries g
             WHERE g.receiver_id = p_receiver_id AND g.created_at <= p_at
               AND (g.created_at, 'g'::text, g.id) < (p_at, p_src, b.id)
               AND (w_partition IS NULL OR giftd_reshard_keeps_gift(g.id, g.sender_id, w_partition, w_partitions, w_gift_cut))
             ORDER BY g.created_at DESC, g.id DESC LIMIT p_limit)
            UNION ALL
            (SELECT a.created_at, 'a', a.id, a.kind, a.account, a.amount, a.balance_after, '', '', '', '', '', '', 0::bigint,
                NULL::int, a.gift_entry, a.ref
             FROM account_entries a
             WHERE a.receiver_id = p_receiver_id AND a.created_at <= p_at
               AND a.kind NOT IN ('transfer_in', 'transfer_out', 'reshard_in', 'reshard_out')
               AND (a.created_at, 'a'::text, a.id) < (p_at, p_src, b.id)
               AND (w_partition IS NULL OR giftd_reshard_keeps_entry(a, w_partition, w_partitions, w_entry_cut))
             ORDER BY a.created_at DESC, a.id DESC LIMIT p_limit)
        ) AS u
        ORDER BY u.created_at DESC, u.src DESC, u.id DESC
        LIMIT p_limit
    ) AS e;
END
$$;

-- Partition migration 5's part of a receiver's earnings account, maturing
-- summing the gifts this partition owns in the window. (The account rows
-- are right as they stand: the split squared them. The credits in transit
-- are right too: the pause drained the credits of every old partition, and
-- the split moved each new partition's cursor past the rows it copied.)
CREATE OR REPLACE FUNCTION giftd_earnings_parts(p_receiver_id text, p_hold interval)
    RETURNS TABLE (partition int, home boolean, balance bigint, owed bigint, maturing bigint, updated_at timestamptz,
                   pending_refs text[], pending_amounts bigint[])
    LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan AS $$
#variable_conflict use_column
DECLARE
    w_partition  integer;
    w_partitions integer;
    w_gift_cut   bigint;
BEGIN
    SELECT c.partition, c.partitions, c.gift_cut INTO w_partition, w_partitions, w_gift_cut
    FROM giftd_reshard_read_claim() AS c;
    RETURN QUERY
    SELECT i.partition, giftd_placement(p_receiver_id) & (i.partitions - 1) = i.partition, a.balance, a.owed,
        (SELECT coalesce(sum(g.earnings), 0) FROM gift_entries g
         WHERE g.receiver_id = p_receiver_id AND p_hold > '0' AND g.created_at > now() - p_hold
           AND (w_partition IS NULL OR giftd_reshard_keeps_gift(g.id, g.sender_id, w_partition, w_partitions, w_gift_cut)))::bigint,
        a.updated_at,
        coalesce(t.refs, '{}'), coalesce(t.amounts, '{}')
    FROM giftd_partition_identity AS i
    LEFT JOIN earnings_accounts AS a ON a.receiver_id = p_receiver_id
    LEFT JOIN LATERAL (
        SELECT array_agg(i.partition || ':' || e.position ORDER BY e.position) AS refs,
               array_agg((e.data->>'earnings')::bigint ORDER BY e.position) AS amounts
        FROM events AS e
        WHERE e.position > (SELECT c.position FROM credit_cursor AS c) AND e.type = 'gift.debited'
          AND e.data->>'receiver_id' = p_receiver_id
          AND (e.data->>'settled')::boolean AND (e.data->>'earnings')::bigint > 0
          AND giftd_placement(p_receiver_id) & (i.partitions - 1) <> i.partition
    ) AS t ON true;
END
$$;

-- The partition's count of wallets and sum of gold, its own users' in the
-- window: what the proxy's giftd_wallet_totals runs here since proxy
-- migration 14 (it ran the count inline before).
CREATE FUNCTION giftd_wallet_totals()
    RETURNS TABLE (wallets bigint, gold numeric)
    LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan AS $$
#variable_conflict use_column
DECLARE
    w_partition  integer;
    w_partitions integer;
BEGIN
    SELECT c.partition, c.partitions INTO w_partition, w_partitions FROM giftd_reshard_read_claim() AS c;
    RETURN QUERY
    SELECT count(*) AS wallets, coalesce(sum(w.gold), 0) AS gold FROM wallets AS w
    WHERE w_partition IS NULL OR giftd_placement(w.user_id) & (w_partitions - 1) = w_partition;
END
$$;
