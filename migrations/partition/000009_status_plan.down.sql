CREATE OR REPLACE FUNCTION giftd_partition_status(
    OUT main_version bigint, OUT main_dirty boolean, OUT partition_version bigint, OUT partition_dirty boolean,
    OUT partition integer, OUT partitions integer)
    LANGUAGE sql STABLE AS $$
    SELECT m.version, m.dirty, p.version, p.dirty, i.partition, i.partitions
    FROM (SELECT) AS one
    LEFT JOIN schema_migrations AS m ON true
    LEFT JOIN giftd_partition_migrations AS p ON true
    LEFT JOIN giftd_partition_identity AS i ON true;
$$;
