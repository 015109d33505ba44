-- giftd_debit's replays wait for the synchronous standbys (issue 14): the
-- body of 000002 with one step added after step 2; same signature and
-- result, so binaries built for 000002 keep working during a rolling deploy.
CREATE OR REPLACE FUNCTION giftd_debit(
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
    n     int := cardinality(p_request_id);
    st    smallint[] := array_fill(0::smallint, ARRAY[n]);
    bal   bigint[] := array_fill(0::bigint, ARRAY[n]);
    rep   boolean[] := array_fill(false, ARRAY[n]);
    reu   boolean[] := array_fill(false, ARRAY[n]);
    users text[];
    golds bigint[];
    h     bigint;
    i     int;
    k     int;
    r     record;
BEGIN
    -- 1. One execution per key at a time, across transactions and replicas:
    --    a transaction-scoped lock per key, taken in a fixed order so that two
    --    batches never wait on each other in a cycle. A concurrent copy waits
    --    here until the first commits, then finds its record below.
    FOR h IN
        SELECT DISTINCT hashtextextended(p_platform[j] || '/' || p_app_id[j] || '/' || p_request_id[j], 0)
        FROM generate_subscripts(p_request_id, 1) AS j ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(h);
    END LOOP;

    -- 2. Keys executed before replay their record (this statement's snapshot
    --    is taken after the locks, so it sees every committed record).
    --    (LATERAL … LIMIT 1 keeps each look-up on the primary key, whatever
    --    the planner guesses of the batch's size.)
    FOR r IN
        SELECT j, d.fingerprint, d.status, d.balance
        FROM generate_subscripts(p_request_id, 1) AS j,
        LATERAL (SELECT x.fingerprint, x.status, x.balance FROM debit_requests x
                 WHERE x.platform = p_platform[j] AND x.app_id = p_app_id[j] AND x.request_id = p_request_id[j]
                 LIMIT 1) AS d
    LOOP
        rep[r.j] := true;
        st[r.j] := r.status;
        bal[r.j] := r.balance;
        reu[r.j] := r.fingerprint IS DISTINCT FROM p_fingerprint[r.j];
    END LOOP;

    --    A record may have committed on this server alone: its commit's wait
    --    for the synchronous standbys was cancelled (the caller's deadline),
    --    or this server crashed and restarted while it waited. Answering it
    --    before the standbys have it would acknowledge a debit that a
    --    failover loses. So a batch with a replay writes one small WAL record,
    --    a transactional logical message: the transaction gets an xid, hence
    --    a commit record, hence its commit waits for the standbys like any
    --    debit's (synchronous_commit); they confirm WAL in order, so up to
    --    this message means up to every record it replays. A transaction that
    --    only reads never waits, nor does one that only takes an xid
    --    (txid_current() writes no WAL). A batch of fresh debits writes
    --    nothing more than before.
    IF true = ANY (rep) THEN
        PERFORM pg_logical_emit_message(true, 'giftd', 'replay');
    END IF;

    -- 3. Lock the wallets to debit, in user order (after the key locks, as
    --    every debit does: no cycle), and read their balances.
    SELECT array_agg(p_user_id[j]) INTO users FROM generate_subscripts(p_user_id, 1) AS j WHERE NOT rep[j];
    SELECT array_agg(w.user_id ORDER BY w.user_id), array_agg(w.gold ORDER BY w.user_id)
    INTO users, golds
    FROM (SELECT wallets.user_id, wallets.gold FROM wallets
          WHERE wallets.user_id = ANY (users)
          ORDER BY wallets.user_id
          FOR UPDATE) AS w;

    -- 4. Decide each debit in arrival order against what its predecessors left.
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN rep[i];
        k := array_position(users, p_user_id[i]);
        IF k IS NOT NULL AND golds[k] >= p_gold[i] THEN
            golds[k] := golds[k] - p_gold[i];
            st[i] := 200;
            bal[i] := golds[k];
        ELSE
            st[i] := 402;
            bal[i] := coalesce(golds[k], 0);
        END IF;
    END LOOP;

    -- 5. One write per wallet, then the entries (ids in arrival order) and
    --    the records; the CHECK on wallets and the unique keys on entries and
    --    records refuse anything this logic could get wrong.
    FOR k IN 1 .. coalesce(cardinality(users), 0) LOOP
        UPDATE wallets SET gold = golds[k], updated_at = now()
        WHERE wallets.user_id = users[k] AND wallets.gold <> golds[k];
    END LOOP;

    WITH e AS (
        INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, app_id, ref, details)
        SELECT p_user_id[j], 'debit', -p_gold[j], bal[j], p_platform[j], p_app_id[j], p_request_id[j], p_details[j]
        FROM generate_subscripts(p_request_id, 1) AS j
        WHERE NOT rep[j] AND st[j] = 200
        ORDER BY j
        RETURNING id, platform, app_id, ref
    )
    INSERT INTO debit_requests (platform, app_id, request_id, fingerprint, user_id, gold, status, balance, entry_id, expires_at)
    SELECT p_platform[j], p_app_id[j], p_request_id[j], p_fingerprint[j], p_user_id[j], p_gold[j], st[j], bal[j], e.id, p_expires_at[j]
    FROM generate_subscripts(p_request_id, 1) AS j
    LEFT JOIN e ON e.platform = p_platform[j] AND e.app_id = p_app_id[j] AND e.ref = p_request_id[j]
    WHERE NOT rep[j];

    RETURN QUERY SELECT st[j], bal[j], rep[j], reu[j] FROM generate_subscripts(p_request_id, 1) AS j ORDER BY j;
END
$$;
