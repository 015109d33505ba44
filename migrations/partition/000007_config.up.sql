-- Configuration copied to every partition (docs/scale-out.md#configuration-on-every-partition).
-- giftd_debit_gifts reads the gift catalogue, the rooms' receivers and the
-- apps' spending policies on the sender's partition, so every partition
-- holds all of them, and the webhook endpoints each partition delivers its
-- own events to. Partition 0 is the home: every change is made there first,
-- by the single-server code, then its resulting state is copied here by
-- the functions below, each change once and never older over newer: a
-- copy carries the home's order number of the change (seq) and is skipped
-- where a change as new or newer was applied already. A copy that failed on
-- some partitions is made again by a retry or by a sync, and converges.

-- The newest change of each copied key applied on this partition. Kinds:
-- 'room' (key platform/room_id, seq the home's room_receivers_history id),
-- 'app_policy' (key platform/app_id, seq the home's spend_policy_history
-- id), 'webhook' (key the endpoint id, seq a number of the home's
-- giftd_config_seq taken while reading the endpoint under a share lock).
-- A gift needs none: its version orders its changes.
CREATE TABLE giftd_config_applied (
    kind       text        NOT NULL CHECK (kind IN ('room', 'app_policy', 'webhook')),
    key        text        NOT NULL,
    seq        bigint      NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);

-- Used on the home only: the order of the webhook endpoints' copies.
CREATE SEQUENCE giftd_config_seq;

-- Whether the change seq of (kind, key) is newer than every one applied
-- here; if so it is recorded as applied (the caller applies it in the same
-- transaction). The row lock serialises two copies of one key.
CREATE FUNCTION giftd_config_newer(p_kind text, p_key text, p_seq bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    INSERT INTO giftd_config_applied AS a (kind, key, seq) VALUES (p_kind, p_key, p_seq)
    ON CONFLICT (kind, key) DO UPDATE SET seq = excluded.seq, applied_at = now()
        WHERE a.seq < excluded.seq;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n = 1;
END
$$;

-- The catalogue's version trigger of migration 4, except that a copy
-- (giftd.config_copy on, set by giftd_copy_gift for its own statement)
-- keeps the home's version and times, so that a gift is the same version
-- on every partition and a settlement row names the same one wherever the
-- sender lives.
CREATE OR REPLACE FUNCTION gift_catalogue_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'gift_catalogue: a gift is deactivated, never deleted';
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.platform, NEW.gift_id) IS DISTINCT FROM (OLD.platform, OLD.gift_id) THEN
        RAISE EXCEPTION 'gift_catalogue: a gift''s platform and id never change';
    END IF;
    IF current_setting('giftd.config_copy', true) = 'on' THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.version := OLD.version + 1;
        NEW.created_at := OLD.created_at;
    ELSE
        NEW.version := 1;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- A gift as the home has it at p_version; skipped (false) where this
-- partition has that version or a newer one.
CREATE FUNCTION giftd_copy_gift(p_platform text, p_gift_id text, p_version int, p_name text, p_price bigint,
                                p_share_bp int, p_active boolean, p_created_at timestamptz, p_updated_at timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    PERFORM set_config('giftd.config_copy', 'on', true);
    INSERT INTO gift_catalogue AS g (platform, gift_id, version, name, price, share_bp, active, created_at, updated_at)
    VALUES (p_platform, p_gift_id, p_version, p_name, p_price, p_share_bp, p_active, p_created_at, p_updated_at)
    ON CONFLICT (platform, gift_id) DO UPDATE SET version = excluded.version, name = excluded.name,
        price = excluded.price, share_bp = excluded.share_bp, active = excluded.active,
        created_at = excluded.created_at, updated_at = excluded.updated_at
        WHERE g.version < excluded.version;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM set_config('giftd.config_copy', 'off', true);
    RETURN n = 1;
END
$$;

-- A room's receiver as the home has it after its change p_seq (NULL: not
-- mapped).
CREATE FUNCTION giftd_copy_room(p_platform text, p_room_id text, p_receiver_id text, p_seq bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT giftd_config_newer('room', p_platform || '/' || p_room_id, p_seq) THEN
        RETURN false;
    END IF;
    IF p_receiver_id IS NULL THEN
        DELETE FROM room_receivers WHERE platform = p_platform AND room_id = p_room_id;
    ELSE
        INSERT INTO room_receivers AS r (platform, room_id, receiver_id) VALUES (p_platform, p_room_id, p_receiver_id)
        ON CONFLICT (platform, room_id) DO UPDATE SET receiver_id = excluded.receiver_id, updated_at = now()
            WHERE r.receiver_id <> excluded.receiver_id;
    END IF;
    RETURN true;
END
$$;

-- An app's spending policy as the home has it after its change p_seq
-- (p_policy NULL: cleared). Its history stays on the home.
CREATE FUNCTION giftd_copy_app_policy(p_subject text, p_seq bigint, p_policy jsonb, p_updated_at timestamptz,
                                      p_updated_by text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT giftd_config_newer('app_policy', p_subject, p_seq) THEN
        RETURN false;
    END IF;
    IF p_policy IS NULL THEN
        DELETE FROM spend_policies WHERE scope = 'app' AND subject = p_subject;
    ELSE
        INSERT INTO spend_policies AS x (scope, subject, max_debit, cap_24h, cap_month, remind_day, cooling_off_s,
                                         updated_at, updated_by)
        VALUES ('app', p_subject, (p_policy ->> 'max_debit')::bigint, (p_policy ->> 'cap_24h')::bigint,
                (p_policy ->> 'cap_month')::bigint, (p_policy ->> 'remind_day')::bigint,
                (p_policy ->> 'cooling_off_s')::bigint, p_updated_at, p_updated_by)
        ON CONFLICT (scope, subject) DO UPDATE SET max_debit = excluded.max_debit, cap_24h = excluded.cap_24h,
            cap_month = excluded.cap_month, remind_day = excluded.remind_day, cooling_off_s = excluded.cooling_off_s,
            updated_at = excluded.updated_at, updated_by = excluded.updated_by;
    END IF;
    RETURN true;
END
$$;

-- A webhook endpoint's configuration as the home has it after its change
-- p_seq (p_url NULL: deleted). Only the configuration is copied: each
-- partition keeps its own delivery state (cursor, lease, retries, dead
-- letter) of its own events; p_cursor is where a new endpoint starts here.
CREATE FUNCTION giftd_copy_webhook(p_id text, p_seq bigint, p_url text, p_description text, p_event_types text[],
                                   p_secrets text[], p_enabled boolean, p_cursor bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT giftd_config_newer('webhook', p_id, p_seq) THEN
        RETURN false;
    END IF;
    IF p_url IS NULL THEN
        DELETE FROM webhook_endpoints WHERE id = p_id;
    ELSE
        INSERT INTO webhook_endpoints AS w (id, url, description, event_types, secrets, enabled, cursor)
        VALUES (p_id, p_url, p_description, p_event_types, p_secrets, p_enabled, p_cursor)
        ON CONFLICT (id) DO UPDATE SET url = excluded.url, description = excluded.description,
            event_types = excluded.event_types, secrets = excluded.secrets, enabled = excluded.enabled,
            updated_at = now();
    END IF;
    RETURN true;
END
$$;
