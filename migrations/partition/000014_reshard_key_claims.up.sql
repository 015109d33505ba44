-- Operators' key claims (partition migration 13) move with their key in a
-- reshard (docs/scale-out.md#keys-across-partitions): giftd reshard copies
-- giftd_key_claims whole from partition i to i + n with the other tables,
-- claims of a moving key are refused behind the fence (giftd_claim_key
-- checks its key as giftd_check_users checks a user), and here each side
-- forgets the claims of the keys it no longer owns. Without it a key
-- claimed before a reshard was free again on its new partition, and a
-- reuse of it for a user of another partition ran.
--
-- giftd_reshard_forget as partition migration 12 wrote it, with the claims.
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
    DELETE FROM giftd_key_claims WHERE giftd_placement(key) & (me.partitions - 1) <> me.partition;
    DELETE FROM giftd_reshard_fence WHERE partitions <= me.partitions;
    DELETE FROM giftd_reshard_marks;
    RETURN wallets;
END
$$;
