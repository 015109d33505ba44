-- Reads across partitions (docs/scale-out.md#reads-across-partitions): each
-- runs the partition's function of the same name and arguments (partition
-- migration 5) on every partition (RUN ON ALL: one row set per partition,
-- in no promised order, which giftd merges; it fails as a whole while any
-- partition is down) or on one user's partition.

CREATE FUNCTION giftd_report_gifts(p_group text, p_from timestamptz, p_to timestamptz, p_platform text,
                                   p_app_id text, p_limit int)
    RETURNS TABLE (platform text, key text, gifts bigint, items bigint, gold bigint, earnings bigint, house bigint)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON ALL;
$$;

CREATE FUNCTION giftd_room_board(p_platform text, p_room_id text, p_side text, p_from timestamptz, p_limit int)
    RETURNS TABLE (id text, gifts bigint, gold bigint, earnings bigint)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON ALL;
$$;

CREATE FUNCTION giftd_sender_spend(p_sender_id text)
    RETURNS TABLE (gifts bigint, gold bigint)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_sender_id);
$$;

CREATE FUNCTION giftd_receiver_period(p_receiver_id text, p_from timestamptz, p_to timestamptz)
    RETURNS TABLE (gifts bigint, gold bigint, earned bigint, taken bigint, shortfall bigint, recovered bigint, paid bigint)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON ALL;
$$;

CREATE FUNCTION giftd_earnings_ledger(p_receiver_id text, p_at timestamptz, p_src text, p_partition int,
                                      p_id bigint, p_limit int)
    RETURNS TABLE (partition int, created_at timestamptz, src text, id bigint, kind text, account text, amount bigint,
                   balance_after bigint, platform text, app_id text, request_id text, sender_id text, room_id text,
                   gift_id text, gold bigint, share_bp int, gift_entry bigint, ref text)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON ALL;
$$;

CREATE FUNCTION giftd_earnings_parts(p_receiver_id text, p_hold interval)
    RETURNS TABLE (partition int, home boolean, balance bigint, owed bigint, maturing bigint, updated_at timestamptz,
                   pending_refs text[], pending_amounts bigint[])
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON ALL;
$$;

CREATE FUNCTION giftd_earnings_home(p_receiver_id text, p_refs text[])
    RETURNS TABLE (balance bigint, owed bigint, updated_at timestamptz, arrived bigint)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_receiver_id);
$$;

-- Split by user: each partition is asked about its own users only.
CREATE FUNCTION giftd_consents(p_user_ids text[])
    RETURNS SETOF text
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    SPLIT p_user_ids;
    RUN ON giftd_placement(p_user_ids);
$$;
