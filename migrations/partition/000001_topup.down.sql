DROP FUNCTION giftd_topup(text, bigint, text, text);
