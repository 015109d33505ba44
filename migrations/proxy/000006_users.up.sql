-- The admin API's per-user routes in partitioned mode
-- (docs/scale-out.md#the-admin-api-on-a-users-partition): each runs on the
-- partition that owns its user (RUN ON giftd_placement), or looks for a debit
-- on every partition (RUN ON ALL); the writes are the partition's functions
-- of the same name (partition migration 6).

-- A wallet's ledger, newest first, below entry id p_before.
CREATE FUNCTION giftd_entries(p_user_id text, p_before bigint, p_limit int)
    RETURNS TABLE (id bigint, user_id text, kind text, amount bigint, balance_after bigint, platform text,
                   app_id text, ref text, reverses bigint, details jsonb, created_at timestamptz)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_user_id);
    SELECT e.id, e.user_id, e.kind, e.amount, e.balance_after, e.platform, e.app_id, e.ref, e.reverses,
           e.details, e.created_at
    FROM ledger_entries AS e WHERE e.user_id = p_user_id AND e.id < p_before ORDER BY e.id DESC LIMIT p_limit;
$$;

-- A debit request as Store.FindDebit reads it (its record, its entry, its
-- reversal, as JSON, in one snapshot of each partition), on every
-- partition: its key does not name its user. A row only from the partition
-- that knows it; the call fails while any partition is down.
CREATE FUNCTION giftd_find_debit(p_platform text, p_app_id text, p_request_id text)
    RETURNS TABLE (record jsonb, entry jsonb, reversal jsonb)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON ALL;
    SELECT (SELECT to_jsonb(r) FROM (SELECT d.user_id, d.gold, d.status, d.balance, d.entry_id, d.expires_at,
                                            d.created_at, d.refusal, d.refusal_limit, d.refusal_resets_at
                                     FROM debit_requests AS d WHERE d.platform = p_platform AND d.app_id = p_app_id
                                       AND d.request_id = p_request_id) AS r) AS record,
           to_jsonb(e) AS entry,
           (SELECT to_jsonb(x) FROM (SELECT v.id, v.user_id, v.kind, v.amount, v.balance_after, v.platform, v.app_id,
                                            v.ref, v.reverses, v.details, v.created_at
                                     FROM ledger_entries AS v WHERE v.reverses = e.id) AS x) AS reversal
    FROM (SELECT) AS one
    LEFT JOIN LATERAL (SELECT l.id, l.user_id, l.kind, l.amount, l.balance_after, l.platform, l.app_id, l.ref,
                              l.reverses, l.details, l.created_at
                       FROM ledger_entries AS l WHERE l.kind = 'debit' AND l.platform = p_platform
                         AND l.app_id = p_app_id AND l.ref = p_request_id) AS e ON true
    WHERE e.id IS NOT NULL OR EXISTS (SELECT 1 FROM debit_requests AS d WHERE d.platform = p_platform
                                        AND d.app_id = p_app_id AND d.request_id = p_request_id);
$$;

-- A sender's spending counters as of p_at (Store.SpendWindowOf).
CREATE FUNCTION giftd_spend_window(p_user_id text, p_at timestamptz)
    RETURNS TABLE (last_24h bigint, day text, day_gold bigint, month text, month_gold bigint,
                   cool_until timestamptz, updated_at timestamptz)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_user_id);
    SELECT (SELECT coalesce(sum(w.hours[(h % 25)::int + 1]), 0)
            FROM generate_series(greatest(w.hour_last - 24, floor(extract(epoch FROM p_at) / 3600)::bigint - 24),
                                 w.hour_last) AS h)::bigint AS last_24h,
           w.day::text AS day, w.day_gold, w.month::text AS month, w.month_gold, w.cool_until, w.updated_at
    FROM spend_windows AS w WHERE w.user_id = p_user_id;
$$;

-- A payout, on the receiver's partition only: never from another
-- partition's transit account.
CREATE FUNCTION giftd_payout(p_receiver text, p_amount bigint, p_key text, p_note text, p_hold interval)
    RETURNS TABLE (status text, receiver_id text, amount bigint, recovered bigint, balance bigint,
                   entry_id bigint, payable bigint)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_receiver);
$$;

-- A reversal, on the sender's partition.
CREATE FUNCTION giftd_reverse(p_user_id text, p_platform text, p_app_id text, p_request_id text,
                              p_key text, p_note text)
    RETURNS TABLE (status text, user_id text, amount bigint, balance bigint, entry_id bigint,
                   gift jsonb, clawback_position bigint)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_user_id);
$$;

-- A reversal's claw-back, on the receiver's partition.
CREATE FUNCTION giftd_clawback(p_source int, p_position bigint, p_receiver text, p_amount bigint)
    RETURNS TABLE (earnings bigint, shortfall bigint, applied boolean)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_receiver);
$$;

-- LinkV accounts and wallet moves, on the user's partition (a move credits
-- its own user only).
CREATE FUNCTION giftd_save_linkv_account(p_app_id text, p_user_id text, p_open_id text)
    RETURNS void LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_user_id);
$$;

CREATE FUNCTION giftd_linkv_account(p_app_id text, p_user_id text)
    RETURNS TABLE (open_id text)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_user_id);
    SELECT a.open_id FROM linkv_accounts AS a WHERE a.app_id = p_app_id AND a.user_id = p_user_id;
$$;

CREATE FUNCTION giftd_wallet_move(p_app_id text, p_user_id text)
    RETURNS TABLE (app_id text, user_id text, open_id text, state text, round int, request_id text, amount bigint,
                   expriation bigint, moved bigint, last_error text, created_at timestamptz, updated_at timestamptz)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_user_id);
    SELECT m.* FROM linkv_wallet_moves AS m WHERE m.app_id = p_app_id AND m.user_id = p_user_id;
$$;

CREATE FUNCTION giftd_wallet_move_start(p_app_id text, p_user_id text, p_open_id text)
    RETURNS TABLE (app_id text, user_id text, open_id text, state text, round int, request_id text, amount bigint,
                   expriation bigint, moved bigint, last_error text, created_at timestamptz, updated_at timestamptz)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_user_id);
$$;

CREATE FUNCTION giftd_wallet_move_step(p_app_id text, p_user_id text, p_state text, p_round int, p_request_id text,
                                       p_op text, p_new_request_id text, p_amount bigint, p_expiration bigint,
                                       p_why text)
    RETURNS TABLE (app_id text, user_id text, open_id text, state text, round int, request_id text, amount bigint,
                   expriation bigint, moved bigint, last_error text, created_at timestamptz, updated_at timestamptz)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_user_id);
$$;

CREATE FUNCTION giftd_wallet_move_note(p_app_id text, p_user_id text, p_why text)
    RETURNS void LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_user_id);
$$;

CREATE FUNCTION giftd_wallet_move_credit(p_app_id text, p_user_id text, p_round int, p_request_id text, p_note text)
    RETURNS TABLE (status text, credit_user text, credit_amount bigint, credit_balance bigint, credit_entry bigint,
                   app_id text, user_id text, open_id text, state text, round int, request_id text, amount bigint,
                   expriation bigint, moved bigint, last_error text, updated_at timestamptz)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_user_id);
$$;

-- Spending policies: written on every partition (each partition's debits
-- read their senders' policies and their receivers' suspensions), read on
-- the subject's partition. A write with a partition down fails (perhaps
-- applied on others, if one is lost mid-call): its retry (the same PUT or
-- DELETE) makes them all alike.
CREATE FUNCTION giftd_user_known(p_user text) RETURNS SETOF boolean LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON ALL;
$$;

CREATE FUNCTION giftd_put_policy(p_scope text, p_subject text, p_operator text, p_new jsonb,
                                 p_max_debit bigint, p_cap_24h bigint, p_cap_month bigint, p_remind_day bigint,
                                 p_cooling_off_s bigint, p_time_zone text, p_minor boolean, p_blocked boolean,
                                 p_consent boolean, p_suspended_until timestamptz)
    RETURNS SETOF timestamptz LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON ALL;
$$;

CREATE FUNCTION giftd_clear_policy(p_scope text, p_subject text, p_operator text)
    RETURNS SETOF boolean LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON ALL;
$$;

CREATE FUNCTION giftd_policy(p_scope text, p_subject text)
    RETURNS TABLE (updated_at timestamptz, updated_by text, max_debit bigint, cap_24h bigint, cap_month bigint,
                   remind_day bigint, cooling_off_s bigint, time_zone text, minor boolean, blocked boolean,
                   consent boolean, suspended_until timestamptz)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_subject);
    SELECT x.updated_at, x.updated_by, x.max_debit, x.cap_24h, x.cap_month, x.remind_day, x.cooling_off_s,
           x.time_zone, x.minor, x.blocked, x.consent, x.suspended_until
    FROM spend_policies AS x WHERE x.scope = p_scope AND x.subject = p_subject;
$$;

CREATE FUNCTION giftd_policy_history(p_scope text, p_subject text, p_limit int)
    RETURNS TABLE (id bigint, changed_by text, changed_at timestamptz, old jsonb, new jsonb)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_subject);
    SELECT h.id, h.changed_by, h.changed_at, h.old, h.new FROM spend_policy_history AS h
    WHERE h.scope = p_scope AND h.subject = p_subject ORDER BY h.id DESC LIMIT p_limit;
$$;
