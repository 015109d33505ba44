-- giftd reshard splits most of the gift economy before the pause
-- (docs/scale-out.md#the-economy-split-before-the-pause). The split of
-- partition migration 12 read every economy row of the partition inside the
-- pause, every gift of the old partition refused meanwhile. Gift and
-- account entries are append-only, and which side of the pair owns one is
-- decided from the row alone: so the rows up to a cut (every one committed,
-- the same on both sides) can be decided before the fence, and only the
-- rows written since inside it. What cannot move before the fence are the
-- balances (every write changes them until the freeze): the pre-split sums
-- what each side gives away, by account, and the split squares the
-- balances with those sums plus its own.

-- What a partition's pre-splits did at a count: the gifts with ids up to
-- gift_cut and the account entries up to entry_cut were decided then, rows
-- of them read.
CREATE TABLE giftd_reshard_presplit (
    partitions  integer     PRIMARY KEY,
    gift_cut    bigint      NOT NULL,
    entry_cut   bigint      NOT NULL,
    rows        bigint      NOT NULL,
    presplit_at timestamptz NOT NULL DEFAULT now()
);

-- What this side does not own of those rows, summed by account (a
-- receiver's earnings or receivable, or a house slot), a row per account
-- and pre-split.
CREATE TABLE giftd_reshard_gone (
    partitions  integer  NOT NULL,
    account     text     NOT NULL,
    receiver_id text,
    house_slot  smallint,
    amount      bigint   NOT NULL
);

-- The economy rows a split read inside the pause (NULL: a split made before
-- this migration).
ALTER TABLE giftd_reshard_split ADD COLUMN rows bigint;

-- The economy rows this partition does not own at p_partitions = 2n (the
-- rule of giftd_reshard_split, migration 12), among the gifts with
-- p_gift_after < id <= p_gift_upto and the account entries with
-- p_entry_after < id <= p_entry_upto, each as the split takes it out: a
-- gift twice (its earnings, its house), an entry once. A leg naming a gift
-- no longer here follows it: only this reshard's pre-split, split and
-- forget delete a gift, and only one this side does not own (a gift deleted
-- by an earlier reshard took its legs with it, and a leg is only ever
-- written next to its gift).
CREATE FUNCTION giftd_reshard_gone_rows(p_partitions integer, p_gift_after bigint, p_gift_upto bigint,
                                        p_entry_after bigint, p_entry_upto bigint)
    RETURNS TABLE (gift bigint, entry bigint, account text, receiver_id text, slot smallint, amount bigint)
    LANGUAGE sql STABLE AS $$
    -- This partition as uncorrelated subqueries (each read once) and a
    -- leg's gift as a correlated one (a look-up by its key): a join with
    -- the unanalysed identity table, or with gift_entries, let the planner
    -- read all of gift_entries for a few legs (the split inside the pause
    -- must read only the rows past its cut).
    SELECT g.id, NULL::bigint, v.account, v.receiver_id, v.slot, v.amount
    FROM gift_entries AS g,
         LATERAL (VALUES ('earnings', g.receiver_id, NULL::smallint, g.earnings),
                         ('house', NULL, g.house_slot, g.house)) AS v (account, receiver_id, slot, amount)
    WHERE g.id > p_gift_after AND g.id <= p_gift_upto
      AND giftd_placement(g.sender_id) & (p_partitions - 1) <> (SELECT i.partition FROM giftd_partition_identity AS i)
    UNION ALL
    SELECT NULL, a.id, a.account, a.receiver_id, a.house_slot, a.amount
    FROM account_entries AS a
    WHERE a.id > p_entry_after AND a.id <= p_entry_upto
      AND CASE WHEN a.gift_entry IS NOT NULL
               THEN coalesce((SELECT giftd_placement(g.sender_id) & (p_partitions - 1) FROM gift_entries AS g WHERE g.id = a.gift_entry)
                             <> (SELECT i.partition FROM giftd_partition_identity AS i), true)
               WHEN a.kind IN ('transfer_out', 'clawback_in')
               THEN split_part(a.ref, ':', 1)::integer <> (SELECT i.partition FROM giftd_partition_identity AS i)
               -- the receiver's home: their partition of 2n if it is lo or
               -- hi (the same partition of n as this one), else lo.
               ELSE CASE WHEN (giftd_placement(a.receiver_id) & (p_partitions - 1)) % (p_partitions / 2)
                              = (SELECT i.partition FROM giftd_partition_identity AS i) % (p_partitions / 2)
                         THEN giftd_placement(a.receiver_id) & (p_partitions - 1)
                         ELSE (SELECT i.partition FROM giftd_partition_identity AS i) % (p_partitions / 2) END
                    <> (SELECT i.partition FROM giftd_partition_identity AS i) END;
$$;

-- The pre-split of this partition's economy at p_partitions = 2n, before
-- the fence, over the gifts with ids up to p_gift_cut and the account
-- entries up to p_entry_cut, past those of an earlier call (giftd reshard
-- makes two: one over the economy, one over what was written meanwhile).
-- giftd reshard picks the cuts on old partition i once every transaction
-- that could still write a row under them has ended, calls this on i, then
-- on new partition i + n once the copy holds everything i committed before:
-- both sides decide the same rows. Each sums what it does not own of them
-- (giftd_reshard_gone); new partition i + n, which serves nobody yet, also
-- deletes it; old partition i serves on and keeps those rows (a moving
-- sender's gift is still theirs to reverse, a report still reads it) until
-- giftd_reshard_forget, after the switch. Balances are left as they are.
-- Returns the rows it read: 0 for cuts not past the last ones, or after the
-- split.
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

-- giftd_reshard_split as migration 12 wrote it, but for the rows a
-- pre-split decided: it reads only the entries past the pre-split's cuts
-- (all of them when there was none), deletes what it does not own of them,
-- and squares the house and each receiver's accounts with what it gives
-- away of them plus what the pre-split summed. The legs, balances, cursor
-- and floor are the one-step split's, to the row
-- (TestReshard_PreSplitEndsAsTheOneStepSplit). Old partition i deletes
-- the rows under the cuts it gives away in giftd_reshard_forget.
CREATE OR REPLACE FUNCTION giftd_reshard_split(p_partitions integer) RETURNS bigint LANGUAGE plpgsql AS $$
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

-- giftd_reshard_forget as migration 14 wrote it, and on a partition whose
-- economy was pre-split at its count, the economy rows under the cuts it
-- gave away: old partition i kept them, serving, until now (new partition
-- i + n deleted them before the fence, and finds none). After the split
-- every row written here is this side's, so these are exactly the rows the
-- pre-split summed as given away.
CREATE OR REPLACE FUNCTION giftd_reshard_forget() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    me      record;
    cut     record;
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
    SELECT s.gift_cut, s.entry_cut INTO cut FROM giftd_reshard_presplit AS s
    WHERE s.partitions = me.partitions AND EXISTS (SELECT 1 FROM giftd_reshard_split AS x WHERE x.partitions = me.partitions);
    IF FOUND THEN
        CREATE TEMP TABLE giftd_forget_gone ON COMMIT DROP AS
        SELECT x.gift, x.entry FROM giftd_reshard_gone_rows(me.partitions, 0, cut.gift_cut, 0, cut.entry_cut) AS x;
        DELETE FROM account_entries AS a USING giftd_forget_gone AS x WHERE a.id = x.entry;
        DELETE FROM gift_entries AS g WHERE g.id IN (SELECT x.gift FROM giftd_forget_gone AS x WHERE x.gift IS NOT NULL);
    END IF;
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
