-- Cross-partition credits (docs/scale-out.md#cross-partition-credits): a
-- gift's earnings are credited on the sender's partition by the debit, then
-- moved to the receiver's partition by giftd's credit consumer in two legs,
-- each at most once by (source partition, event position): a transfer_in
-- on the receiver's partition, then a transfer_out on the sender's. Both are
-- account_entries of account earnings with ref '<partition>:<position>',
-- whose unique key (account, kind, ref) applies each leg once.

-- account_entries' kind checks (migration 4, unnamed) with the two legs
-- added; found by their text, whatever PostgreSQL named them. NOT VALID, then
-- validated, so that a large table is read without blocking writes.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT conname FROM pg_constraint
             WHERE conrelid = 'account_entries'::regclass AND contype = 'c'
               AND pg_get_constraintdef(oid) LIKE '%shortfall%' LOOP
        EXECUTE format('ALTER TABLE account_entries DROP CONSTRAINT %I', c.conname);
    END LOOP;
END
$$;
ALTER TABLE account_entries ADD CONSTRAINT account_entries_kind CHECK (kind IN ('reversal', 'shortfall', 'payout',
    'recovery', 'transfer_in', 'transfer_out')) NOT VALID;
ALTER TABLE account_entries ADD CONSTRAINT account_entries_leg CHECK (
    CASE kind WHEN 'shortfall' THEN account = 'receivable' AND amount > 0 AND gift_entry IS NOT NULL
              WHEN 'reversal' THEN account <> 'receivable' AND amount < 0 AND gift_entry IS NOT NULL
              WHEN 'payout' THEN account = 'earnings' AND amount < 0
              WHEN 'transfer_in' THEN account = 'earnings' AND amount > 0 AND gift_entry IS NULL
              WHEN 'transfer_out' THEN account = 'earnings' AND amount < 0 AND gift_entry IS NULL
              ELSE account <> 'house' AND amount < 0 END) NOT VALID;
ALTER TABLE account_entries VALIDATE CONSTRAINT account_entries_kind;
ALTER TABLE account_entries VALIDATE CONSTRAINT account_entries_leg;

-- The credit consumer's place in this partition's events, and its lease:
-- one consumer at a time per source partition.
CREATE TABLE credit_cursor (
    one         boolean     PRIMARY KEY DEFAULT true CHECK (one),
    position    bigint      NOT NULL DEFAULT 0,
    lease_owner text,
    lease_until timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO credit_cursor DEFAULT VALUES;

-- No event past the cursor is deleted (giftd prune, run on a partition as on
-- one database, deletes old events that every webhook endpoint has passed):
-- a credit not moved yet would be lost from the outbox. The deletion of such
-- a row is skipped; prune deletes it once the cursor has passed it.
CREATE FUNCTION giftd_keep_unmoved_credits() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.position > (SELECT c.position FROM credit_cursor AS c) THEN
        RETURN NULL;
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER events_keep_unmoved_credits BEFORE DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION giftd_keep_unmoved_credits();

-- Leases the cursor to p_owner for p_seconds unless another owner holds an
-- unexpired lease; returns the cursor's position, or no row when leased to
-- another.
CREATE FUNCTION giftd_credit_lease(p_owner text, p_seconds double precision)
    RETURNS bigint LANGUAGE sql AS $$
    UPDATE credit_cursor SET lease_owner = p_owner, lease_until = now() + make_interval(secs => p_seconds),
        updated_at = now()
    WHERE lease_owner IS NULL OR lease_owner = p_owner OR lease_until < now()
    RETURNING position;
$$;

-- The credits of this partition's events after p_after up to p_upto: every
-- settled gift.debited with earnings whose receiver is placed on another
-- partition, in position order.
CREATE FUNCTION giftd_credits_after(p_after bigint, p_upto bigint, p_limit int)
    RETURNS TABLE (event_position bigint, receiver_id text, earnings bigint, created_at timestamptz)
    LANGUAGE sql STABLE AS $$
    SELECT e.position, e.data->>'receiver_id', (e.data->>'earnings')::bigint, e.created_at
    FROM events AS e, giftd_partition_identity AS i
    WHERE e.position > p_after AND e.position <= p_upto AND e.type = 'gift.debited'
      AND (e.data->>'settled')::boolean AND (e.data->>'earnings')::bigint > 0
      AND giftd_placement(e.data->>'receiver_id') & (i.partitions - 1) <> i.partition
    ORDER BY e.position
    LIMIT p_limit;
$$;

-- The first leg, on the receiver's partition: p_amount to p_receiver's
-- earnings, once per (p_source, p_position); refused (GD001) on any other
-- partition. A second call with the same
-- pair applies nothing and answers false; with another receiver or amount
-- it is refused (unique_violation on account_entries_key).
CREATE FUNCTION giftd_credit_in(p_source int, p_position bigint, p_receiver text, p_amount bigint)
    RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    k    text := p_source || ':' || p_position;
    bal  bigint;
    prev record;
    me   record;
BEGIN
    SELECT i.partition, i.partitions INTO me FROM giftd_partition_identity AS i;
    IF NOT FOUND OR giftd_placement(p_receiver) & (me.partitions - 1) <> me.partition THEN
        RAISE EXCEPTION 'giftd: credit % for a receiver placed on another partition than %', k, me.partition
            USING ERRCODE = 'GD001';
    END IF;
    BEGIN
        INSERT INTO earnings_accounts AS a (receiver_id, balance) VALUES (p_receiver, p_amount)
        ON CONFLICT (receiver_id) DO UPDATE SET balance = a.balance + excluded.balance, updated_at = now()
        RETURNING a.balance INTO bal;
        INSERT INTO account_entries (account, receiver_id, kind, amount, balance_after, ref, details)
        VALUES ('earnings', p_receiver, 'transfer_in', p_amount, bal, k,
                jsonb_build_object('source_partition', p_source, 'position', p_position));
        RETURN true;
    EXCEPTION WHEN unique_violation THEN
        NULL;
    END;
    SELECT x.receiver_id, x.amount INTO prev FROM account_entries AS x
    WHERE x.account = 'earnings' AND x.kind = 'transfer_in' AND x.ref = k;
    IF prev.receiver_id IS DISTINCT FROM p_receiver OR prev.amount IS DISTINCT FROM p_amount THEN
        RAISE EXCEPTION 'credit %: applied before for another receiver or amount', k
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN false;
END
$$;

-- giftd_credit_in for a batch of credits from p_source, in one transaction:
-- the earnings accounts taken in receiver order (the order debits take
-- them in), a credit applied before skipped (the same receiver and amount)
-- or refused (another), the batch refused whole (GD001) if a receiver is
-- placed on another partition. Returns how many it applied. Two consumers
-- racing on one credit: the second's insert meets the first's key and its
-- batch fails whole, to be read again.
CREATE FUNCTION giftd_credits_in(p_source int, p_position bigint[], p_receiver text[], p_amount bigint[])
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

-- The second leg, on the source partition, for a batch read after p_from:
-- the transfer_out of each credit (its transit account debited, in receiver
-- order, the order debits lock earnings accounts in), and the cursor moved
-- to p_upto, in one transaction, provided p_owner still holds the lease and
-- the cursor is still at p_from. Otherwise nothing is applied.
CREATE FUNCTION giftd_credit_out(p_owner text, p_from bigint, p_upto bigint,
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
