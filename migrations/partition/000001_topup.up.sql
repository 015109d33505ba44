-- What a partition adds to giftd's schema in partitioned mode
-- (docs/scale-out.md): functions the proxy's routing functions call, for what
-- giftd's own migrations do in Go. Applied by giftd migrate after the
-- partition's normal migrations, with its own version table
-- (giftd_partition_migrations); it relies on their tables as of migration 8.

-- giftd_topup is internal/ledger's Store.TopUp as one function: the wallet
-- credit, its ledger entry and its wallet.topped_up event in one statement,
-- the same rows Store.TopUp writes (TestTopUpFunction_WritesWhatStoreTopUpWrites
-- holds them together). A key used before replays its first result after
-- the replay record that makes the answer wait for synchronous standbys
-- (docs/ha.md); used for another user or amount, it is refused with a
-- unique violation on ledger_entries_key, the error Store.TopUp maps to
-- ErrKeyReused.
CREATE FUNCTION giftd_topup(p_user_id text, p_amount bigint, p_key text, p_note text)
    RETURNS TABLE (entry_id bigint, balance bigint, replay boolean)
    LANGUAGE plpgsql AS $$
DECLARE
    used text;
    prev record;
BEGIN
    BEGIN
        RETURN QUERY
        WITH w AS (
            INSERT INTO wallets AS w (user_id, gold) VALUES (p_user_id, p_amount)
            ON CONFLICT (user_id) DO UPDATE SET gold = w.gold + excluded.gold, updated_at = now()
            RETURNING w.gold
        ), e AS (
            INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, ref, details)
            SELECT p_user_id, 'topup', p_amount, w.gold, 'admin', p_key, jsonb_build_object('note', p_note) FROM w
            RETURNING id, balance_after, created_at
        ), ev AS (
            INSERT INTO events (type, created_at, data)
            SELECT 'wallet.topped_up', e.created_at, jsonb_build_object('user_id', p_user_id, 'amount', p_amount,
                'balance_after', e.balance_after, 'entry_id', e.id, 'platform', 'admin', 'app_id', '',
                'key', p_key, 'note', p_note, 'source', 'admin')
            FROM e
        )
        SELECT e.id, e.balance_after, false FROM e;
        RETURN;
    EXCEPTION WHEN unique_violation THEN
        GET STACKED DIAGNOSTICS used = CONSTRAINT_NAME;
        IF used IS DISTINCT FROM 'ledger_entries_key' THEN
            RAISE;
        END IF;
    END;
    PERFORM pg_logical_emit_message(true, 'giftd', 'replay');
    SELECT l.user_id, l.amount, l.balance_after, l.id INTO prev FROM ledger_entries AS l
    WHERE l.kind = 'topup' AND l.platform = 'admin' AND l.app_id = '' AND l.ref = p_key;
    IF prev.user_id <> p_user_id OR prev.amount <> p_amount THEN
        RAISE EXCEPTION 'top-up %: the idempotency key was used for another user or amount', p_key
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'ledger_entries_key';
    END IF;
    RETURN QUERY SELECT prev.id, prev.balance_after, true;
END
$$;
