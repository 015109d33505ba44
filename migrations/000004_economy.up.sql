-- The receiving side of every gift (docs/economy.md, docs/design.md): the
-- gift catalogue and its history, Polyv channels mapped to receivers, the
-- receivers' earnings accounts (a second asset, never spendable as gold),
-- the house (merchant revenue) in slot rows, one settlement row per gift
-- debit, every other movement of those accounts, and giftd_debit_gifts, the
-- economy version of giftd_debit. giftd_debit itself is left as it is, so
-- that a binary of the previous release keeps working during a rolling
-- deploy (docs/development.md).

-- Every table below that is a ledger refuses UPDATE, DELETE and TRUNCATE.
CREATE FUNCTION giftd_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END
$$;

-- The catalogue: one row per platform and gift, its current version. A
-- gift is never deleted, only deactivated; every version is kept in
-- gift_catalogue_history by the triggers below, and a gift's settlement row
-- names the version it was charged at and carries its price and share.
CREATE TABLE gift_catalogue (
    platform   text        NOT NULL,
    -- LinkV's gift_id; Polyv's goodName.
    gift_id    text        NOT NULL,
    version    int         NOT NULL DEFAULT 1 CHECK (version >= 1),
    name       text        NOT NULL,
    -- In coins per item (Polyv: goodPrice × GIFTD_POLYV_POINT_SCALE).
    price      bigint      NOT NULL CHECK (price >= 0),
    -- The receiver's share in basis points: floor(gold × share_bp / 10000).
    share_bp   int         NOT NULL CHECK (share_bp BETWEEN 0 AND 10000),
    active     boolean     NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, gift_id)
);

CREATE TABLE gift_catalogue_history (
    platform   text        NOT NULL,
    gift_id    text        NOT NULL,
    version    int         NOT NULL,
    name       text        NOT NULL,
    price      bigint      NOT NULL,
    share_bp   int         NOT NULL,
    active     boolean     NOT NULL,
    changed_at timestamptz NOT NULL,
    PRIMARY KEY (platform, gift_id, version)
);
CREATE TRIGGER gift_catalogue_history_append_only
    BEFORE UPDATE OR DELETE ON gift_catalogue_history
    FOR EACH ROW EXECUTE FUNCTION giftd_append_only();
CREATE TRIGGER gift_catalogue_history_no_truncate
    BEFORE TRUNCATE ON gift_catalogue_history
    FOR EACH STATEMENT EXECUTE FUNCTION giftd_append_only();

-- A change is a new version; nothing else may change the key or go back.
CREATE FUNCTION gift_catalogue_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'gift_catalogue: a gift is deactivated, never deleted';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF (NEW.platform, NEW.gift_id) IS DISTINCT FROM (OLD.platform, OLD.gift_id) THEN
            RAISE EXCEPTION 'gift_catalogue: a gift''s platform and id never change';
        END IF;
        NEW.version := OLD.version + 1;
        NEW.created_at := OLD.created_at;
    ELSE
        NEW.version := 1;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER gift_catalogue_version
    BEFORE INSERT OR UPDATE OR DELETE ON gift_catalogue
    FOR EACH ROW EXECUTE FUNCTION gift_catalogue_version();
CREATE TRIGGER gift_catalogue_no_truncate
    BEFORE TRUNCATE ON gift_catalogue
    FOR EACH STATEMENT EXECUTE FUNCTION giftd_append_only();

CREATE FUNCTION gift_catalogue_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO gift_catalogue_history (platform, gift_id, version, name, price, share_bp, active, changed_at)
    VALUES (NEW.platform, NEW.gift_id, NEW.version, NEW.name, NEW.price, NEW.share_bp, NEW.active, NEW.updated_at);
    RETURN NULL;
END
$$;
CREATE TRIGGER gift_catalogue_keep
    AFTER INSERT OR UPDATE ON gift_catalogue
    FOR EACH ROW EXECUTE FUNCTION gift_catalogue_keep();

-- Polyv sends no receiver: a channel's gifts go to the receiver mapped to
-- it here, else all to the house (reported as unassigned). Every change is
-- kept in room_receivers_history.
CREATE TABLE room_receivers (
    platform    text        NOT NULL,
    room_id     text        NOT NULL,
    receiver_id text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, room_id)
);
CREATE TABLE room_receivers_history (
    id          bigserial   PRIMARY KEY,
    platform    text        NOT NULL,
    room_id     text        NOT NULL,
    -- NULL: the mapping was removed.
    receiver_id text,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER room_receivers_history_append_only
    BEFORE UPDATE OR DELETE ON room_receivers_history
    FOR EACH ROW EXECUTE FUNCTION giftd_append_only();
CREATE FUNCTION room_receivers_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO room_receivers_history (platform, room_id, receiver_id) VALUES (OLD.platform, OLD.room_id, NULL);
    ELSE
        INSERT INTO room_receivers_history (platform, room_id, receiver_id) VALUES (NEW.platform, NEW.room_id, NEW.receiver_id);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER room_receivers_keep
    AFTER INSERT OR UPDATE OR DELETE ON room_receivers
    FOR EACH ROW EXECUTE FUNCTION room_receivers_keep();

-- Earnings accounts: one per receiver, created by its first credit. balance
-- is what the merchant owes the receiver; owed is what the receiver owes
-- the merchant (shortfalls of reversals not recovered yet, docs/economy.md).
-- Neither can go below zero, and earnings never become gold.
CREATE TABLE earnings_accounts (
    receiver_id text        PRIMARY KEY,
    balance     bigint      NOT NULL DEFAULT 0 CHECK (balance >= 0),
    owed        bigint      NOT NULL DEFAULT 0 CHECK (owed >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The house: its balance is the sum of these slots. Every gift credits the
-- house, so one row would serialise every batch on it; a batch credits one
-- slot picked at random, and a reversal takes back from the slot the gift
-- credited, so no slot can go below zero.
CREATE TABLE house_slots (
    slot       smallint    PRIMARY KEY CHECK (slot >= 0),
    balance    bigint      NOT NULL DEFAULT 0 CHECK (balance >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO house_slots (slot) SELECT generate_series(0, 15);

-- One row per settled gift debit, written in the same transaction as the
-- debit: the receiver's and the house's legs of the gift (its sender's leg
-- is the debit entry in ledger_entries), with what reports need as columns.
CREATE TABLE gift_entries (
    id             bigserial   PRIMARY KEY,
    -- The sender's debit entry; unique: a gift is never credited twice.
    -- No foreign key: its check would lock the entry just inserted, a WAL
    -- record per gift inside a hot sender's wallet lock; the row is written
    -- in the statement that writes the entry, and the audit holds every
    -- gift to its debit entry.
    debit_entry    bigint      NOT NULL UNIQUE,
    platform       text        NOT NULL,
    app_id         text        NOT NULL,
    request_id     text        NOT NULL,
    sender_id      text        NOT NULL,
    -- NULL: no receiver (a Polyv channel with none mapped): all to the house.
    receiver_id    text,
    -- LinkV's resource_id; Polyv's channelId.
    room_id        text        NOT NULL,
    -- LinkV's gift_id; Polyv's goodName.
    gift_id        text        NOT NULL,
    -- The catalogue version charged and its price per item; NULL when the
    -- gift was not in the catalogue (then share_bp is the default share).
    gift_version   int,
    price          bigint,
    -- LinkV's send_num; Polyv's goodNum.
    count          bigint      NOT NULL CHECK (count >= 0),
    gold           bigint      NOT NULL CHECK (gold >= 0),
    share_bp       int         NOT NULL CHECK (share_bp BETWEEN 0 AND 10000),
    earnings       bigint      NOT NULL CHECK (earnings >= 0),
    house          bigint      NOT NULL CHECK (house >= 0),
    -- The house slot credited (a row of house_slots; no foreign key, which
    -- would cost a look-up per gift: the audit holds slots to their entries).
    house_slot     smallint    NOT NULL CHECK (house_slot >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (earnings + house = gold),
    CHECK (earnings = floor(gold::numeric * share_bp / 10000)::bigint OR receiver_id IS NULL),
    CHECK (receiver_id IS NOT NULL OR earnings = 0)
);
CREATE INDEX gift_entries_receiver ON gift_entries (receiver_id, created_at) WHERE receiver_id IS NOT NULL;
CREATE INDEX gift_entries_sender ON gift_entries (sender_id, created_at);
CREATE INDEX gift_entries_room ON gift_entries (platform, room_id, created_at);
CREATE INDEX gift_entries_gift ON gift_entries (platform, gift_id, created_at);
CREATE INDEX gift_entries_created_at ON gift_entries USING brin (created_at);
CREATE TRIGGER gift_entries_append_only
    BEFORE UPDATE OR DELETE ON gift_entries
    FOR EACH ROW EXECUTE FUNCTION giftd_append_only();
CREATE TRIGGER gift_entries_no_truncate
    BEFORE TRUNCATE ON gift_entries
    FOR EACH STATEMENT EXECUTE FUNCTION giftd_append_only();

-- Every other movement of an earnings account, a receivable or the house:
-- a reversal's takebacks and shortfall, payouts, recoveries. With
-- gift_entries, for every account: balance = sum of its entries.
CREATE TABLE account_entries (
    id            bigserial   PRIMARY KEY,
    account       text        NOT NULL CHECK (account IN ('earnings', 'receivable', 'house')),
    receiver_id   text,
    house_slot    smallint    REFERENCES house_slots (slot),
    kind          text        NOT NULL CHECK (kind IN ('reversal', 'shortfall', 'payout', 'recovery')),
    amount        bigint      NOT NULL CHECK (amount <> 0),
    balance_after bigint      CHECK (balance_after >= 0),
    -- For a reversal's legs, the gift reversed.
    gift_entry    bigint      REFERENCES gift_entries (id),
    -- The operator's idempotency key (of the reversal or the payout).
    ref           text        NOT NULL,
    details       jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((account = 'house') = (house_slot IS NOT NULL)),
    CHECK ((account = 'house') = (receiver_id IS NULL)),
    CHECK (CASE kind WHEN 'shortfall' THEN account = 'receivable' AND amount > 0 AND gift_entry IS NOT NULL
                     WHEN 'reversal' THEN account <> 'receivable' AND amount < 0 AND gift_entry IS NOT NULL
                     WHEN 'payout' THEN account = 'earnings' AND amount < 0
                     ELSE account <> 'house' AND amount < 0 END)
);
-- One leg per account, kind and key: a payout or reversal is applied once.
CREATE UNIQUE INDEX account_entries_key ON account_entries (account, kind, ref);
-- A gift's credits are taken back at most once.
CREATE UNIQUE INDEX account_entries_gift ON account_entries (account, gift_entry) WHERE gift_entry IS NOT NULL;
CREATE INDEX account_entries_receiver ON account_entries (receiver_id, created_at) WHERE receiver_id IS NOT NULL;
CREATE INDEX account_entries_created_at ON account_entries (created_at);
CREATE TRIGGER account_entries_append_only
    BEFORE UPDATE OR DELETE ON account_entries
    FOR EACH ROW EXECUTE FUNCTION giftd_append_only();
CREATE TRIGGER account_entries_no_truncate
    BEFORE TRUNCATE ON account_entries
    FOR EACH STATEMENT EXECUTE FUNCTION giftd_append_only();

-- giftd_debit_gifts is giftd_debit (migration 2) with the receiving side:
-- the same batch semantics (one debit at a time in arrival order, keys
-- distinct, replays and reused keys as there, one row per input in input
-- order), plus for each debit that is not a replay:
--
--   a policy verdict: with p_price_check, a gift that is not in the
--   catalogue, inactive, or whose gold is not price × count (or whose
--   claimed unit price is not the price) is refused: status 422, nothing
--   written, nothing recorded (a retry is judged afresh);
--
--   with p_settle, the settlement of each debited gift in the same
--   transaction: one gift_entries row per gift carrying the catalogue
--   version, price and share it was charged at, then, last,
--   floor(gold × share / 10000) to the receiver's earnings (one write per
--   distinct receiver per batch) and the rest to one house slot (one write
--   per batch).
--
-- The catalogue version that decides the verdict is the one charged: both
-- are read once, in this statement, after the key locks.
--
-- Locks, in this order in every transaction that takes them: debit keys
-- (advisory, hash order), wallets (user order), earnings accounts (receiver
-- order), one house slot. Reversals and payouts take the same order.
--
-- It returns, besides giftd_debit's columns: refusal (NULL, or
-- 'gift_unknown', 'gift_inactive', 'price') and price, the catalogue's
-- price per item when the gift is in it.
CREATE FUNCTION giftd_debit_gifts(
    p_platform      text[],
    p_app_id        text[],
    p_request_id    text[],
    p_fingerprint   bytea[],
    p_user_id       text[],
    p_gold          bigint[],
    p_expires_at    timestamptz[],
    p_details       jsonb[],
    -- The gift, from signed data only.
    p_receiver_id   text[],   -- NULL: none given (a room's mapped receiver, else the house)
    p_room_id       text[],
    p_gift_id       text[],
    p_count         bigint[],
    p_unit_price    bigint[], -- the price per item the caller was told (Polyv's goodPrice), NULL: none
    p_settle        boolean,
    p_price_check   boolean,
    p_default_share int
) RETURNS TABLE (status smallint, balance bigint, replay boolean, reused boolean, refusal text, price bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n      int := cardinality(p_request_id);
    st     smallint[] := array_fill(0::smallint, ARRAY[n]);
    bal    bigint[] := array_fill(0::bigint, ARRAY[n]);
    rep    boolean[] := array_fill(false, ARRAY[n]);
    reu    boolean[] := array_fill(false, ARRAY[n]);
    why    text[] := array_fill(NULL::text, ARRAY[n]);
    -- The gift as charged.
    ver    int[] := array_fill(NULL::int, ARRAY[n]);
    cprice bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    share  int[] := array_fill(p_default_share, ARRAY[n]);
    act    boolean[] := array_fill(NULL::boolean, ARRAY[n]);
    rcv    text[] := p_receiver_id;
    earn   bigint[] := array_fill(0::bigint, ARRAY[n]);
    users  text[];
    golds  bigint[];
    totals bigint[];
    house_total bigint := 0;
    hslot  smallint := floor(random() * 16)::smallint;
    h      bigint;
    i      int;
    k      int;
    r      record;
BEGIN
    -- 1. One execution per key at a time (as giftd_debit).
    FOR h IN
        SELECT DISTINCT hashtextextended(p_platform[j] || '/' || p_app_id[j] || '/' || p_request_id[j], 0)
        FROM generate_subscripts(p_request_id, 1) AS j ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(h);
    END LOOP;

    -- 2. Keys executed before replay their record (as giftd_debit).
    FOR r IN
        SELECT j, d.fingerprint, d.status, d.balance
        FROM generate_subscripts(p_request_id, 1) AS j,
        LATERAL (SELECT x.fingerprint, x.status, x.balance FROM debit_requests x
                 WHERE x.platform = p_platform[j] AND x.app_id = p_app_id[j] AND x.request_id = p_request_id[j]
                 LIMIT 1) AS d
    LOOP
        rep[r.j] := true;
        st[r.j] := r.status;
        bal[r.j] := r.balance;
        reu[r.j] := r.fingerprint IS DISTINCT FROM p_fingerprint[r.j];
    END LOOP;

    -- A batch with a replay writes one small transactional WAL record, so
    -- that its commit, like a fresh debit's, waits for a synchronous standby
    -- (migration 3): a replayed answer is never one a failover could lose.
    IF true = ANY (rep) THEN
        PERFORM pg_logical_emit_message(true, 'giftd', 'replay');
    END IF;

    -- 3. The policy verdict of each new debit, from the catalogue version
    --    this statement sees, which is also the one charged below. (A later
    --    policy, such as a sender's spending cap, is one more verdict here or
    --    in step 5, under the wallet lock.)
    IF p_settle OR p_price_check THEN
        FOR r IN
            SELECT j, c.version, c.price, c.share_bp, c.active
            FROM generate_subscripts(p_request_id, 1) AS j,
            LATERAL (SELECT x.version, x.price, x.share_bp, x.active FROM gift_catalogue x
                     WHERE x.platform = p_platform[j] AND x.gift_id = p_gift_id[j]) AS c
            WHERE NOT rep[j]
        LOOP
            ver[r.j] := r.version;
            cprice[r.j] := r.price;
            share[r.j] := r.share_bp;
            act[r.j] := r.active;
        END LOOP;
    END IF;
    IF p_price_check THEN
        FOR i IN 1 .. n LOOP
            CONTINUE WHEN rep[i];
            IF ver[i] IS NULL THEN
                why[i] := 'gift_unknown';
            ELSIF NOT act[i] THEN
                why[i] := 'gift_inactive';
            ELSIF (p_unit_price[i] IS NOT NULL AND p_unit_price[i] <> cprice[i])
                  OR cprice[i]::numeric * p_count[i] <> p_gold[i] THEN
                why[i] := 'price';
            END IF;
            IF why[i] IS NOT NULL THEN
                st[i] := 422;
            END IF;
        END LOOP;
    END IF;

    -- 4. Lock the wallets to debit, in user order, and read their balances.
    SELECT array_agg(p_user_id[j]) INTO users FROM generate_subscripts(p_user_id, 1) AS j
    WHERE NOT rep[j] AND why[j] IS NULL;
    SELECT array_agg(w.user_id ORDER BY w.user_id), array_agg(w.gold ORDER BY w.user_id)
    INTO users, golds
    FROM (SELECT wallets.user_id, wallets.gold FROM wallets
          WHERE wallets.user_id = ANY (users)
          ORDER BY wallets.user_id
          FOR UPDATE) AS w;

    -- 5. Decide each debit in arrival order against what its predecessors left.
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN rep[i] OR why[i] IS NOT NULL;
        k := array_position(users, p_user_id[i]);
        IF k IS NOT NULL AND golds[k] >= p_gold[i] THEN
            golds[k] := golds[k] - p_gold[i];
            st[i] := 200;
            bal[i] := golds[k];
        ELSE
            st[i] := 402;
            bal[i] := coalesce(golds[k], 0);
        END IF;
    END LOOP;

    -- 6. One write per wallet.
    FOR k IN 1 .. coalesce(cardinality(users), 0) LOOP
        UPDATE wallets SET gold = golds[k], updated_at = now()
        WHERE wallets.user_id = users[k] AND wallets.gold <> golds[k];
    END LOOP;

    -- 7. The split of each debited gift: its receiver (a room's mapped
    --    receiver when none was given), earnings and the house's rest.
    IF p_settle THEN
        FOR r IN
            SELECT j, m.receiver_id
            FROM generate_subscripts(p_request_id, 1) AS j,
            LATERAL (SELECT x.receiver_id FROM room_receivers x
                     WHERE x.platform = p_platform[j] AND x.room_id = p_room_id[j]) AS m
            WHERE st[j] = 200 AND NOT rep[j] AND p_receiver_id[j] IS NULL
        LOOP
            rcv[r.j] := r.receiver_id;
        END LOOP;
        FOR i IN 1 .. n LOOP
            CONTINUE WHEN rep[i] OR st[i] <> 200;
            IF rcv[i] IS NOT NULL THEN
                earn[i] := floor(p_gold[i]::numeric * share[i] / 10000)::bigint;
            END IF;
            house_total := house_total + p_gold[i] - earn[i];
        END LOOP;
    END IF;

    -- 8. The entries (ids in arrival order), the gifts' settlement rows and
    --    the records; the CHECKs and the unique keys refuse anything this
    --    logic could get wrong. (A per-batch insert of another kind, such as
    --    an outbox event per gift, is one more CTE here.)
    WITH e AS (
        INSERT INTO ledger_entries (user_id, kind, amount, balance_after, platform, app_id, ref, details)
        SELECT p_user_id[j], 'debit', -p_gold[j], bal[j], p_platform[j], p_app_id[j], p_request_id[j], p_details[j]
        FROM generate_subscripts(p_request_id, 1) AS j
        WHERE NOT rep[j] AND st[j] = 200
        ORDER BY j
        RETURNING id, platform, app_id, ref
    ), ej AS (
        SELECT j, e.id FROM generate_subscripts(p_request_id, 1) AS j
        JOIN e ON e.platform = p_platform[j] AND e.app_id = p_app_id[j] AND e.ref = p_request_id[j]
    ), g AS (
        INSERT INTO gift_entries (debit_entry, platform, app_id, request_id, sender_id, receiver_id, room_id, gift_id,
                                  gift_version, price, count, gold, share_bp, earnings, house, house_slot)
        SELECT ej.id, p_platform[j], p_app_id[j], p_request_id[j], p_user_id[j], rcv[j], p_room_id[j], p_gift_id[j],
               ver[j], cprice[j], p_count[j], p_gold[j], share[j], earn[j], p_gold[j] - earn[j], hslot
        FROM ej WHERE p_settle
        ORDER BY j
    )
    INSERT INTO debit_requests (platform, app_id, request_id, fingerprint, user_id, gold, status, balance, entry_id, expires_at)
    SELECT p_platform[j], p_app_id[j], p_request_id[j], p_fingerprint[j], p_user_id[j], p_gold[j], st[j], bal[j], ej.id, p_expires_at[j]
    FROM generate_subscripts(p_request_id, 1) AS j
    LEFT JOIN ej USING (j)
    WHERE NOT rep[j] AND why[j] IS NULL;

    -- 9. The credits, last, so that the rows every batch may share (a hot
    --    receiver's, a house slot) are locked only from here to the commit:
    --    one upsert per distinct receiver, in receiver order, and one house
    --    slot for the whole batch.
    IF p_settle THEN
        INSERT INTO earnings_accounts AS a (receiver_id, balance)
        SELECT rcv[j], sum(earn[j]) FROM generate_subscripts(p_request_id, 1) AS j
        WHERE st[j] = 200 AND NOT rep[j] AND earn[j] > 0
        GROUP BY rcv[j] ORDER BY rcv[j]
        ON CONFLICT (receiver_id) DO UPDATE SET balance = a.balance + excluded.balance, updated_at = now();
        IF house_total > 0 THEN
            UPDATE house_slots SET balance = house_slots.balance + house_total, updated_at = now()
            WHERE house_slots.slot = hslot;
        END IF;
    END IF;

    RETURN QUERY SELECT st[j], bal[j], rep[j], reu[j], why[j], cprice[j]
    FROM generate_subscripts(p_request_id, 1) AS j ORDER BY j;
END
$$;
