-- The debit batch's entry on a partition in three statements
-- (docs/scale-out.md#where-a-partitions-cpu-goes).
--
-- giftd_debit_gifts_on read the identity, then called giftd_check_users,
-- which locked the fence table, read the identity again, checked the
-- placement of the batch's users, read the fence and checked them against
-- it: seven statements and a nested PL/pgSQL call before the debit, about
-- 7 % of a partition backend's CPU per batch under the kit's load. Now the
-- lock, then one query reading the identity, the fence and both checks,
-- then the debit. The same refusals with the same SQLSTATEs and messages
-- (GD001 for a batch of another partition or a user placed elsewhere, GD003
-- for a fenced user), the same lock held to the transaction's end (see
-- partition migration 8 for why the lock is a statement of its own, before
-- the query's snapshot). giftd_check_users, which giftd_topup and the key
-- claims call, gets the same shape: the lock, then one query.
CREATE OR REPLACE FUNCTION giftd_check_users(p_users text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    me record;
BEGIN
    LOCK TABLE giftd_reshard_fence IN ACCESS SHARE MODE;
    SELECT i.partition, i.partitions, f.fence,
           EXISTS (SELECT 1 FROM unnest(p_users) AS u WHERE giftd_placement(u) & (i.partitions - 1) <> i.partition) AS misplaced,
           f.fence IS NOT NULL AND EXISTS (SELECT 1 FROM unnest(p_users) AS u
                                               WHERE giftd_placement(u) & (f.fence - 1) <> i.partition) AS fenced
      INTO me
      FROM giftd_partition_identity AS i, (SELECT max(partitions) AS fence FROM giftd_reshard_fence) AS f;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'giftd: this database is not claimed as a partition' USING ERRCODE = 'GD001';
    END IF;
    IF me.misplaced THEN
        RAISE EXCEPTION 'giftd: a write for users placed on other partitions than % of %', me.partition, me.partitions
            USING ERRCODE = 'GD001';
    END IF;
    IF me.fenced THEN
        RAISE EXCEPTION 'giftd: partition % is handing users over to the partitions of %: retry', me.partition, me.fence
            USING ERRCODE = 'GD003';
    END IF;
END
$$;

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
    -- giftd_check_users inlined: the lock, then one query.
    LOCK TABLE giftd_reshard_fence IN ACCESS SHARE MODE;
    SELECT i.partition, i.partitions, f.fence,
           EXISTS (SELECT 1 FROM unnest(p_user_id) AS u WHERE giftd_placement(u) & (i.partitions - 1) <> i.partition) AS misplaced,
           f.fence IS NOT NULL AND EXISTS (SELECT 1 FROM unnest(p_user_id) AS u
                                               WHERE giftd_placement(u) & (f.fence - 1) <> i.partition) AS fenced
      INTO me
      FROM giftd_partition_identity AS i, (SELECT max(partitions) AS fence FROM giftd_reshard_fence) AS f;
    IF NOT FOUND OR me.partition <> p_partition THEN
        RAISE EXCEPTION 'giftd: a debit batch for partition % reached partition % of %', p_partition, me.partition, me.partitions
            USING ERRCODE = 'GD001', HINT = 'check the order of the partition URLs (docs/scale-out.md)';
    END IF;
    IF me.misplaced THEN
        RAISE EXCEPTION 'giftd: a write for users placed on other partitions than % of %', me.partition, me.partitions
            USING ERRCODE = 'GD001';
    END IF;
    IF me.fenced THEN
        RAISE EXCEPTION 'giftd: partition % is handing users over to the partitions of %: retry', me.partition, me.fence
            USING ERRCODE = 'GD003';
    END IF;
    RETURN QUERY SELECT * FROM giftd_debit_gifts(p_platform, p_app_id, p_request_id, p_fingerprint, p_user_id,
        p_gold, p_expires_at, p_details, p_receiver_id, p_room_id, p_gift_id, p_count, p_unit_price, p_settle,
        p_price_check, p_default_share, p_policy, p_now);
END
$$;
