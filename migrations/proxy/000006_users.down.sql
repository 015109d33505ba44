DROP FUNCTION giftd_clawback(int, bigint, text, bigint);
DROP FUNCTION giftd_reverse(text, text, text, text, text, text);
DROP FUNCTION giftd_payout(text, bigint, text, text, interval);
DROP FUNCTION giftd_spend_window(text, timestamptz);
DROP FUNCTION giftd_find_debit(text, text, text);
DROP FUNCTION giftd_entries(text, bigint, int);
