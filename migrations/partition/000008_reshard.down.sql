DROP FUNCTION giftd_reshard_forget();
DROP FUNCTION giftd_reshard_claim(uuid, integer);
DROP FUNCTION giftd_topup(text, bigint, text, text);
ALTER FUNCTION giftd_topup_unchecked(text, bigint, text, text) RENAME TO giftd_topup;
-- giftd_debit_gifts_on as partition migration 3 wrote it.
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
    me       record;
    strays   int;
BEGIN
    SELECT i.partition, i.partitions INTO me FROM giftd_partition_identity AS i;
    IF NOT FOUND OR me.partition <> p_partition THEN
        RAISE EXCEPTION 'giftd: a debit batch for partition % reached partition % of %', p_partition, me.partition, me.partitions
            USING ERRCODE = 'GD001', HINT = 'check the order of the partition URLs (docs/scale-out.md)';
    END IF;
    SELECT count(*) INTO strays FROM unnest(p_user_id) AS u
    WHERE giftd_placement(u) & (me.partitions - 1) <> me.partition;
    IF strays > 0 THEN
        RAISE EXCEPTION 'giftd: a debit batch for partition % holds % of % debits of users placed on other partitions',
            me.partition, strays, cardinality(p_user_id)
            USING ERRCODE = 'GD001';
    END IF;
    RETURN QUERY SELECT * FROM giftd_debit_gifts(p_platform, p_app_id, p_request_id, p_fingerprint, p_user_id,
        p_gold, p_expires_at, p_details, p_receiver_id, p_room_id, p_gift_id, p_count, p_unit_price, p_settle,
        p_price_check, p_default_share, p_policy, p_now);
END
$$;
DROP FUNCTION giftd_check_users(text[]);
DROP TABLE giftd_reshard_marks;
DROP TABLE giftd_reshard_fence;
