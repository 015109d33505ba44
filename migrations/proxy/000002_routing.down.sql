DROP FUNCTION giftd_wallet_totals();
DROP FUNCTION giftd_topup(text, bigint, text, text);
DROP FUNCTION giftd_wallet(text);
