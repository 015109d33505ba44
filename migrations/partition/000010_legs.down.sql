-- Migration 4's bodies of the two legs, as they were (one credit at a time,
-- no SET plan_cache_mode: CREATE OR REPLACE resets the function's settings).
DROP FUNCTION giftd_credit_release(text);

CREATE OR REPLACE FUNCTION giftd_credits_in(p_source int, p_position bigint[], p_receiver text[], p_amount bigint[])
    RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    me      record;
    c       record;
    prev    record;
    bal     bigint;
    applied int := 0;
BEGIN
    SELECT i.partition, i.partitions INTO me FROM giftd_partition_identity AS i;
    IF NOT FOUND OR EXISTS (SELECT 1 FROM unnest(p_receiver) AS r
                            WHERE giftd_placement(r) & (me.partitions - 1) <> me.partition) THEN
        RAISE EXCEPTION 'giftd: credits from partition % for receivers placed on another partition than %', p_source, me.partition
            USING ERRCODE = 'GD001';
    END IF;
    FOR c IN SELECT t.pos, t.rcv, t.amt, p_source || ':' || t.pos AS k
             FROM unnest(p_position, p_receiver, p_amount) AS t (pos, rcv, amt) ORDER BY t.rcv, t.pos LOOP
        SELECT x.receiver_id, x.amount INTO prev FROM account_entries AS x
        WHERE x.account = 'earnings' AND x.kind = 'transfer_in' AND x.ref = c.k;
        IF FOUND THEN
            IF prev.receiver_id IS DISTINCT FROM c.rcv OR prev.amount IS DISTINCT FROM c.amt THEN
                RAISE EXCEPTION 'credit %: applied before for another receiver or amount', c.k
                    USING ERRCODE = 'unique_violation';
            END IF;
            CONTINUE;
        END IF;
        INSERT INTO earnings_accounts AS a (receiver_id, balance) VALUES (c.rcv, c.amt)
        ON CONFLICT (receiver_id) DO UPDATE SET balance = a.balance + excluded.balance, updated_at = now()
        RETURNING a.balance INTO bal;
        INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
        VALUES ('earnings', c.rcv, 'transfer_in', c.amt, bal, c.k,
                jsonb_build_object('source_partition', p_source, 'position', c.pos));
        applied := applied + 1;
    END LOOP;
    RETURN applied;
END
$$;

CREATE OR REPLACE FUNCTION giftd_credit_out(p_owner text, p_from bigint, p_upto bigint,
                                 p_position bigint[], p_receiver text[], p_amount bigint[])
    RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cur record;
    c   record;
    bal bigint;
    me  int;
BEGIN
    SELECT * INTO cur FROM credit_cursor FOR UPDATE;
    IF cur.lease_owner IS DISTINCT FROM p_owner OR cur.lease_until < now() THEN
        RAISE EXCEPTION 'credit consumer %: lease lost', p_owner USING ERRCODE = 'GD002';
    END IF;
    IF cur.position <> p_from THEN
        RAISE EXCEPTION 'credit consumer %: cursor at %, not %', p_owner, cur.position, p_from USING ERRCODE = 'GD002';
    END IF;
    SELECT partition INTO me FROM giftd_partition_identity;
    FOR c IN SELECT t.pos, t.rcv, t.amt FROM unnest(p_position, p_receiver, p_amount) AS t (pos, rcv, amt)
             ORDER BY t.rcv, t.pos LOOP
        UPDATE earnings_accounts AS a SET balance = a.balance - c.amt, updated_at = now()
        WHERE a.receiver_id = c.rcv RETURNING a.balance INTO bal;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'credit %:%: no transit account for %', me, c.pos, c.rcv;
        END IF;
        INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
        VALUES ('earnings', c.rcv, 'transfer_out', -c.amt, bal, me || ':' || c.pos,
                jsonb_build_object('position', c.pos));
    END LOOP;
    UPDATE credit_cursor SET position = p_upto, updated_at = now();
END
$$;
