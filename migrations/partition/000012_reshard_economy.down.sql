-- Reverts partition migration 12: giftd_reshard_forget as migration 8 wrote
-- it, no split, no freeze, no floor, and account_entries' checks as
-- migration 6 wrote them (refused while a resharding leg is kept).
DROP FUNCTION giftd_reshard_split(integer);
DROP TRIGGER giftd_reshard_freeze ON gift_entries;
DROP TRIGGER giftd_reshard_freeze ON account_entries;
DROP FUNCTION giftd_reshard_frozen();
DROP TABLE giftd_reshard_split;
ALTER TABLE credit_cursor DROP COLUMN floor;

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

CREATE OR REPLACE FUNCTION giftd_reshard_forget() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    me      record;
    wallets bigint;
BEGIN
    SELECT i.partition, i.partitions INTO STRICT me FROM giftd_partition_identity AS i;
    IF EXISTS (SELECT 1 FROM gift_entries) OR EXISTS (SELECT 1 FROM account_entries)
       OR EXISTS (SELECT 1 FROM earnings_accounts) THEN
        RAISE EXCEPTION 'giftd: partition % holds gift economy rows, which resharding does not split', me.partition
            USING ERRCODE = 'GD004';
    END IF;
    SET LOCAL session_replication_role = replica;
    DELETE FROM wallets WHERE giftd_placement(user_id) & (me.partitions - 1) <> me.partition;
    GET DIAGNOSTICS wallets = ROW_COUNT;
    DELETE FROM ledger_entries WHERE giftd_placement(user_id) & (me.partitions - 1) <> me.partition;
    DELETE FROM debit_requests WHERE giftd_placement(user_id) & (me.partitions - 1) <> me.partition;
    DELETE FROM spend_windows WHERE giftd_placement(user_id) & (me.partitions - 1) <> me.partition;
    DELETE FROM spend_reminders WHERE giftd_placement(user_id) & (me.partitions - 1) <> me.partition;
    DELETE FROM linkv_accounts WHERE giftd_placement(user_id) & (me.partitions - 1) <> me.partition;
    DELETE FROM linkv_wallet_moves WHERE giftd_placement(user_id) & (me.partitions - 1) <> me.partition;
    DELETE FROM events WHERE giftd_placement(data->>'user_id') & (me.partitions - 1) <> me.partition;
    DELETE FROM giftd_reshard_fence WHERE partitions <= me.partitions;
    DELETE FROM giftd_reshard_marks;
    RETURN wallets;
END
$$;

CREATE OR REPLACE FUNCTION giftd_earnings_ledger(p_receiver_id text, p_at timestamptz, p_src text, p_partition int,
                                      p_id bigint, p_limit int)
    RETURNS TABLE (partition int, created_at timestamptz, src text, id bigint, kind text, account text, amount bigint,
                   balance_after bigint, platform text, app_id text, request_id text, sender_id text, room_id text,
                   gift_id text, gold bigint, share_bp int, gift_entry bigint, ref text)
    LANGUAGE sql STABLE AS $$
    SELECT i.partition, e.* FROM giftd_partition_identity AS i,
    LATERAL (SELECT CASE WHEN i.partition < p_partition THEN 9223372036854775807
                         WHEN i.partition = p_partition THEN p_id ELSE 0 END AS id) AS b,
    LATERAL (
        SELECT * FROM (
            (SELECT g.created_at, 'g'::text AS src, g.id, 'gift'::text AS kind, 'earnings'::text AS account,
                g.earnings AS amount, NULL::bigint AS balance_after, g.platform, g.app_id, g.request_id, g.sender_id,
                g.room_id, g.gift_id, g.gold, g.share_bp, g.id AS gift_entry, ''::text AS ref
             FROM gift_entries g
             WHERE g.receiver_id = p_receiver_id AND g.created_at <= p_at
               AND (g.created_at, 'g'::text, g.id) < (p_at, p_src, b.id)
             ORDER BY g.created_at DESC, g.id DESC LIMIT p_limit)
            UNION ALL
            (SELECT a.created_at, 'a', a.id, a.kind, a.account, a.amount, a.balance_after, '', '', '', '', '', '', 0::bigint,
                NULL::int, a.gift_entry, a.ref
             FROM account_entries a
             WHERE a.receiver_id = p_receiver_id AND a.created_at <= p_at
               AND a.kind NOT IN ('transfer_in', 'transfer_out')
               AND (a.created_at, 'a'::text, a.id) < (p_at, p_src, b.id)
             ORDER BY a.created_at DESC, a.id DESC LIMIT p_limit)
        ) AS u
        ORDER BY u.created_at DESC, u.src DESC, u.id DESC
        LIMIT p_limit
    ) AS e;
$$;
