-- Proxy migration 1's sequence versions the cluster again, past the row's
-- version, so that every backend reloads once.
SELECT setval('giftd_cluster_version', (SELECT version + 1 FROM giftd_cluster_generation));
CREATE OR REPLACE FUNCTION plproxy.get_cluster_version(cluster_name text) RETURNS integer
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF cluster_name <> 'giftd' THEN
        RAISE EXCEPTION 'giftd: no PL/Proxy cluster named %', cluster_name;
    END IF;
    RETURN (SELECT last_value FROM giftd_cluster_version)::integer;
END
$$;
CREATE OR REPLACE FUNCTION giftd_cluster_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('giftd_cluster_version');
    RETURN NULL;
END
$$;
DROP TABLE giftd_cluster_generation;
DROP FUNCTION giftd_partition_count();
