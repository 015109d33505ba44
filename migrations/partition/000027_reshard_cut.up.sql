-- When giftd reshard cut each new partition's copy, on that partition's own
-- clock (inside the pause, before the proxy's switch; docs/scale-out.md,
-- step 4). Every write of a moved user's row there after the switch carries
-- a later stamp (its transaction's now()), so the check before the forget
-- can leave the rows rewritten since out when it compares the tables
-- updated in place (spending counters and reminders, LinkV accounts and
-- wallet moves, key claims) with the old partition's.
CREATE TABLE giftd_reshard_cut (
    partitions integer     PRIMARY KEY,
    cut_at     timestamptz NOT NULL DEFAULT now()
);
