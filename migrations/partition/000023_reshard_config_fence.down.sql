-- Reverts partition migration 23: configuration changes are no longer
-- refused during a reshard's pause.
DROP TRIGGER giftd_reshard_config_fence ON webhook_endpoints;
DROP TRIGGER giftd_reshard_config_fence ON spend_policy_history;
DROP TRIGGER giftd_reshard_config_fence ON spend_policies;
DROP TRIGGER giftd_reshard_config_fence ON room_receivers_history;
DROP TRIGGER giftd_reshard_config_fence ON room_receivers;
DROP TRIGGER giftd_reshard_config_fence ON gift_catalogue_history;
DROP TRIGGER giftd_reshard_config_fence ON gift_catalogue;
DROP FUNCTION giftd_reshard_config_fenced();
