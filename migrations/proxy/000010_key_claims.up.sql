-- An operator's idempotency key claimed, and its call settled, on the
-- partition the key's own placement names, not its user's (partition
-- migration 13; docs/scale-out.md#keys-across-partitions): every use of one
-- key, whatever its user, meets the same claim.
CREATE FUNCTION giftd_claim_key(p_kind text, p_key text, p_content jsonb) RETURNS boolean
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_key);
$$;

CREATE FUNCTION giftd_key_settled(p_kind text, p_key text, p_content jsonb, p_used boolean) RETURNS void
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_key);
$$;
