-- The core tables of driftloop.
--
-- Idempotency: Kafka delivery is at-least-once, so a row can be inserted twice. Every table is a
-- ReplacingMergeTree whose sorting key ends in the row's identity (event_id, alert_id, ...); duplicates
-- collapse on merge, and queries that must count each identity once read with FINAL (or argMax).
-- Sorting keys start with (model, day) because users ask by model and time; the day is derived from
-- the event's own timestamp, so a re-sent event always lands in the same partition and key.
--
-- Portability: runs on ClickHouse 18.16 and on current ClickHouse (no DateTime64, Map, JSON functions
-- beyond visitParam*, LowCardinality or TTL). Timestamps are DateTime (seconds, UTC) plus *_ms (epoch
-- milliseconds) where sub-second order matters. Numbers missing a value are NaN.

CREATE TABLE IF NOT EXISTS ${database}.predictions
(
    event_id         String,
    model            String,
    model_version    UInt32,                  -- 0: not given by the producer
    request_id       String,
    ts               DateTime('UTC'),                -- event time, UTC
    ts_ms            UInt64,                  -- event time, epoch milliseconds
    num              Nested(name String, value Float64),   -- numeric features (NaN: null)
    cat              Nested(name String, value String),    -- categorical features
    missing          Array(String),           -- features sent as null
    prediction       String,                  -- the prediction as sent (number printed, or class)
    prediction_num   Float64,                 -- numeric prediction, NaN for a class
    score            Float64,                 -- score / probability of the predicted class, NaN if none
    scores           Nested(label String, probability Float64),  -- per-class probabilities
    ingested_at      DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (model, toDate(ts), event_id);

CREATE TABLE IF NOT EXISTS ${database}.outcomes
(
    event_id         String,
    model            String,
    request_id       String,
    ts               DateTime('UTC'),
    ts_ms            UInt64,
    label            String,                  -- the label as sent
    label_num        Float64,                 -- numeric label, NaN for a class
    ingested_at      DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (model, toDate(ts), event_id);

-- An outcome joined to its prediction. event_id is the outcome's; ts is the prediction's (accuracy over
-- time is asked by prediction time), outcome_ts when the label arrived.
CREATE TABLE IF NOT EXISTS ${database}.labeled
(
    event_id             String,
    prediction_event_id  String,
    model                String,
    model_version        UInt32,
    request_id           String,
    ts                   DateTime('UTC'),
    ts_ms                UInt64,
    outcome_ts           DateTime('UTC'),
    outcome_ts_ms        UInt64,
    num                  Nested(name String, value Float64),
    cat                  Nested(name String, value String),
    missing              Array(String),
    prediction           String,
    prediction_num       Float64,
    score                Float64,
    label                String,
    label_num            Float64,
    correct              UInt8,               -- classification: prediction == label
    error                Float64,             -- regression: |prediction - label|; classification: 1 - correct
    label_delay_s        Float64,             -- outcome ts - prediction ts
    joined_at            DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree(joined_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (model, toDate(ts), event_id);

-- A drift alert with its evidence. alert_id is deterministic, so a re-published alert collapses.
CREATE TABLE IF NOT EXISTS ${database}.drift_alerts
(
    alert_id                 String,
    model                    String,
    model_version            UInt32,
    kind                     Enum8('data' = 1, 'prediction' = 2, 'performance' = 3),
    signal                   String,          -- feature name, 'score' or 'error'
    detector                 String,
    severity                 Enum8('info' = 1, 'warning' = 2, 'critical' = 3),
    event_ts                 DateTime('UTC'),        -- ts of the event at which the detector fired
    event_ts_ms              UInt64,
    request_id               String,          -- request_id of that event
    detected_at              DateTime('UTC'),        -- wall clock
    statistic                Float64,
    threshold                Float64,
    reference_size           UInt64,
    window_size              UInt64,
    change_point_ts          DateTime('UTC'),        -- estimated change point
    change_point_request_id  String,
    evidence                 String,          -- full evidence as a JSON object (visitParamExtract*)
    message                  String           -- one line for people and chat webhooks
)
ENGINE = ReplacingMergeTree(detected_at)
PARTITION BY toYYYYMM(detected_at)
ORDER BY (model, alert_id);

-- Model versions. A status change is a new row with a higher revision; FINAL shows the current state.
CREATE TABLE IF NOT EXISTS ${database}.model_versions
(
    model             String,
    version           UInt32,
    status            Enum8('candidate' = 1, 'champion' = 2, 'rejected' = 3, 'retired' = 4),
    parent_version    UInt32,                 -- 0: none
    trigger_alert_id  String,
    artifact_uri      String,
    sha256            String,
    train_from        DateTime('UTC'),
    train_to          DateTime('UTC'),
    train_rows        UInt64,
    metric_name       String,
    metric_value      Float64,
    champion_metric   Float64,                -- the champion's value of the same metric on the same holdout
    metrics           String,                 -- all metrics as a JSON object
    reason            String,                 -- why promoted / rejected / retired
    created_at        DateTime('UTC'),
    updated_at        DateTime('UTC'),
    revision          UInt64                  -- increases with every status change (epoch microseconds)
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY (model, version);

-- Retraining runs with timings per phase. Progress updates are new rows with a higher revision.
CREATE TABLE IF NOT EXISTS ${database}.retrain_runs
(
    run_id              String,
    model               String,
    trigger_alert_id    String,
    status              Enum8('queued' = 1, 'running' = 2, 'promoted' = 3, 'rejected' = 4, 'failed' = 5),
    attempt             UInt16,
    device              String,               -- cpu, cuda:0, ...
    started_at          DateTime('UTC'),
    finished_at         DateTime('UTC'),
    train_rows          UInt64,
    holdout_rows        UInt64,
    fetch_s             Float64,
    train_s             Float64,
    evaluate_s          Float64,
    publish_s           Float64,
    champion_version    UInt32,
    challenger_version  UInt32,
    metric_name         String,
    champion_metric     Float64,
    challenger_metric   Float64,
    error               String,
    revision            UInt64
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY (model, run_id);
