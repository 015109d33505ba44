-- Reverts partition migration 19: giftd_reshard_presplit and giftd_reshard_split
-- as migration 17 wrote them, giftd_payout as migration 6 did; the
-- earnings of young gifts already moved in a held leg ('reshard-held:…') are
-- then payable at once, as before migration 19.
DROP FUNCTION giftd_reshard_presplit(integer, bigint, bigint, timestamptz);
DROP FUNCTION giftd_reshard_split(integer, timestamptz);
DROP FUNCTION giftd_reshard_held_rows(integer, bigint, bigint, timestamptz);
DELETE FROM giftd_reshard_gone WHERE account = 'held';
ALTER TABLE giftd_reshard_presplit DROP COLUMN young_after;

CREATE FUNCTION giftd_reshard_presplit(p_partitions integer, p_gift_cut bigint, p_entry_cut bigint)
    RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    me    record;
    rows  bigint;
    half  integer := p_partitions / 2;
    gfrom bigint := 0;
    efrom bigint := 0;
    gto   bigint;
    eto   bigint;
BEGIN
    SELECT i.partition, i.partitions INTO STRICT me FROM giftd_partition_identity AS i;
    IF NOT ((me.partitions = half AND me.partition < half) OR (me.partitions = p_partitions AND me.partition >= half)) THEN
        RAISE EXCEPTION 'giftd: partition % of % is neither an old nor a new partition of a reshard to %', me.partition, me.partitions, p_partitions
            USING ERRCODE = 'GD001';
    END IF;
    IF EXISTS (SELECT 1 FROM giftd_reshard_split AS s WHERE s.partitions = p_partitions) THEN
        RETURN 0;
    END IF;
    SELECT s.gift_cut, s.entry_cut INTO gfrom, efrom FROM giftd_reshard_presplit AS s WHERE s.partitions = p_partitions FOR UPDATE;
    gfrom := coalesce(gfrom, 0);
    efrom := coalesce(efrom, 0);
    gto := greatest(gfrom, p_gift_cut);
    eto := greatest(efrom, p_entry_cut);
    IF gto = gfrom AND eto = efrom THEN
        RETURN 0;
    END IF;
    SET LOCAL session_replication_role = replica;
    CREATE TEMP TABLE giftd_presplit_gone ON COMMIT DROP AS
    SELECT * FROM giftd_reshard_gone_rows(p_partitions, gfrom, gto, efrom, eto);
    INSERT INTO giftd_reshard_gone (partitions, account, receiver_id, house_slot, amount)
    SELECT p_partitions, x.account, x.receiver_id, x.slot, sum(x.amount) FROM giftd_presplit_gone AS x
    WHERE x.account = 'house' OR x.receiver_id IS NOT NULL
    GROUP BY x.account, x.receiver_id, x.slot
    HAVING sum(x.amount) <> 0;
    SELECT (SELECT count(*) FROM gift_entries AS g WHERE g.id > gfrom AND g.id <= gto)
         + (SELECT count(*) FROM account_entries AS a WHERE a.id > efrom AND a.id <= eto) INTO rows;
    IF me.partition >= half THEN
        DELETE FROM account_entries AS a USING giftd_presplit_gone AS x WHERE a.id = x.entry;
        DELETE FROM gift_entries AS g WHERE g.id IN (SELECT x.gift FROM giftd_presplit_gone AS x WHERE x.gift IS NOT NULL);
    END IF;
    INSERT INTO giftd_reshard_presplit AS s (partitions, gift_cut, entry_cut, rows) VALUES (p_partitions, gto, eto, rows)
    ON CONFLICT (partitions) DO UPDATE SET gift_cut = excluded.gift_cut, entry_cut = excluded.entry_cut,
        rows = s.rows + excluded.rows, presplit_at = now();
    RETURN rows;
END
$$;

CREATE FUNCTION giftd_reshard_split(p_partitions integer) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    me    record;
    lo    integer;
    hi    integer;
    legs  bigint := 0;
    pos   bigint;
    gcut  bigint := 0;
    ecut  bigint := 0;
    nrows bigint;
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
    SELECT s.gift_cut, s.entry_cut INTO gcut, ecut FROM giftd_reshard_presplit AS s WHERE s.partitions = p_partitions;
    gcut := coalesce(gcut, 0);
    ecut := coalesce(ecut, 0);
    SET LOCAL session_replication_role = replica;

    SELECT (SELECT count(*) FROM gift_entries AS g WHERE g.id > gcut)
         + (SELECT count(*) FROM account_entries AS a WHERE a.id > ecut) INTO nrows;
    CREATE TEMP TABLE giftd_split_gone ON COMMIT DROP AS
    SELECT * FROM giftd_reshard_gone_rows(p_partitions, gcut, 9223372036854775807, ecut, 9223372036854775807)
    UNION ALL
    SELECT NULL, NULL, s.account, s.receiver_id, s.house_slot, s.amount
    FROM giftd_reshard_gone AS s WHERE s.partitions = p_partitions;

    -- By key (the temporary table has no statistics: joined, the planner
    -- reads the whole entries' tables).
    DELETE FROM account_entries AS a WHERE a.id = ANY (ARRAY(SELECT x.entry FROM giftd_split_gone AS x WHERE x.entry IS NOT NULL));
    DELETE FROM gift_entries AS g WHERE g.id = ANY (ARRAY(SELECT x.gift FROM giftd_split_gone AS x WHERE x.gift IS NOT NULL));

    UPDATE house_slots AS h SET balance = h.balance - x.amount, updated_at = now()
    FROM (SELECT slot, sum(amount) AS amount FROM giftd_split_gone WHERE account = 'house' GROUP BY slot) AS x
    WHERE h.slot = x.slot AND x.amount <> 0;

    -- Each receiver's accounts: what this side gives away (gone) and keeps.
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
        -- home: + what it gives away, the balance as it is; else: − what
        -- it keeps (balance − gone), the balance 0.
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
        ORDER BY leg.receiver_id, leg.account
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
    INSERT INTO giftd_reshard_split (partitions, floor, rows) SELECT p_partitions, c.floor, nrows FROM credit_cursor AS c;
    RETURN legs;
END
$$;

CREATE OR REPLACE FUNCTION giftd_payout(p_receiver text, p_amount bigint, p_key text, p_note text, p_hold interval)
    RETURNS TABLE (status text, receiver_id text, amount bigint, recovered bigint, balance bigint,
                   entry_id bigint, payable bigint)
    LANGUAGE plpgsql AS $$
DECLARE
    a    record;
    held bigint;
    pay  bigint;
    bal  bigint;
    eid  bigint;
    prev record;
BEGIN
    PERFORM giftd_check_placed_here(p_receiver);
    SELECT x.balance, x.owed INTO a FROM earnings_accounts AS x WHERE x.receiver_id = p_receiver FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', p_receiver, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint;
        RETURN;
    END IF;
    SELECT p.receiver_id, -p.amount AS amount, p.balance_after, p.id,
           coalesce((SELECT -r.amount FROM account_entries AS r
                     WHERE r.account = 'receivable' AND r.kind = 'recovery' AND r.ref = p_key), 0) AS recovered
    INTO prev FROM account_entries AS p WHERE p.account = 'earnings' AND p.kind = 'payout' AND p.ref = p_key;
    IF FOUND THEN
        -- As Store.Payout: the replay's commit waits for the standbys.
        PERFORM pg_logical_emit_message(true, 'giftd', 'replay');
        RETURN QUERY SELECT 'replay', prev.receiver_id, prev.amount, prev.recovered, prev.balance_after, prev.id, 0::bigint;
        RETURN;
    END IF;
    held := least(a.balance,
        (SELECT coalesce(sum(g.earnings), 0) FROM gift_entries AS g
         WHERE g.receiver_id = p_receiver AND p_hold > '0' AND g.created_at > now() - p_hold)
      + (SELECT coalesce(sum(t.amount), 0) FROM account_entries AS t
         WHERE t.receiver_id = p_receiver AND t.account = 'earnings' AND t.kind = 'transfer_in'
           AND p_hold > '0' AND t.created_at > now() - p_hold));
    pay := greatest(0, a.balance - a.owed - held);
    IF p_amount > pay THEN
        RETURN QUERY SELECT 'insufficient', p_receiver, 0::bigint, 0::bigint, 0::bigint, 0::bigint, pay;
        RETURN;
    END IF;
    bal := a.balance - a.owed - p_amount;
    UPDATE earnings_accounts AS x SET balance = bal, owed = 0, updated_at = now() WHERE x.receiver_id = p_receiver;
    INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
    SELECT v.a, p_receiver, 'recovery', -a.owed, v.b, p_key, jsonb_build_object('note', p_note)
    FROM (VALUES ('earnings', a.balance - a.owed), ('receivable', 0)) AS v (a, b)
    WHERE a.owed > 0;
    INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
    VALUES ('earnings', p_receiver, 'payout', -p_amount, bal, p_key, jsonb_build_object('note', p_note))
    RETURNING id INTO eid;
    INSERT INTO events (type, data) VALUES ('earnings.paid_out', jsonb_build_object(
        'receiver_id', p_receiver, 'amount', p_amount, 'recovered', a.owed, 'balance_after', bal,
        'entry_id', eid, 'key', p_key, 'note', p_note));
    RETURN QUERY SELECT 'done', p_receiver, p_amount, a.owed, bal, eid, 0::bigint;
END
$$;
