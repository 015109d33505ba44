-- giftd_placement as partition migration 3 declared it.
ALTER FUNCTION giftd_placement(text) IMMUTABLE;
