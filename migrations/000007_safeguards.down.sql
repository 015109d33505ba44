-- Back to migration 5's schema: the safeguards' tables, columns and function
-- go, and giftd_debit_gifts(16 arguments) gets migration 4's body again.
-- Policy refusals recorded in debit_requests are dropped with their rows'
-- status: such a row would fail the old check.
DROP FUNCTION giftd_debit_gifts(text[], text[], text[], bytea[], text[], bigint[], timestamptz[], jsonb[],
                                text[], text[], text[], bigint[], bigint[], boolean, boolean, int, jsonb, timestamptz);
DROP FUNCTION giftd_debit_gifts(text[], text[], text[], bytea[], text[], bigint[], timestamptz[], jsonb[],
                                text[], text[], text[], bigint[], bigint[], boolean, boolean, int);
DELETE FROM debit_requests WHERE status = 403;
ALTER TABLE debit_requests
    DROP CONSTRAINT debit_requests_status_check,
    DROP COLUMN refusal,
    DROP COLUMN refusal_limit,
    DROP COLUMN refusal_resets_at,
    ADD CONSTRAINT debit_requests_status_check CHECK (status IN (200, 402));
ALTER TABLE gift_entries DROP CONSTRAINT gift_entries_withheld;
ALTER TABLE gift_entries DROP COLUMN withheld_from;
DROP TABLE spend_reminders;
DROP TABLE spend_windows;
DROP TABLE spend_policy_history;
DROP TABLE spend_policies;

-- giftd_debit_gifts is giftd_debit (migration 2) with the receiving side:
-- the same batch semantics (one debit at a time in arrival order, keys
-- distinct, replays and reused keys as there, one row per input in input
-- order), plus for each debit that is not a replay:
--
--   a policy verdict: with p_price_check, a gift that is not in the
--   catalogue, inactive, or whose gold is not price × count (or whose
--   claimed unit price is not the price) is refused: status 422, nothing
--   written, nothing recorded (a retry is judged afresh);
--
--   with p_settle, the settlement of each debited gift in the same
--   transaction: one gift_entries row per gift carrying the catalogue
--   version, price and share it was charged at, then, last,
--   floor(gold × share / 10000) to the receiver's earnings (one write per
--   distinct receiver per batch) and the rest to one house slot (one write
--   per batch).
--
-- The catalogue version that decides the verdict is the one charged: both
-- are read once, in this statement, after the key locks.
--
-- Locks, in this order in every transaction that takes them: debit keys
-- (advisory, hash order), wallets (user order), earnings accounts (receiver
-- order), one house slot. Reversals and payouts take the same order.
--
-- It returns, besides giftd_debit's columns: refusal (NULL, or
-- 'gift_unknown', 'gift_inactive', 'price') and price, the catalogue's
-- price per item when the gift is in it.
CREATE FUNCTION giftd_debit_gifts(
    p_platform      text[],
    p_app_id        text[],
    p_request_id    text[],
    p_fingerprint   bytea[],
    p_user_id       text[],
    p_gold          bigint[],
    p_expires_at    timestamptz[],
    p_details       jsonb[],
    -- The gift, from signed data only.
    p_receiver_id   text[],   -- NULL: none given (a room's mapped receiver, else the house)
    p_room_id       text[],
    p_gift_id       text[],
    p_count         bigint[],
    p_unit_price    bigint[], -- the price per item the caller was told (Polyv's goodPrice), NULL: none
    p_settle        boolean,
    p_price_check   boolean,
    p_default_share int
) RETURNS TABLE (status smallint, balance bigint, replay boolean, reused boolean, refusal text, price bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n      int := cardinality(p_request_id);
    st     smallint[] := array_fill(0::smallint, ARRAY[n]);
    bal    bigint[] := array_fill(0::bigint, ARRAY[n]);
    rep    boolean[] := array_fill(false, ARRAY[n]);
    reu    boolean[] := array_fill(false, ARRAY[n]);
    why    text[] := array_fill(NULL::text, ARRAY[n]);
    -- The gift as charged.
    ver    int[] := array_fill(NULL::int, ARRAY[n]);
    cprice bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    share  int[] := array_fill(p_default_share, ARRAY[n]);
    act    boolean[] := array_fill(NULL::boolean, ARRAY[n]);
    rcv    text[] := p_receiver_id;
    earn   bigint[] := array_fill(0::bigint, ARRAY[n]);
    users  text[];
    golds  bigint[];
    totals bigint[];
    house_total bigint := 0;
    hslot  smallint := floor(random() * 16)::smallint;
    h      bigint;
    i      int;
    k      int;
    r      record;
BEGIN
    -- 1. One execution per key at a time (as giftd_debit).
    FOR h IN
        SELECT DISTINCT hashtextextended(p_platform[j] || '/' || p_app_id[j] || '/' || p_request_id[j], 0)
        FROM generate_subscripts(p_request_id, 1) AS j ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(h);
    END LOOP;

    -- 2. Keys executed before replay their record (as giftd_debit).
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

    -- A batch with a replay writes one small transactional WAL record, so
    -- that its commit, like a fresh debit's, waits for a synchronous standby
    -- (migration 3): a replayed answer is never one a failover could lose.
    IF true = ANY (rep) THEN
        PERFORM pg_logical_emit_message(true, 'giftd', 'replay');
    END IF;

    -- 3. The policy verdict of each new debit, from the catalogue version
    --    this statement sees, which is also the one charged below. (A later
    --    policy, such as a sender's spending cap, is one more verdict here or
    --    in step 5, under the wallet lock.)
    IF p_settle OR p_price_check THEN
        FOR r IN
            SELECT j, c.version, c.price, c.share_bp, c.active
            FROM generate_subscripts(p_request_id, 1) AS j,
            LATERAL (SELECT x.version, x.price, x.share_bp, x.active FROM gift_catalogue x
                     WHERE x.platform = p_platform[j] AND x.gift_id = p_gift_id[j]) AS c
            WHERE NOT rep[j]
        LOOP
            ver[r.j] := r.version;
            cprice[r.j] := r.price;
            share[r.j] := r.share_bp;
            act[r.j] := r.active;
        END LOOP;
    END IF;
    IF p_price_check THEN
        FOR i IN 1 .. n LOOP
            CONTINUE WHEN rep[i];
            IF ver[i] IS NULL THEN
                why[i] := 'gift_unknown';
            ELSIF NOT act[i] THEN
                why[i] := 'gift_inactive';
            ELSIF (p_unit_price[i] IS NOT NULL AND p_unit_price[i] <> cprice[i])
                  OR cprice[i]::numeric * p_count[i] <> p_gold[i] THEN
                why[i] := 'price';
            END IF;
            IF why[i] IS NOT NULL THEN
                st[i] := 422;
            END IF;
        END LOOP;
    END IF;

    -- 4. Lock the wallets to debit, in user order, and read their balances.
    SELECT array_agg(p_user_id[j]) INTO users FROM generate_subscripts(p_user_id, 1) AS j
    WHERE NOT rep[j] AND why[j] IS NULL;
    SELECT array_agg(w.user_id ORDER BY w.user_id), array_agg(w.gold ORDER BY w.user_id)
    INTO users, golds
    FROM (SELECT wallets.user_id, wallets.gold FROM wallets
          WHERE wallets.user_id = ANY (users)
          ORDER BY wallets.user_id
          FOR UPDATE) AS w;

    -- 5. Decide each debit in arrival order against what its predecessors left.
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN rep[i] OR why[i] IS NOT NULL;
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

    -- 6. One write per wallet.
    FOR k IN 1 .. coalesce(cardinality(users), 0) LOOP
        UPDATE wallets SET gold = golds[k], updated_at = now()
        WHERE wallets.user_id = users[k] AND wallets.gold <> golds[k];
    END LOOP;

    -- 7. The split of each debited gift: its receiver (a room's mapped
    --    receiver when none was given), earnings and the house's rest.
    IF p_settle THEN
        FOR r IN
            SELECT j, m.receiver_id
            FROM generate_subscripts(p_request_id, 1) AS j,
            LATERAL (SELECT x.receiver_id FROM room_receivers x
                     WHERE x.platform = p_platform[j] AND x.room_id = p_room_id[j]) AS m
            WHERE st[j] = 200 AND NOT rep[j] AND p_receiver_id[j] IS NULL
        LOOP
            rcv[r.j] := r.receiver_id;
        END LOOP;
        FOR i IN 1 .. n LOOP
            CONTINUE WHEN rep[i] OR st[i] <> 200;
            IF rcv[i] IS NOT NULL THEN
                earn[i] := floor(p_gold[i]::numeric * share[i] / 10000)::bigint;
            END IF;
            house_total := house_total + p_gold[i] - earn[i];
        END LOOP;
    END IF;

    -- 8. The entries (ids in arrival order), the gifts' settlement rows and
    --    the records; the CHECKs and the unique keys refuse anything this
    --    logic could get wrong. (A per-batch insert of another kind, such as
    --    an outbox event per gift, is one more CTE here.)
    WITH e AS (
        INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, app_id, ref, details)
        SELECT p_user_id[j], 'debit', -p_gold[j], bal[j], p_platform[j], p_app_id[j], p_request_id[j], p_details[j]
        FROM generate_subscripts(p_request_id, 1) AS j
        WHERE NOT rep[j] AND st[j] = 200
        ORDER BY j
        RETURNING id, platform, app_id, ref
    ), ej AS (
        SELECT j, e.id FROM generate_subscripts(p_request_id, 1) AS j
        JOIN e ON e.platform = p_platform[j] AND e.app_id = p_app_id[j] AND e.ref = p_request_id[j]
    ), g AS (
        INSERT INTO gift_entries (debit_entry, platform, app_id, request_id, sender_id, receiver_id, room_id, gift_id,
                                  gift_version, price, count, gold, share_bp, earnings, house, house_slot)
        SELECT ej.id, p_platform[j], p_app_id[j], p_request_id[j], p_user_id[j], rcv[j], p_room_id[j], p_gift_id[j],
               ver[j], cprice[j], p_count[j], p_gold[j], share[j], earn[j], p_gold[j] - earn[j], hslot
        FROM ej WHERE p_settle
        ORDER BY j
    )
    INSERT INTO debit_requests (platform, app_id, request_id, fingerprint, user_id, gold, status, balance, entry_id, expires_at)
    SELECT p_platform[j], p_app_id[j], p_request_id[j], p_fingerprint[j], p_user_id[j], p_gold[j], st[j], bal[j], ej.id, p_expires_at[j]
    FROM generate_subscripts(p_request_id, 1) AS j
    LEFT JOIN ej USING (j)
    WHERE NOT rep[j] AND why[j] IS NULL;

    -- 9. The credits, last, so that the rows every batch may share (a hot
    --    receiver's, a house slot) are locked only from here to the commit:
    --    one upsert per distinct receiver, in receiver order, and one house
    --    slot for the whole batch.
    IF p_settle THEN
        INSERT INTO earnings_accounts AS a (receiver_id, balance)
        SELECT rcv[j], sum(earn[j]) FROM generate_subscripts(p_request_id, 1) AS j
        WHERE st[j] = 200 AND NOT rep[j] AND earn[j] > 0
        GROUP BY rcv[j] ORDER BY rcv[j]
        ON CONFLICT (receiver_id) DO UPDATE SET balance = a.balance + excluded.balance, updated_at = now();
        IF house_total > 0 THEN
            UPDATE house_slots SET balance = house_slots.balance + house_total, updated_at = now()
            WHERE house_slots.slot = hslot;
        END IF;
    END IF;

    RETURN QUERY SELECT st[j], bal[j], rep[j], reu[j], why[j], cprice[j]
    FROM generate_subscripts(p_request_id, 1) AS j ORDER BY j;
END
$$;
