-- Ingestion: the request index the outcome join looks predictions up in, the join's waiting room,
-- and dead letters.

-- Predictions by (model, request_id): filled by a materialized view on every insert into predictions,
-- so an outcome finds its prediction by primary key whatever its label delay (seconds or days).
CREATE TABLE IF NOT EXISTS ${database}.prediction_requests
(
    model        String,
    request_id   String,
    event_id     String,
    ts           DateTime('UTC'),
    ts_ms        UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (model, request_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.prediction_requests_mv
TO ${database}.prediction_requests
AS SELECT model, request_id, event_id, ts, ts_ms FROM ${database}.predictions;

-- Outcomes that found no prediction when they arrived. The join sweeps 'pending' ones until their
-- prediction arrives ('matched') or the waiting window ends ('expired': unmatched, counted, kept).
-- A state change is a new row with a higher revision; read with FINAL.
CREATE TABLE IF NOT EXISTS ${database}.join_pending
(
    event_id         String,              -- the outcome's
    model            String,
    request_id       String,
    ts               DateTime('UTC'),
    ts_ms            UInt64,
    label            String,
    label_num        Float64,
    source_partition UInt32,              -- outcomes partition: the worker owning it sweeps it
    arrived_at       DateTime('UTC'),
    state            Enum8('pending' = 1, 'matched' = 2, 'expired' = 3),
    revision         UInt64
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY (model, event_id);

CREATE VIEW IF NOT EXISTS ${database}.unmatched_outcomes AS
SELECT event_id, model, request_id, ts, label, arrived_at
FROM ${database}.join_pending FINAL
WHERE state = 'expired';

-- Messages and envelope events that broke the event contract, with the reason and the original bytes
-- (also published on the dead-letter topic). Keyed by their Kafka coordinates: a redelivery collapses.
CREATE TABLE IF NOT EXISTS ${database}.dead_letters
(
    source_topic      String,
    source_partition  UInt32,
    source_offset     UInt64,
    event_index       Int32,              -- position in an envelope; -1: the whole message
    reason            String,
    original          String,             -- the original bytes (truncated to 64 KiB)
    original_size     UInt64,
    received_at       DateTime('UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, source_partition, source_offset, event_index);
