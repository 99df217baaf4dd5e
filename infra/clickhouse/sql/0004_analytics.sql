-- Analytics: views for the questions people ask every day. docs/sql.md shows each with a sample query.
--
-- Each view reads the deduplicated state (FINAL), so a re-delivered event or a re-published alert is
-- counted once. Time buckets are minutes of event time; re-bucket with toStartOfHour(minute) etc.
-- Portable: ClickHouse 18.16 and current ClickHouse (no window functions, no JSONExtract).

-- Accuracy (classification) or error (regression) per model, serving version and minute of prediction time.
CREATE VIEW IF NOT EXISTS ${database}.model_accuracy AS
SELECT
    model,
    model_version,
    toStartOfMinute(ts)        AS minute,
    uniqExact(event_id)        AS labeled,
    avg(correct)               AS accuracy,
    avg(error)                 AS mean_error,
    avg(label_delay_s)         AS mean_label_delay_s
FROM ${database}.labeled FINAL
GROUP BY model, model_version, minute;

-- Numeric features over time: count, mean, spread, range and share of nulls per model, feature and minute.
CREATE VIEW IF NOT EXISTS ${database}.feature_stats AS
SELECT
    model,
    toStartOfMinute(ts)                          AS minute,
    num.name                                     AS feature,
    count()                                      AS values,
    avgIf(num.value, isFinite(num.value))        AS mean,
    stddevPopIf(num.value, isFinite(num.value))  AS stddev,
    minIf(num.value, isFinite(num.value))        AS min,
    maxIf(num.value, isFinite(num.value))        AS max,
    countIf(isNaN(num.value)) / count()          AS null_share
FROM ${database}.predictions FINAL
ARRAY JOIN num
GROUP BY model, minute, feature;

-- Categorical features over time: how often each value was sent, per model, feature and minute.
CREATE VIEW IF NOT EXISTS ${database}.category_counts AS
SELECT
    model,
    toStartOfMinute(ts)  AS minute,
    cat.name             AS feature,
    cat.value            AS value,
    count()              AS events
FROM ${database}.predictions FINAL
ARRAY JOIN cat
GROUP BY model, minute, feature, value;

-- How long labels take to arrive, per model and hour of prediction time (seconds).
CREATE VIEW IF NOT EXISTS ${database}.label_delay AS
SELECT
    model,
    toStartOfHour(ts)                                AS hour,
    uniqExact(event_id)                              AS labeled,
    quantiles(0.5, 0.9, 0.99)(label_delay_s)         AS delay_quantiles,
    delay_quantiles[1]                               AS p50_s,
    delay_quantiles[2]                               AS p90_s,
    delay_quantiles[3]                               AS p99_s,
    max(label_delay_s)                               AS max_s
FROM ${database}.labeled FINAL
GROUP BY model, hour;

-- Every drift alert with its evidence and how far behind the change point it fired (event time).
CREATE VIEW IF NOT EXISTS ${database}.alert_history AS
SELECT
    alert_id,
    model,
    model_version,
    kind,
    signal,
    detector,
    severity,
    change_point_ts,
    event_ts,
    detected_at,
    toInt64(event_ts) - toInt64(change_point_ts)       AS detection_delay_s,
    statistic,
    threshold,
    reference_size,
    window_size,
    visitParamExtractFloat(evidence, 'reference_mean') AS reference_mean,
    visitParamExtractFloat(evidence, 'window_mean')    AS window_mean,
    message,
    evidence
FROM ${database}.drift_alerts FINAL;

-- Retraining runs with the alert that started them: from alert to run start, and to the new champion.
CREATE VIEW IF NOT EXISTS ${database}.retrain_timeline AS
SELECT
    model,
    run_id,
    trigger_alert_id,
    alert_kind,
    alert_signal,
    alert_detected_at,
    status,
    attempt,
    device,
    started_at,
    finished_at,
    train_rows,
    fetch_s,
    train_s,
    evaluate_s,
    publish_s,
    champion_version,
    challenger_version,
    metric_name,
    champion_metric,
    challenger_metric,
    toInt64(started_at) - toInt64(alert_detected_at)        AS alert_to_start_s,
    if(status = 'promoted', toInt64(finished_at) - toInt64(alert_detected_at), -1) AS alert_to_champion_s,
    error
FROM
(
    SELECT model, run_id, trigger_alert_id, status, attempt, device, started_at, finished_at, train_rows,
           fetch_s, train_s, evaluate_s, publish_s, champion_version, challenger_version, metric_name,
           champion_metric, challenger_metric, error
    FROM ${database}.retrain_runs FINAL
) AS runs
ANY LEFT JOIN
(
    SELECT model, alert_id AS trigger_alert_id, toString(kind) AS alert_kind, signal AS alert_signal,
           detected_at AS alert_detected_at
    FROM ${database}.drift_alerts FINAL
) AS alerts USING (model, trigger_alert_id);

-- Model versions as they stand now, with why each got its status.
CREATE VIEW IF NOT EXISTS ${database}.version_history AS
SELECT model, version, status, parent_version, trigger_alert_id, train_rows, metric_name, metric_value,
       champion_metric, reason, created_at, updated_at
FROM ${database}.model_versions FINAL;

-- The outcome join per model: outcomes still waiting for their prediction, matched late, or expired.
CREATE VIEW IF NOT EXISTS ${database}.outcome_join_status AS
SELECT
    model,
    countIf(state = 'pending')  AS pending,
    countIf(state = 'matched')  AS matched_late,
    countIf(state = 'expired')  AS unmatched
FROM ${database}.join_pending FINAL
GROUP BY model;
