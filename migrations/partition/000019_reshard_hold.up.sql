-- giftd reshard keeps the earnings hold whole
-- (docs/scale-out.md#resharding-with-the-gift-economy). The split squares a
-- receiver's earnings with one reshard_in on their home side: the earnings
-- of the gifts that went to the other side (their senders' partition of 2n)
-- arrive on the home in it, and giftd_payout, which holds the gifts settled
-- on the home and the credits moved in (transfer_in) younger than the hold,
-- counted them as payable at once, however young the gifts.
--
-- Now the pre-split and the split also sum, per receiver at home on the
-- pair, the earnings of those gifts younger than a fixed time (young_after:
-- giftd reshard's first pre-split of the pair less GIFTD_EARNINGS_HOLD,
-- kept with the old partition's cut, so that both sides and a run again
-- classify alike), and the split writes that part in a resharding leg of
-- its own on each side, keyed 'reshard-held:<2n>:<lo>:<receiver>' (paired
-- by credits.Audit as any resharding leg), the rest in the usual
-- 'reshard:…' legs. giftd_payout holds a held leg younger than the hold
-- like a transfer_in: held from the reshard, a little longer than from its
-- gifts, never shorter.

-- The time a gift must be younger than for its earnings to be held across
-- the reshard (NULL: no hold, or a pre-split made before this migration).
-- Set by the first pre-split of the count, never changed after.
ALTER TABLE giftd_reshard_presplit ADD COLUMN young_after timestamptz;

-- Per receiver whose home at p_partitions / 2 is this pair, the earnings of
-- the gifts with p_gift_after < id <= p_gift_upto created after
-- p_young_after (none when NULL) whose sender's partition of p_partitions
-- is not the receiver's: the young earnings the split moves between the two
-- sides. Decided from the rows alone, the same on both sides. (A receiver
-- placed on another pair has a transit account here: their gifts' earnings
-- reached their home by a transfer_in, held there already.)
CREATE FUNCTION giftd_reshard_held_rows(p_partitions integer, p_gift_after bigint, p_gift_upto bigint,
                                        p_young_after timestamptz)
    RETURNS TABLE (receiver_id text, amount bigint)
    LANGUAGE sql STABLE AS $$
    SELECT g.receiver_id, sum(g.earnings)::bigint
    FROM gift_entries AS g
    WHERE g.id > p_gift_after AND g.id <= p_gift_upto
      AND g.created_at > p_young_after AND g.earnings > 0
      AND giftd_placement(g.receiver_id) & (p_partitions / 2 - 1)
          = (SELECT i.partition FROM giftd_partition_identity AS i) % (p_partitions / 2)
      AND giftd_placement(g.sender_id) & (p_partitions - 1) <> giftd_placement(g.receiver_id) & (p_partitions - 1)
    GROUP BY g.receiver_id;
$$;

-- giftd_reshard_presplit as migration 17 wrote it, and the young earnings
-- of the rows it decides (giftd_reshard_held_rows), summed per receiver in
-- giftd_reshard_gone as account 'held' (not given away: what the split
-- moves in the held leg). p_young_after is used by the first call of the
-- count only; later calls keep the time it recorded.
DROP FUNCTION giftd_reshard_presplit(integer, bigint, bigint);
CREATE FUNCTION giftd_reshard_presplit(p_partitions integer, p_gift_cut bigint, p_entry_cut bigint,
                                       p_young_after timestamptz DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    me    record;
    rows  bigint;
    half  integer := p_partitions / 2;
    gfrom bigint := 0;
    efrom bigint := 0;
    gto   bigint;
    eto   bigint;
    young timestamptz := p_young_after;
BEGIN
    SELECT i.partition, i.partitions INTO STRICT me FROM giftd_partition_identity AS i;
    IF NOT ((me.partitions = half AND me.partition < half) OR (me.partitions = p_partitions AND me.partition >= half)) THEN
        RAISE EXCEPTION 'giftd: partition % of % is neither an old nor a new partition of a reshard to %', me.partition, me.partitions, p_partitions
            USING ERRCODE = 'GD001';
    END IF;
    IF EXISTS (SELECT 1 FROM giftd_reshard_split AS s WHERE s.partitions = p_partitions) THEN
        RETURN 0;
    END IF;
    SELECT s.gift_cut, s.entry_cut, s.young_after INTO gfrom, efrom, young
    FROM giftd_reshard_presplit AS s WHERE s.partitions = p_partitions FOR UPDATE;
    IF NOT FOUND THEN
        young := p_young_after;
    END IF;
    gfrom := coalesce(gfrom, 0);
    efrom := coalesce(efrom, 0);
    gto := greatest(gfrom, p_gift_cut);
    eto := greatest(efrom, p_entry_cut);
    IF gto = gfrom AND eto = efrom THEN
        -- The time recorded all the same (an economy still empty).
        INSERT INTO giftd_reshard_presplit (partitions, gift_cut, entry_cut, rows, young_after)
        VALUES (p_partitions, gto, eto, 0, young) ON CONFLICT (partitions) DO NOTHING;
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
    -- Before the new side deletes what it gives away: both sides read the
    -- same gifts.
    INSERT INTO giftd_reshard_gone (partitions, account, receiver_id, house_slot, amount)
    SELECT p_partitions, 'held', h.receiver_id, NULL, h.amount
    FROM giftd_reshard_held_rows(p_partitions, gfrom, gto, young) AS h;
    SELECT (SELECT count(*) FROM gift_entries AS g WHERE g.id > gfrom AND g.id <= gto)
         + (SELECT count(*) FROM account_entries AS a WHERE a.id > efrom AND a.id <= eto) INTO rows;
    IF me.partition >= half THEN
        DELETE FROM account_entries AS a USING giftd_presplit_gone AS x WHERE a.id = x.entry;
        DELETE FROM gift_entries AS g WHERE g.id IN (SELECT x.gift FROM giftd_presplit_gone AS x WHERE x.gift IS NOT NULL);
    END IF;
    INSERT INTO giftd_reshard_presplit AS s (partitions, gift_cut, entry_cut, rows, young_after)
    VALUES (p_partitions, gto, eto, rows, young)
    ON CONFLICT (partitions) DO UPDATE SET gift_cut = excluded.gift_cut, entry_cut = excluded.entry_cut,
        rows = s.rows + excluded.rows, presplit_at = now();
    RETURN rows;
END
$$;

-- giftd_reshard_split as migration 17 wrote it, but for a receiver at home
-- on the pair whose young earnings (giftd_reshard_held_rows, at the
-- pre-split's young_after, or at p_young_after when there was no pre-split)
-- moved between the sides: that part of the earnings moved, at most what
-- moved, in the held leg 'reshard-held:<2n>:<lo>:<receiver>' (+ on the
-- home, − on the other side), the rest in the 'reshard:…' leg as before.
-- Both sides compute the same amounts: the two keys' legs are each equal and
-- opposite.
DROP FUNCTION giftd_reshard_split(integer);
CREATE FUNCTION giftd_reshard_split(p_partitions integer, p_young_after timestamptz DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    me    record;
    lo    integer;
    hi    integer;
    legs  bigint := 0;
    pos   bigint;
    gcut  bigint := 0;
    ecut  bigint := 0;
    nrows bigint;
    young timestamptz;
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
    SELECT s.gift_cut, s.entry_cut, s.young_after INTO gcut, ecut, young
    FROM giftd_reshard_presplit AS s WHERE s.partitions = p_partitions;
    IF NOT FOUND THEN
        young := p_young_after;
    END IF;
    gcut := coalesce(gcut, 0);
    ecut := coalesce(ecut, 0);
    SET LOCAL session_replication_role = replica;

    SELECT (SELECT count(*) FROM gift_entries AS g WHERE g.id > gcut)
         + (SELECT count(*) FROM account_entries AS a WHERE a.id > ecut) INTO nrows;
    CREATE TEMP TABLE giftd_split_gone ON COMMIT DROP AS
    SELECT * FROM giftd_reshard_gone_rows(p_partitions, gcut, 9223372036854775807, ecut, 9223372036854775807)
    UNION ALL
    SELECT NULL, NULL, s.account, s.receiver_id, s.house_slot, s.amount
    FROM giftd_reshard_gone AS s WHERE s.partitions = p_partitions AND s.account <> 'held';
    -- Before the deletes: both sides read the same gifts.
    CREATE TEMP TABLE giftd_split_held ON COMMIT DROP AS
    SELECT h.receiver_id, sum(h.amount)::bigint AS amount FROM (
        SELECT x.receiver_id, x.amount FROM giftd_reshard_held_rows(p_partitions, gcut, 9223372036854775807, young) AS x
        UNION ALL
        SELECT s.receiver_id, s.amount FROM giftd_reshard_gone AS s WHERE s.partitions = p_partitions AND s.account = 'held'
    ) AS h GROUP BY h.receiver_id;

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
               coalesce(y.amount, 0) AS young_earnings,
               CASE WHEN giftd_placement(a.receiver_id) & (p_partitions - 1) IN (lo, hi)
                    THEN giftd_placement(a.receiver_id) & (p_partitions - 1) ELSE lo END = me.partition AS home
        FROM earnings_accounts AS a LEFT JOIN gone AS g USING (receiver_id)
        LEFT JOIN giftd_split_held AS y USING (receiver_id)
        ORDER BY a.receiver_id
        FOR UPDATE OF a
    ), moved AS (
        -- held: the young part of the earnings moved to the home (the same
        -- on both sides: the home's gone is the other side's kept).
        SELECT acc.*, greatest(0, least(acc.young_earnings,
                   CASE WHEN acc.home THEN acc.gone_earnings ELSE acc.balance - acc.gone_earnings END)) AS held
        FROM acc
    ), leg AS (
        -- home: + what it gives away, the balance as it is; else: − what
        -- it keeps (balance − gone), the balance 0. The earnings' held
        -- part in a leg of its own.
        SELECT m.receiver_id, m.home, v.account, v.held,
               CASE WHEN m.home THEN v.amount ELSE -v.amount END AS amount, v.after
        FROM moved AS m, LATERAL (VALUES
            ('earnings', false, CASE WHEN m.home THEN m.gone_earnings ELSE m.balance - m.gone_earnings END - m.held,
             CASE WHEN m.home THEN m.balance - m.held ELSE m.held END),
            ('earnings', true, m.held, CASE WHEN m.home THEN m.balance ELSE 0 END),
            ('receivable', false, CASE WHEN m.home THEN m.gone_owed ELSE m.owed - m.gone_owed END,
             CASE WHEN m.home THEN m.owed ELSE 0 END)) AS v (account, held, amount, after)
    ), w AS (
        INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
        SELECT leg.account, leg.receiver_id, CASE WHEN leg.home THEN 'reshard_in' ELSE 'reshard_out' END,
               leg.amount, leg.after,
               format(CASE WHEN leg.held THEN 'reshard-held:%s:%s:%s' ELSE 'reshard:%s:%s:%s' END, p_partitions, lo, leg.receiver_id),
               jsonb_build_object('partitions', p_partitions, 'from', CASE WHEN leg.home THEN lo + hi - me.partition ELSE me.partition END,
                                  'to', CASE WHEN leg.home THEN me.partition ELSE lo + hi - me.partition END)
        FROM leg
        WHERE leg.amount <> 0
        ORDER BY leg.receiver_id, leg.account, leg.held
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

-- giftd_payout as migration 6 wrote it, holding also the held resharding
-- legs younger than the hold ('reshard-held:…', the earnings of gifts
-- younger than the hold when giftd reshard moved them here), as it holds
-- a transfer_in: from the leg, a little longer than from the gifts, never
-- shorter.
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
         WHERE t.receiver_id = p_receiver AND t.account = 'earnings'
           AND (t.kind = 'transfer_in' OR (t.kind = 'reshard_in' AND t.ref LIKE 'reshard-held:%'))
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