-- The configuration every partition holds (the gift catalogue, rooms'
-- receivers, the spending policies of apps and users, each with its
-- history, and the webhook endpoints) is copied by giftd reshard from old
-- partition i to new partition i + n with the users' rows, until the pause
-- drops the subscription. A change written on an old partition after that
-- (a user's policy through the proxy, RUN ON ALL over the old count; a
-- change made on partition 0 and copied to the partitions a giftd routes
-- over) would reach the old partitions only, and a moved user's debit would
-- meet the older configuration on its new partition
-- (docs/scale-out.md#resharding-n--2n, "configuration changed during a
-- reshard").
--
-- So, from the fence to the switch, this trigger on each configuration
-- table refuses every write with the fence's SQLSTATE GD003 (retry: giftd
-- answers 503 reshard_paused). Whatever was written before the fence
-- reaches i + n by the copy, which the fence row's arrival proves caught
-- up; nothing is written after it: at the switch, i + n holds i's
-- configuration.
--
-- It is created DISABLED, like migration 11's trigger: outside a reshard a
-- write pays nothing for it. giftd reshard enables it on old partition i in
-- the fence's own transaction (ENABLE TRIGGER takes SHARE ROW EXCLUSIVE,
-- which waits for every write of the table in flight, so that it commits
-- before the fence and is copied, and holds back new ones until the fence
-- commits; a debit's read of these tables takes ACCESS SHARE, which does
-- not conflict with it, and never waits for it), on new partition i + n
-- once its subscription is dropped (a giftd that grows onto it at the
-- switch must not write there first), and disables it on every partition
-- right after the switch, when a fence is lifted, and at the forget. A
-- partition's claim does not say whether the proxy has switched (it moves
-- to 2n before the switch), so the trigger's being enabled is what marks
-- the pause; it refuses only while the partition holds a fence row too.
--
-- Writes of a webhook endpoint's delivery state (its cursor, lease,
-- attempts, state) go on: only its configuration (url, description, event
-- types, secrets, enabled) is refused. Rows written as replication does
-- (session_replication_role = replica: the copy's apply) never fire it.
-- It reads the fence without locking it, for the reason migration 11 gives.
CREATE FUNCTION giftd_reshard_config_fenced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    fence integer;
BEGIN
    -- (PL/pgSQL does not promise to stop at the first false of an AND:
    -- OLD and NEW have these columns on webhook_endpoints only.)
    IF TG_TABLE_NAME = 'webhook_endpoints' THEN
        IF TG_OP = 'UPDATE' THEN
            IF (NEW.url, NEW.description, NEW.event_types, NEW.secrets, NEW.enabled)
               IS NOT DISTINCT FROM (OLD.url, OLD.description, OLD.event_types, OLD.secrets, OLD.enabled) THEN
                RETURN NULL;
            END IF;
        END IF;
    END IF;
    SELECT max(f.partitions) INTO fence FROM giftd_reshard_fence AS f;
    IF fence IS NOT NULL THEN
        RAISE EXCEPTION 'giftd: a reshard to % partitions is in its pause: configuration changes are refused until the proxy switches; retry', fence
            USING ERRCODE = 'GD003', DETAIL = format('a write to %s during a reshard''s pause', TG_TABLE_NAME);
    END IF;
    RETURN NULL; -- an AFTER trigger's result is ignored
END
$$;

CREATE TRIGGER giftd_reshard_config_fence AFTER INSERT OR UPDATE OR DELETE ON gift_catalogue
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_config_fenced();
CREATE TRIGGER giftd_reshard_config_fence AFTER INSERT OR UPDATE OR DELETE ON gift_catalogue_history
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_config_fenced();
CREATE TRIGGER giftd_reshard_config_fence AFTER INSERT OR UPDATE OR DELETE ON room_receivers
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_config_fenced();
CREATE TRIGGER giftd_reshard_config_fence AFTER INSERT OR UPDATE OR DELETE ON room_receivers_history
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_config_fenced();
CREATE TRIGGER giftd_reshard_config_fence AFTER INSERT OR UPDATE OR DELETE ON spend_policies
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_config_fenced();
CREATE TRIGGER giftd_reshard_config_fence AFTER INSERT OR UPDATE OR DELETE ON spend_policy_history
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_config_fenced();
CREATE TRIGGER giftd_reshard_config_fence AFTER INSERT OR UPDATE OR DELETE ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION giftd_reshard_config_fenced();

ALTER TABLE gift_catalogue DISABLE TRIGGER giftd_reshard_config_fence;
ALTER TABLE gift_catalogue_history DISABLE TRIGGER giftd_reshard_config_fence;
ALTER TABLE room_receivers DISABLE TRIGGER giftd_reshard_config_fence;
ALTER TABLE room_receivers_history DISABLE TRIGGER giftd_reshard_config_fence;
ALTER TABLE spend_policies DISABLE TRIGGER giftd_reshard_config_fence;
ALTER TABLE spend_policy_history DISABLE TRIGGER giftd_reshard_config_fence;
ALTER TABLE webhook_endpoints DISABLE TRIGGER giftd_reshard_config_fence;
