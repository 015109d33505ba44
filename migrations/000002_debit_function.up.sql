-- giftd_debit executes a batch of debits (one or many) in the caller's
-- transaction, with exactly the semantics of one debit at a time in arrival
-- order: each request's key is claimed first (a concurrent copy waits, then
-- replays the stored answer), each debit takes gold only if the wallet holds
-- enough at that point, and each outcome is recorded with its debit. Keys in
-- one call must be distinct (the caller folds duplicates).
--
-- It returns one row per input, in input order: the status (200 debited, 402
-- insufficient, 0 when a replayed record vanished under a concurrent prune),
-- the balance to answer, whether it is the replay of an earlier execution,
-- and whether that earlier execution had another fingerprint.
CREATE FUNCTION giftd_debit(
    p_platform    text[],
    p_app_id      text[],
    p_request_id  text[],
    p_fingerprint bytea[],
    p_user_id     text[],
    p_gold        bigint[],
    p_expires_at  timestamptz[],
    p_details     jsonb[]
) RETURNS TABLE (status smallint, balance bigint, replay boolean, reused boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n    int := cardinality(p_request_id);
    st   smallint[] := array_fill(0::smallint, ARRAY[n]);
    bal  bigint[] := array_fill(0::bigint, ARRAY[n]);
    rep  boolean[] := array_fill(false, ARRAY[n]);
    reu  boolean[] := array_fill(false, ARRAY[n]);
    i    int;
    s    smallint;
    b    bigint;
    fp   bytea;
    eid  bigint;
BEGIN
    -- 1. Claim every key, in key order: two batches sharing keys then wait on
    --    each other in one direction only, never in a cycle.
    FOR i IN
        SELECT k.o FROM unnest(p_platform, p_app_id, p_request_id) WITH ORDINALITY AS k(pl, a, r, o)
        ORDER BY k.pl, k.a, k.r
    LOOP
        INSERT INTO debit_requests (platform, app_id, request_id, fingerprint, user_id, gold, status, expires_at)
        VALUES (p_platform[i], p_app_id[i], p_request_id[i], p_fingerprint[i], p_user_id[i], p_gold[i], 0, p_expires_at[i])
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            -- Executed before (this statement sees the committed record).
            s := 0; b := 0; fp := NULL;
            SELECT d.fingerprint, d.status, d.balance INTO fp, s, b
            FROM debit_requests d
            WHERE d.platform = p_platform[i] AND d.app_id = p_app_id[i] AND d.request_id = p_request_id[i];
            rep[i] := true;
            st[i] := s;
            bal[i] := b;
            reu[i] := fp IS DISTINCT FROM p_fingerprint[i];
        END IF;
    END LOOP;

    -- 2. Lock the wallets to debit, in user order, for the same reason.
    IF n > 1 THEN
        PERFORM 1 FROM wallets w
        WHERE w.user_id IN (SELECT p_user_id[j] FROM generate_subscripts(p_user_id, 1) AS j WHERE NOT rep[j])
        ORDER BY w.user_id
        FOR UPDATE;
    END IF;

    -- 3. Debit in arrival order, each against the balance its predecessors left.
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN rep[i];
        b := NULL;
        eid := NULL;
        UPDATE wallets w SET gold = w.gold - p_gold[i], updated_at = now()
        WHERE w.user_id = p_user_id[i] AND w.gold >= p_gold[i]
        RETURNING w.gold INTO b;
        IF FOUND THEN
            INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, app_id, ref, details)
            VALUES (p_user_id[i], 'debit', -p_gold[i], b, p_platform[i], p_app_id[i], p_request_id[i], p_details[i])
            RETURNING id INTO eid;
            st[i] := 200;
        ELSE
            b := coalesce((SELECT w.gold FROM wallets w WHERE w.user_id = p_user_id[i]), 0);
            st[i] := 402;
        END IF;
        bal[i] := b;
        UPDATE debit_requests d SET status = st[i], balance = b, entry_id = eid
        WHERE d.platform = p_platform[i] AND d.app_id = p_app_id[i] AND d.request_id = p_request_id[i];
    END LOOP;

    RETURN QUERY SELECT st[j], bal[j], rep[j], reu[j] FROM generate_subscripts(p_request_id, 1) AS j ORDER BY j;
END
$$;
