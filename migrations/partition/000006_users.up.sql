-- The admin API's per-user writes in partitioned mode
-- (docs/scale-out.md#the-admin-api-on-a-users-partition): what giftd does
-- in Go in one transaction on one server, as one function on the user's
-- partition, called through the proxy (proxy migration 6). Each is held to
-- its Go twin by a test comparing the rows both write.

-- A reversal of a gift whose receiver lives on another partition takes the
-- receiver's earnings back there, once, by a claw-back keyed like a credit:
-- '<sender's partition>:<position of the debit.reversed event>'.
--   on the sender's partition: clawback_in, +earnings on the receiver's
--     (transit) account, then the gift's usual reversal leg, −earnings: the
--     gift balances in this partition's audit and the transit account does
--     not move;
--   on the receiver's partition: clawback, what the receiver's earnings
--     can give (−, account earnings) and the rest as owed (+, receivable),
--     as a reversal on one server splits it.
ALTER TABLE account_entries DROP CONSTRAINT account_entries_leg;
ALTER TABLE account_entries DROP CONSTRAINT account_entries_kind;
ALTER TABLE account_entries ADD CONSTRAINT account_entries_kind CHECK (kind IN ('reversal', 'shortfall', 'payout',
    'recovery', 'transfer_in', 'transfer_out', 'clawback_in', 'clawback')) NOT VALID;
ALTER TABLE account_entries ADD CONSTRAINT account_entries_leg CHECK (
    CASE kind WHEN 'shortfall' THEN account = 'receivable' AND amount > 0 AND gift_entry IS NOT NULL
              WHEN 'reversal' THEN account <> 'receivable' AND amount < 0 AND gift_entry IS NOT NULL
              WHEN 'payout' THEN account = 'earnings' AND amount < 0
              WHEN 'transfer_in' THEN account = 'earnings' AND amount > 0 AND gift_entry IS NULL
              WHEN 'transfer_out' THEN account = 'earnings' AND amount < 0 AND gift_entry IS NULL
              WHEN 'clawback_in' THEN account = 'earnings' AND amount > 0 AND gift_entry IS NULL
              WHEN 'clawback' THEN gift_entry IS NULL AND ((account = 'earnings' AND amount < 0)
                                                         OR (account = 'receivable' AND amount > 0))
              ELSE account <> 'house' AND amount < 0 END) NOT VALID;
ALTER TABLE account_entries VALIDATE CONSTRAINT account_entries_kind;
ALTER TABLE account_entries VALIDATE CONSTRAINT account_entries_leg;

-- Refuses (GD001) a call for p_user on a partition that does not own them:
-- a transit account or a stray row must never be paid out or reversed.
CREATE FUNCTION giftd_check_placed_here(p_user text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    me record;
BEGIN
    SELECT i.partition, i.partitions INTO me FROM giftd_partition_identity AS i;
    IF NOT FOUND OR giftd_placement(p_user) & (me.partitions - 1) <> me.partition THEN
        RAISE EXCEPTION 'giftd: % is placed on another partition than %', p_user, me.partition
            USING ERRCODE = 'GD001';
    END IF;
END
$$;

-- Store.Payout as one function, on the receiver's partition: the account's
-- lock, a replay by key (status 'replay', the first payout's figures), the
-- payable check (status 'insufficient' with what is payable), then the
-- recovery of what is owed, the payout and its event. Held (maturing)
-- earnings are, besides the gifts settled here younger than the hold, the
-- credits moved in from other partitions younger than it (their move is a
-- little after the gift: held a little longer, never shorter). A receiver
-- without an account here: 'not_found'.
CREATE FUNCTION giftd_payout(p_receiver text, p_amount bigint, p_key text, p_note text, p_hold interval)
    RETURNS TABLE (status text, receiver_id text, amount bigint, recovered bigint, balance bigint,
                   entry_id bigint, payable bigint)
    LANGUAGE plpgsql AS $$
DECLARE
    a    record;
    held bigint;
    pay  bigint;
    bal  bigint;
    eid  bigint;
    prev record;
BEGIN
    PERFORM giftd_check_placed_here(p_receiver);
    SELECT x.balance, x.owed INTO a FROM earnings_accounts AS x WHERE x.receiver_id = p_receiver FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', p_receiver, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint;
        RETURN;
    END IF;
    SELECT p.receiver_id, -p.amount AS amount, p.balance_after, p.id,
           coalesce((SELECT -r.amount FROM account_entries AS r
                     WHERE r.account = 'receivable' AND r.kind = 'recovery' AND r.ref = p_key), 0) AS recovered
    INTO prev FROM account_entries AS p WHERE p.account = 'earnings' AND p.kind = 'payout' AND p.ref = p_key;
    IF FOUND THEN
        -- As Store.Payout: the replay's commit waits for the standbys.
        PERFORM pg_logical_emit_message(true, 'giftd', 'replay');
        RETURN QUERY SELECT 'replay', prev.receiver_id, prev.amount, prev.recovered, prev.balance_after, prev.id, 0::bigint;
        RETURN;
    END IF;
    held := least(a.balance,
        (SELECT coalesce(sum(g.earnings), 0) FROM gift_entries AS g
         WHERE g.receiver_id = p_receiver AND p_hold > '0' AND g.created_at > now() - p_hold)
      + (SELECT coalesce(sum(t.amount), 0) FROM account_entries AS t
         WHERE t.receiver_id = p_receiver AND t.account = 'earnings' AND t.kind = 'transfer_in'
           AND p_hold > '0' AND t.created_at > now() - p_hold));
    pay := greatest(0, a.balance - a.owed - held);
    IF p_amount > pay THEN
        RETURN QUERY SELECT 'insufficient', p_receiver, 0::bigint, 0::bigint, 0::bigint, 0::bigint, pay;
        RETURN;
    END IF;
    bal := a.balance - a.owed - p_amount;
    UPDATE earnings_accounts AS x SET balance = bal, owed = 0, updated_at = now() WHERE x.receiver_id = p_receiver;
    INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
    SELECT v.a, p_receiver, 'recovery', -a.owed, v.b, p_key, jsonb_build_object('note', p_note)
    FROM (VALUES ('earnings', a.balance - a.owed), ('receivable', 0)) AS v (a, b)
    WHERE a.owed > 0;
    INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
    VALUES ('earnings', p_receiver, 'payout', -p_amount, bal, p_key, jsonb_build_object('note', p_note))
    RETURNING id INTO eid;
    INSERT INTO events (type, data) VALUES ('earnings.paid_out', jsonb_build_object(
        'receiver_id', p_receiver, 'amount', p_amount, 'recovered', a.owed, 'balance_after', bal,
        'entry_id', eid, 'key', p_key, 'note', p_note));
    RETURN QUERY SELECT 'done', p_receiver, p_amount, a.owed, bal, eid, 0::bigint;
END
$$;

-- The receiver's side of a reversal of a gift settled on partition
-- p_source: p_amount taken back from p_receiver's earnings here as far as
-- they go, the rest owed, once per (p_source, p_position). A second call
-- answers the first's split (applied false); one with another receiver or
-- amount is refused (unique_violation). Refused (GD001) on a partition that
-- does not own p_receiver.
CREATE FUNCTION giftd_clawback(p_source int, p_position bigint, p_receiver text, p_amount bigint)
    RETURNS TABLE (earnings bigint, shortfall bigint, applied boolean)
    LANGUAGE plpgsql AS $$
DECLARE
    k    text := p_source || ':' || p_position;
    a    record;
    took bigint;
    prev record;
BEGIN
    PERFORM giftd_check_placed_here(p_receiver);
    -- The account exists: the gift's credit moved in before its reversal.
    SELECT x.balance, x.owed INTO a FROM earnings_accounts AS x WHERE x.receiver_id = p_receiver FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'claw-back %: % has no earnings account here', k, p_receiver;
    END IF;
    SELECT min(c.receiver_id) AS receiver_id, count(DISTINCT c.receiver_id) AS receivers,
           coalesce(-sum(c.amount) FILTER (WHERE c.account = 'earnings'), 0)::bigint AS earnings,
           coalesce(sum(c.amount) FILTER (WHERE c.account = 'receivable'), 0)::bigint AS shortfall
    INTO prev FROM account_entries AS c WHERE c.kind = 'clawback' AND c.ref = k;
    IF prev.receivers > 0 THEN
        IF prev.receivers > 1 OR prev.receiver_id <> p_receiver OR prev.earnings + prev.shortfall <> p_amount THEN
            RAISE EXCEPTION 'claw-back %: applied before for another receiver or amount', k
                USING ERRCODE = 'unique_violation';
        END IF;
        RETURN QUERY SELECT prev.earnings, prev.shortfall, false;
        RETURN;
    END IF;
    took := least(a.balance, p_amount);
    UPDATE earnings_accounts AS x SET balance = a.balance - took, owed = a.owed + (p_amount - took), updated_at = now()
    WHERE x.receiver_id = p_receiver;
    INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
    SELECT v.account, p_receiver, 'clawback', v.amount, v.after, k,
           jsonb_build_object('source_partition', p_source, 'position', p_position)
    FROM (VALUES ('earnings', -took, a.balance - took), ('receivable', p_amount - took, a.owed + (p_amount - took)))
         AS v (account, amount, after)
    WHERE v.amount <> 0;
    RETURN QUERY SELECT took, p_amount - took, true;
END
$$;

-- The claw-backs of this partition's debit.reversed events after p_after up
-- to p_upto, in position order: what the credit consumer applies on the
-- receivers' partitions before its cursor passes them.
CREATE FUNCTION giftd_clawbacks_after(p_after bigint, p_upto bigint)
    RETURNS TABLE (event_position bigint, receiver_id text, amount bigint)
    LANGUAGE sql STABLE AS $$
    SELECT e.position, e.data->'gift'->>'receiver_id', (e.data->'gift'->>'clawback')::bigint
    FROM events AS e
    WHERE e.position > p_after AND e.position <= p_upto AND e.type = 'debit.reversed'
      AND coalesce((e.data->'gift'->>'clawback')::bigint, 0) > 0
    ORDER BY e.position;
$$;

-- Store.Reverse as one function, on the sender's partition (p_user_id's,
-- whose debit it must be). Status: 'done'; 'replay' (the same key and debit:
-- the first reversal's figures); 'already_reversed' (another key reversed
-- the debit); 'key_reused' (the key reversed another debit); 'not_found'
-- (no such debit here); 'in_transit' (the gift's earnings are still on
-- their way to the receiver's partition: nothing written, try again once
-- the credit consumer moved them). gift is the GiftReversal ({receiver_id,
-- earnings, shortfall, house}, plus clawback: what is to be taken back on
-- the receiver's partition, at clawback_position) or NULL.
CREATE FUNCTION giftd_reverse(p_user_id text, p_platform text, p_app_id text, p_request_id text,
                              p_key text, p_note text)
    RETURNS TABLE (status text, user_id text, amount bigint, balance bigint, entry_id bigint,
                   gift jsonb, clawback_position bigint)
    LANGUAGE plpgsql AS $$
DECLARE
    me      record;
    d       record;
    g       record;
    ebal    bigint := 0;
    eowed   bigint := 0;
    bal     bigint;
    rid     bigint;
    pos     bigint;
    taken   bigint := 0;
    short   bigint := 0;
    claw    bigint := 0;
    cpos    bigint;
    hafter  bigint := 0;
    gr      jsonb;
    details jsonb := jsonb_build_object('platform', p_platform, 'app_id', p_app_id, 'request_id', p_request_id,
                                        'note', p_note);
BEGIN
    PERFORM giftd_check_placed_here(p_user_id);
    -- A transaction id before any event position (see migration 8's events).
    PERFORM pg_current_xact_id();
    SELECT i.partition, i.partitions INTO me FROM giftd_partition_identity AS i;
    SELECT e.id, e.user_id, -e.amount AS amount INTO d FROM ledger_entries AS e
    WHERE e.kind = 'debit' AND e.platform = p_platform AND e.app_id = p_app_id AND e.ref = p_request_id;
    IF NOT FOUND OR d.user_id <> p_user_id THEN
        RETURN QUERY SELECT 'not_found', p_user_id, 0::bigint, 0::bigint, 0::bigint, NULL::jsonb, NULL::bigint;
        RETURN;
    END IF;
    BEGIN
        -- Locks in the order every debit takes them: the wallet, then the
        -- receiver's earnings, then the house slot.
        UPDATE wallets AS w SET gold = w.gold + d.amount, updated_at = now() WHERE w.user_id = d.user_id
        RETURNING w.gold INTO bal;
        INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, ref, reverses, details)
        VALUES (d.user_id, 'reversal', d.amount, bal, 'admin', p_key, d.id, details)
        RETURNING id INTO rid;
        SELECT x.id, x.receiver_id, x.earnings, x.house, x.house_slot, x.created_at INTO g
        FROM gift_entries AS x WHERE x.debit_entry = d.id;
        IF FOUND THEN
            pos := nextval('events_position_seq');
            IF g.receiver_id IS NOT NULL AND g.earnings > 0 THEN
                SELECT x.balance, x.owed INTO ebal, eowed FROM earnings_accounts AS x
                WHERE x.receiver_id = g.receiver_id FOR UPDATE;
                IF giftd_placement(g.receiver_id) & (me.partitions - 1) <> me.partition THEN
                    -- The receiver lives elsewhere: its earnings left (or
                    -- are leaving) this partition's transit account by the
                    -- credit of the gift's event. Until that credit has
                    -- moved, wait; after, take them back there.
                    IF EXISTS (SELECT 1 FROM events AS e, credit_cursor AS c
                               WHERE e.created_at = g.created_at AND e.type = 'gift.debited'
                                 AND e.data->>'entry_id' = d.id::text AND e.position > c.position) THEN
                        RAISE EXCEPTION 'giftd: the earnings of % are still moving to the receiver''s partition', p_request_id
                            USING ERRCODE = 'GD003';
                    END IF;
                    claw := g.earnings;
                    cpos := pos;
                    INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
                    VALUES ('earnings', g.receiver_id, 'clawback_in', claw, ebal + claw, me.partition || ':' || pos,
                            details || jsonb_build_object('key', p_key));
                    taken := claw;
                ELSE
                    taken := least(ebal, g.earnings);
                    short := g.earnings - taken;
                    ebal := ebal - taken;
                    eowed := eowed + short;
                    UPDATE earnings_accounts AS x SET balance = ebal, owed = eowed, updated_at = now()
                    WHERE x.receiver_id = g.receiver_id;
                END IF;
            END IF;
            IF g.house > 0 THEN
                UPDATE house_slots AS h SET balance = h.balance - g.house, updated_at = now() WHERE h.slot = g.house_slot
                RETURNING h.balance INTO hafter;
            END IF;
            INSERT INTO account_entries (account, receiver_id, house_slot, kind, amount, balance_after, gift_entry, ref, details)
            SELECT v.account, v.receiver_id, v.slot, v.kind, v.amount, v.after, g.id, p_key, details
            FROM (VALUES ('earnings', coalesce(g.receiver_id, ''), NULL::smallint, 'reversal', -taken, ebal),
                         ('receivable', coalesce(g.receiver_id, ''), NULL, 'shortfall', short, eowed),
                         ('house', NULL, g.house_slot, 'reversal', -g.house, hafter))
                 AS v (account, receiver_id, slot, kind, amount, after)
            WHERE v.amount <> 0;
            gr := jsonb_build_object('earnings', taken - claw, 'shortfall', short, 'house', g.house);
            IF g.receiver_id IS NOT NULL THEN
                gr := jsonb_build_object('receiver_id', g.receiver_id) || gr;
            END IF;
            IF claw > 0 THEN
                gr := gr || jsonb_build_object('clawback', claw);
            END IF;
        END IF;
        INSERT INTO events (position, type, data) VALUES (coalesce(pos, nextval('events_position_seq')), 'debit.reversed',
            jsonb_build_object('platform', p_platform, 'app_id', p_app_id, 'request_id', p_request_id,
                'user_id', d.user_id, 'amount', d.amount, 'balance_after', bal, 'entry_id', rid,
                'reverses', d.id, 'key', p_key, 'note', p_note, 'gift', gr));
        RETURN QUERY SELECT 'done', d.user_id, d.amount, bal, rid, gr, cpos;
        RETURN;
    EXCEPTION
        WHEN unique_violation THEN
            NULL; -- the key or the debit was used before: below
        WHEN SQLSTATE 'GD003' THEN
            RETURN QUERY SELECT 'in_transit', p_user_id, 0::bigint, 0::bigint, 0::bigint, NULL::jsonb, NULL::bigint;
            RETURN;
    END;
    RETURN QUERY SELECT * FROM giftd_reversed(p_platform, p_app_id, p_request_id, p_key);
END
$$;

-- Why giftd_reverse met a unique index (Store.reversed): the key's first
-- reversal, of this debit ('replay', its figures, after the replay's WAL
-- record) or of another ('key_reused'), or none ('already_reversed': the
-- debit was reversed under another key).
CREATE FUNCTION giftd_reversed(p_platform text, p_app_id text, p_request_id text, p_key text)
    RETURNS TABLE (status text, user_id text, amount bigint, balance bigint, entry_id bigint,
                   gift jsonb, clawback_position bigint)
    LANGUAGE plpgsql AS $$
DECLARE
    r  record;
    gr jsonb;
    c  record;
BEGIN
    SELECT x.user_id, x.amount, x.balance_after, x.id, x.created_at, d.platform, d.app_id, d.ref INTO r
    FROM ledger_entries AS x JOIN ledger_entries AS d ON d.id = x.reverses
    WHERE x.kind = 'reversal' AND x.platform = 'admin' AND x.app_id = '' AND x.ref = p_key;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'already_reversed', ''::text, 0::bigint, 0::bigint, 0::bigint, NULL::jsonb, NULL::bigint;
        RETURN;
    END IF;
    IF (r.platform, r.app_id, r.ref) <> (p_platform, p_app_id, p_request_id) THEN
        RETURN QUERY SELECT 'key_reused', ''::text, 0::bigint, 0::bigint, 0::bigint, NULL::jsonb, NULL::bigint;
        RETURN;
    END IF;
    PERFORM pg_logical_emit_message(true, 'giftd', 'replay');
    SELECT g.receiver_id,
           coalesce(-sum(a.amount) FILTER (WHERE a.account = 'earnings'), 0) AS earnings,
           coalesce(sum(a.amount) FILTER (WHERE a.account = 'receivable'), 0) AS shortfall,
           coalesce(-sum(a.amount) FILTER (WHERE a.account = 'house'), 0) AS house
    INTO c FROM account_entries AS a JOIN gift_entries AS g ON g.id = a.gift_entry
    WHERE a.kind IN ('reversal', 'shortfall') AND a.ref = p_key
    GROUP BY g.receiver_id;
    IF FOUND THEN
        gr := jsonb_build_object('earnings', c.earnings, 'shortfall', c.shortfall, 'house', c.house);
        IF c.receiver_id IS NOT NULL THEN
            gr := jsonb_build_object('receiver_id', c.receiver_id) || gr;
        END IF;
        -- The claw-back leg written with the reversal, if any (same
        -- transaction, so same time; found by the receiver's index).
        SELECT x.amount, split_part(x.ref, ':', 2)::bigint AS position INTO c FROM account_entries AS x
        WHERE x.receiver_id = c.receiver_id AND x.created_at = r.created_at AND x.account = 'earnings'
          AND x.kind = 'clawback_in' AND x.details->>'key' = p_key;
        IF FOUND THEN
            gr := gr || jsonb_build_object('earnings', (gr->>'earnings')::bigint - c.amount, 'clawback', c.amount);
            RETURN QUERY SELECT 'replay', r.user_id, r.amount, r.balance_after, r.id, gr, c.position;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT 'replay', r.user_id, r.amount, r.balance_after, r.id, gr, NULL::bigint;
END
$$;

-- LinkV accounts and wallet moves (ledger/platform.go), on the user's
-- partition: a move only ever credits its own user's wallet, so each of its
-- steps is one call there.
CREATE FUNCTION giftd_save_linkv_account(p_app_id text, p_user_id text, p_open_id text)
    RETURNS void LANGUAGE sql AS $$
    INSERT INTO linkv_accounts (app_id, user_id, open_id) VALUES (p_app_id, p_user_id, p_open_id)
    ON CONFLICT (app_id, user_id) DO UPDATE SET open_id = excluded.open_id, updated_at = now()
    WHERE linkv_accounts.open_id <> excluded.open_id;
$$;

-- Store.StartWalletMove: the move, started if there is none (a concurrent
-- start's row is seen by the second statement).
CREATE FUNCTION giftd_wallet_move_start(p_app_id text, p_user_id text, p_open_id text)
    RETURNS SETOF linkv_wallet_moves LANGUAGE plpgsql AS $$
BEGIN
    PERFORM giftd_check_placed_here(p_user_id);
    INSERT INTO linkv_wallet_moves (app_id, user_id, open_id) VALUES (p_app_id, p_user_id, p_open_id)
    ON CONFLICT (app_id, user_id) DO NOTHING;
    RETURN QUERY SELECT * FROM linkv_wallet_moves AS m WHERE m.app_id = p_app_id AND m.user_id = p_user_id;
END
$$;

-- Store.step: the move from the state, round and request id the caller saw
-- to the one p_op names (Store.RecordTakeOut 'take_out', RecordTaken
-- 'taken', RecordTakeOutRefused 'refused', FinishWalletMove 'finish'); no
-- row when another run moved it first.
CREATE FUNCTION giftd_wallet_move_step(p_app_id text, p_user_id text, p_state text, p_round int, p_request_id text,
                                       p_op text, p_new_request_id text, p_amount bigint, p_expiration bigint,
                                       p_why text)
    RETURNS SETOF linkv_wallet_moves LANGUAGE plpgsql AS $$
BEGIN
    PERFORM giftd_check_placed_here(p_user_id);
    RETURN QUERY
    UPDATE linkv_wallet_moves AS m SET
        state = CASE p_op WHEN 'take_out' THEN 'taking' WHEN 'taken' THEN 'taken' WHEN 'refused' THEN 'pending'
                          WHEN 'finish' THEN 'done' END,
        round = CASE p_op WHEN 'refused' THEN m.round + 1 ELSE m.round END,
        request_id = CASE p_op WHEN 'take_out' THEN p_new_request_id WHEN 'refused' THEN NULL ELSE m.request_id END,
        amount = CASE p_op WHEN 'take_out' THEN p_amount WHEN 'refused' THEN NULL ELSE m.amount END,
        expriation = CASE p_op WHEN 'take_out' THEN p_expiration WHEN 'refused' THEN NULL ELSE m.expriation END,
        last_error = CASE p_op WHEN 'refused' THEN p_why ELSE '' END,
        updated_at = now()
    WHERE m.app_id = p_app_id AND m.user_id = p_user_id AND m.state = p_state AND m.round = p_round
      AND coalesce(m.request_id, '') = p_request_id AND p_op IN ('take_out', 'taken', 'refused', 'finish')
    RETURNING m.*;
END
$$;

-- Store.NoteWalletMoveError.
CREATE FUNCTION giftd_wallet_move_note(p_app_id text, p_user_id text, p_why text)
    RETURNS void LANGUAGE sql AS $$
    UPDATE linkv_wallet_moves SET last_error = p_why, updated_at = now() WHERE app_id = p_app_id AND user_id = p_user_id;
$$;

-- Store.CreditWalletMove as one function: under the move's row lock, the
-- round's coins credited to the user's wallet as a top-up of platform linkv
-- keyed by the round's request_id (once: a credit made before under that key
-- is checked, 'replay'), then the move on to its next round. Status
-- 'conflict' when the move is no longer taken at p_round with
-- p_request_id, 'key_reused' when the key holds another user's or amount's
-- credit, 'missing' when there is no move.
CREATE FUNCTION giftd_wallet_move_credit(p_app_id text, p_user_id text, p_round int, p_request_id text, p_note text)
    RETURNS TABLE (status text, credit_user text, credit_amount bigint, credit_balance bigint, credit_entry bigint,
                   app_id text, user_id text, open_id text, state text, round int, request_id text, amount bigint,
                   expriation bigint, moved bigint, last_error text, updated_at timestamptz)
    LANGUAGE plpgsql AS $$
DECLARE
    cur  linkv_wallet_moves;
    nxt  linkv_wallet_moves;
    c    record;
    bal  bigint;
    eid  bigint;
    st   text := 'done';
BEGIN
    PERFORM giftd_check_placed_here(p_user_id);
    SELECT * INTO cur FROM linkv_wallet_moves AS m WHERE m.app_id = p_app_id AND m.user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', NULL::text, NULL::bigint, NULL::bigint, NULL::bigint, NULL::text,
            NULL::text, NULL::text, NULL::text, NULL::int, NULL::text, NULL::bigint, NULL::bigint, NULL::bigint,
            NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    IF cur.state <> 'taken' OR cur.round <> p_round OR coalesce(cur.request_id, '') <> p_request_id THEN
        st := 'conflict';
    ELSE
        SELECT e.user_id, e.amount, e.balance_after, e.id INTO c FROM ledger_entries AS e
        WHERE e.kind = 'topup' AND e.platform = 'linkv' AND e.app_id = cur.app_id AND e.ref = cur.request_id;
        IF FOUND THEN
            IF c.user_id <> cur.user_id OR c.amount <> cur.amount THEN
                st := 'key_reused';
            ELSE
                st := 'replay';
                bal := c.balance_after;
                eid := c.id;
            END IF;
        ELSE
            INSERT INTO wallets AS w (user_id, gold) VALUES (cur.user_id, cur.amount)
            ON CONFLICT ON CONSTRAINT wallets_pkey DO UPDATE SET gold = w.gold + excluded.gold, updated_at = now()
            RETURNING w.gold INTO bal;
            INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, app_id, ref, details)
            VALUES (cur.user_id, 'topup', cur.amount, bal, 'linkv', cur.app_id, cur.request_id,
                    jsonb_build_object('note', p_note, 'live_open_id', cur.open_id, 'round', cur.round,
                                       'source', 'linkv wallet move'))
            RETURNING id INTO eid;
            INSERT INTO events (type, data) VALUES ('wallet.topped_up', jsonb_build_object('user_id', cur.user_id,
                'amount', cur.amount, 'balance_after', bal, 'entry_id', eid, 'platform', 'linkv', 'app_id', cur.app_id,
                'key', cur.request_id, 'note', p_note, 'source', 'linkv wallet move'));
        END IF;
    END IF;
    IF st IN ('done', 'replay') THEN
        UPDATE linkv_wallet_moves AS m SET state = 'pending', round = m.round + 1, request_id = NULL, amount = NULL,
            expriation = NULL, moved = m.moved + m.amount, last_error = '', updated_at = now()
        WHERE m.app_id = cur.app_id AND m.user_id = cur.user_id
        RETURNING m.* INTO nxt;
    END IF;
    RETURN QUERY SELECT st, cur.user_id, cur.amount, bal, eid, nxt.app_id, nxt.user_id, nxt.open_id, nxt.state,
        nxt.round, nxt.request_id, nxt.amount, nxt.expriation, nxt.moved, nxt.last_error, nxt.updated_at;
END
$$;

-- Spending policies (ledger/safeguards.go) in partitioned mode: every
-- partition holds every policy, since a debit reads its sender's policy and
-- its receiver's suspension on the sender's partition. The proxy writes
-- each on every partition (RUN ON ALL); a partition's copy is written as
-- Store.PutPolicy and Store.ClearPolicy write it on one server, in one
-- transaction there, the history's old value being the last kept new one
-- (what Go would read and marshal: every change goes through here or
-- PutPolicy, with its history).

-- Whether giftd knows p_user here (Store.PutPolicy's check).
CREATE FUNCTION giftd_user_known(p_user text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM wallets WHERE user_id = p_user)
        OR EXISTS (SELECT 1 FROM earnings_accounts WHERE receiver_id = p_user)
        OR EXISTS (SELECT 1 FROM room_receivers WHERE receiver_id = p_user)
        OR EXISTS (SELECT 1 FROM spend_policies WHERE scope = 'user' AND subject = p_user);
$$;

-- Store.PutPolicy's transaction: p_new is the policy as Go marshals it (the
-- history's new value), the other arguments its columns. A time zone
-- PostgreSQL does not know raises 22023.
CREATE FUNCTION giftd_put_policy(p_scope text, p_subject text, p_operator text, p_new jsonb,
                                 p_max_debit bigint, p_cap_24h bigint, p_cap_month bigint, p_remind_day bigint,
                                 p_cooling_off_s bigint, p_time_zone text, p_minor boolean, p_blocked boolean,
                                 p_consent boolean, p_suspended_until timestamptz)
    RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE
    old jsonb;
    at  timestamptz;
BEGIN
    IF p_time_zone IS NOT NULL THEN
        PERFORM now() AT TIME ZONE p_time_zone;
    END IF;
    PERFORM 1 FROM spend_policies AS x WHERE x.scope = p_scope AND x.subject = p_subject FOR UPDATE;
    IF FOUND THEN
        old := (SELECT h.new FROM spend_policy_history AS h WHERE h.scope = p_scope AND h.subject = p_subject
                ORDER BY h.id DESC LIMIT 1);
    END IF;
    INSERT INTO spend_policies AS x (scope, subject, updated_by, max_debit, cap_24h, cap_month, remind_day,
                                     cooling_off_s, time_zone, minor, blocked, consent, suspended_until)
    VALUES (p_scope, p_subject, p_operator, p_max_debit, p_cap_24h, p_cap_month, p_remind_day, p_cooling_off_s,
            p_time_zone, p_minor, p_blocked, p_consent, p_suspended_until)
    ON CONFLICT (scope, subject) DO UPDATE SET updated_by = excluded.updated_by, updated_at = now(),
        max_debit = excluded.max_debit, cap_24h = excluded.cap_24h, cap_month = excluded.cap_month,
        remind_day = excluded.remind_day, cooling_off_s = excluded.cooling_off_s, time_zone = excluded.time_zone,
        minor = excluded.minor, blocked = excluded.blocked, consent = excluded.consent,
        suspended_until = excluded.suspended_until
    RETURNING x.updated_at INTO at;
    INSERT INTO spend_policy_history (scope, subject, changed_by, old, new)
    VALUES (p_scope, p_subject, p_operator, old, p_new);
    RETURN at;
END
$$;

-- Store.ClearPolicy's transaction: false when there is no policy here.
CREATE FUNCTION giftd_clear_policy(p_scope text, p_subject text, p_operator text)
    RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    old jsonb;
BEGIN
    PERFORM 1 FROM spend_policies AS x WHERE x.scope = p_scope AND x.subject = p_subject FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    old := (SELECT h.new FROM spend_policy_history AS h WHERE h.scope = p_scope AND h.subject = p_subject
            ORDER BY h.id DESC LIMIT 1);
    DELETE FROM spend_policies AS x WHERE x.scope = p_scope AND x.subject = p_subject;
    INSERT INTO spend_policy_history (scope, subject, changed_by, old, new) VALUES (p_scope, p_subject, p_operator, old, NULL);
    RETURN true;
END
$$;

-- A receiver's period (partition migration 5) with the claw-back legs: a
-- cross-partition reversal's take-back is its claw-back on the receiver's
-- partition (from the earnings, and owed), not the sender's partition's
-- reversal leg, which its clawback_in offsets; so the sums are one
-- server's.
CREATE OR REPLACE FUNCTION giftd_receiver_period(p_receiver_id text, p_from timestamptz, p_to timestamptz)
    RETURNS TABLE (gifts bigint, gold bigint, earned bigint, taken bigint, shortfall bigint, recovered bigint, paid bigint)
    LANGUAGE sql STABLE AS $$
    SELECT g.n, g.gold, g.earned, a.taken, a.shortfall, a.recovered, a.paid FROM
        (SELECT count(*) AS n, coalesce(sum(x.gold), 0)::bigint AS gold, coalesce(sum(x.earnings), 0)::bigint AS earned
         FROM gift_entries x WHERE x.receiver_id = p_receiver_id AND x.created_at >= p_from AND x.created_at < p_to) AS g,
        (SELECT coalesce(-sum(y.amount) FILTER (WHERE y.account = 'earnings' AND y.kind IN ('reversal', 'clawback_in', 'clawback')), 0)::bigint AS taken,
            coalesce(sum(y.amount) FILTER (WHERE y.kind = 'shortfall' OR (y.account = 'receivable' AND y.kind = 'clawback')), 0)::bigint AS shortfall,
            coalesce(-sum(y.amount) FILTER (WHERE y.account = 'earnings' AND y.kind = 'recovery'), 0)::bigint AS recovered,
            coalesce(-sum(y.amount) FILTER (WHERE y.kind = 'payout'), 0)::bigint AS paid
         FROM account_entries y WHERE y.receiver_id = p_receiver_id AND y.created_at >= p_from AND y.created_at < p_to) AS a;
$$;
