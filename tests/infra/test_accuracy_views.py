"""The scorecard and ``model_accuracy`` on the local ClickHouse 18.16: accuracy for classifiers, and no accuracy
for a regression, whose rows are never "correct" (before migration 0016 both views said accuracy 0 for every
regression model); the scorecard's ``mae`` and ``rmse`` a regression's only (migration 0017); one model's
scorecard read from its own rows."""

from __future__ import annotations

import math
import random
import time
import uuid

import pytest

from driftloop.analytics.scorecard import ScorecardRow, load_scorecard, one_model_scorecard
from driftloop.demo.labeled_history import TS0, agrawal_rows
from driftloop.infra.clickhouse.client import connect
from driftloop.infra.spec import ModelSpec
from driftloop.streams.drift.spec_record import SpecRecorder
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
            assert found[classifier][0] == pytest.approx(right)
            if view == "scorecard":  # mae is a regression's: a classifier's is its error rate, 1 - accuracy again
                assert math.isnan(found[classifier][1])
            else:  # model_accuracy's mean_error is a classifier's error rate
                assert found[classifier][1] == pytest.approx(1 - right)
            assert math.isnan(found[regression][0]), (view, found[regression])
            assert found[regression][1] == pytest.approx(sum(errors) / 200), view
    finally:
        client.disconnect()


def test_one_model_s_scorecard_reads_that_model_s_rows_and_shows_what_the_view_shows(stack: PrivateStack) -> None:
    """``driftloop scorecard`` and the report read one model's scorecard. Through the view, ClickHouse 18.16 read
    every model's rows for it (no filter reaches the view's subqueries): 20 s for one model among twenty models' 20
    million predictions and labels. Its query now keeps each scan to the model, with the view's rows."""
    tag = uuid.uuid4().hex[:8]
    small, busy = f"sc-small-{tag}", f"sc-busy-{tag}"
    sink = ClickHouseSink(stack.settings.clickhouse)
    try:
        sink.write_blocking(agrawal_rows(small, 0, 0, 300, seed=2))
    finally:
        sink.close()
    client = connect(stack.settings.clickhouse)
    try:
        client.execute(
            "INSERT INTO predictions (event_id, model, model_version, request_id, ts, ts_ms, prediction, "
            "prediction_num, score, latency_ms) SELECT prediction_event_id, model, model_version, request_id, ts, "
            "ts_ms, prediction, prediction_num, 0.7, 3.5 FROM labeled WHERE model = %(m)s",
            {"m": small},
        )
        client.execute(
            "INSERT INTO version_changes (change_id, model, version, from_stage, to_stage, changed_at, "
            "changed_at_ms, path) VALUES",
            [(f"{small}-1", small, 1, "none", "champion", TS0 - 10, (TS0 - 10) * 1000, "first")],
        )
        for table in ("predictions", "labeled"):  # a busy model's 100,000 rows beside the small one's 300
            client.execute(
                f"INSERT INTO {table} (event_id, model, model_version, request_id, ts, ts_ms, prediction) "
                "SELECT concat('e', toString(number)), %(m)s, 1, toString(number), toDateTime(%(t)s + number), "
                "(%(t)s + number) * 1000, '1' FROM numbers(100000)",
                {"m": busy, "t": TS0},
            )
        fields = ", ".join(ScorecardRow._fields)
        order = "WHERE model = %(m)s ORDER BY hour, version, stage"
        through_view = client.execute(f"SELECT {fields} FROM scorecard {order}", {"m": small})
        view_read = client.last_query.progress.rows
        scoped = one_model_scorecard(stack.settings.clickhouse.database)
        client.execute(f"SELECT {fields} FROM ({scoped}) {order}", {"m": small})
        scoped_read = client.last_query.progress.rows
    finally:
        client.disconnect()
    loaded = load_scorecard(stack.settings, small)
    assert [tuple(map(repr, row)) for row in loaded] == [tuple(map(repr, row)) for row in through_view]
    assert {(row.version, row.stage) for row in loaded} == {(1, "champion")}
    assert sum(row.labeled_rows for row in loaded) == 300 and sum(row.predictions for row in loaded) == 300
    assert view_read > 400_000  # the busy model's predictions and labels, each read twice
    assert scoped_read * 4 < view_read, (scoped_read, view_read)  # granules of the small model's only


def classified(stack: PrivateStack, model: str, pairs: list[tuple[str, str]], scores: list[float]) -> None:
    """A classifier's labeled rows, one a (label, prediction) pair with its score, and the predictions they were
    joined from (the scorecard counts both)."""
    rows = agrawal_rows(model, 0, 0, len(pairs), seed=3)
    rows.columns.update(
        {
            "label": [label for label, _ in pairs],
            "label_num": [math.nan] * len(pairs),
            "prediction": [predicted for _, predicted in pairs],
            "prediction_num": [math.nan] * len(pairs),
            "score": scores,
            "correct": [int(label == predicted) for label, predicted in pairs],
            "error": [float(label != predicted) for label, predicted in pairs],
        }
    )
    sink = ClickHouseSink(stack.settings.clickhouse)
    try:
        sink.write_blocking(rows)
    finally:
        sink.close()
    client = connect(stack.settings.clickhouse)
    try:
        client.execute(
            "INSERT INTO predictions (event_id, model, model_version, request_id, ts, ts_ms, prediction, score) "
            "SELECT prediction_event_id, model, model_version, request_id, ts, ts_ms, prediction, score "
            "FROM labeled WHERE model = %(m)s",
            {"m": model},
        )
    finally:
        client.disconnect()


def test_the_scorecard_scores_the_class_the_spec_names(stack: PrivateStack) -> None:
    """A fraud model labeled ``fraud`` / ``legit`` whose spec names ``fraud`` its positive class. The scorecard took
    the greater label (``legit``): precision 0.92 and recall 0.94 while three frauds in four went through, where
    release and training scored ``fraud``. It now takes the class from ``model_specs`` (written by the drift worker
    from the spec in force), the greater label where the spec names none, and a spec's task over the labels."""
    model = f"fraud-{uuid.uuid4().hex[:8]}"
    rng = random.Random(7)
    # 400 rows: 40 frauds, 10 of them caught; 20 of the 360 legit ones stopped as fraud
    pairs = (
        [("fraud", "fraud")] * 10 + [("fraud", "legit")] * 30 + [("legit", "fraud")] * 20 + [("legit", "legit")] * 340
    )
    rng.shuffle(pairs)
    classified(stack, model, pairs, [rng.uniform(0.5, 1.0) for _ in pairs])
    sink = ClickHouseSink(stack.settings.clickhouse)
    client = connect(stack.settings.clickhouse)
    try:

        def scored(spec: ModelSpec | None) -> tuple[float, ...]:
            if spec is not None:  # as the drift worker records the spec in force
                batch = SpecRecorder().changed([spec], has_file=lambda m: True, now_us=time.time_ns() // 1000)
                assert batch is not None and sink.write_blocking(batch) == []
            (row,) = load_scorecard(stack.settings, model)
            (through_view,) = client.execute(
                "SELECT precision, recall, f1, roc_auc, accuracy, mae FROM scorecard WHERE model = %(m)s", {"m": model}
            )
            assert tuple(map(repr, through_view)) == tuple(
                map(repr, (row.precision, row.recall, row.f1, row.roc_auc, row.accuracy, row.mae))
            )
            return through_view

        legit = scored(None)  # no spec: the greater label
        assert legit[:3] == pytest.approx((340 / 370, 340 / 360, 680 / 730))
        fraud = scored(ModelSpec.model_validate({"name": model, "training": {"positive_class": "fraud"}}))
        assert fraud[:3] == pytest.approx((10 / 30, 10 / 40, 20 / 70))
        assert fraud[3] == pytest.approx(legit[3])  # ROC AUC is the same whichever class is positive
        assert fraud[4] == pytest.approx(350 / 400) and math.isnan(fraud[5])  # accuracy; no mae for a classifier
        three = scored(ModelSpec.model_validate({"name": model, "task": "multiclass"}))  # two classes seen so far
        assert three[:3] == pytest.approx(
            ((10 / 30 + 340 / 370) / 2, (10 / 40 + 340 / 360) / 2, (20 / 70 + 680 / 730) / 2)
        )
        assert math.isnan(three[3]) and three[4] == pytest.approx(350 / 400)  # macro means of both; no ROC AUC
        again = scored(ModelSpec(name=model))  # the spec removed: its defaults
        assert again == pytest.approx(legit, nan_ok=True)
    finally:
        client.disconnect()
        sink.close()


def test_a_multiclass_model_s_scorecard_gives_macro_precision_recall_and_f1(stack: PrivateStack) -> None:
    """Three classes: precision, recall and F1 are the means over the classes (as release's macro F1), where they
    were NaN for any model of more than two labels; ROC AUC, a binary model's, stays NaN."""
    model = f"three-{uuid.uuid4().hex[:8]}"
    confusion = {
        ("a", "a"): 50,
        ("a", "b"): 10,
        ("b", "a"): 5,
        ("b", "b"): 30,
        ("b", "c"): 5,
        ("c", "b"): 10,
        ("c", "c"): 20,
    }
    pairs = [pair for pair, n in confusion.items() for _ in range(n)]
    random.Random(11).shuffle(pairs)
    classified(stack, model, pairs, [0.7] * len(pairs))
    (row,) = load_scorecard(stack.settings, model)

    def count(label: str | None = None, predicted: str | None = None) -> int:
        return sum(n for (t, p), n in confusion.items() if label in (None, t) and predicted in (None, p))

    tp = {c: count(c, c) for c in "abc"}
    precision = sum(tp[c] / count(predicted=c) for c in "abc") / 3
    recall = sum(tp[c] / count(label=c) for c in "abc") / 3
    f1 = sum(2 * tp[c] / (count(predicted=c) + count(label=c)) for c in "abc") / 3
    assert (row.precision, row.recall, row.f1) == pytest.approx((precision, recall, f1))
    assert row.accuracy == pytest.approx(100 / 130) and math.isnan(row.roc_auc) and math.isnan(row.mae)
