DROP FUNCTION giftd_claim_key(text, text, jsonb);
