-- giftd serve in partitioned mode (docs/scale-out.md#the-debit-batch).

-- One group-commit batch, executed on partition p_partition by the
-- partition's giftd_debit_gifts_on (partition migration 3), which refuses it
-- unless every user of the batch lives there, then runs the partition's
-- giftd_debit_gifts: one transaction on one partition, committed or failed
-- as one. giftd forms batches per partition (internal/partition.For) and
-- names the partition.
CREATE FUNCTION giftd_debit_gifts_on(
    p_partition     int,
    p_platform      text[],
    p_app_id        text[],
    p_request_id    text[],
    p_fingerprint   bytea[],
    p_user_id       text[],
    p_gold          bigint[],
    p_expires_at    timestamptz[],
    p_details       jsonb[],
    p_receiver_id   text[],
    p_room_id       text[],
    p_gift_id       text[],
    p_count         bigint[],
    p_unit_price    bigint[],
    p_settle        boolean,
    p_price_check   boolean,
    p_default_share int,
    p_policy        jsonb,
    p_now           timestamptz
) RETURNS TABLE (status smallint, balance bigint, replay boolean, reused boolean, refusal text, price bigint,
                 refusal_limit bigint, resets_at timestamptz, reminded boolean)
LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_partition_number(p_partition);
$$;

-- A debit request's record, looked for on every partition (its key does not
-- name its user): Store.Recorded's late-retry path. Like Store.Recorded on
-- one server, a found record writes the replay WAL record first (docs/ha.md).
-- It fails while any partition is down.
CREATE FUNCTION giftd_debit_record(p_platform text, p_app_id text, p_request_id text)
    RETURNS TABLE (fingerprint bytea, status smallint, balance bigint, refusal text, refusal_limit bigint,
                   refusal_resets_at timestamptz)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON ALL;
    SELECT r.fingerprint, r.status, r.balance, r.refusal, r.refusal_limit, r.refusal_resets_at
    FROM (SELECT d.*, pg_logical_emit_message(true, 'giftd', 'replay') AS m FROM debit_requests AS d
          WHERE d.platform = p_platform AND d.app_id = p_app_id AND d.request_id = p_request_id) AS r;
$$;

-- The same on the partition of p_user_id only: a request's copies have one
-- user (their fingerprint covers it), so that is where its record is
-- (Store.RecordedFor, the callbacks' late retries).
CREATE FUNCTION giftd_debit_record_of(p_user_id text, p_platform text, p_app_id text, p_request_id text)
    RETURNS TABLE (fingerprint bytea, status smallint, balance bigint, refusal text, refusal_limit bigint,
                   refusal_resets_at timestamptz)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_placement(p_user_id);
    SELECT r.fingerprint, r.status, r.balance, r.refusal, r.refusal_limit, r.refusal_resets_at
    FROM (SELECT d.*, pg_logical_emit_message(true, 'giftd', 'replay') AS m FROM debit_requests AS d
          WHERE d.platform = p_platform AND d.app_id = p_app_id AND d.request_id = p_request_id) AS r;
$$;

-- Where partition p_partition's schemas stand (partition migration 3), for
-- giftd's readiness.
CREATE FUNCTION giftd_partition_status(p_partition integer,
    OUT main_version bigint, OUT main_dirty boolean, OUT partition_version bigint, OUT partition_dirty boolean,
    OUT partition integer, OUT partitions integer)
    LANGUAGE plproxy AS $$
    CLUSTER 'giftd';
    RUN ON giftd_partition_number(p_partition);
    SELECT * FROM giftd_partition_status();
$$;
