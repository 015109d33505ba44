-- Reverts proxy migration 13: serve's readiness reads giftd_partition_status.
DROP FUNCTION giftd_partition_readiness(integer);
