-- Wallets: one row per user, created by the first top-up. The balance is a
-- count of coins and can never go below zero, whatever the application does.
CREATE TABLE wallets (
    user_id    text        PRIMARY KEY,
    gold       bigint      NOT NULL CHECK (gold >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The append-only ledger: every change of a balance is one row, and for every
-- wallet the balance equals the sum of its entries' amounts. Top-ups and
-- reversals are recorded here and nowhere else: their idempotency key is the
-- entry's ref.
CREATE TABLE ledger_entries (
    id            bigserial   PRIMARY KEY,
    user_id       text        NOT NULL REFERENCES wallets (user_id),
    kind          text        NOT NULL CHECK (kind IN ('debit', 'topup', 'reversal')),
    amount        bigint      NOT NULL,
    balance_after bigint      NOT NULL CHECK (balance_after >= 0),
    -- Who asked: a partner platform ('linkv') for debits, 'admin' otherwise.
    platform      text        NOT NULL,
    app_id        text        NOT NULL DEFAULT '',
    -- The idempotency key: the platform's request id for a debit, the
    -- operator's idempotency key for a top-up or a reversal.
    ref           text        NOT NULL,
    -- For a reversal, the debit entry it gives back.
    reverses      bigint      UNIQUE REFERENCES ledger_entries (id),
    details       jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (CASE kind WHEN 'debit' THEN amount <= 0 AND reverses IS NULL
                     WHEN 'topup' THEN amount > 0 AND reverses IS NULL
                     ELSE amount >= 0 AND reverses IS NOT NULL END)
);
CREATE INDEX ledger_entries_user_id_id ON ledger_entries (user_id, id DESC);
-- The last line of defence for exactly-once: one entry per key and kind,
-- even if the request records that guard debits were lost or pruned.
CREATE UNIQUE INDEX ledger_entries_key ON ledger_entries (kind, platform, app_id, ref);

CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only: % refused', TG_OP;
END
$$;
CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
-- TRUNCATE bypasses row triggers, so it gets its own.
CREATE TRIGGER ledger_entries_no_truncate
    BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only();

-- The recorded outcome of every executed debit request, keyed by the
-- platform's idempotency key, kept until the request's own expiry so that a
-- retry replays the first answer. A row is written in the same transaction as
-- the debit it records.
CREATE TABLE debit_requests (
    platform    text        NOT NULL,
    app_id      text        NOT NULL,
    request_id  text        NOT NULL,
    fingerprint bytea       NOT NULL,
    user_id     text        NOT NULL,
    gold        bigint      NOT NULL CHECK (gold >= 0),
    status      smallint    NOT NULL CHECK (status IN (200, 402)),
    balance     bigint      NOT NULL,
    entry_id    bigint,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, app_id, request_id)
);
CREATE INDEX debit_requests_expires_at ON debit_requests (expires_at);
