-- The credit consumer cheaper per credit, and its plans independent of the
-- tables' size when they were made (docs/scale-out.md#the-credit-consumer-per-credit).
--
-- giftd_credit_events: what a consumer's step reads of the events, in one
-- statement: the credits and the reversals' claw-backs together, the
-- placement of each receiver left to giftd (giftd_placement is a SQL
-- function that PostgreSQL cannot inline, convert_to being STABLE: called
-- once per event it was most of the read's cost).
--
-- giftd_credits_in and giftd_credit_out keep migration 10's answers and rows;
-- what changes is how they look rows up. Migration 10's generic plans, made
-- on a new partition while account_entries and earnings_accounts held a few
-- rows, read every transfer_in leg (by the key's prefix, twice per call)
-- and every earnings account (a sequential scan) until the first ANALYZE.
-- Here each credit's applied leg is looked up by its exact key in a
-- subquery planned alone (OFFSET 0: a probe of account_entries_key per
-- credit, whatever the statistics), the accounts by receiver_id = ANY with
-- no join (one look-up each), and
-- the functions run with enable_seqscan off (every table they read, they
-- read by a key) and jit off (the cost enable_seqscan adds to a table read
-- whole, credit_cursor or the identity, would have them JIT-compiled: 5-60
-- ms per call).

CREATE FUNCTION giftd_credit_events(p_after bigint, p_upto bigint, p_limit int)
    RETURNS TABLE (event_position bigint, clawback boolean, receiver_id text, amount bigint, created_at timestamptz,
                   partition int, partitions int)
    LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off AS $$
BEGIN
    -- After p_after up to p_upto, in position order, at most p_limit: each
    -- settled gift.debited with earnings, whatever its receiver's placement
    -- (a credit when giftd_placement(receiver_id) & (partitions - 1) <>
    -- partition, as giftd_credits_after decides), and each debit.reversed
    -- with a claw-back (as giftd_clawbacks_after); with this partition's
    -- identity on each row (NULL if it has none). PL/pgSQL, so that its
    -- plan is made once per connection, not at every call.
    RETURN QUERY
    SELECT e.position, e.type = 'debit.reversed',
           CASE e.type WHEN 'gift.debited' THEN e.data->>'receiver_id' ELSE e.data->'gift'->>'receiver_id' END,
           CASE e.type WHEN 'gift.debited' THEN (e.data->>'earnings')::bigint ELSE (e.data->'gift'->>'clawback')::bigint END,
           e.created_at, i.partition, i.partitions
    FROM events AS e LEFT JOIN giftd_partition_identity AS i ON true
    WHERE e.position > p_after AND e.position <= p_upto
      AND ((e.type = 'gift.debited' AND (e.data->>'settled')::boolean AND (e.data->>'earnings')::bigint > 0)
           OR (e.type = 'debit.reversed' AND coalesce((e.data->'gift'->>'clawback')::bigint, 0) > 0))
    ORDER BY e.position
    LIMIT p_limit;
END
$$;

CREATE OR REPLACE FUNCTION giftd_credits_in(p_source int, p_position bigint[], p_receiver text[], p_amount bigint[])
    RETURNS int LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off AS $$
DECLARE
    me      record;
    applied int;
    bad     text;
BEGIN
    SELECT i.partition, i.partitions INTO me FROM giftd_partition_identity AS i;
    IF NOT FOUND OR EXISTS (SELECT 1 FROM (SELECT DISTINCT r FROM unnest(p_receiver) AS r) AS d
                            WHERE giftd_placement(d.r) & (me.partitions - 1) <> me.partition) THEN
        RAISE EXCEPTION 'giftd: credits from partition % for receivers placed on another partition than %', p_source, me.partition
            USING ERRCODE = 'GD001';
    END IF;
    -- The batch's credits, once each, with the leg each had applied before
    -- (if any), read by its exact key; those without one are applied: each
    -- receiver's account credited with their sum, in receiver order; each
    -- entry's balance_after its account's after the credits before it (by
    -- position). The legs go in by a plain INSERT: a key met (a rival's leg
    -- committed after this statement's snapshot, two receivers or amounts
    -- for one credit in the batch) fails the batch whole.
    WITH t AS (
        SELECT DISTINCT t.pos, t.rcv, t.amt, p_source || ':' || t.pos AS k
        FROM unnest(p_position, p_receiver, p_amount) AS t (pos, rcv, amt)
    ), x AS (
        SELECT t.pos, t.rcv, t.amt, t.k, l.ref IS NOT NULL AS before,
               l.ref IS NOT NULL AND (l.receiver_id IS DISTINCT FROM t.rcv OR l.amount IS DISTINCT FROM t.amt) AS other
        FROM t LEFT JOIN LATERAL (
            SELECT y.ref, y.receiver_id, y.amount FROM account_entries AS y
            WHERE y.account = 'earnings' AND y.kind = 'transfer_in' AND y.ref = t.k
            OFFSET 0) AS l ON true
    ), c AS (
        SELECT x.pos, x.rcv, x.amt, x.k FROM x WHERE NOT x.before
    ), a AS (
        INSERT INTO earnings_accounts AS a (receiver_id, balance)
        SELECT c.rcv, sum(c.amt)::bigint FROM c GROUP BY c.rcv ORDER BY c.rcv
        ON CONFLICT (receiver_id) DO UPDATE SET balance = a.balance + excluded.balance, updated_at = now()
        RETURNING a.receiver_id, a.balance
    ), e AS (
        INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
        SELECT 'earnings', c.rcv, 'transfer_in', c.amt,
               a.balance - coalesce(sum(c.amt) OVER (PARTITION BY c.rcv ORDER BY c.pos
                                                     ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), 0),
               c.k, jsonb_build_object('source_partition', p_source, 'position', c.pos)
        FROM c JOIN a ON a.receiver_id = c.rcv
        ORDER BY c.rcv, c.pos
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM e), (SELECT x.k FROM x WHERE x.other ORDER BY x.pos LIMIT 1) INTO applied, bad;
    -- A credit given for another receiver or amount than its leg applied
    -- before is refused, and with it the batch.
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'credit %: applied before for another receiver or amount', bad
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN applied;
END
$$;

-- giftd_credit_out may renew the lease with the cursor (p_lease seconds from
-- now; NULL: not), so that a consumer that holds it need not lease it at
-- every step: one write transaction fewer per step.
DROP FUNCTION giftd_credit_out(text, bigint, bigint, bigint[], text[], bigint[]);
CREATE FUNCTION giftd_credit_out(p_owner text, p_from bigint, p_upto bigint,
                                 p_position bigint[], p_receiver text[], p_amount bigint[],
                                 p_lease double precision DEFAULT NULL)
    RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off AS $$
DECLARE
    cur    record;
    me     int;
    locked int;
    miss   record;
    rcvs   text[];
    sums   bigint[];
BEGIN
    SELECT * INTO cur FROM credit_cursor FOR UPDATE;
    IF cur.lease_owner IS DISTINCT FROM p_owner OR cur.lease_until < now() THEN
        RAISE EXCEPTION 'credit consumer %: lease lost', p_owner USING ERRCODE = 'GD002';
    END IF;
    IF cur.position <> p_from THEN
        RAISE EXCEPTION 'credit consumer %: cursor at %, not %', p_owner, cur.position, p_from USING ERRCODE = 'GD002';
    END IF;
    SELECT partition INTO me FROM giftd_partition_identity;
    -- The transit accounts, locked in receiver order (LockRows runs above
    -- the sort), the order debits take earnings accounts in.
    SELECT count(*) INTO locked FROM (
        SELECT 1 FROM earnings_accounts AS a WHERE a.receiver_id = ANY (p_receiver)
        ORDER BY a.receiver_id FOR UPDATE) AS l;
    IF locked < (SELECT count(DISTINCT r) FROM unnest(p_receiver) AS r) THEN
        SELECT t.pos, t.rcv INTO miss FROM unnest(p_position, p_receiver) AS t (pos, rcv)
        WHERE NOT EXISTS (SELECT 1 FROM earnings_accounts AS a WHERE a.receiver_id = t.rcv)
        ORDER BY t.rcv, t.pos LIMIT 1;
        RAISE EXCEPTION 'credit %:%: no transit account for %', me, miss.pos, miss.rcv;
    END IF;
    -- Each account debited with its credits' sum (its CHECK refuses a
    -- balance below zero), read by receiver_id = ANY and no join: the
    -- batch's accounts only, one look-up each, whatever the statistics;
    -- each entry's balance_after its account's after the credits before it
    -- (by position); a leg applied before meets its key and fails the batch
    -- whole.
    SELECT array_agg(s.rcv ORDER BY s.rcv), array_agg(s.amt ORDER BY s.rcv) INTO rcvs, sums
    FROM (SELECT t.rcv, sum(t.amt)::bigint AS amt FROM unnest(p_receiver, p_amount) AS t (rcv, amt) GROUP BY t.rcv) AS s;
    WITH a AS (
        UPDATE earnings_accounts AS a SET balance = a.balance - sums[array_position(rcvs, a.receiver_id)], updated_at = now()
        WHERE a.receiver_id = ANY (rcvs)
        RETURNING a.receiver_id, a.balance
    )
    INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
    SELECT 'earnings', c.rcv, 'transfer_out', -c.amt,
           a.balance + coalesce(sum(c.amt) OVER (PARTITION BY c.rcv ORDER BY c.pos
                                                 ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), 0),
           me || ':' || c.pos, jsonb_build_object('position', c.pos)
    FROM unnest(p_position, p_receiver, p_amount) AS c (pos, rcv, amt) JOIN a ON a.receiver_id = c.rcv
    ORDER BY c.rcv, c.pos;
    UPDATE credit_cursor SET position = p_upto, updated_at = now(),
        lease_until = coalesce(now() + make_interval(secs => p_lease), lease_until);
END
$$;
