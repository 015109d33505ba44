DROP TRIGGER giftd_reshard_fence ON events;
DROP TRIGGER giftd_reshard_fence ON linkv_wallet_moves;
DROP TRIGGER giftd_reshard_fence ON linkv_accounts;
DROP TRIGGER giftd_reshard_fence ON spend_reminders;
DROP TRIGGER giftd_reshard_fence ON spend_windows;
DROP TRIGGER giftd_reshard_fence ON debit_requests;
DROP TRIGGER giftd_reshard_fence ON ledger_entries;
DROP TRIGGER giftd_reshard_fence ON wallets;
DROP FUNCTION giftd_reshard_fenced();
