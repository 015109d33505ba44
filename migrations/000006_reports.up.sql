-- Reports and leaderboards (docs/economy.md#reports-and-leaderboards). No
-- new table: the reports read gift_entries and account_entries (migration 4)
-- and the reversals in ledger_entries. Three of migration 4's indexes are
-- replaced by the same keys with the columns their reports read, so that
-- those reports are index-only scans and gift_entries keeps as many indexes
-- as before (one insert each per gift); two small partial indexes find
-- reversals, which are rare.
--
-- On a large gift_entries, CREATE INDEX blocks inserts (so debits) while it
-- builds. Build them first by hand with CREATE INDEX CONCURRENTLY and the
-- same definitions (docs/operations.md#migrations): IF NOT EXISTS then skips
-- them here.

-- A room's leaderboards (senders and receivers over a window, asked often):
-- the room's gifts in the window, read from the index alone, with the sender,
-- the receiver, gold, earnings, and debit_entry to leave reversed gifts out.
CREATE INDEX IF NOT EXISTS gift_entries_room_board ON gift_entries (platform, room_id, created_at)
    INCLUDE (sender_id, receiver_id, gold, earnings, debit_entry);
DROP INDEX IF EXISTS gift_entries_room;

-- A sender's lifetime spend (gifter levels): the sum of their gifts' gold,
-- read from the index alone.
CREATE INDEX IF NOT EXISTS gift_entries_sender_spend ON gift_entries (sender_id, created_at)
    INCLUDE (gold);
DROP INDEX IF EXISTS gift_entries_sender;

-- A receiver's period report: their gifts' gold and earnings in the period,
-- read from the index alone (a hot receiver has tens of thousands a day).
CREATE INDEX IF NOT EXISTS gift_entries_receiver_report ON gift_entries (receiver_id, created_at)
    INCLUDE (gold, earnings) WHERE receiver_id IS NOT NULL;
DROP INDEX IF EXISTS gift_entries_receiver;

-- Reversals by time: every report over a period leaves out the gifts
-- reversed, found among the reversals made since the period's start.
CREATE INDEX IF NOT EXISTS ledger_entries_reversal_at ON ledger_entries (created_at)
    INCLUDE (reverses) WHERE kind = 'reversal';

-- Reversals by user: a sender's lifetime spend leaves out their reversed
-- gifts without reading every entry of their wallet.
CREATE INDEX IF NOT EXISTS ledger_entries_reversal_user ON ledger_entries (user_id)
    INCLUDE (reverses) WHERE kind = 'reversal';
