DROP FUNCTION giftd_partition_status();
DROP FUNCTION giftd_debit_gifts_on(int, text[], text[], text[], bytea[], text[], bigint[], timestamptz[], jsonb[],
    text[], text[], text[], bigint[], bigint[], boolean, boolean, int, jsonb, timestamptz);
DROP FUNCTION giftd_placement(text);
