-- Whether a giftd reshard left this partition unfinished, for serve's
-- gauges giftd_partition_reshard_fenced and giftd_partition_reshard_unforgotten
-- and their alerts (docs/operations.md). Read with giftd_partition_status, in
-- the same call through the proxy (proxy migration 13's
-- giftd_partition_readiness), on every readiness probe: two EXISTS on
-- tables of a row or two.
--
-- fenced: a fence of a count above this partition's claim. A reshard is in
-- its pause here, before the claims move: its moving users' writes are
-- refused (GD003) until giftd reshard is run again or the fence is lifted.
-- A run that fails there lifts it at once; one that was killed does not.
-- unforgotten: giftd_reshard_unforgotten (partition migration 20): the
-- claim moved and the economy split, the forget (step 4) not run yet, so
-- this partition holds rows it gave away.
CREATE FUNCTION giftd_partition_reshard_state(OUT fenced boolean, OUT unforgotten boolean)
    LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM giftd_reshard_fence AS f
                   WHERE f.partitions > (SELECT i.partitions FROM giftd_partition_identity AS i)),
           EXISTS (SELECT 1 FROM giftd_reshard_unforgotten());
$$;
