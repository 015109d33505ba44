-- giftd_debit_gifts with migration 11's settings only.
ALTER FUNCTION giftd_debit_gifts(text[], text[], text[], bytea[], text[], bigint[], timestamptz[], jsonb[], text[],
    text[], text[], bigint[], bigint[], boolean, boolean, integer, jsonb, timestamptz)
    RESET plan_cache_mode;
