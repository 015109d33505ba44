-- Lighter PL/Proxy calls (docs/scale-out.md#where-a-partitions-cpu-goes).
--
-- PL/Proxy asks plproxy.get_cluster_version on every call, through SPI.
-- Since proxy migration 8 that was a PL/pgSQL function, SECURITY DEFINER
-- with its own search_path: each call set and reset the setting, entered
-- PL/pgSQL and ran its query. 17 % of a proxy backend's CPU per batch of one
-- (perf, a debit batch through the proxy), 6.6 % now. It is a SQL function
-- PostgreSQL inlines into PL/Proxy's "select * from
-- plproxy.get_cluster_version($1)": a set-returning, STABLE, plain SQL
-- function, so neither SECURITY DEFINER nor SET, and its caller reads the
-- generation row itself (granted to PUBLIC: it holds a version number,
-- nothing else; the connection strings stay behind get_cluster_partitions).
-- A cluster other than giftd has no row: PL/Proxy then fails the call
-- ("got 0 rows") as it failed on the exception before. Same snapshot, same
-- row: the version is as transactional as migration 8 made it.
DROP FUNCTION plproxy.get_cluster_version(text);
CREATE FUNCTION plproxy.get_cluster_version(cluster_name text) RETURNS SETOF integer
    LANGUAGE sql STABLE AS $$
    SELECT g.version FROM public.giftd_cluster_generation AS g WHERE cluster_name = 'giftd'
$$;
GRANT SELECT ON giftd_cluster_generation TO PUBLIC;

-- The functions routed by a partition number take it as PL/Proxy's hash
-- directly (RUN ON argname, PL/Proxy 2.0.8), instead of a query calling
-- giftd_partition_number per call. PL/Proxy masks it with the partition
-- count minus one either way; giftd passes 0 … count − 1.
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
    RUN ON p_partition;
$$;

CREATE OR REPLACE FUNCTION giftd_partition_status(p_partition integer,
    OUT main_version bigint, OUT main_dirty boolean, OUT partition_version bigint, OUT partition_dirty boolean,
    OUT partition integer, OUT partitions integer)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON p_partition;
    SELECT * FROM giftd_partition_status();
$$;

CREATE OR REPLACE FUNCTION giftd_partition_identity(p_partition integer)
    RETURNS TABLE (cluster_id uuid, partition integer, partitions integer)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON p_partition;
    SELECT i.cluster_id, i.partition, i.partitions FROM giftd_partition_identity AS i;
$$;

-- The proxy's giftd_placement, like the partitions' since partition
-- migration 16: STABLE (convert_to is), so PostgreSQL inlines it into the
-- query PL/Proxy runs for RUN ON giftd_placement(…). No index uses it; its
-- values are unchanged.
ALTER FUNCTION giftd_placement(text) STABLE;
