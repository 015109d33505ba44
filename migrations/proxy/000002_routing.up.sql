-- giftd's first routing functions (docs/scale-out.md). Each runs on the
-- partition that owns the user (RUN ON giftd_placement) or on every partition
-- (RUN ON ALL); what runs there is the partition's own schema: its tables, or
-- a function of the same name and arguments.

-- A user's wallet, read on its partition: no row when it has none.
CREATE FUNCTION giftd_wallet(p_user_id text)
    RETURNS TABLE (user_id text, gold bigint, updated_at timestamptz)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_user_id);
    SELECT w.user_id, w.gold, w.updated_at FROM wallets AS w WHERE w.user_id = p_user_id;
$$;

-- An operator's top-up, executed by the partition's giftd_topup (partition
-- migration 1): the wallet credit, its entry and its event in one transaction
-- there, once per key.
CREATE FUNCTION giftd_topup(p_user_id text, p_amount bigint, p_key text, p_note text)
    RETURNS TABLE (entry_id bigint, balance bigint, replay boolean)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_user_id);
$$;

-- Every partition's count of wallets and sum of gold, one row per partition
-- (in no promised order): the callers add them up.
CREATE FUNCTION giftd_wallet_totals()
    RETURNS TABLE (wallets bigint, gold numeric)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON ALL;
    SELECT count(*) AS wallets, coalesce(sum(w.gold), 0) AS gold FROM wallets AS w;
$$;
