-- pgbench's own tables, beside giftd's, shaped like them.
DROP TABLE IF EXISTS bench_requests, bench_wallets;
CREATE TABLE bench_wallets (user_id int PRIMARY KEY, gold bigint NOT NULL CHECK (gold >= 0));
CREATE TABLE bench_requests (request_id text PRIMARY KEY, user_id int NOT NULL, gold bigint NOT NULL,
                             created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO bench_wallets SELECT g, 1000000000 FROM generate_series(1, 100000) g;
VACUUM ANALYZE bench_wallets;
