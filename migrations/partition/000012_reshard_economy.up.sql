-- giftd reshard splits the gift economy (docs/scale-out.md#resharding-with-the-gift-economy):
-- the economy tables are copied whole from old partition i to new partition
-- i + n, then each side keeps the rows it owns and squares each receiver's
-- accounts with one resharding leg, in one transaction (giftd_reshard_split),
-- inside the pause, once every economy write of the old partitions is
-- frozen (the trigger giftd_reshard_freeze) and every credit of the old
-- count has moved.

-- The resharding legs: reshard_in on the receiver's home side (what it
-- deleted of the account), reshard_out on the other side (minus what it
-- kept); either sign, never zero, never a gift's.
ALTER TABLE account_entries DROP CONSTRAINT account_entries_leg;
ALTER TABLE account_entries DROP CONSTRAINT account_entries_kind;
ALTER TABLE account_entries ADD CONSTRAINT account_entries_kind CHECK (kind IN ('reversal', 'shortfall', 'payout',
    'recovery', 'transfer_in', 'transfer_out', 'clawback_in', 'clawback', 'reshard_in', 'reshard_out')) NOT VALID;
ALTER TABLE account_entries ADD CONSTRAINT account_entries_leg CHECK (
    CASE kind WHEN 'shortfall' THEN account = 'receivable' AND amount > 0 AND gift_entry IS NOT NULL
              WHEN 'reversal' THEN account <> 'receivable' AND amount < 0 AND gift_entry IS NOT NULL
              WHEN 'payout' THEN account = 'earnings' AND amount < 0
              WHEN 'transfer_in' THEN account = 'earnings' AND amount > 0 AND gift_entry IS NULL
              WHEN 'transfer_out' THEN account = 'earnings' AND amount < 0 AND gift_entry IS NULL
              WHEN 'clawback_in' THEN account = 'earnings' AND amount > 0 AND gift_entry IS NULL
              WHEN 'clawback' THEN gift_entry IS NULL AND ((account = 'earnings' AND amount < 0)
                                                         OR (account = 'receivable' AND amount > 0))
              WHEN 'reshard_in' THEN account <> 'house' AND gift_entry IS NULL
              WHEN 'reshard_out' THEN account <> 'house' AND gift_entry IS NULL
              ELSE account <> 'house' AND amount < 0 END) NOT VALID;
ALTER TABLE account_entries VALIDATE CONSTRAINT account_entries_kind;
ALTER TABLE account_entries VALIDATE CONSTRAINT account_entries_leg;

-- The credit events at or below floor were written under an earlier
-- partition count, and all moved before the split that set it:
-- credits.Audit reads the events above it only.
ALTER TABLE credit_cursor ADD COLUMN floor bigint NOT NULL DEFAULT 0;

-- One row per split this partition made: a second call does nothing, and
-- the freeze ends with it.
CREATE TABLE giftd_reshard_split (
    partitions integer     PRIMARY KEY,
    floor      bigint      NOT NULL,
    split_at   timestamptz NOT NULL DEFAULT now()
);

-- The freeze: from the fence of 2n to this partition's split of 2n, every
-- write of gift_entries and account_entries is refused (GD003: retry), but
-- the credit consumer's legs, which must go on for the credits of the old
-- count to drain. Created disabled, like migration 11's trigger, and
-- enabled in the fence's transaction (ENABLE TRIGGER waits for every write
-- of the table in flight); it reads the fence and the split without a lock
-- for the same reason as migration 11's. Rows written as replication does
-- (the copy, the split) never fire it.
CREATE FUNCTION giftd_reshard_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    fence integer;
BEGIN
    -- (PL/pgSQL does not promise to stop at the first false of an AND:
    -- gift_entries has no kind, so its own test.)
    IF TG_TABLE_NAME = 'account_entries' THEN
        IF NEW.kind IN ('transfer_in', 'transfer_out', 'clawback') THEN
            RETURN NULL;
        END IF;
    END IF;
    SELECT max(f.partitions) INTO fence FROM giftd_reshard_fence AS f;
    IF fence IS NOT NULL AND NOT EXISTS (SELECT 1 FROM giftd_reshard_split AS s WHERE s.partitions = fence) THEN
        RAISE EXCEPTION 'giftd: the gift economy is being split between partitions: retry'
            USING ERRCODE = 'GD003', DETAIL = format('a write to %s during a reshard''s pause', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER giftd_reshard_freeze AFTER INSERT ON gift_entries
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_frozen();
CREATE TRIGGER giftd_reshard_freeze AFTER INSERT ON account_entries
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_frozen();
ALTER TABLE gift_entries DISABLE TRIGGER giftd_reshard_freeze;
ALTER TABLE account_entries DISABLE TRIGGER giftd_reshard_freeze;

-- The split of this partition's economy at p_partitions = 2n, between old
-- partition i (lo) and new partition i + n (hi), called on both once the
-- claim is of 2n, behind the fence of 2n, with every economy write frozen
-- and every credit of the old count moved (giftd reshard ensures both).
-- Both sides then hold the same economy rows, and decide the same:
--   a gift and the legs naming it belong to its sender's partition;
--   transfer_out and clawback_in legs to the partition their key names;
--   every other leg to its receiver's home: their partition of 2n if it is
--   lo or hi, else lo.
-- Each side deletes what it does not own, takes each house slot down by
-- what it deleted of it, and squares each receiver's earnings and
-- receivable: on the home side a reshard_in of what it deleted (the
-- balance unchanged), on the other a reshard_out of minus what it kept
-- (the balance 0), both keyed 'reshard:<2n>:<lo>:<receiver>'. Then the
-- credit cursor: on hi past every copied event, on both a floor there.
-- Returns how many legs it wrote; run again, nothing.
CREATE FUNCTION giftd_reshard_split(p_partitions integer) RETURNS bigint LANGUAGE plpgsql AS $$
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

-- giftd_reshard_forget (migration 8) refused any partition holding gift
-- economy rows; now only one whose economy was not split at its claim's
-- count (a partition of a cluster never resharded holds no resharding
-- fence, and forget is not called there).
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
    DELETE FROM giftd_reshard_fence WHERE partitions <= me.partitions;
    DELETE FROM giftd_reshard_marks;
    RETURN wallets;
END
$$;

-- A receiver's earnings ledger (partition migration 5) leaves the
-- resharding legs out, like the transfer legs: they move where earnings are
-- kept, not the earnings (each gift and leg is listed once, from the
-- partition that now holds it).
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
