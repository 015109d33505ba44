-- Back to migration 23's trigger: it refuses while any fence row is there.
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
    SELECT max(f.partitions) INTO fence FROM giftd_reshard_fence AS f;
    IF fence IS NOT NULL THEN
        RAISE EXCEPTION 'giftd: a reshard to % partitions is in its pause: configuration changes are refused until the proxy switches; retry', fence
            USING ERRCODE = 'GD003', DETAIL = format('a write to %s during a reshard''s pause', TG_TABLE_NAME);
    END IF;
    RETURN NULL; -- an AFTER trigger's result is ignored
END
$$;
