"""The estimated_performance view (CBPE) on the local ClickHouse: with calibrated scores the estimate from
unlabeled predictions matches the accuracy later realized; with overconfident scores the calibration gap
says so."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from driftloop.infra.clickhouse.client import connect
from tests.stack_fixtures import PrivateStack

pytestmark = pytest.mark.integration


def write(stack: PrivateStack, model: str, scores: np.ndarray, correct: np.ndarray, labeled: int) -> None:
    """Predictions with ``scores`` (the first ``labeled`` of them labeled, right where ``correct``)."""
    now = int(time.time())
    client = connect(stack.settings.clickhouse)
    try:
        client.execute(
            "INSERT INTO predictions (event_id, model, model_version, request_id, ts, ts_ms, prediction, "
            "prediction_num, score) VALUES",
            [(f"p{i}", model, 1, f"r{i}", now, now * 1000, "1", 1.0, float(s)) for i, s in enumerate(scores)],
        )
        client.execute(
            "INSERT INTO labeled (event_id, model, model_version, request_id, ts, ts_ms, prediction, score, label, "
            "correct, error) VALUES",
            [
                (
                    f"o{i}",
                    model,
                    1,
                    f"r{i}",
                    now,
                    now * 1000,
                    "1",
                    float(scores[i]),
                    "1" if correct[i] else "0",
                    int(correct[i]),
                    float(not correct[i]),
                )
                for i in range(labeled)
            ],
        )
    finally:
        client.disconnect()


def estimate(stack: PrivateStack, model: str) -> tuple[int, float, int, float, float]:
    client = connect(stack.settings.clickhouse)
    try:
        (row,) = client.execute(
            "SELECT scored, estimated_accuracy, labeled_rows, realized_accuracy, calibration_gap "
            "FROM estimated_performance WHERE model = %(m)s",
            {"m": model},
        )
    finally:
        client.disconnect()
    return row


def test_calibrated_scores_estimate_the_accuracy_before_labels(stack: PrivateStack) -> None:
    rng = np.random.default_rng(9)
    scores = rng.uniform(0.5, 1.0, 20_000)
    correct = rng.random(20_000) < scores  # calibrated: right with the probability the score says
    model = "cbpe-" + uuid.uuid4().hex[:8]
    write(stack, model, scores, correct, labeled=5000)  # three quarters still wait for their labels
    scored, estimated, labeled, realized, gap = estimate(stack, model)
    assert (scored, labeled) == (20_000, 5000) and realized == pytest.approx(correct[:5000].mean())
    assert estimated == pytest.approx(correct.mean(), abs=0.01)  # what all 20,000 will show once labeled
    assert abs(gap) < 0.02  # on the labeled rows: the scores hold up


def test_overconfident_scores_show_in_the_calibration_gap(stack: PrivateStack) -> None:
    rng = np.random.default_rng(10)
    scores = rng.uniform(0.5, 1.0, 5000)
    correct = rng.random(5000) < scores - 0.2  # 20 points less often right than the scores claim
    model = "cbpe-" + uuid.uuid4().hex[:8]
    write(stack, model, scores, correct, labeled=5000)
    _, estimated, _, realized, gap = estimate(stack, model)
    assert gap == pytest.approx(0.2, abs=0.03) and estimated - realized == pytest.approx(gap)
