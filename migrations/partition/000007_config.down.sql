DROP FUNCTION giftd_copy_webhook(text, bigint, text, text, text[], text[], boolean, bigint);
DROP FUNCTION giftd_copy_app_policy(text, bigint, jsonb, timestamptz, text);
DROP FUNCTION giftd_copy_room(text, text, text, bigint);
DROP FUNCTION giftd_copy_gift(text, text, int, text, bigint, int, boolean, timestamptz, timestamptz);
DROP FUNCTION giftd_config_newer(text, text, bigint);
DROP TABLE giftd_config_applied;
DROP SEQUENCE giftd_config_seq;
-- Migration 4's trigger function again.
CREATE OR REPLACE FUNCTION gift_catalogue_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'gift_catalogue: a gift is deactivated, never deleted';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF (NEW.platform, NEW.gift_id) IS DISTINCT FROM (OLD.platform, OLD.gift_id) THEN
            RAISE EXCEPTION 'gift_catalogue: a gift''s platform and id never change';
        END IF;
        NEW.version := OLD.version + 1;
        NEW.created_at := OLD.created_at;
    ELSE
        NEW.version := 1;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
