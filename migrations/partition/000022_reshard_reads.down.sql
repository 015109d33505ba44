-- Reverts partition migration 22 (revert proxy migration 14 first: its
-- giftd_wallet_totals runs this migration's): the reads run on every
-- partition read every row a partition holds again, also between a
-- reshard's switch and its forget.
DROP FUNCTION giftd_wallet_totals();

-- Partition migration 5's.
CREATE OR REPLACE FUNCTION giftd_report_gifts(p_group text, p_from timestamptz, p_to timestamptz, p_platform text,
                                   p_app_id text, p_limit int)
    RETURNS TABLE (platform text, key text, gifts bigint, items bigint, gold bigint, earnings bigint, house bigint)
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    col  text := CASE p_group WHEN 'receiver' THEN 'receiver_id' WHEN 'sender' THEN 'sender_id'
                              WHEN 'room' THEN 'room_id' WHEN 'gift' THEN 'gift_id' END;
    plat text := CASE WHEN p_group IN ('room', 'gift') THEN 'g.platform' ELSE '''''::text' END;
BEGIN
    IF col IS NULL THEN
        RAISE EXCEPTION 'giftd: unknown report group %', p_group USING ERRCODE = '22023';
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT * FROM (
            SELECT %1$s AS platform, g.%2$I AS key, count(*) AS gifts, coalesce(sum(g.count), 0)::bigint AS items,
                coalesce(sum(g.gold), 0)::bigint AS gold, coalesce(sum(g.earnings), 0)::bigint AS earnings,
                coalesce(sum(g.house), 0)::bigint AS house
            FROM gift_entries g
            WHERE g.created_at >= $1 AND g.created_at < $2
              AND ($3 = '' OR g.platform = $3) AND ($4 = '' OR g.app_id = $4)
              AND NOT EXISTS (SELECT 1 FROM ledger_entries r WHERE r.reverses = g.debit_entry
                              AND r.kind = 'reversal' AND r.created_at >= $1 - interval '1 hour')
            GROUP BY 1, 2) AS t
        ORDER BY t.gold DESC, t.platform COLLATE "C", t.key COLLATE "C"
        LIMIT $5$q$, plat, col)
    USING p_from, p_to, p_platform, p_app_id, p_limit;
END
$$;

-- Partition migration 5's.
CREATE OR REPLACE FUNCTION giftd_room_board(p_platform text, p_room_id text, p_side text, p_from timestamptz, p_limit int)
    RETURNS TABLE (id text, gifts bigint, gold bigint, earnings bigint)
    LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT CASE WHEN p_side = 'senders' THEN g.sender_id ELSE g.receiver_id END AS id, count(*) AS gifts,
            sum(g.gold)::bigint AS gold, sum(g.earnings)::bigint AS earnings
        FROM gift_entries g
        WHERE g.platform = p_platform AND g.room_id = p_room_id AND g.created_at >= p_from
          AND (p_side = 'senders' OR g.receiver_id IS NOT NULL)
          AND NOT EXISTS (SELECT 1 FROM ledger_entries r WHERE r.reverses = g.debit_entry
                          AND r.kind = 'reversal' AND r.created_at >= p_from - interval '1 hour')
        GROUP BY 1) AS t
    ORDER BY t.gold DESC, t.id COLLATE "C"
    LIMIT p_limit;
$$;

-- Partition migration 6's.
CREATE OR REPLACE FUNCTION giftd_receiver_period(p_receiver_id text, p_from timestamptz, p_to timestamptz)
    RETURNS TABLE (gifts bigint, gold bigint, earned bigint, taken bigint, shortfall bigint, recovered bigint, paid bigint)
    LANGUAGE sql STABLE AS $$
    SELECT g.n, g.gold, g.earned, a.taken, a.shortfall, a.recovered, a.paid FROM
        (SELECT count(*) AS n, coalesce(sum(x.gold), 0)::bigint AS gold, coalesce(sum(x.earnings), 0)::bigint AS earned
         FROM gift_entries x WHERE x.receiver_id = p_receiver_id AND x.created_at >= p_from AND x.created_at < p_to) AS g,
        (SELECT coalesce(-sum(y.amount) FILTER (WHERE y.account = 'earnings' AND y.kind IN ('reversal', 'clawback_in', 'clawback')), 0)::bigint AS taken,
            coalesce(sum(y.amount) FILTER (WHERE y.kind = 'shortfall' OR (y.account = 'receivable' AND y.kind = 'clawback')), 0)::bigint AS shortfall,
            coalesce(-sum(y.amount) FILTER (WHERE y.account = 'earnings' AND y.kind = 'recovery'), 0)::bigint AS recovered,
            coalesce(-sum(y.amount) FILTER (WHERE y.kind = 'payout'), 0)::bigint AS paid
         FROM account_entries y WHERE y.receiver_id = p_receiver_id AND y.created_at >= p_from AND y.created_at < p_to) AS a;
$$;

-- Partition migration 12's.
CREATE OR REPLACE FUNCTION giftd_earnings_ledger(p_receiver_id text, p_at timestamptz, p_src text, p_partition int,
                                      p_id bigint, p_limit int)
    RETURNS TABLE (partition int, created_at timestamptz, src text, id bigint, kind text, account text, amount bigint,
                   balance_after bigint, platform text, app_id text, request_id text, sender_id text, room_id text,
                   gift_id text, gold bigint, share_bp int, gift_entry bigint, ref text)
    LANGUAGE sql STABLE AS $$
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
             ORDER BY g.created_at DESC, g.id DESC LIMIT p_limit)
            UNION ALL
            (SELECT a.created_at, 'a', a.id, a.kind, a.account, a.amount, a.balance_after, '', '', '', '', '', '', 0::bigint,
                NULL::int, a.gift_entry, a.ref
             FROM account_entries a
             WHERE a.receiver_id = p_receiver_id AND a.created_at <= p_at
               AND a.kind NOT IN ('transfer_in', 'transfer_out', 'reshard_in', 'reshard_out')
               AND (a.created_at, 'a'::text, a.id) < (p_at, p_src, b.id)
             ORDER BY a.created_at DESC, a.id DESC LIMIT p_limit)
        ) AS u
        ORDER BY u.created_at DESC, u.src DESC, u.id DESC
        LIMIT p_limit
    ) AS e;
$$;

-- Partition migration 5's.
CREATE OR REPLACE FUNCTION giftd_earnings_parts(p_receiver_id text, p_hold interval)
    RETURNS TABLE (partition int, home boolean, balance bigint, owed bigint, maturing bigint, updated_at timestamptz,
                   pending_refs text[], pending_amounts bigint[])
    LANGUAGE sql STABLE AS $$
    SELECT i.partition, giftd_placement(p_receiver_id) & (i.partitions - 1) = i.partition, a.balance, a.owed,
        (SELECT coalesce(sum(g.earnings), 0) FROM gift_entries g
         WHERE g.receiver_id = p_receiver_id AND p_hold > '0' AND g.created_at > now() - p_hold)::bigint,
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
$$;

DROP FUNCTION giftd_reshard_keeps_entry(account_entries, integer, integer, bigint);
DROP FUNCTION giftd_reshard_keeps_gift(bigint, text, integer, integer, bigint);
DROP FUNCTION giftd_reshard_read_claim();
DROP TABLE giftd_reshard_switched;
