-- Operators' idempotency keys across partitions (docs/scale-out.md#keys-across-partitions).
-- On one server a top-up, reversal or payout key is unique (ledger_entries_key,
-- account_entries_key): used again with other content it answers 409. Each
-- partition knows only its own users' keys, so before such an operation runs
-- on its user's partition giftd claims its key here, on the partition the
-- key's own placement names (proxy migration 10), committed first: the first
-- content claimed keeps the key; the same content again (a retry, after a
-- crash between the claim and the operation too) goes through, other
-- content is refused.
CREATE TABLE giftd_key_claims (
    kind       text        NOT NULL CHECK (kind IN ('topup', 'reversal', 'payout')),
    key        text        NOT NULL,
    content    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);

-- giftd_claim_key claims p_key of p_kind for p_content, or finds it claimed:
-- true when the claim holds p_content (made now or before), false when it
-- holds other content. A key placed on another partition is refused (GD001),
-- and one moving in a reshard's pause is (GD003), by giftd_check_users, as a
-- user would be. Racing claims of one key serialise on its primary key: the
-- second waits for the first's commit, then reads its content.
CREATE FUNCTION giftd_claim_key(p_kind text, p_key text, p_content jsonb) RETURNS boolean
    LANGUAGE plpgsql AS $$
DECLARE
    held jsonb;
BEGIN
    PERFORM giftd_check_users(ARRAY[p_key]);
    INSERT INTO giftd_key_claims (kind, key, content) VALUES (p_kind, p_key, p_content)
    ON CONFLICT (kind, key) DO NOTHING;
    SELECT c.content INTO STRICT held FROM giftd_key_claims AS c WHERE c.kind = p_kind AND c.key = p_key;
    RETURN held = p_content;
END
$$;
