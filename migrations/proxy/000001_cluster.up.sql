-- giftd's proxy database (docs/scale-out.md): PL/Proxy in front of 2^k
-- partition databases, each a normal giftd database. This set has its own
-- version table (giftd_proxy_migrations); the partitions' is schema_migrations.

-- Placement: where a user's wallet lives. The first 4 bytes of the SHA-256 of
-- the user id's UTF-8 bytes, read big-endian as a signed 32-bit integer; the
-- user's partition is placement & (partitions - 1) (PL/Proxy's RUN ON masks
-- the value it is given with the partition count minus one). Defined here,
-- not with PostgreSQL's hashtext, whose values are not promised across
-- versions. internal/partition.Placement is the same function in Go, held to
-- this one by TestPlacement_GoAgreesWithSQL. Never change it: every wallet's
-- partition follows from it, and another hash is a resharding.
CREATE FUNCTION giftd_placement(user_id text) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ('x' || encode(substr(sha256(convert_to(user_id, 'UTF8')), 1, 4), 'hex'))::bit(32)::integer;

-- PL/Proxy's extension needs a superuser to create: giftd migrate's role, or a
-- DBA beforehand (CREATE EXTENSION plproxy in the proxy database), after which
-- a role owning the database suffices for the rest.
CREATE EXTENSION IF NOT EXISTS plproxy;

-- The cluster giftd's routing functions name (CLUSTER 'giftd'): PL/Proxy reads
-- it through the three functions of schema plproxy below.
CREATE SCHEMA plproxy;

-- One row per partition, numbered 0 … 2^k − 1 without gaps. connstr is a libpq
-- key=value string that may hold a password: giftd migrate writes it
-- (internal/partition.Register) and nothing else reads it but PL/Proxy.
CREATE TABLE giftd_partitions (
    partition  integer     PRIMARY KEY CHECK (partition >= 0),
    connstr    text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON giftd_partitions FROM PUBLIC;

-- PL/Proxy's settings for the cluster (plproxy.get_cluster_config), only the
-- keys it knows. Not connect_timeout: PL/Proxy 2.10's own connect timeout
-- message quotes the whole connection string, password and all; put libpq's
-- connect_timeout into the partition's URL instead (docs/scale-out.md).
CREATE TABLE giftd_cluster_config (
    key text PRIMARY KEY CHECK (key IN ('connection_lifetime', 'query_timeout', 'disable_binary',
                                        'keepalive_idle', 'keepalive_interval', 'keepalive_count')),
    val text NOT NULL CHECK (val ~ '^[0-9]+$')
);
-- Connections from the proxy to a partition are renewed every 30 minutes.
INSERT INTO giftd_cluster_config (key, val) VALUES ('connection_lifetime', '1800');

-- PL/Proxy asks for the cluster's version on every call and reloads the
-- partitions and settings when it changed: every change of either table moves
-- it on. A sequence, so that reading it takes no lock; a rolled-back change
-- moves it on too, which costs one reload.
CREATE SEQUENCE giftd_cluster_version;
SELECT nextval('giftd_cluster_version');

CREATE FUNCTION giftd_cluster_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('giftd_cluster_version');
    RETURN NULL;
END
$$;
CREATE TRIGGER giftd_partitions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON giftd_partitions
    FOR EACH STATEMENT EXECUTE FUNCTION giftd_cluster_changed();
CREATE TRIGGER giftd_cluster_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON giftd_cluster_config
    FOR EACH STATEMENT EXECUTE FUNCTION giftd_cluster_changed();

-- SECURITY DEFINER: giftd's runtime role needs no grant on the tables. Any role
-- that may call a routing function can call these too, and so read the
-- connection strings: PL/Proxy reads them in the caller's session.
CREATE FUNCTION plproxy.get_cluster_version(cluster_name text) RETURNS integer
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF cluster_name <> 'giftd' THEN
        RAISE EXCEPTION 'giftd: no PL/Proxy cluster named %', cluster_name;
    END IF;
    RETURN (SELECT last_value FROM giftd_cluster_version)::integer;
END
$$;

CREATE FUNCTION plproxy.get_cluster_partitions(cluster_name text) RETURNS SETOF text
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    n integer;
    top integer;
BEGIN
    IF cluster_name <> 'giftd' THEN
        RAISE EXCEPTION 'giftd: no PL/Proxy cluster named %', cluster_name;
    END IF;
    SELECT count(*), max(partition) INTO n, top FROM giftd_partitions;
    IF n = 0 OR top <> n - 1 OR n & (n - 1) <> 0 THEN
        RAISE EXCEPTION 'giftd: cluster giftd has % partitions numbered 0 to %; want 2^k numbered from 0 without gaps (giftd migrate registers them)', n, top;
    END IF;
    RETURN QUERY SELECT connstr FROM giftd_partitions ORDER BY partition;
END
$$;

CREATE FUNCTION plproxy.get_cluster_config(cluster_name text, OUT key text, OUT val text) RETURNS SETOF record
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF cluster_name <> 'giftd' THEN
        RAISE EXCEPTION 'giftd: no PL/Proxy cluster named %', cluster_name;
    END IF;
    RETURN QUERY SELECT c.key, c.val FROM giftd_cluster_config AS c ORDER BY c.key;
END
$$;
