CREATE INDEX IF NOT EXISTS gift_entries_receiver ON gift_entries (receiver_id, created_at) WHERE receiver_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS gift_entries_room ON gift_entries (platform, room_id, created_at);
CREATE INDEX IF NOT EXISTS gift_entries_sender ON gift_entries (sender_id, created_at);
DROP INDEX IF EXISTS gift_entries_room_board;
DROP INDEX IF EXISTS gift_entries_sender_spend;
DROP INDEX IF EXISTS ledger_entries_reversal_at;
DROP INDEX IF EXISTS ledger_entries_reversal_user;
DROP INDEX IF EXISTS gift_entries_receiver_report;
