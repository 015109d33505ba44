-- Partition migration 5's receiver period, without the claw-back legs.
CREATE OR REPLACE FUNCTION giftd_receiver_period(p_receiver_id text, p_from timestamptz, p_to timestamptz)
    RETURNS TABLE (gifts bigint, gold bigint, earned bigint, taken bigint, shortfall bigint, recovered bigint, paid bigint)
    LANGUAGE sql STABLE AS $$
    SELECT g.n, g.gold, g.earned, a.taken, a.shortfall, a.recovered, a.paid FROM
        (SELECT count(*) AS n, coalesce(sum(x.gold), 0)::bigint AS gold, coalesce(sum(x.earnings), 0)::bigint AS earned
         FROM gift_entries x WHERE x.receiver_id = p_receiver_id AND x.created_at >= p_from AND x.created_at < p_to) AS g,
        (SELECT coalesce(-sum(y.amount) FILTER (WHERE y.account = 'earnings' AND y.kind = 'reversal'), 0)::bigint AS taken,
            coalesce(sum(y.amount) FILTER (WHERE y.kind = 'shortfall'), 0)::bigint AS shortfall,
            coalesce(-sum(y.amount) FILTER (WHERE y.account = 'earnings' AND y.kind = 'recovery'), 0)::bigint AS recovered,
            coalesce(-sum(y.amount) FILTER (WHERE y.kind = 'payout'), 0)::bigint AS paid
         FROM account_entries y WHERE y.receiver_id = p_receiver_id AND y.created_at >= p_from AND y.created_at < p_to) AS a;
$$;
DROP FUNCTION giftd_clear_policy(text, text, text);
DROP FUNCTION giftd_put_policy(text, text, text, jsonb, bigint, bigint, bigint, bigint, bigint, text, boolean, boolean, boolean, timestamptz);
DROP FUNCTION giftd_user_known(text);
DROP FUNCTION giftd_wallet_move_credit(text, text, int, text, text);
DROP FUNCTION giftd_wallet_move_note(text, text, text);
DROP FUNCTION giftd_wallet_move_step(text, text, text, int, text, text, text, bigint, bigint, text);
DROP FUNCTION giftd_wallet_move_start(text, text, text);
DROP FUNCTION giftd_save_linkv_account(text, text, text);
DROP FUNCTION giftd_reversed(text, text, text, text);
DROP FUNCTION giftd_reverse(text, text, text, text, text, text);
DROP FUNCTION giftd_clawbacks_after(bigint, bigint);
DROP FUNCTION giftd_clawback(int, bigint, text, bigint);
DROP FUNCTION giftd_payout(text, bigint, text, text, interval);
DROP FUNCTION giftd_check_placed_here(text);
-- Refused while claw-back legs exist: they have no place in migration 4's
-- checks.
ALTER TABLE account_entries DROP CONSTRAINT account_entries_leg;
ALTER TABLE account_entries DROP CONSTRAINT account_entries_kind;
ALTER TABLE account_entries ADD CONSTRAINT account_entries_kind CHECK (kind IN ('reversal', 'shortfall', 'payout',
    'recovery', 'transfer_in', 'transfer_out'));
ALTER TABLE account_entries ADD CONSTRAINT account_entries_leg CHECK (
    CASE kind WHEN 'shortfall' THEN account = 'receivable' AND amount > 0 AND gift_entry IS NOT NULL
              WHEN 'reversal' THEN account <> 'receivable' AND amount < 0 AND gift_entry IS NOT NULL
              WHEN 'payout' THEN account = 'earnings' AND amount < 0
              WHEN 'transfer_in' THEN account = 'earnings' AND amount > 0 AND gift_entry IS NULL
              WHEN 'transfer_out' THEN account = 'earnings' AND amount < 0 AND gift_entry IS NULL
              ELSE account <> 'house' AND amount < 0 END);
