DROP FUNCTION giftd_credit_out(text, bigint, bigint, bigint[], text[], bigint[]);
DROP FUNCTION giftd_credits_in(int, bigint[], text[], bigint[]);
DROP FUNCTION giftd_credit_in(int, bigint, text, bigint);
DROP FUNCTION giftd_credits_after(bigint, bigint, int);
DROP FUNCTION giftd_credit_lease(text, double precision);
DROP TRIGGER events_keep_unmoved_credits ON events;
DROP FUNCTION giftd_keep_unmoved_credits();
DROP TABLE credit_cursor;
ALTER TABLE account_entries DROP CONSTRAINT account_entries_leg;
ALTER TABLE account_entries DROP CONSTRAINT account_entries_kind;
ALTER TABLE account_entries ADD CHECK (kind IN ('reversal', 'shortfall', 'payout', 'recovery'));
ALTER TABLE account_entries ADD CHECK (CASE kind WHEN 'shortfall' THEN account = 'receivable' AND amount > 0 AND gift_entry IS NOT NULL
                 WHEN 'reversal' THEN account <> 'receivable' AND amount < 0 AND gift_entry IS NOT NULL
                 WHEN 'payout' THEN account = 'earnings' AND amount < 0
                 ELSE account <> 'house' AND amount < 0 END);
