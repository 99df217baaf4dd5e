-- What a model's spec says that SQL needs, and the scorecard reading it. The scorecard took a model's positive
-- class to be its greater label, whatever the spec's `training.positive_class` said: for a fraud model labeled
-- `fraud` / `legit` it gave precision, recall and F1 of `legit` (near 1 while every fraud went through), where the
-- release controller, training and tuning score `fraud`. It also gave a classifier `mae` and `rmse` (its error
-- rate, and the root of it), and a classifier of more than two classes no precision, recall or F1. The drift
-- worker writes each model's spec in force to `model_specs` when it first sees the model and whenever the spec
-- changes (edited, added, removed: the defaults, a row of empty fields); the scorecard takes the task and the
-- positive class from it, and infers them from the labels as before where the spec leaves them out (or there is
-- none). `mae` and `rmse` are a regression's only; a multiclass model's precision, recall and F1 are macro
-- averages over its classes (up to 100) that the hour's rows predicted, held, or either.
CREATE TABLE IF NOT EXISTS ${database}.model_specs
(
    model                 String,
    task                  String,            -- binary | multiclass | regression; '': inferred from its rows
    positive_class        String,            -- training.positive_class; '': the greater label
    metric                String,            -- the live metric releases, floors and thresholds judge
    owner                 String,            -- who answers for the model
    runbook               String,            -- its response plan
    kpi_name              String,            -- '': no KPI
    kpi_higher_is_better  UInt8,
    spec_file             UInt8,             -- 0: the model has no spec file (the defaults)
    recorded_at           DateTime('UTC'),
    revision              UInt64             -- epoch microseconds of the write: FINAL shows the spec in force
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY model;

DROP TABLE IF EXISTS ${database}.scorecard;  -- a view (18.16 drops views with DROP TABLE)
CREATE VIEW IF NOT EXISTS ${database}.scorecard AS
SELECT
    model,
    version,
    stage,
    hour,
    predictions,
    if(stage = 'shadow', 0., predictions / served_total)                    AS served_share,
    labeled_rows,
    if(labeled_rows = 0 OR regression OR distances > 0, nan, accuracy)      AS accuracy,
    if(binary, if(tp + fp > 0, tp / (tp + fp), nan), macro_precision)       AS precision,
    if(binary, if(tp + fn > 0, tp / (tp + fn), nan), macro_recall)          AS recall,
    if(binary, if(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), nan), macro_f1) AS f1,
    if(binary AND positives > 0 AND negatives > 0,
       (arraySum(arrayMap((p, below) -> p * below, arrayMap(x -> x.2, low_first),
                          arrayCumSum(arrayMap(x -> 1 - x.2, low_first))))
        + arraySum(arrayMap((p, below) -> p * below, arrayMap(x -> x.2, high_first),
                            arrayCumSum(arrayMap(x -> 1 - x.2, high_first)))))
       / (2 * positives * negatives),
       nan)                                                                 AS roc_auc,
    if(labeled_rows = 0 OR NOT regression, nan, mae)                        AS mae,
    if(labeled_rows = 0 OR NOT regression, nan, rmse)                       AS rmse,
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
                countIf(error != 0 AND error != 1)                            AS distances,
                any(binary_model)                                             AS binary,
                any(regression_model)                                         AS regression,
                countIf(prediction = positive AND label = positive)           AS tp,
                countIf(prediction = positive AND label != positive)          AS fp,
                countIf(prediction != positive AND label = positive)          AS fn,
                countIf(label = positive AND NOT isNaN(score))                AS positives,
                countIf(label != positive AND NOT isNaN(score))               AS negatives,
                groupArrayIf((if(prediction = positive, score, 1 - score), toUInt8(label = positive)),
                             NOT isNaN(score))                                AS scored,
                arraySort(x -> (x.1, x.2), scored)                            AS low_first,
                arraySort(x -> (x.1, -x.2), scored)                           AS high_first,
                sumForEach(arrayMap(c -> toUInt64(prediction = c AND label = c), model_classes))  AS class_tp,
                sumForEach(arrayMap(c -> toUInt64(prediction = c AND label != c), model_classes)) AS class_fp,
                sumForEach(arrayMap(c -> toUInt64(prediction != c AND label = c), model_classes)) AS class_fn,
                arrayMap((t, f) -> if(t + f > 0, t / (t + f), nan), class_tp, class_fp)          AS class_precision,
                arrayMap((t, n) -> if(t + n > 0, t / (t + n), nan), class_tp, class_fn)          AS class_recall,
                arrayMap((t, f, n) -> if(t + f + n > 0, 2 * t / (2 * t + f + n), nan), class_tp, class_fp, class_fn)
                                                                              AS class_f1,
                arraySum(arrayFilter(x -> NOT isNaN(x), class_precision))
                    / arrayCount(x -> NOT isNaN(x), class_precision)          AS macro_precision,
                arraySum(arrayFilter(x -> NOT isNaN(x), class_recall))
                    / arrayCount(x -> NOT isNaN(x), class_recall)             AS macro_recall,
                arraySum(arrayFilter(x -> NOT isNaN(x), class_f1)) / arrayCount(x -> NOT isNaN(x), class_f1)
                                                                              AS macro_f1,
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
                       prediction, label, positive, binary_model, regression_model, model_classes,
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
                    SELECT model,
                           if(spec_positive != '', spec_positive, greatest_label)          AS positive,
                           if(spec_task != '', spec_task = 'binary', label_count = 2)       AS binary_model,
                           if(spec_task != '', spec_task = 'regression', any_distance)      AS regression_model,
                           if(NOT binary_model AND NOT regression_model AND label_count <= 100,
                              arraySort(label_set), emptyArrayString())                     AS model_classes
                    FROM
                    (
                        SELECT model, max(label) AS greatest_label, uniqExact(label) AS label_count,
                               countIf(error != 0 AND error != 1) > 0 AS any_distance,
                               groupUniqArray(label) AS label_set
                        FROM ${database}.labeled FINAL
                        GROUP BY model
                    ) AS seen_labels
                    ANY LEFT JOIN
                    (
                        SELECT model, task AS spec_task, positive_class AS spec_positive
                        FROM ${database}.model_specs FINAL
                    ) AS declared USING (model)
                ) AS classes USING (model)
            ) AS staged_rows
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
