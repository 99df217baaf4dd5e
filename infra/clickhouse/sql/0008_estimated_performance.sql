-- Performance before labels: for classifiers that send calibrated scores (the probability of the predicted
-- class), the expected accuracy of a set of predictions is the mean of their scores (confidence-based
-- performance estimation, CBPE). Per model, version and hour of prediction time, the estimate from every
-- served prediction with a score, beside the accuracy realized on the rows labeled so far, and the
-- calibration gap on those same rows (mean score − accuracy): where it is not near 0 the scores are not
-- calibrated and the estimate is not to be trusted. An estimate cannot see a concept drift (the model is as
-- confident as before while the world changed): only labels show that.
CREATE VIEW IF NOT EXISTS ${database}.estimated_performance AS
SELECT
    model,
    version,
    hour,
    scored,
    estimated_accuracy,
    labeled_rows,
    if(labeled_rows = 0, nan, realized_accuracy)                              AS realized_accuracy,
    if(labeled_scored = 0, nan, labeled_mean_score - labeled_scored_accuracy) AS calibration_gap
FROM
(
    SELECT
        model,
        model_version                                   AS version,
        toStartOfHour(ts)                               AS hour,
        count()                                         AS scored,
        avg(score)                                      AS estimated_accuracy
    FROM ${database}.predictions FINAL
    WHERE served = 1 AND NOT isNaN(score) AND (isNaN(prediction_num) OR prediction_num = floor(prediction_num))
    GROUP BY model, version, hour
) AS estimated
ANY LEFT JOIN
(
    SELECT
        model,
        model_version                                   AS version,
        toStartOfHour(ts)                               AS hour,
        count()                                         AS labeled_rows,
        avg(correct)                                    AS realized_accuracy,
        countIf(NOT isNaN(score))                       AS labeled_scored,
        avgIf(score, NOT isNaN(score))                  AS labeled_mean_score,
        avgIf(correct, NOT isNaN(score))                AS labeled_scored_accuracy
    FROM ${database}.labeled FINAL
    WHERE served = 1
    GROUP BY model, version, hour
) AS realized USING (model, version, hour);
