-- Reverts partition migration 20: giftd audit then reads every row a
-- partition holds, also between a reshard's switch and its forget.
DROP FUNCTION giftd_reshard_given_away();
DROP FUNCTION giftd_reshard_unforgotten();
