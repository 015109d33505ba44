-- The debit's plans made once per connection (docs/design.md#the-debits-plans).
--
-- PL/pgSQL plans each statement of giftd_debit_gifts through the plan
-- cache: custom plans (for the arguments of that call) for the first five
-- calls on a connection, then the generic plan unless a custom one is
-- estimated cheaper. For the two statements on wallets (the lock of step 4
-- and the checked write of step 6) the planner estimates a custom plan
-- cheaper when a batch holds one debit, so a lone debit -- most of them,
-- whenever giftd is not busy -- planned both again on every call: about 75
-- microseconds of a 0.7-0.8 ms call (pg_stat_statements, track_planning).
-- Their generic plans are the same index scans (every table the function
-- reads, it reads by its primary key, migration 11), so the function now
-- always takes them. Only the function's settings change: its body,
-- signature and every answer are migration 11's.
ALTER FUNCTION giftd_debit_gifts(text[], text[], text[], bytea[], text[], bigint[], timestamptz[], jsonb[], text[],
    text[], text[], bigint[], bigint[], boolean, boolean, integer, jsonb, timestamptz)
    SET plan_cache_mode = force_generic_plan;
