-- Migration 23's trigger refuses every configuration write from a
-- reshard's fence to the proxy's switch, and giftd reshard disables it right
-- after the switch (step 4's first action). A run stopped between the switch
-- and that action left configuration changes refused (503 reshard_paused)
-- until the run again (docs/scale-out.md, what is next, item 8).
--
-- Now the trigger refuses only while the fence's count is not recorded as
-- switched on the partition (giftd_reshard_switched, migration 22): giftd
-- reshard records it right after the switch, and giftd serve records it
-- within seconds on every partition it uses that its readiness probe finds
-- switched and not forgotten. A row there means the proxy routes over that
-- count: the pause is over, as the trigger's being disabled means.
CREATE OR REPLACE FUNCTION giftd_reshard_config_fenced() RETURNS trigger LANGUAGE plpgsql AS $$
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
    SELECT max(f.partitions) INTO fence FROM giftd_reshard_fence AS f
    WHERE NOT EXISTS (SELECT 1 FROM giftd_reshard_switched AS w WHERE w.partitions = f.partitions);
    IF fence IS NOT NULL THEN
        RAISE EXCEPTION 'giftd: a reshard to % partitions is in its pause: configuration changes are refused until the proxy switches; retry', fence
            USING ERRCODE = 'GD003', DETAIL = format('a write to %s during a reshard''s pause', TG_TABLE_NAME);
    END IF;
    RETURN NULL; -- an AFTER trigger's result is ignored
END
$$;
