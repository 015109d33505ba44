-- giftd_partition_status, which every replica's readiness probe calls on
-- every partition, as one row of scalar subqueries instead of a cross join.
-- Its tables hold one row each and are never analysed (autovacuum waits for
-- 50 changes), so the planner guessed thousands of rows for each, costed the
-- join at tens of millions and JIT-compiled it: 0.3-1 s per call, past the
-- readiness probe's 1 s for a proxy and two partitions under load. Each
-- subquery is costed at one small scan: no JIT. Same answers (each table
-- holds at most one row).
CREATE OR REPLACE FUNCTION giftd_partition_status(
    OUT main_version bigint, OUT main_dirty boolean, OUT partition_version bigint, OUT partition_dirty boolean,
    OUT partition integer, OUT partitions integer)
    LANGUAGE sql STABLE AS $$
    SELECT (SELECT m.version FROM schema_migrations AS m), (SELECT m.dirty FROM schema_migrations AS m),
           (SELECT p.version FROM giftd_partition_migrations AS p), (SELECT p.dirty FROM giftd_partition_migrations AS p),
           (SELECT i.partition FROM giftd_partition_identity AS i), (SELECT i.partitions FROM giftd_partition_identity AS i);
$$;
