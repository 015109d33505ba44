-- Resharding n → 2n (docs/scale-out.md#resharding-n--2n): giftd reshard copies
-- partition i's data to a new partition i + n by logical replication, fences
-- the users moving there, switches the proxy, then has each side forget the
-- users it no longer owns. What a partition needs for it:

-- The fence: a row (partitions = 2n) makes this partition refuse, with
-- SQLSTATE GD003 (retryable: nothing runs), every write of a user whose
-- placement & (2n − 1) is not this partition, i.e. every user moving away.
-- giftd reshard inserts it holding an ACCESS EXCLUSIVE lock, and every
-- checked write holds ACCESS SHARE on it to the end of its transaction: so
-- every write that passed the check before the fence has committed before
-- the fence commits (and replication delivers it before the fence row), and
-- none passes it after. The table is published with the moving data; its
-- row reaching the new partition proves the copy holds every write before
-- the fence.
CREATE TABLE giftd_reshard_fence (
    partitions integer     PRIMARY KEY CHECK (partitions > 1 AND partitions & (partitions - 1) = 0),
    fenced_at  timestamptz NOT NULL DEFAULT now()
);

-- Marks: giftd reshard inserts one on the old partition and waits for it on
-- the new one to know the copy has caught up (replication applies
-- transactions in commit order). Published with the data.
CREATE TABLE giftd_reshard_marks (
    mark      text        PRIMARY KEY,
    marked_at timestamptz NOT NULL DEFAULT now()
);

-- Refuses a write for p_users unless each is placed on this partition by its
-- claim (GD001, as giftd_debit_gifts_on always did: giftd re-reads the
-- proxy's partition count and routes again) and none is fenced (GD003).
CREATE FUNCTION giftd_check_users(p_users text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    me    record;
    fence integer;
BEGIN
    -- A statement of its own, so that the SELECT below takes its snapshot
    -- after the lock is granted: a write waiting behind the fence sees it.
    LOCK TABLE giftd_reshard_fence IN ACCESS SHARE MODE;
    SELECT i.partition, i.partitions INTO me FROM giftd_partition_identity AS i;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'giftd: this database is not claimed as a partition' USING ERRCODE = 'GD001';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_users) AS u WHERE giftd_placement(u) & (me.partitions - 1) <> me.partition) THEN
        RAISE EXCEPTION 'giftd: a write for users placed on other partitions than % of %', me.partition, me.partitions
            USING ERRCODE = 'GD001';
    END IF;
    SELECT max(f.partitions) INTO fence FROM giftd_reshard_fence AS f;
    IF fence IS NOT NULL AND EXISTS (SELECT 1 FROM unnest(p_users) AS u
                                     WHERE giftd_placement(u) & (fence - 1) <> me.partition) THEN
        RAISE EXCEPTION 'giftd: partition % is handing users over to the partitions of %: retry', me.partition, fence
            USING ERRCODE = 'GD003';
    END IF;
END
$$;

-- giftd_debit_gifts_on as partition migration 3 wrote it, its users checked
-- by giftd_check_users (the placement check as before, and the fence).
CREATE OR REPLACE FUNCTION giftd_debit_gifts_on(
    p_partition     int,
    p_platform      text[],
    p_app_id        text[],
    p_request_id    text[],
    p_fingerprint   bytea[],
    p_user_id       text[],
    p_gold          bigint[],
    p_expires_at    timestamptz[],
    p_details       jsonb[],
    p_receiver_id   text[],
    p_room_id       text[],
    p_gift_id       text[],
    p_count         bigint[],
    p_unit_price    bigint[],
    p_settle        boolean,
    p_price_check   boolean,
    p_default_share int,
    p_policy        jsonb,
    p_now           timestamptz
) RETURNS TABLE (status smallint, balance bigint, replay boolean, reused boolean, refusal text, price bigint,
                 refusal_limit bigint, resets_at timestamptz, reminded boolean)
LANGUAGE plpgsql AS $$
DECLARE
    me record;
BEGIN
    SELECT i.partition, i.partitions INTO me FROM giftd_partition_identity AS i;
    IF NOT FOUND OR me.partition <> p_partition THEN
        RAISE EXCEPTION 'giftd: a debit batch for partition % reached partition % of %', p_partition, me.partition, me.partitions
            USING ERRCODE = 'GD001', HINT = 'check the order of the partition URLs (docs/scale-out.md)';
    END IF;
    PERFORM giftd_check_users(p_user_id);
    RETURN QUERY SELECT * FROM giftd_debit_gifts(p_platform, p_app_id, p_request_id, p_fingerprint, p_user_id,
        p_gold, p_expires_at, p_details, p_receiver_id, p_room_id, p_gift_id, p_count, p_unit_price, p_settle,
        p_price_check, p_default_share, p_policy, p_now);
END
$$;

-- giftd_topup keeps partition migration 1's body, renamed, behind the same
-- check: a top-up of a moving user during the pause would otherwise land on
-- the partition it is leaving, after the copy, and be forgotten.
ALTER FUNCTION giftd_topup(text, bigint, text, text) RENAME TO giftd_topup_unchecked;
CREATE FUNCTION giftd_topup(p_user_id text, p_amount bigint, p_key text, p_note text)
    RETURNS TABLE (entry_id bigint, balance bigint, replay boolean)
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM giftd_check_users(ARRAY[p_user_id]);
    RETURN QUERY SELECT * FROM giftd_topup_unchecked(p_user_id, p_amount, p_key, p_note);
END
$$;

-- The claim moves from i of n to i of 2n, only behind the fence of 2n (every
-- moving user already refused here) and within the same cluster; run again,
-- it changes nothing. Returns the claim held: the caller compares.
CREATE FUNCTION giftd_reshard_claim(p_cluster_id uuid, p_partitions integer)
    RETURNS TABLE (cluster_id uuid, partition integer, partitions integer)
    LANGUAGE sql AS $$
    UPDATE giftd_partition_identity AS i SET partitions = p_partitions
    WHERE i.cluster_id = p_cluster_id AND i.partitions * 2 = p_partitions
      AND EXISTS (SELECT 1 FROM giftd_reshard_fence AS f WHERE f.partitions = p_partitions);
    SELECT i.cluster_id, i.partition, i.partitions FROM giftd_partition_identity AS i;
$$;

-- The rows of users this partition does not own by its claim, in the tables
-- giftd reshard copies, are deleted; the fence goes with them (the claim now
-- refuses whom it refused). Wallets, ledger entries and events refuse
-- deletion by their triggers: the session runs as replication does
-- (session_replication_role = replica, a superuser's setting), for this
-- transaction only. Refused while this partition holds any gift economy row
-- (gift entries, account entries, earnings accounts): splitting those is not
-- built (docs/scale-out.md). Returns how many wallets it forgot.
CREATE FUNCTION giftd_reshard_forget() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    me      record;
    wallets bigint;
BEGIN
    SELECT i.partition, i.partitions INTO STRICT me FROM giftd_partition_identity AS i;
    IF EXISTS (SELECT 1 FROM gift_entries) OR EXISTS (SELECT 1 FROM account_entries)
       OR EXISTS (SELECT 1 FROM earnings_accounts) THEN
        RAISE EXCEPTION 'giftd: partition % holds gift economy rows, which resharding does not split', me.partition
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
