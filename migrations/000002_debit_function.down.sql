DROP FUNCTION giftd_debit(text[], text[], text[], bytea[], text[], bigint[], timestamptz[], jsonb[]);
