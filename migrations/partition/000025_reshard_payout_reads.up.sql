-- giftd_payout holds, between a reshard's switch and its forget, only the
-- young gifts and transfer_in legs the partition owns under its claim, as
-- the reads of partition migration 22 read
-- (docs/scale-out.md#the-earnings-hold-across-a-reshard). Until
-- giftd_reshard_forget old partition i still holds the gifts under the
-- pre-split's cut that it gave away to i + n; a receiver at home on i had
-- their young earnings of those gifts held twice: by the gifts, and by the
-- held resharding leg ('reshard-held:…') that brought those earnings home.
-- The payout paid less than the earnings account's payable (never more).
-- Now it pays what it pays after the forget.
--
-- Outside the window the filter "(w_partition IS NULL OR …)" folds to true
-- when the query is planned with the call's values (force_custom_plan, as
-- the reads): the sums are planned as before, plus one look-up of the
-- window (giftd_reshard_read_claim).
--
-- And giftd_earnings_parts refuses, retryably, to read a receiver's earnings
-- account before the switch once the claims moved (below).
CREATE OR REPLACE FUNCTION giftd_payout(p_receiver text, p_amount bigint, p_key text, p_note text, p_hold interval)
    RETURNS TABLE (status text, receiver_id text, amount bigint, recovered bigint, balance bigint,
                   entry_id bigint, payable bigint)
    LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    w_partition  integer;
    w_partitions integer;
    w_gift_cut   bigint;
    w_entry_cut  bigint;
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
    SELECT c.partition, c.partitions, c.gift_cut, c.entry_cut INTO w_partition, w_partitions, w_gift_cut, w_entry_cut
    FROM giftd_reshard_read_claim() AS c;
    held := least(a.balance,
        (SELECT coalesce(sum(g.earnings), 0) FROM gift_entries AS g
         WHERE g.receiver_id = p_receiver AND p_hold > '0' AND g.created_at > now() - p_hold
           AND (w_partition IS NULL OR giftd_reshard_keeps_gift(g.id, g.sender_id, w_partition, w_partitions, w_gift_cut)))
      + (SELECT coalesce(sum(t.amount), 0) FROM account_entries AS t
         WHERE t.receiver_id = p_receiver AND t.account = 'earnings'
           AND (t.kind = 'transfer_in' OR (t.kind = 'reshard_in' AND t.ref LIKE 'reshard-held:%'))
           AND p_hold > '0' AND t.created_at > now() - p_hold
           AND (w_partition IS NULL OR giftd_reshard_keeps_entry(t, w_partition, w_partitions, w_entry_cut))));
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

-- Partition migration 22's part of a receiver's earnings account, refused
-- (GD003, retryable: giftd answers 503 reshard_paused) on a partition whose
-- claim a reshard has moved to 2n before the proxy's switch is recorded
-- (its fence row of that count still there, no giftd_reshard_switched row
-- of it). There the proxy still routes over the n old partitions, and a
-- moved receiver's account read wrong: counted twice until the split (their
-- old partition's account read as a transit account by the new claim, then
-- again as their home by the proxy's old count), 0 after it (the split
-- moved it to the new partition, not routed yet). The window is the end of
-- the pause (the economy's split and the proxy's switch), or a run stopped
-- there: giftd reshard run again switches at once.
CREATE OR REPLACE FUNCTION giftd_earnings_parts(p_receiver_id text, p_hold interval)
    RETURNS TABLE (partition int, home boolean, balance bigint, owed bigint, maturing bigint, updated_at timestamptz,
                   pending_refs text[], pending_amounts bigint[])
    LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan AS $$
#variable_conflict use_column
DECLARE
    w_partition  integer;
    w_partitions integer;
    w_gift_cut   bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM giftd_partition_identity AS i
               WHERE EXISTS (SELECT 1 FROM giftd_reshard_fence AS f WHERE f.partitions = i.partitions)
                 AND NOT EXISTS (SELECT 1 FROM giftd_reshard_switched AS w WHERE w.partitions = i.partitions)) THEN
        RAISE EXCEPTION 'giftd: a reshard has moved this partition''s claim and the proxy has not switched yet: earnings accounts are not read until it does; retry'
            USING ERRCODE = 'GD003', DETAIL = 'an earnings account read during a reshard''s pause';
    END IF;
    SELECT c.partition, c.partitions, c.gift_cut INTO w_partition, w_partitions, w_gift_cut
    FROM giftd_reshard_read_claim() AS c;
    RETURN QUERY
    SELECT i.partition, giftd_placement(p_receiver_id) & (i.partitions - 1) = i.partition, a.balance, a.owed,
        (SELECT coalesce(sum(g.earnings), 0) FROM gift_entries g
         WHERE g.receiver_id = p_receiver_id AND p_hold > '0' AND g.created_at > now() - p_hold
           AND (w_partition IS NULL OR giftd_reshard_keeps_gift(g.id, g.sender_id, w_partition, w_partitions, w_gift_cut)))::bigint,
        a.updated_at,
        coalesce(t.refs, '{}'), coalesce(t.amounts, '{}')
    FROM giftd_partition_identity AS i
    LEFT JOIN earnings_accounts AS a ON a.receiver_id = p_receiver_id
    LEFT JOIN LATERAL (
        SELECT array_agg(i.partition || ':' || e.position ORDER BY e.position) AS refs,
               array_agg((e.data->>'earnings')::bigint ORDER BY e.position) AS amounts
        FROM events AS e
        WHERE e.position > (SELECT c.position FROM credit_cursor AS c) AND e.type = 'gift.debited'
          AND e.data->>'receiver_id' = p_receiver_id
          AND (e.data->>'settled')::boolean AND (e.data->>'earnings')::bigint > 0
          AND giftd_placement(p_receiver_id) & (i.partitions - 1) <> i.partition
    ) AS t ON true;
END
$$;
