DROP FUNCTION giftd_claim_partition(uuid, integer, integer);
DROP TABLE giftd_partition_identity;
