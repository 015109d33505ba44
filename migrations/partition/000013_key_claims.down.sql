DROP FUNCTION giftd_key_settled(text, text, jsonb, boolean);
DROP FUNCTION giftd_claim_key(text, text, jsonb);
DROP TABLE giftd_key_claims;
