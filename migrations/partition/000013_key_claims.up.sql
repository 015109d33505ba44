-- Operators' idempotency keys across partitions (docs/scale-out.md#keys-across-partitions).
-- On one server a top-up, reversal or payout key is unique (ledger_entries_key,
-- account_entries_key): once written, used again with other content it
-- answers 409; a call refused before it wrote leaves the key free. Each
-- partition knows only its own users' keys, so before such an operation runs
-- on its user's partition giftd claims its key here, on the partition the
-- key's own placement names (proxy migration 10), committed first, and says
-- afterwards how the operation ended.
--
-- A claim holds one content. in_flight counts the calls of that content
-- claimed and not yet settled (a call whose end is unknown, a crash or a
-- lost connection, is never settled and keeps the key for its content);
-- used is set once an operation of that content wrote (or met the key used
-- on its partition). Other content may take the claim over only when it is
-- not used and no call of it is in flight: then no call of the old content
-- wrote, or ever can.
CREATE TABLE giftd_key_claims (
    kind       text        NOT NULL CHECK (kind IN ('topup', 'reversal', 'payout')),
    key        text        NOT NULL,
    content    jsonb       NOT NULL,
    in_flight  integer     NOT NULL DEFAULT 1 CHECK (in_flight >= 0),
    used       boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);

-- giftd_claim_key claims p_key of p_kind for a call with p_content: true
-- when it may run (the key new, held by the same content, or taken over
-- from content whose calls all ended without writing), false when it holds
-- other content. A key placed on another partition is refused (GD001), and
-- one moving in a reshard's pause is (GD003), by giftd_check_users, as a
-- user would be. Racing claims of one key serialise on its row.
CREATE FUNCTION giftd_claim_key(p_kind text, p_key text, p_content jsonb) RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM giftd_check_users(ARRAY[p_key]);
    INSERT INTO giftd_key_claims AS c (kind, key, content) VALUES (p_kind, p_key, p_content)
    ON CONFLICT (kind, key) DO UPDATE
        SET in_flight = CASE WHEN c.content = excluded.content THEN c.in_flight + 1 ELSE 1 END,
            content = excluded.content, updated_at = now()
        WHERE c.content = excluded.content OR (NOT c.used AND c.in_flight = 0);
    RETURN FOUND;
END
$$;

-- giftd_key_settled ends one call of p_content claimed by giftd_claim_key
-- whose end is known: p_used when its operation wrote (or found the key
-- used), false when it was refused before writing anything.
CREATE FUNCTION giftd_key_settled(p_kind text, p_key text, p_content jsonb, p_used boolean) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM giftd_check_users(ARRAY[p_key]);
    UPDATE giftd_key_claims
    SET in_flight = greatest(in_flight - 1, 0), used = used OR p_used, updated_at = now()
    WHERE kind = p_kind AND key = p_key AND content = p_content;
END
$$;
