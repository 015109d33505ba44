-- giftd serve in partitioned mode (docs/scale-out.md#the-debit-batch): the
-- proxy's giftd_debit_gifts_on routes a whole group-commit batch to one
-- partition, where this function checks that the batch belongs here before
-- it runs the partition's own giftd_debit_gifts (migration 9's, or whatever
-- later main migration replaced its body; the signature never changes).

-- giftd_placement as the proxy set defines it (proxy migration 1), so that a
-- partition can check which of its callers' users it owns. The same bytes in,
-- the same integer out: TestPlacement_GoAgreesWithSQL holds it to Go's.
CREATE FUNCTION giftd_placement(user_id text) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ('x' || encode(substr(sha256(convert_to(user_id, 'UTF8')), 1, 4), 'hex'))::bit(32)::integer;

-- One batch of giftd_debit_gifts, refused as a whole (nothing runs) unless
-- this database is claimed as partition p_partition and every user of the
-- batch is placed on it: a batch giftd formed across partitions, or routed to
-- the wrong one, would otherwise answer 402 "no wallet" for users whose
-- wallets are elsewhere, and record that answer for good.
CREATE FUNCTION giftd_debit_gifts_on(
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

-- Where this partition's schemas stand, for giftd's readiness: both sets'
-- versions and whether either is dirty, and the claim.
CREATE FUNCTION giftd_partition_status(
    OUT main_version bigint, OUT main_dirty boolean, OUT partition_version bigint, OUT partition_dirty boolean,
    OUT partition integer, OUT partitions integer)
    LANGUAGE sql STABLE AS $$
    SELECT m.version, m.dirty, p.version, p.dirty, i.partition, i.partitions
    FROM (SELECT) AS one
    LEFT JOIN schema_migrations AS m ON true
    LEFT JOIN giftd_partition_migrations AS p ON true
    LEFT JOIN giftd_partition_identity AS i ON true;
$$;
