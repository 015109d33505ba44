-- giftd_reshard_forget as partition migration 12 wrote it.
CREATE OR REPLACE FUNCTION giftd_reshard_forget() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    me      record;
    wallets bigint;
BEGIN
    SELECT i.partition, i.partitions INTO STRICT me FROM giftd_partition_identity AS i;
    IF (EXISTS (SELECT 1 FROM gift_entries) OR EXISTS (SELECT 1 FROM account_entries)
        OR EXISTS (SELECT 1 FROM earnings_accounts))
       AND EXISTS (SELECT 1 FROM giftd_reshard_fence AS f WHERE f.partitions = me.partitions)
       AND NOT EXISTS (SELECT 1 FROM giftd_reshard_split AS s WHERE s.partitions = me.partitions) THEN
        RAISE EXCEPTION 'giftd: partition % holds gift economy rows not split at % partitions', me.partition, me.partitions
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
