"""The scorecard and ``model_accuracy`` on the local ClickHouse 18.16: accuracy for classifiers, and no accuracy
for a regression, whose rows are never "correct" (before migration 0016 both views said accuracy 0 for every
regression model)."""

from __future__ import annotations

import math
import uuid

import pytest

from driftloop.demo.labeled_history import agrawal_rows
from driftloop.infra.clickhouse.client import connect
from driftloop.streams.sink import ClickHouseSink
from tests.stack_fixtures import PrivateStack

pytestmark = pytest.mark.integration


def test_accuracy_is_a_classifier_s_and_a_regression_has_its_errors_only(stack: PrivateStack) -> None:
    tag = uuid.uuid4().hex[:8]
    classifier, regression = f"acc-c-{tag}", f"acc-r-{tag}"
    guesses = agrawal_rows(classifier, 0, 0, 200, seed=1)  # labels 0/1, every prediction "0"
    prices = agrawal_rows(regression, 0, 0, 200, seed=1)
    errors = [1000.0 + 10.0 * (i % 7) for i in range(200)]  # a price model off by 1,000 to 1,060
    right = sum(guesses.columns["correct"]) / 200  # the classifier's accuracy
    prices.columns.update(
        {
            "prediction": ["250000.0"] * 200,
            "prediction_num": [250000.0] * 200,
            "label": [repr(250000.0 + e) for e in errors],
            "label_num": [250000.0 + e for e in errors],
            "correct": [0] * 200,
            "error": errors,
        }
    )
    sink = ClickHouseSink(stack.settings.clickhouse)
    try:
        sink.write_blocking(guesses)
        sink.write_blocking(prices)
    finally:
        sink.close()
    client = connect(stack.settings.clickhouse)
    try:  # the scorecard counts predictions too: those the labeled rows were joined from
        client.execute(
            "INSERT INTO predictions (event_id, model, model_version, request_id, ts, ts_ms, prediction, "
            "prediction_num, score) SELECT prediction_event_id, model, model_version, request_id, ts, ts_ms, "
            "prediction, prediction_num, score FROM labeled WHERE model IN %(m)s",
            {"m": (classifier, regression)},
        )
        for view, rows, error in (("scorecard", "labeled_rows", "mae"), ("model_accuracy", "labeled", "mean_error")):
            weighted = f"sum(accuracy * {rows}) / sum({rows}), sum({error} * {rows}) / sum({rows})"
            query = f"SELECT model, ({weighted}) FROM {view} WHERE model IN %(m)s GROUP BY model"
            found = dict(client.execute(query, {"m": (classifier, regression)}))
            assert found[classifier][0] == pytest.approx(right) and found[classifier][1] == pytest.approx(1 - right)
            assert math.isnan(found[regression][0]), (view, found[regression])
            assert found[regression][1] == pytest.approx(sum(errors) / 200), view
    finally:
        client.disconnect()
