-- giftd_check_users and giftd_debit_gifts_on as partition migration 8 wrote them.
CREATE OR REPLACE FUNCTION giftd_check_users(p_users text[]) RETURNS void LANGUAGE plpgsql AS $$
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
