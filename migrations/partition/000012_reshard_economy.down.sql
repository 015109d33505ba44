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
