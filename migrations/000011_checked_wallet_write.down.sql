-- giftd_debit_gifts as migration 10 wrote it.
CREATE OR REPLACE FUNCTION giftd_debit_gifts(
    p_platform      text[],
    p_app_id        text[],
    p_request_id    text[],
    p_fingerprint   bytea[],
    p_user_id       text[],
    p_gold          bigint[],
    p_expires_at    timestamptz[],
    p_details       jsonb[],
    p_receiver_id   text[],
    p_room_id       text[],
    p_gift_id       text[],
    p_count         bigint[],
    p_unit_price    bigint[],
    p_settle        boolean,
    p_price_check   boolean,
    p_default_share int,
    p_policy        jsonb,
    p_now           timestamptz
) RETURNS TABLE (status smallint, balance bigint, replay boolean, reused boolean, refusal text, price bigint,
                 refusal_limit bigint, resets_at timestamptz, reminded boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n      int := cardinality(p_request_id);
    st     smallint[] := array_fill(0::smallint, ARRAY[n]);
    bal    bigint[] := array_fill(0::bigint, ARRAY[n]);
    rep    boolean[] := array_fill(false, ARRAY[n]);
    reu    boolean[] := array_fill(false, ARRAY[n]);
    why    text[] := array_fill(NULL::text, ARRAY[n]);
    ver    int[] := array_fill(NULL::int, ARRAY[n]);
    cprice bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    share  int[] := array_fill(p_default_share, ARRAY[n]);
    act    boolean[] := array_fill(NULL::boolean, ARRAY[n]);
    rcv    text[] := p_receiver_id;
    earn   bigint[] := array_fill(0::bigint, ARRAY[n]);
    eid    bigint[] := array_fill(NULL::bigint, ARRAY[n]);   -- each debit's ledger entry id
    users  text[];
    golds  bigint[];
    house_total bigint := 0;
    hslot  smallint := floor(random() * 16)::smallint;
    h      bigint;
    i      int;
    k      int;
    r      record;
    -- The safeguards.
    safe   boolean := p_policy IS NOT NULL;
    tnow   timestamptz := coalesce(p_now, now());
    nowh   bigint := floor(extract(epoch FROM coalesce(p_now, now())) / 3600)::bigint;
    pol    text[] := array_fill(NULL::text, ARRAY[n]);        -- the policy refusal (403, recorded)
    plim   bigint[] := array_fill(NULL::bigint, ARRAY[n]);    -- its limit
    preset timestamptz[] := array_fill(NULL::timestamptz, ARRAY[n]); -- when it resets (NULL: never by itself)
    rem    boolean[] := array_fill(false, ARRAY[n]);          -- crossed the reminder threshold
    remday date[] := array_fill(NULL::date, ARRAY[n]);
    remgold bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    held   text[] := array_fill(NULL::text, ARRAY[n]);        -- a suspended receiver's id
    e24    bigint[] := array_fill(0::bigint, ARRAY[n]);       -- the policy of each debit
    emon   bigint[] := array_fill(0::bigint, ARRAY[n]);
    erem   bigint[] := array_fill(0::bigint, ARRAY[n]);
    ecool  bigint[] := array_fill(0::bigint, ARRAY[n]);
    nu     int;
    wtz    text[];                                            -- per wallet, in users order
    whour  bigint[];
    whrs   bigint[];                                          -- 25 per wallet: whrs[(k-1)*25 + b]
    wsum   bigint[];
    wday   date[];
    wdayg  bigint[];
    wmon   date[];
    wmong  bigint[];
    wcool  timestamptz[];
    wdirty boolean[];
    hc     bigint;
    left_  bigint;
    b      int;
BEGIN
    -- 1. No lock per key (migration 9): debit_requests' primary key
    --    serialises copies. A copy that reaches step 8 while another
    --    transaction holds an uncommitted record (or debit entry) of its key
    --    waits there for it; if that one commits, this statement fails with
    --    unique_violation and nothing of it applies, and the caller runs it
    --    again: its new snapshot finds the record in step 2 and replays it
    --    (ledger.Store.execute). If that one rolls back, this one goes on.

    -- 2. Keys executed before replay their record, a policy refusal with it.
    FOR r IN
        SELECT j, d.fingerprint, d.status, d.balance, d.refusal, d.refusal_limit, d.refusal_resets_at
        FROM generate_subscripts(p_request_id, 1) AS j,
        LATERAL (SELECT x.fingerprint, x.status, x.balance, x.refusal, x.refusal_limit, x.refusal_resets_at
                 FROM debit_requests x
                 WHERE x.platform = p_platform[j] AND x.app_id = p_app_id[j] AND x.request_id = p_request_id[j]
                 LIMIT 1) AS d
    LOOP
        rep[r.j] := true;
        st[r.j] := r.status;
        bal[r.j] := r.balance;
        reu[r.j] := r.fingerprint IS DISTINCT FROM p_fingerprint[r.j];
        pol[r.j] := r.refusal;
        plim[r.j] := r.refusal_limit;
        preset[r.j] := r.refusal_resets_at;
    END LOOP;

    IF true = ANY (rep) THEN
        PERFORM pg_logical_emit_message(true, 'giftd', 'replay');
    END IF;

    -- 3. The price check's verdict (as migration 4).
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

    -- 3b. Each new debit's policy (user, else app, else default; 0: none)
    --     and the verdicts that need no counter.
    IF safe THEN
        FOR r IN
            SELECT j, u.minor, u.blocked,
                   coalesce(u.max_debit, a.max_debit, (p_policy ->> 'max_debit')::bigint, 0) AS max_debit,
                   coalesce(u.cap_24h, a.cap_24h, (p_policy ->> 'cap_24h')::bigint, 0) AS cap_24h,
                   coalesce(u.cap_month, a.cap_month, (p_policy ->> 'cap_month')::bigint, 0) AS cap_month,
                   coalesce(u.remind_day, a.remind_day, (p_policy ->> 'remind_day')::bigint, 0) AS remind_day,
                   coalesce(u.cooling_off_s, a.cooling_off_s, (p_policy ->> 'cooling_off_s')::bigint, 0) AS cooling_off_s
            FROM generate_subscripts(p_request_id, 1) AS j
            LEFT JOIN LATERAL (SELECT x.* FROM spend_policies x
                               WHERE x.scope = 'user' AND x.subject = p_user_id[j]) AS u ON true
            LEFT JOIN LATERAL (SELECT x.* FROM spend_policies x
                               WHERE x.scope = 'app' AND x.subject = p_platform[j] || '/' || p_app_id[j]) AS a ON true
            WHERE NOT rep[j] AND why[j] IS NULL
        LOOP
            e24[r.j] := r.cap_24h;
            emon[r.j] := r.cap_month;
            erem[r.j] := r.remind_day;
            ecool[r.j] := r.cooling_off_s;
            IF r.minor THEN
                pol[r.j] := 'minor';
            ELSIF r.blocked THEN
                pol[r.j] := 'blocked';
            ELSIF r.max_debit > 0 AND p_gold[r.j] > r.max_debit THEN
                pol[r.j] := 'max_debit';
                plim[r.j] := r.max_debit;
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
    nu := coalesce(cardinality(users), 0);

    -- 4b. The senders' counters, read after their wallets' locks (so after
    --     the commit of every earlier debit of theirs) and advanced to now.
    --     A clock behind the counters' (transactions that started before a
    --     later one committed) counts in the newer bucket, day or month:
    --     never less than was spent.
    IF safe AND nu > 0 THEN
        wdirty := array_fill(false, ARRAY[nu]);
        -- One statement for every wallet: its zone, its buckets advanced to
        -- whour (each of the 25 slots holds the one hour of whour - 24 ..
        -- whour that maps to it; a slot whose stored hour left the window
        -- is 0) and their sum, its day and month (kept, or started afresh).
        WITH u AS (
            SELECT k2 AS k, coalesce(p.time_zone, p_policy ->> 'time_zone', 'UTC') AS tz,
                   greatest(nowh, s.hour_last) AS wh, s.hour_last, s.hours, s.day, s.day_gold, s.month, s.month_gold, s.cool_until
            FROM generate_subscripts(users, 1) AS k2
            LEFT JOIN LATERAL (SELECT x.* FROM spend_windows x WHERE x.user_id = users[k2]) AS s ON true
            LEFT JOIN LATERAL (SELECT x.time_zone FROM spend_policies x
                               WHERE x.scope = 'user' AND x.subject = users[k2]) AS p ON true
        ), d AS (
            SELECT u.*, (tnow AT TIME ZONE u.tz)::date AS today, date_trunc('month', tnow AT TIME ZONE u.tz)::date AS tmonth,
                   CASE WHEN u.hour_last IS NULL OR u.wh - u.hour_last >= 25 THEN array_fill(0::bigint, ARRAY[25])
                        WHEN u.wh = u.hour_last THEN u.hours
                        ELSE ARRAY(SELECT CASE WHEN u.wh - ((u.wh - (bb - 1)) % 25 + 25) % 25 <= u.hour_last
                                               THEN u.hours[bb] ELSE 0 END
                                   FROM generate_series(1, 25) AS bb ORDER BY bb)
                   END AS hrs
            FROM u
        )
        SELECT array_agg(d.tz ORDER BY d.k), array_agg(d.wh ORDER BY d.k),
               array_agg(CASE WHEN d.day >= d.today THEN d.day ELSE d.today END ORDER BY d.k),
               array_agg(CASE WHEN d.day >= d.today THEN d.day_gold ELSE 0 END ORDER BY d.k),
               array_agg(CASE WHEN d.month >= d.tmonth THEN d.month ELSE d.tmonth END ORDER BY d.k),
               array_agg(CASE WHEN d.month >= d.tmonth THEN d.month_gold ELSE 0 END ORDER BY d.k),
               array_agg(d.cool_until ORDER BY d.k),
               array_agg(d.hrs ORDER BY d.k),
               array_agg((SELECT sum(v) FROM unnest(d.hrs) AS v)::bigint ORDER BY d.k)
        INTO wtz, whour, wday, wdayg, wmon, wmong, wcool, whrs, wsum
        FROM d;
        -- array_agg made whrs [wallet][slot]: flat, wallet after wallet.
        whrs := ARRAY(SELECT unnest(whrs));
    END IF;

    -- 5. Decide each debit in arrival order against what its predecessors
    --    left: the policy verdicts first, then the gold.
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN rep[i] OR why[i] IS NOT NULL;
        k := array_position(users, p_user_id[i]);
        IF safe AND k IS NOT NULL AND pol[i] IS NULL THEN
            IF wcool[k] > tnow THEN
                pol[i] := 'cooling_off';
                plim[i] := erem[i];
                preset[i] := wcool[k];
            ELSIF e24[i] > 0 AND wsum[k] + p_gold[i] > e24[i] THEN
                pol[i] := 'cap_24h';
                plim[i] := e24[i];
                -- The first hour at which enough of the counted gold has
                -- aged out for this debit to fit; NULL when it never does.
                IF p_gold[i] <= e24[i] THEN
                    left_ := wsum[k];
                    FOR h IN whour[k] - 24 .. whour[k] LOOP
                        left_ := left_ - whrs[(k - 1) * 25 + (h % 25)::int + 1];
                        IF left_ + p_gold[i] <= e24[i] THEN
                            preset[i] := to_timestamp((h::bigint + 25) * 3600);
                            EXIT;
                        END IF;
                    END LOOP;
                END IF;
            ELSIF emon[i] > 0 AND wmong[k] + p_gold[i] > emon[i] THEN
                pol[i] := 'cap_month';
                plim[i] := emon[i];
                IF p_gold[i] <= emon[i] THEN
                    preset[i] := (wmon[k] + interval '1 month')::timestamp AT TIME ZONE wtz[k];
                END IF;
            END IF;
        END IF;
        IF pol[i] IS NOT NULL THEN
            st[i] := 403;
            bal[i] := coalesce(golds[k], 0);
        ELSIF k IS NOT NULL AND golds[k] >= p_gold[i] THEN
            golds[k] := golds[k] - p_gold[i];
            st[i] := 200;
            bal[i] := golds[k];
            IF safe THEN
                hc := whour[k];
                b := (hc % 25)::int + 1;
                whrs[(k - 1) * 25 + b] := whrs[(k - 1) * 25 + b] + p_gold[i];
                wsum[k] := wsum[k] + p_gold[i];
                wmong[k] := wmong[k] + p_gold[i];
                wdirty[k] := true;
                IF erem[i] > 0 AND wdayg[k] < erem[i] AND wdayg[k] + p_gold[i] >= erem[i] THEN
                    rem[i] := true;
                    remday[i] := wday[k];
                    remgold[i] := wdayg[k] + p_gold[i];
                    IF ecool[i] > 0 THEN
                        wcool[k] := tnow + ecool[i] * interval '1 second';
                    END IF;
                END IF;
                wdayg[k] := wdayg[k] + p_gold[i];
            END IF;
        ELSE
            st[i] := 402;
            bal[i] := coalesce(golds[k], 0);
        END IF;
    END LOOP;

    -- 6. One write per wallet, in one statement (the rows are locked
    --    since step 4, so its order does not matter).
    IF nu > 0 THEN
        UPDATE wallets SET gold = v.gold, updated_at = now()
        FROM unnest(users, golds) AS v (user_id, gold)
        WHERE wallets.user_id = v.user_id AND wallets.gold <> v.gold;
    END IF;

    -- 6b. One write of the counters per sender who spent (one statement).
    IF safe AND nu > 0 THEN
        INSERT INTO spend_windows AS s (user_id, hour_last, hours, day, day_gold, month, month_gold, cool_until, updated_at)
        SELECT users[k2], whour[k2], whrs[(k2 - 1) * 25 + 1 : k2 * 25], wday[k2], wdayg[k2], wmon[k2], wmong[k2], wcool[k2], now()
        FROM generate_subscripts(users, 1) AS k2
        WHERE wdirty[k2]
        ORDER BY users[k2]
        ON CONFLICT (user_id) DO UPDATE SET hour_last = excluded.hour_last, hours = excluded.hours,
            day = excluded.day, day_gold = excluded.day_gold, month = excluded.month,
            month_gold = excluded.month_gold, cool_until = excluded.cool_until, updated_at = excluded.updated_at;
    END IF;

    -- 7. The split of each debited gift (as migration 4); a receiver
    --    suspended now earns nothing: the house takes the share, marked.
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
        IF safe THEN
            FOR r IN
                SELECT j
                FROM generate_subscripts(p_request_id, 1) AS j,
                LATERAL (SELECT 1 FROM spend_policies x
                         WHERE x.scope = 'user' AND x.subject = rcv[j] AND x.suspended_until > tnow) AS s
                WHERE st[j] = 200 AND NOT rep[j] AND rcv[j] IS NOT NULL
            LOOP
                held[r.j] := rcv[r.j];
                rcv[r.j] := NULL;
            END LOOP;
        END IF;
        FOR i IN 1 .. n LOOP
            CONTINUE WHEN rep[i] OR st[i] <> 200;
            IF rcv[i] IS NOT NULL THEN
                earn[i] := floor(p_gold[i]::numeric * share[i] / 10000)::bigint;
            END IF;
            house_total := house_total + p_gold[i] - earn[i];
        END LOOP;
    END IF;

    -- 8. The entries, the gifts' settlement rows, the reminders, the events
    --    and the records (a policy refusal's with its refusal). Each debit's
    --    entry id is drawn first, in arrival order, so that every row
    --    carries it without joining the entries back by their keys.
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN rep[i] OR st[i] <> 200;
        eid[i] := nextval('ledger_entries_id_seq');
    END LOOP;
    WITH e AS (
        INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, platform, app_id, ref, details)
        SELECT eid[j], p_user_id[j], 'debit', -p_gold[j], bal[j], p_platform[j], p_app_id[j], p_request_id[j], p_details[j]
        FROM generate_subscripts(p_request_id, 1) AS j
        WHERE eid[j] IS NOT NULL
        ORDER BY j
    ), g AS (
        INSERT INTO gift_entries (debit_entry, platform, app_id, request_id, sender_id, receiver_id, room_id, gift_id,
                                  gift_version, price, count, gold, share_bp, earnings, house, house_slot, withheld_from)
        SELECT eid[j], p_platform[j], p_app_id[j], p_request_id[j], p_user_id[j], rcv[j], p_room_id[j], p_gift_id[j],
               ver[j], cprice[j], p_count[j], p_gold[j], share[j], earn[j], p_gold[j] - earn[j], hslot, held[j]
        FROM generate_subscripts(p_request_id, 1) AS j
        WHERE p_settle AND eid[j] IS NOT NULL
        ORDER BY j
    ), rm AS (
        INSERT INTO spend_reminders (user_id, day, threshold, day_gold, platform, app_id, request_id, created_at)
        SELECT p_user_id[j], remday[j], erem[j], remgold[j], p_platform[j], p_app_id[j], p_request_id[j], tnow
        FROM generate_subscripts(p_request_id, 1) AS j
        WHERE rem[j]
        ORDER BY j
        ON CONFLICT (user_id, day) DO NOTHING
    ), ev AS (
        -- The outbox (migration 8, docs/events.md): one event per debited
        -- gift and per policy refusal, in this same insert-per-batch
        -- statement, in arrival order; a replay adds none.
        INSERT INTO events (type, data)
        SELECT CASE WHEN st[j] = 200 THEN 'gift.debited' ELSE 'gift.refused' END,
               CASE WHEN st[j] = 200 THEN jsonb_build_object(
                   'platform', p_platform[j], 'app_id', p_app_id[j], 'request_id', p_request_id[j],
                   'user_id', p_user_id[j], 'gold', p_gold[j], 'balance_after', bal[j], 'entry_id', eid[j],
                   'receiver_id', rcv[j], 'room_id', p_room_id[j], 'gift_id', p_gift_id[j], 'count', p_count[j],
                   'settled', p_settle, 'share_bp', CASE WHEN p_settle THEN share[j] END,
                   'earnings', CASE WHEN p_settle THEN earn[j] END, 'house', CASE WHEN p_settle THEN p_gold[j] - earn[j] END,
                   'house_slot', CASE WHEN p_settle THEN hslot END, 'withheld_from', held[j],
                   'gift_version', ver[j], 'price', cprice[j], 'details', p_details[j])
               ELSE jsonb_build_object(
                   'platform', p_platform[j], 'app_id', p_app_id[j], 'request_id', p_request_id[j],
                   'user_id', p_user_id[j], 'gold', p_gold[j], 'balance', bal[j],
                   'refusal', pol[j], 'refusal_limit', plim[j], 'resets_at', preset[j],
                   'receiver_id', p_receiver_id[j], 'room_id', p_room_id[j], 'gift_id', p_gift_id[j], 'count', p_count[j])
               END
        FROM generate_subscripts(p_request_id, 1) AS j
        WHERE NOT rep[j] AND (st[j] = 200 OR (st[j] = 403 AND pol[j] IS NOT NULL))
        ORDER BY j
    )
    INSERT INTO debit_requests (platform, app_id, request_id, fingerprint, user_id, gold, status, balance, entry_id, expires_at,
                                refusal, refusal_limit, refusal_resets_at)
    SELECT p_platform[j], p_app_id[j], p_request_id[j], p_fingerprint[j], p_user_id[j], p_gold[j], st[j], bal[j], eid[j], p_expires_at[j],
           pol[j], plim[j], preset[j]
    FROM generate_subscripts(p_request_id, 1) AS j
    WHERE NOT rep[j] AND why[j] IS NULL
    -- In key order: two batches holding copies of the same keys (with no
    -- wallet to lock first: 402s of unknown users) wait for each other's
    -- records in one order, never in a cycle.
    ORDER BY p_platform[j], p_app_id[j], p_request_id[j];

    -- 9. The credits, last (as migration 4).
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

    RETURN QUERY SELECT st[j], bal[j], rep[j], reu[j], coalesce(why[j], pol[j]), cprice[j], plim[j], preset[j], rem[j]
    FROM generate_subscripts(p_request_id, 1) AS j ORDER BY j;
END
$$;
