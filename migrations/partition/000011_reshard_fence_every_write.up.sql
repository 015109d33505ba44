-- The fence of partition migration 8 is checked by giftd_check_users only,
-- so by giftd_debit_gifts_on and giftd_topup. Every other write of a user's
-- rows (a reversal, a payout, a policy counter, a LinkV wallet move, plain
-- SQL) would pass it, land on the partition the user is leaving after the
-- copy was cut, and be forgotten by giftd_reshard_forget. This trigger, on
-- each table giftd reshard copies that holds a user's rows, refuses the row
-- of a fenced user with the fence's SQLSTATE GD003, whatever writes it.
--
-- It is created DISABLED: outside a reshard a write pays nothing for it.
-- giftd reshard enables it in the fence's own transaction (ALTER TABLE …
-- ENABLE TRIGGER takes SHARE ROW EXCLUSIVE, which waits for every write in
-- flight on the table and holds back new ones until the fence commits: the
-- same argument as the fence's lock, for writes that never take it), and
-- disables it again when the fence is lifted or forgotten.
--
-- It reads the fence without locking its table: the trigger is enabled in
-- the transaction that inserts the fence row, so a write that sees it
-- enabled runs after that commit, and reads the row with a snapshot taken
-- after it (every giftd write runs READ COMMITTED; each statement of this
-- function takes its own snapshot). Taking ACCESS SHARE on the fence table
-- here, after the row's table lock, could deadlock with a fence run again.
-- Rows written as replication does (session_replication_role = replica:
-- giftd_reshard_forget, the copy's apply) never fire it.
--
-- AFTER, not BEFORE: a BEFORE ROW trigger on wallets takes part in how an
-- UPDATE that met a concurrent one re-reads its row (the trigger locks and
-- fetches it first). While it was BEFORE, a resharding test under load
-- once saw debits' entries written and their wallets not decremented
-- (balances one coin above their entries on two partitions); that the
-- trigger caused it is not proven (not reproduced since), but an AFTER ROW
-- trigger runs once the row is written, at the statement's end, and cannot
-- change which rows an UPDATE writes; its exception still aborts it.
CREATE FUNCTION giftd_reshard_fenced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    fence integer;
    me    integer;
    recs  jsonb[] := '{}';
BEGIN
    SELECT max(f.partitions) INTO fence FROM giftd_reshard_fence AS f;
    IF fence IS NOT NULL THEN
        SELECT i.partition INTO me FROM giftd_partition_identity AS i;
        IF TG_OP <> 'INSERT' THEN
            recs := recs || to_jsonb(OLD);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            recs := recs || to_jsonb(NEW);
        END IF;
        -- events name their user in data; every other table in user_id.
        IF EXISTS (SELECT 1 FROM unnest(recs) AS r
                   WHERE giftd_placement(CASE WHEN TG_TABLE_NAME = 'events' THEN r->'data'->>'user_id'
                                              ELSE r->>'user_id' END) & (fence - 1) <> me) THEN
            RAISE EXCEPTION 'giftd: partition % is handing users over to the partitions of %: retry', me, fence
                USING ERRCODE = 'GD003', DETAIL = format('a write to %s of a fenced user', TG_TABLE_NAME);
        END IF;
    END IF;
    RETURN NULL; -- an AFTER trigger's result is ignored
END
$$;

CREATE TRIGGER giftd_reshard_fence AFTER INSERT OR UPDATE OR DELETE ON wallets
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_fenced();
CREATE TRIGGER giftd_reshard_fence AFTER INSERT OR UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_fenced();
CREATE TRIGGER giftd_reshard_fence AFTER INSERT OR UPDATE OR DELETE ON debit_requests
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_fenced();
CREATE TRIGGER giftd_reshard_fence AFTER INSERT OR UPDATE OR DELETE ON spend_windows
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_fenced();
CREATE TRIGGER giftd_reshard_fence AFTER INSERT OR UPDATE OR DELETE ON spend_reminders
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_fenced();
CREATE TRIGGER giftd_reshard_fence AFTER INSERT OR UPDATE OR DELETE ON linkv_accounts
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_fenced();
CREATE TRIGGER giftd_reshard_fence AFTER INSERT OR UPDATE OR DELETE ON linkv_wallet_moves
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_fenced();
CREATE TRIGGER giftd_reshard_fence AFTER INSERT OR UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_fenced();

ALTER TABLE wallets DISABLE TRIGGER giftd_reshard_fence;
ALTER TABLE ledger_entries DISABLE TRIGGER giftd_reshard_fence;
ALTER TABLE debit_requests DISABLE TRIGGER giftd_reshard_fence;
ALTER TABLE spend_windows DISABLE TRIGGER giftd_reshard_fence;
ALTER TABLE spend_reminders DISABLE TRIGGER giftd_reshard_fence;
ALTER TABLE linkv_accounts DISABLE TRIGGER giftd_reshard_fence;
ALTER TABLE linkv_wallet_moves DISABLE TRIGGER giftd_reshard_fence;
ALTER TABLE events DISABLE TRIGGER giftd_reshard_fence;
