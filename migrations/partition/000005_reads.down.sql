DROP FUNCTION giftd_consents(text[]);
DROP FUNCTION giftd_earnings_home(text, text[]);
DROP FUNCTION giftd_earnings_parts(text, interval);
DROP FUNCTION giftd_earnings_ledger(text, timestamptz, text, int, bigint, int);
DROP FUNCTION giftd_receiver_period(text, timestamptz, timestamptz);
DROP FUNCTION giftd_sender_spend(text);
DROP FUNCTION giftd_room_board(text, text, text, timestamptz, int);
DROP FUNCTION giftd_report_gifts(text, timestamptz, timestamptz, text, text, int);
