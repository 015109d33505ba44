-- One debit per transaction in its fastest form: one statement, one round
-- trip, that records the request and debits the wallet if it can pay.
\set uid random(1, :wallets)
WITH r AS (
    INSERT INTO bench_requests (request_id, user_id, gold)
    VALUES (md5(:client_id::text || clock_timestamp()::text || random()::text), :uid, 1)
    ON CONFLICT DO NOTHING
    RETURNING user_id, gold
)
UPDATE bench_wallets w SET gold = w.gold - r.gold FROM r
WHERE w.user_id = r.user_id AND w.gold >= r.gold;
