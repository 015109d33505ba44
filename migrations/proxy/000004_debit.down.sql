DROP FUNCTION giftd_partition_status(integer);
DROP FUNCTION giftd_debit_record_of(text, text, text, text);
DROP FUNCTION giftd_debit_record(text, text, text);
DROP FUNCTION giftd_debit_gifts_on(int, text[], text[], text[], bytea[], text[], bigint[], timestamptz[], jsonb[],
    text[], text[], text[], bigint[], bigint[], boolean, boolean, int, jsonb, timestamptz);
