-- giftd_partition_status of partition p_partition and, in the same round
-- trip, whether a giftd reshard left it fenced or not forgotten
-- (partition migration 21): serve's readiness probe reads this instead, and
-- keeps the two for its gauges giftd_partition_reshard_fenced and
-- giftd_partition_reshard_unforgotten. giftd_partition_status stays as it
-- was, for a replica of an earlier release.
CREATE FUNCTION giftd_partition_readiness(p_partition integer,
    OUT main_version bigint, OUT main_dirty boolean, OUT partition_version bigint, OUT partition_dirty boolean,
    OUT partition integer, OUT partitions integer, OUT reshard_fenced boolean, OUT reshard_unforgotten boolean)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON p_partition;
    SELECT s.main_version, s.main_dirty, s.partition_version, s.partition_dirty, s.partition, s.partitions,
           r.fenced AS reshard_fenced, r.unforgotten AS reshard_unforgotten
    FROM giftd_partition_status() AS s, giftd_partition_reshard_state() AS r;
$$;
