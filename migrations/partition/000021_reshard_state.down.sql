-- Reverts partition migration 21 (revert proxy migration 13 first: its
-- giftd_partition_readiness calls it).
DROP FUNCTION giftd_partition_reshard_state();
