-- How many partitions the proxy routes over (docs/scale-out.md#resharding-n--2n):
-- giftd reads it at start and again when a partition refuses a batch as
-- not its users' (GD001), as it does once giftd reshard has doubled the
-- cluster, so that no replica needs a restart. SECURITY DEFINER: giftd's
-- runtime role may not read giftd_partitions, which can hold passwords.
CREATE FUNCTION giftd_partition_count() RETURNS integer
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT
    RETURN (SELECT count(*)::integer FROM giftd_partitions);

-- The cluster's version becomes transactional. Proxy migration 1 moved a
-- sequence on in the registration's transaction, and a sequence's value is
-- seen by every session at once, before the commit: a proxy backend routing
-- a call meanwhile saw the new version, reloaded the partitions it could
-- see (the old rows, the change not yet committed) and kept them under the
-- new version for good. Tolerable while a registration only renamed a
-- partition's host; not when giftd reshard doubles the count (that backend
-- would route every call over the old count until it ended). A row updated
-- by the same triggers is seen with the rows it versions. It starts past
-- the sequence, so that every backend reloads once.
CREATE TABLE giftd_cluster_generation (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version integer NOT NULL
);
INSERT INTO giftd_cluster_generation (version) SELECT last_value::integer + 1 FROM giftd_cluster_version;
REVOKE ALL ON giftd_cluster_generation FROM PUBLIC;

CREATE OR REPLACE FUNCTION giftd_cluster_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE giftd_cluster_generation SET version = version + 1;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION plproxy.get_cluster_version(cluster_name text) RETURNS integer
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF cluster_name <> 'giftd' THEN
        RAISE EXCEPTION 'giftd: no PL/Proxy cluster named %', cluster_name;
    END IF;
    RETURN (SELECT version FROM giftd_cluster_generation);
END
$$;
