-- giftd audit reads, on a partition between a reshard's switch and its
-- forget, what the partition owns under its claim
-- (docs/scale-out.md#the-economy-split-before-the-pause). Until
-- giftd_reshard_forget (step 4 of giftd reshard: seconds, or until the run
-- again of a run stopped there) old partition i still holds the rows of the
-- users who moved to i + n and the economy rows under the pre-split's cut it
-- gave away (its house slots and earnings accounts already squared without
-- them), and new partition i + n the rows of the users who stayed on i. The
-- audits read through these two functions (internal/ledger's Audit,
-- CreditSourceBook, CreditsReceived, ClawbacksTaken, ReshardLegs,
-- ReusedKeys) and leave those rows out: the report is the one after the
-- forget, and nothing is counted on two partitions.

-- This partition's claim while it holds rows it gave away: its economy
-- split at its claimed count and the fence of that count still here
-- (giftd_reshard_forget deletes it with those rows). No row otherwise:
-- before the split the partition still owns every row it holds.
CREATE FUNCTION giftd_reshard_unforgotten() RETURNS TABLE (partition integer, partitions integer)
    LANGUAGE sql STABLE AS $$
    SELECT i.partition, i.partitions FROM giftd_partition_identity AS i
    WHERE EXISTS (SELECT 1 FROM giftd_reshard_split AS s WHERE s.partitions = i.partitions)
      AND EXISTS (SELECT 1 FROM giftd_reshard_fence AS f WHERE f.partitions = i.partitions);
$$;

-- The economy rows this partition gave away and has not forgotten yet: a
-- gift (its id in gift, twice) or an account entry (its id in entry), the
-- rows giftd_reshard_forget deletes (the same call of
-- giftd_reshard_gone_rows under the pre-split's cuts). None outside that
-- window, and none on a partition split in one step (the split deleted them).
-- PL/pgSQL, never inlined: a query reads its rows as a function scan's
-- stored result, not the economy again wherever it is used; the audits
-- leave them out with NOT IN, a hashed subplan (planned for its 1000 rows).
CREATE FUNCTION giftd_reshard_given_away() RETURNS TABLE (gift bigint, entry bigint)
    LANGUAGE plpgsql STABLE AS $$
BEGIN
    -- Outside the window, before its query is ever planned: planning it
    -- (giftd_reshard_gone_rows inlined) took 0.35-0.6 s per session on a
    -- loaded test machine, on every audit's every read.
    IF NOT EXISTS (SELECT 1 FROM giftd_reshard_unforgotten()) THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT x.gift, x.entry
    FROM giftd_reshard_unforgotten() AS u
    JOIN giftd_reshard_presplit AS s ON s.partitions = u.partitions
    CROSS JOIN LATERAL giftd_reshard_gone_rows(u.partitions, 0, s.gift_cut, 0, s.entry_cut) AS x;
END
$$;
