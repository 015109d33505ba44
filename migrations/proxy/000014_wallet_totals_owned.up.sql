-- giftd_wallet_totals runs each partition's function of the same name
-- (partition migration 22) instead of counting its wallets inline: between
-- a reshard's switch and its forget a partition counts only the wallets of
-- the users placed on it by its claim, so no moved user's wallet is counted
-- on two partitions (docs/scale-out.md#the-audit-between-the-switch-and-the-forget).
-- giftd migrate migrates the proxy before the partitions: until every
-- partition has migration 22 (the seconds of that one command), this call
-- fails on those that do not. giftd itself never calls it; it is an
-- operator's look-up.
CREATE OR REPLACE FUNCTION giftd_wallet_totals()
    RETURNS TABLE (wallets bigint, gold numeric)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON ALL;
$$;
