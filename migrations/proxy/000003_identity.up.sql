-- The cluster's identity (docs/scale-out.md): made once, claimed by each
-- partition (partition migration 2) when giftd migrate first migrates it.
CREATE TABLE giftd_cluster (
    one        boolean     PRIMARY KEY DEFAULT true CHECK (one),
    cluster_id uuid        NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO giftd_cluster DEFAULT VALUES;

-- RUN ON takes a function call: this one hands PL/Proxy a partition number.
CREATE FUNCTION giftd_partition_number(p integer) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN p;

-- The claim of the database the proxy reaches as partition p_partition:
-- giftd migrate checks, before it commits a registration, that the proxy
-- reaches partition i of this cluster at every i.
CREATE FUNCTION giftd_partition_identity(p_partition integer)
    RETURNS TABLE (cluster_id uuid, partition integer, partitions integer)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_partition_number(p_partition);
    SELECT i.cluster_id, i.partition, i.partitions FROM giftd_partition_identity AS i;
$$;
