DROP FUNCTION giftd_debit_gifts(text[], text[], text[], bytea[], text[], bigint[], timestamptz[], jsonb[],
                                text[], text[], text[], bigint[], bigint[], boolean, boolean, int);
DROP TABLE account_entries;
DROP TABLE gift_entries;
DROP TABLE house_slots;
DROP TABLE earnings_accounts;
DROP TABLE room_receivers_history;
DROP TABLE room_receivers;
DROP FUNCTION room_receivers_keep();
DROP TABLE gift_catalogue;
DROP TABLE gift_catalogue_history;
DROP FUNCTION gift_catalogue_keep();
DROP FUNCTION gift_catalogue_version();
DROP FUNCTION giftd_append_only();
