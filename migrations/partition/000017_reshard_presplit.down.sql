-- Reverts partition migration 17: no pre-split; giftd_reshard_split as
-- migration 12 wrote it and giftd_reshard_forget as migration 14 did.
DROP FUNCTION giftd_reshard_presplit(integer, bigint, bigint);

CREATE OR REPLACE FUNCTION giftd_reshard_split(p_partitions integer) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    me   record;
    lo   integer;
    hi   integer;
    legs bigint := 0;
    pos  bigint;
BEGIN
    SELECT i.partition, i.partitions INTO STRICT me FROM giftd_partition_identity AS i;
    IF me.partitions <> p_partitions OR NOT EXISTS (SELECT 1 FROM giftd_reshard_fence AS f WHERE f.partitions = p_partitions) THEN
        RAISE EXCEPTION 'giftd: partition % splits its economy at % partitions only behind the fence and under that claim', me.partition, p_partitions
            USING ERRCODE = 'GD001';
    END IF;
    IF EXISTS (SELECT 1 FROM giftd_reshard_split AS s WHERE s.partitions = p_partitions) THEN
        RETURN 0;
    END IF;
    lo := me.partition % (p_partitions / 2);
    hi := lo + p_partitions / 2;
    SET LOCAL session_replication_role = replica;

    CREATE TEMP TABLE giftd_split_gone ON COMMIT DROP AS
    SELECT g.id AS gift, NULL::bigint AS entry, 'earnings' AS account, g.receiver_id, NULL::smallint AS slot, g.earnings AS amount
    FROM gift_entries AS g WHERE giftd_placement(g.sender_id) & (p_partitions - 1) <> me.partition
    UNION ALL
    SELECT g.id, NULL, 'house', NULL, g.house_slot, g.house
    FROM gift_entries AS g WHERE giftd_placement(g.sender_id) & (p_partitions - 1) <> me.partition
    UNION ALL
    SELECT NULL, a.id, a.account, a.receiver_id, a.house_slot, a.amount
    FROM account_entries AS a
    LEFT JOIN gift_entries AS g ON g.id = a.gift_entry
    WHERE CASE WHEN a.gift_entry IS NOT NULL THEN giftd_placement(g.sender_id) & (p_partitions - 1) <> me.partition
               WHEN a.kind IN ('transfer_out', 'clawback_in') THEN split_part(a.ref, ':', 1)::integer <> me.partition
               ELSE CASE WHEN giftd_placement(a.receiver_id) & (p_partitions - 1) IN (lo, hi)
                         THEN giftd_placement(a.receiver_id) & (p_partitions - 1) ELSE lo END <> me.partition END;

    DELETE FROM account_entries AS a USING giftd_split_gone AS x WHERE a.id = x.entry;
    DELETE FROM gift_entries AS g WHERE g.id IN (SELECT x.gift FROM giftd_split_gone AS x WHERE x.gift IS NOT NULL);

    UPDATE house_slots AS h SET balance = h.balance - x.amount, updated_at = now()
    FROM (SELECT slot, sum(amount) AS amount FROM giftd_split_gone WHERE account = 'house' GROUP BY slot) AS x
    WHERE h.slot = x.slot AND x.amount <> 0;

    -- Each receiver's accounts: what this side deleted (gone) and keeps.
    WITH gone AS (
        SELECT receiver_id,
               coalesce(sum(amount) FILTER (WHERE account = 'earnings'), 0) AS earnings,
               coalesce(sum(amount) FILTER (WHERE account = 'receivable'), 0) AS owed
        FROM giftd_split_gone WHERE receiver_id IS NOT NULL GROUP BY receiver_id
    ), acc AS (
        SELECT a.receiver_id, a.balance, a.owed,
               coalesce(g.earnings, 0) AS gone_earnings, coalesce(g.owed, 0) AS gone_owed,
               CASE WHEN giftd_placement(a.receiver_id) & (p_partitions - 1) IN (lo, hi)
                    THEN giftd_placement(a.receiver_id) & (p_partitions - 1) ELSE lo END = me.partition AS home
        FROM earnings_accounts AS a LEFT JOIN gone AS g USING (receiver_id)
        ORDER BY a.receiver_id
        FOR UPDATE OF a
    ), leg AS (
        -- home: + what it deleted, the balance as it is; else: − what it
        -- kept (balance − deleted), the balance 0.
        SELECT acc.receiver_id, v.account,
               CASE WHEN acc.home THEN v.gone ELSE -(v.bal - v.gone) END AS amount,
               CASE WHEN acc.home THEN v.bal ELSE 0 END AS after
        FROM acc, LATERAL (VALUES ('earnings', acc.balance, acc.gone_earnings),
                                  ('receivable', acc.owed, acc.gone_owed)) AS v (account, bal, gone)
    ), w AS (
        INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
        SELECT leg.account, leg.receiver_id, CASE WHEN acc.home THEN 'reshard_in' ELSE 'reshard_out' END,
               leg.amount, leg.after, format('reshard:%s:%s:%s', p_partitions, lo, leg.receiver_id),
               jsonb_build_object('partitions', p_partitions, 'from', CASE WHEN acc.home THEN lo + hi - me.partition ELSE me.partition END,
                                  'to', CASE WHEN acc.home THEN me.partition ELSE lo + hi - me.partition END)
        FROM leg JOIN acc USING (receiver_id)
        WHERE leg.amount <> 0
        RETURNING 1
    ), u AS (
        UPDATE earnings_accounts AS a SET balance = 0, owed = 0, updated_at = now()
        FROM acc WHERE a.receiver_id = acc.receiver_id AND NOT acc.home AND (a.balance <> 0 OR a.owed <> 0)
        RETURNING 1
    )
    SELECT count(*) INTO legs FROM w;

    IF me.partition = hi THEN
        SELECT last_value INTO pos FROM events_position_seq;
        UPDATE credit_cursor SET position = greatest(position, pos), floor = greatest(position, pos), updated_at = now();
    ELSE
        UPDATE credit_cursor SET floor = position, updated_at = now();
    END IF;
    INSERT INTO giftd_reshard_split (partitions, floor) SELECT p_partitions, c.floor FROM credit_cursor AS c;
    RETURN legs;
END
$$;

CREATE OR REPLACE FUNCTION giftd_reshard_forget() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    me      record;
    wallets bigint;
BEGIN
    SELECT i.partition, i.partitions INTO STRICT me FROM giftd_partition_identity AS i;
    IF (EXISTS (SELECT 1 FROM gift_entries) OR EXISTS (SELECT 1 FROM account_entries)
        OR EXISTS (SELECT 1 FROM earnings_accounts))
       AND EXISTS (SELECT 1 FROM giftd_reshard_fence AS f WHERE f.partitions = me.partitions)
       AND NOT EXISTS (SELECT 1 FROM giftd_reshard_split AS s WHERE s.partitions = me.partitions) THEN
        RAISE EXCEPTION 'giftd: partition % holds gift economy rows not split at % partitions', me.partition, me.partitions
            USING ERRCODE = 'GD004';
    END IF;
    SET LOCAL session_replication_role = replica;
    DELETE FROM wallets WHERE giftd_placement(user_id) & (me.partitions - 1) <> me.partition;
    GET DIAGNOSTICS wallets = ROW_COUNT;
    DELETE FROM ledger_entries WHERE giftd_placement(user_id) & (me.partitions - 1) <> me.partition;
    DELETE FROM debit_requests WHERE giftd_placement(user_id) & (me.partitions - 1) <> me.partition;
    DELETE FROM spend_windows WHERE giftd_placement(user_id) & (me.partitions - 1) <> me.partition;
    DELETE FROM spend_reminders WHERE giftd_placement(user_id) & (me.partitions - 1) <> me.partition;
    DELETE FROM linkv_accounts WHERE giftd_placement(user_id) & (me.partitions - 1) <> me.partition;
    DELETE FROM linkv_wallet_moves WHERE giftd_placement(user_id) & (me.partitions - 1) <> me.partition;
    DELETE FROM events WHERE giftd_placement(data->>'user_id') & (me.partitions - 1) <> me.partition;
    DELETE FROM giftd_key_claims WHERE giftd_placement(key) & (me.partitions - 1) <> me.partition;
    DELETE FROM giftd_reshard_fence WHERE partitions <= me.partitions;
    DELETE FROM giftd_reshard_marks;
    RETURN wallets;
END
$$;

DROP FUNCTION giftd_reshard_gone_rows(integer, bigint, bigint, bigint, bigint);
ALTER TABLE giftd_reshard_split DROP COLUMN rows;
DROP TABLE giftd_reshard_gone;
DROP TABLE giftd_reshard_presplit;
