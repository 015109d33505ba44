-- Which partition of which cluster this database is (docs/scale-out.md): giftd
-- migrate claims it the first time it migrates the database as a partition,
-- and from then on refuses to use it as any other, so that URLs given out of
-- order, or another cluster's database, are refused instead of routing users
-- to a database that does not hold them.
CREATE TABLE giftd_partition_identity (
    one        boolean     PRIMARY KEY DEFAULT true CHECK (one),
    cluster_id uuid        NOT NULL,
    partition  integer     NOT NULL CHECK (partition >= 0),
    partitions integer     NOT NULL CHECK (partitions > 0 AND partitions & (partitions - 1) = 0 AND partition < partitions),
    claimed_at timestamptz NOT NULL DEFAULT now()
);

-- Claims the database for (p_cluster_id, p_partition, p_partitions) unless it
-- is claimed already, and returns the claim it holds: the caller compares.
CREATE FUNCTION giftd_claim_partition(p_cluster_id uuid, p_partition integer, p_partitions integer)
    RETURNS TABLE (cluster_id uuid, partition integer, partitions integer)
    LANGUAGE sql AS $$
    INSERT INTO giftd_partition_identity (cluster_id, partition, partitions)
    VALUES (p_cluster_id, p_partition, p_partitions)
    ON CONFLICT (one) DO NOTHING;
    SELECT i.cluster_id, i.partition, i.partitions FROM giftd_partition_identity AS i;
$$;
