DROP FUNCTION giftd_partition_identity(integer);
DROP FUNCTION giftd_partition_number(integer);
DROP TABLE giftd_cluster;
