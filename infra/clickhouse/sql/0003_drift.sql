-- Drift detection: detector state that survives restarts, and detector statistics to chart.

-- One row per model: its detectors' state (recent values, counts, policy clocks) as JSON, saved
-- periodically by the worker that owns the model's partition and read back when a worker takes it over.
CREATE TABLE IF NOT EXISTS ${database}.detector_state
(
    model      String,
    state      String,
    events     UInt64,
    saved_at   DateTime('UTC'),
    revision   UInt64
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY model;

-- Detector statistics over time, one row per signal per interval: chart a signal, see why an alert fired.
CREATE TABLE IF NOT EXISTS ${database}.detector_stats
(
    model        String,
    signal       String,
    kind         Enum8('data' = 1, 'prediction' = 2, 'performance' = 3),
    detector     String,
    ts           DateTime('UTC'),         -- wall clock of the sample
    events       UInt64,                  -- values the signal has seen
    mean         Float64,                 -- mean of the values since the previous sample (NaN: categorical)
    drifts       UInt32                   -- detections so far (before the alert policy)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (model, signal, ts);
