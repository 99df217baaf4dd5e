-- Controlled release: shadow and canary stages, the record of every stage change, and the scorecard.

-- Prediction events say whether their answer reached the caller (`served`: 0 for a shadow version's) and how
-- long the serving client took for the batch the prediction was part of (`latency_ms`, NaN when not sent).
ALTER TABLE ${database}.predictions ADD COLUMN served UInt8 DEFAULT 1;
ALTER TABLE ${database}.predictions ADD COLUMN latency_ms Float64 DEFAULT nan;

-- Outcome events may carry the business value of the decision (`value`, NaN when not sent).
ALTER TABLE ${database}.outcomes ADD COLUMN value Float64 DEFAULT nan;
ALTER TABLE ${database}.join_pending ADD COLUMN value Float64 DEFAULT nan;

-- A labeled row per prediction an outcome meets: the served one (event_id: the outcome's) and each shadow
-- version's (event_id: the outcome's, then '@v' and the version), so both sides of a shadow are judged on
-- the same outcomes. `value` is the served decision's: NaN on a shadow's rows.
ALTER TABLE ${database}.labeled ADD COLUMN served UInt8 DEFAULT 1;
ALTER TABLE ${database}.labeled ADD COLUMN value Float64 DEFAULT nan;

-- Version stages: candidate -> shadow -> canary -> champion, or rejected; a replaced champion is retired,
-- one taken back rolled_back. `traffic_share`: the share of requests a canary serves.
ALTER TABLE ${database}.model_versions MODIFY COLUMN status Enum8('candidate' = 1, 'champion' = 2, 'rejected' = 3, 'retired' = 4, 'shadow' = 5, 'canary' = 6, 'rolled_back' = 7);
ALTER TABLE ${database}.model_versions ADD COLUMN traffic_share Float64 DEFAULT 0;

-- A retraining run whose challenger passed the offline gate and was handed to the release controller.
ALTER TABLE ${database}.retrain_runs MODIFY COLUMN status Enum8('queued' = 1, 'running' = 2, 'promoted' = 3, 'rejected' = 4, 'failed' = 5, 'skipped' = 6, 'candidate' = 7);

-- Alerts carry who owns the model and where its response plan is (the spec's `owner` and `runbook`).
ALTER TABLE ${database}.drift_alerts ADD COLUMN owner String DEFAULT '';
ALTER TABLE ${database}.drift_alerts ADD COLUMN runbook String DEFAULT '';

-- Every change of a version's stage, with the evidence it was decided on. `path`: release (the controller's
-- normal path), urgent (the spec's shorter path for a champion below its floor), manual (a person), first
-- (a model's first version). `result`: pass, fail, deadline, superseded or manual.
CREATE TABLE IF NOT EXISTS ${database}.version_changes
(
    change_id         String,
    model             String,
    version           UInt32,
    from_stage        Enum8('none' = 0, 'candidate' = 1, 'champion' = 2, 'rejected' = 3, 'retired' = 4, 'shadow' = 5, 'canary' = 6, 'rolled_back' = 7),
    to_stage          Enum8('none' = 0, 'candidate' = 1, 'champion' = 2, 'rejected' = 3, 'retired' = 4, 'shadow' = 5, 'canary' = 6, 'rolled_back' = 7),
    changed_at        DateTime('UTC'),
    changed_at_ms     UInt64,
    path              String,
    reason            String,
    traffic_share     Float64,
    baseline_version  UInt32,                 -- the version compared against (0: none)
    metric_name       String,
    metric            Float64,                -- this version's live metric on the evidence rows
    baseline_metric   Float64,                -- the baseline's, same rows or same period
    kpi               Float64,                -- mean business value per labeled row (NaN: no KPI)
    baseline_kpi      Float64,
    rows              UInt64,                 -- pairs (shadow) or this version's labeled rows (canary, watch)
    test              String,                 -- e.g. mcnemar, paired-abs-error, two-sample-z, one-sample-z
    statistic         Float64,
    p_value           Float64,
    result            String,
    evidence          String                  -- all of it as a JSON object (visitParamExtract*)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(changed_at)
ORDER BY (model, version, change_id);

-- The scorecard: business results, model metrics and operations per model, version, stage and hour of
-- prediction time. `stage`: the version's stage when it made the prediction (from version_changes; shadow for
-- a prediction not served; 'unregistered' for a version the registry does not know). `served_share`: of the
-- model's served predictions in the hour, the share this version served in this stage. Binary metrics
-- (precision, recall, F1, ROC AUC) for a model whose labels take exactly two values; the positive class is
-- the greater label ("1" over "0", "yes" over "no"); ROC AUC from the score of the predicted class, ties
-- counted as half. MAE and RMSE are of `error` (regression). `dead_letters`: of the model, that hour.
CREATE VIEW IF NOT EXISTS ${database}.scorecard AS
SELECT
    model,
    version,
    stage,
    hour,
    predictions,
    if(stage = 'shadow', 0., predictions / served_total)                    AS served_share,
    labeled_rows,
    if(labeled_rows = 0, nan, accuracy)                                     AS accuracy,
    if(binary AND tp + fp > 0, tp / (tp + fp), nan)                         AS precision,
    if(binary AND tp + fn > 0, tp / (tp + fn), nan)                         AS recall,
    if(binary AND tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), nan)       AS f1,
    if(binary AND positives > 0 AND negatives > 0,
       (arraySum(arrayMap((p, below) -> p * below, arrayMap(x -> x.2, low_first),
                          arrayCumSum(arrayMap(x -> 1 - x.2, low_first))))
        + arraySum(arrayMap((p, below) -> p * below, arrayMap(x -> x.2, high_first),
                            arrayCumSum(arrayMap(x -> 1 - x.2, high_first)))))
       / (2 * positives * negatives),
       nan)                                                                 AS roc_auc,
    if(labeled_rows = 0, nan, mae)                                          AS mae,
    if(labeled_rows = 0, nan, rmse)                                         AS rmse,
    kpi_rows,
    kpi_sum,
    if(kpi_rows = 0, nan, kpi_sum / kpi_rows)                               AS kpi_mean,
    if(labeled_rows = 0, nan, label_delay_p50_s)                            AS label_delay_p50_s,
    if(labeled_rows = 0, nan, label_delay_p99_s)                            AS label_delay_p99_s,
    latency_p50_ms,
    latency_p99_ms,
    dead_letters
FROM
(
    SELECT *
    FROM
    (
        SELECT *
        FROM
        (
            SELECT *
            FROM
            (
                SELECT
                    model,
                    version,
                    if(served = 0, 'shadow', if(entered = 0, 'unregistered', stages[entered]))  AS stage,
                    toStartOfHour(ts)                                         AS hour,
                    count()                                                   AS predictions,
                    quantilesIf(0.5, 0.99)(latency_ms, NOT isNaN(latency_ms)) AS latency_q,
                    latency_q[1]                                              AS latency_p50_ms,
                    latency_q[2]                                              AS latency_p99_ms
                FROM
                (
                    -- `+ 0 * ts_ms`: ClickHouse 18.16 drops a column that only a lambda reads from the subquery
                    SELECT model, version, served, ts, latency_ms, stages,
                           arrayCount(x -> x <= ts_ms, starts) + 0 * ts_ms AS entered
                    FROM
                    (
                        SELECT model, model_version AS version, served, ts, ts_ms, latency_ms
                        FROM ${database}.predictions FINAL
                    ) AS predicted
                    ANY LEFT JOIN
                    (
                        SELECT model, version, arrayMap(x -> x.1, changes) AS starts, arrayMap(x -> x.2, changes) AS stages
                        FROM
                        (
                            SELECT model, version, arraySort(groupArray((changed_at_ms, toString(to_stage)))) AS changes
                            FROM ${database}.version_changes FINAL
                            GROUP BY model, version
                        ) AS grouped
                    ) AS stage_changes USING (model, version)
                ) AS staged_predictions
                GROUP BY model, version, stage, hour
            ) AS served_predictions
            ANY LEFT JOIN
            (
                SELECT model, toStartOfHour(ts) AS hour, countIf(served = 1) AS served_total
                FROM ${database}.predictions FINAL
                GROUP BY model, hour
            ) AS model_totals USING (model, hour)
        ) AS predicted_hours
        ANY LEFT JOIN
        (
            SELECT
                model,
                version,
                stage,
                hour,
                count()                                                       AS labeled_rows,
                avg(correct)                                                  AS accuracy,
                any(binary_model)                                             AS binary,
                countIf(prediction = positive AND label = positive)           AS tp,
                countIf(prediction = positive AND label != positive)          AS fp,
                countIf(prediction != positive AND label = positive)          AS fn,
                countIf(label = positive AND NOT isNaN(score))                AS positives,
                countIf(label != positive AND NOT isNaN(score))               AS negatives,
                groupArrayIf((if(prediction = positive, score, 1 - score), toUInt8(label = positive)),
                             NOT isNaN(score))                                AS scored,
                arraySort(x -> (x.1, x.2), scored)                            AS low_first,
                arraySort(x -> (x.1, -x.2), scored)                           AS high_first,
                avg(error)                                                    AS mae,
                sqrt(avg(error * error))                                      AS rmse,
                countIf(NOT isNaN(value))                                     AS kpi_rows,
                sumIf(value, NOT isNaN(value))                                AS kpi_sum,
                quantiles(0.5, 0.99)(label_delay_s)                           AS delay_q,
                delay_q[1]                                                    AS label_delay_p50_s,
                delay_q[2]                                                    AS label_delay_p99_s
            FROM
            (
                SELECT model, version, toStartOfHour(ts) AS hour, correct, error, value, label_delay_s, score,
                       prediction, label, positive, binary_model,
                       if(served = 0, 'shadow', if(entered = 0, 'unregistered', stages[entered])) AS stage
                FROM
                (
                    SELECT model, version, ts, correct, error, value, label_delay_s, score, prediction, label,
                           served, stages, arrayCount(x -> x <= ts_ms, starts) + 0 * ts_ms AS entered
                    FROM
                    (
                        SELECT model, model_version AS version, served, ts, ts_ms, correct, error, value,
                               label_delay_s, score, prediction, label
                        FROM ${database}.labeled FINAL
                    ) AS judged
                    ANY LEFT JOIN
                    (
                        SELECT model, version, arrayMap(x -> x.1, changes) AS starts, arrayMap(x -> x.2, changes) AS stages
                        FROM
                        (
                            SELECT model, version, arraySort(groupArray((changed_at_ms, toString(to_stage)))) AS changes
                            FROM ${database}.version_changes FINAL
                            GROUP BY model, version
                        ) AS grouped
                    ) AS stage_changes USING (model, version)
                ) AS staged_labels
                ANY LEFT JOIN
                (
                    SELECT model, max(label) AS positive, uniqExact(label) = 2 AS binary_model
                    FROM ${database}.labeled FINAL
                    GROUP BY model
                ) AS classes USING (model)
            ) AS labeled_rows
            GROUP BY model, version, stage, hour
        ) AS judged_hours USING (model, version, stage, hour)
    ) AS scored_hours
    ANY LEFT JOIN
    (
        SELECT visitParamExtractString(original, 'model') AS model, toStartOfHour(received_at) AS hour,
               count() AS dead_letters
        FROM ${database}.dead_letters FINAL
        GROUP BY model, hour
    ) AS dead USING (model, hour)
);

-- Retraining runs with the alert that started them: a run's challenger now becomes champion when the release
-- controller promotes it, so `alert_to_champion_s` is read from version_changes (-1: not champion yet).
DROP TABLE IF EXISTS ${database}.retrain_timeline;  -- a view (18.16 drops views with DROP TABLE)
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
    if(toUInt32(champion_at) > 0, toInt64(champion_at) - toInt64(alert_detected_at), -1) AS alert_to_champion_s,
    error
FROM
(
    SELECT *
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
    ) AS alerts USING (model, trigger_alert_id)
) AS timeline
ANY LEFT JOIN
(
    SELECT model, version AS challenger_version, min(changed_at) AS champion_at
    FROM ${database}.version_changes FINAL
    WHERE to_stage = 'champion'
    GROUP BY model, challenger_version
) AS champions USING (model, challenger_version);
