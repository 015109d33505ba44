ALTER FUNCTION giftd_placement(text) IMMUTABLE;

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
LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_partition_number(p_partition);
$$;

CREATE OR REPLACE FUNCTION giftd_partition_status(p_partition integer,
    OUT main_version bigint, OUT main_dirty boolean, OUT partition_version bigint, OUT partition_dirty boolean,
    OUT partition integer, OUT partitions integer)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_partition_number(p_partition);
    SELECT * FROM giftd_partition_status();
$$;

CREATE OR REPLACE FUNCTION giftd_partition_identity(p_partition integer)
    RETURNS TABLE (cluster_id uuid, partition integer, partitions integer)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_partition_number(p_partition);
    SELECT i.cluster_id, i.partition, i.partitions FROM giftd_partition_identity AS i;
$$;

REVOKE SELECT ON giftd_cluster_generation FROM PUBLIC;
DROP FUNCTION plproxy.get_cluster_version(text);
CREATE FUNCTION plproxy.get_cluster_version(cluster_name text) RETURNS integer
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF cluster_name <> 'giftd' THEN
        RAISE EXCEPTION 'giftd: no PL/Proxy cluster named %', cluster_name;
    END IF;
    RETURN (SELECT version FROM giftd_cluster_generation);
END
$$;
