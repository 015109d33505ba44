-- Reverts proxy migration 14: the count inline on each partition again,
-- every wallet it holds.
CREATE OR REPLACE FUNCTION giftd_wallet_totals()
    RETURNS TABLE (wallets bigint, gold numeric)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON ALL;
    SELECT count(*) AS wallets, coalesce(sum(w.gold), 0) AS gold FROM wallets AS w;
$$;
