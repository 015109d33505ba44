-- Migration 10's bodies of the two legs, as they were (CREATE OR REPLACE resets
-- the functions' settings to those given here).
DROP FUNCTION giftd_credit_events(bigint, bigint, int);
DROP FUNCTION giftd_credit_out(text, bigint, bigint, bigint[], text[], bigint[], double precision);

CREATE OR REPLACE FUNCTION giftd_credits_in(p_source int, p_position bigint[], p_receiver text[], p_amount bigint[])
    RETURNS int LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    me      record;
    bad     text;
    applied int;
BEGIN
    SELECT i.partition, i.partitions INTO me FROM giftd_partition_identity AS i;
    IF NOT FOUND OR EXISTS (SELECT 1 FROM unnest(p_receiver) AS r
                            WHERE giftd_placement(r) & (me.partitions - 1) <> me.partition) THEN
        RAISE EXCEPTION 'giftd: credits from partition % for receivers placed on another partition than %', p_source, me.partition
            USING ERRCODE = 'GD001';
    END IF;
    -- The credits not applied before, once each; each receiver's account
    -- credited with their sum, in receiver order; each entry's balance_after
    -- its account's after the credits before it (by position).
    WITH c AS (
        SELECT DISTINCT t.pos, t.rcv, t.amt
        FROM unnest(p_position, p_receiver, p_amount) AS t (pos, rcv, amt)
        WHERE NOT EXISTS (SELECT 1 FROM account_entries AS x
                          WHERE x.account = 'earnings' AND x.kind = 'transfer_in' AND x.ref = p_source || ':' || t.pos)
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
               p_source || ':' || c.pos, jsonb_build_object('source_partition', p_source, 'position', c.pos)
        FROM c JOIN a ON a.receiver_id = c.rcv
        ORDER BY c.rcv, c.pos
        RETURNING 1
    )
    SELECT count(*) INTO applied FROM e;
    -- A credit given for another receiver or amount than its leg applied
    -- before (read after the insert, so that a rival's leg committed
    -- meanwhile is seen too) is refused; two receivers or amounts for one
    -- credit in the batch met the key above.
    SELECT p_source || ':' || t.pos INTO bad
    FROM unnest(p_position, p_receiver, p_amount) AS t (pos, rcv, amt)
    JOIN account_entries AS x ON x.account = 'earnings' AND x.kind = 'transfer_in' AND x.ref = p_source || ':' || t.pos
    WHERE x.receiver_id IS DISTINCT FROM t.rcv OR x.amount IS DISTINCT FROM t.amt
    ORDER BY t.pos
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'credit %: applied before for another receiver or amount', bad
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN applied;
END
$$;

CREATE FUNCTION giftd_credit_out(p_owner text, p_from bigint, p_upto bigint,
                                            p_position bigint[], p_receiver text[], p_amount bigint[])
    RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    cur    record;
    me     int;
    locked int;
    miss   record;
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
    -- balance below zero); each entry's balance_after its account's after
    -- the credits before it (by position); a leg applied before meets its
    -- key and fails the batch whole.
    WITH c AS (
        SELECT t.pos, t.rcv, t.amt FROM unnest(p_position, p_receiver, p_amount) AS t (pos, rcv, amt)
    ), a AS (
        UPDATE earnings_accounts AS a SET balance = a.balance - s.amt, updated_at = now()
        FROM (SELECT c.rcv, sum(c.amt)::bigint AS amt FROM c GROUP BY c.rcv) AS s
        WHERE a.receiver_id = s.rcv
        RETURNING a.receiver_id, a.balance
    )
    INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
    SELECT 'earnings', c.rcv, 'transfer_out', -c.amt,
           a.balance + coalesce(sum(c.amt) OVER (PARTITION BY c.rcv ORDER BY c.pos
                                                 ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), 0),
           me || ':' || c.pos, jsonb_build_object('position', c.pos)
    FROM c JOIN a ON a.receiver_id = c.rcv
    ORDER BY c.rcv, c.pos;
    UPDATE credit_cursor SET position = p_upto, updated_at = now();
END
$$;
