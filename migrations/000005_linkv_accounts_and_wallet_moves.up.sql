-- LinkV's live_open_id of each user giftd linked (thGetToken), per LinkV app:
-- LinkV's wallet APIs address users by it.
CREATE TABLE linkv_accounts (
    app_id     text        NOT NULL,
    user_id    text        NOT NULL,
    open_id    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, user_id)
);

-- Each user's move out of LinkV's wallet into giftd's (docs/platform-apis.md):
-- where the move stands, so that an interrupted run resumes without losing
-- or doubling a coin. A move goes in rounds; round r takes coins out of
-- LinkV with changeGold under the request_id derived from (app, user, r) and
-- credits them under the same key.
--   pending: nothing of round r sent; the next step reads LinkV's balance.
--   taking:  round r's changeGold (request_id, amount) is recorded and may
--            have been sent; it is replayed until LinkV answers for certain.
--   taken:   LinkV answered 200 to it; the credit is next.
--   done:    LinkV's balance read 0 after the last credit.
-- The credit of a round and the move to round r+1 commit in one transaction.
CREATE TABLE linkv_wallet_moves (
    app_id     text        NOT NULL,
    user_id    text        NOT NULL,
    open_id    text        NOT NULL,
    state      text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'taking', 'taken', 'done')),
    round      integer     NOT NULL DEFAULT 1 CHECK (round >= 1),
    request_id text,
    amount     bigint      CHECK (amount > 0),
    expriation bigint,
    -- Coins credited to giftd's wallet by every round so far.
    moved      bigint      NOT NULL DEFAULT 0 CHECK (moved >= 0),
    last_error text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, user_id),
    CHECK ((state IN ('taking', 'taken')) = (request_id IS NOT NULL AND amount IS NOT NULL AND expriation IS NOT NULL))
);
