"""Small parts of a model's predictions held back and detected together (``streams.drift.waiting``): joined in
order, the same detections, nothing held missing from a saved state."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftloop.infra.spec import SpecCatalog
from driftloop.streams.batch import ColumnBatch
from driftloop.streams.drift.frame import FeatureColumns, FeaturesByEvent, ModelPredictions, PredictionFrame
from driftloop.streams.drift.monitor import DriftMonitor
from driftloop.streams.drift.observer import DetectorStateStore, DriftObserver
from driftloop.streams.drift.waiting import WaitingParts
from driftloop.streams.sink import ClickHouseSink
from tests.stack_fixtures import PrivateStack
from tests.streams.test_frame import rows
from tests.streams.test_monitor import predictions
from tests.streams.test_unreadable_state import Detections


def _events(start: int, n: int, rng: random.Random, *, mixed: bool = False) -> list[dict[str, Any]]:
    colours = ["red", "green", "blue", None, f"new-{start}"]  # a text first seen in this part, and nulls
    return [
        {
            "model": "m",
            "version": start + i,
            "features": {
                "x": rng.gauss(0, 1),
                "c": rng.choice(colours),
                "y": (rng.choice(["a", "b"]) if mixed and i % 2 else rng.gauss(0, 1)),  # mixed: no columns
            },
        }
        for i in range(n)
    ]


def _as_lists(part: ModelPredictions) -> dict[str, Any]:
    features = part.features
    if isinstance(features, FeatureColumns):
        feature_values: Any = (features.numeric.tolist(), [list(column) for column in features.categorical])
    else:
        feature_values = [list(map(list, getattr(features, name))) for name in ("num_name", "num_value", "cat_value")]
    return {
        "version": part.version,
        "versions": part.versions.tolist(),
        "ts_ms": part.ts_ms.tolist(),
        "request_ids": part.request_ids,
        "score": part.score.tolist(),
        "prediction": part.prediction,
        "features": feature_values,
    }


@pytest.mark.parametrize("mixed", [False, True])
def test_a_model_s_parts_joined_are_its_events_in_order(mixed: bool) -> None:
    rng = random.Random(1)
    whole = rows([e for start, n in ((0, 7), (7, 23), (30, 5)) for e in _events(start, n, rng, mixed=mixed)])
    parts = [
        PredictionFrame.from_columns(ColumnBatch("predictions", {k: v[a:b] for k, v in whole.columns.items()})).models[
            0
        ]
        for a, b in itertools.pairwise([0, 7, 30, 35])
    ]
    assert {type(p.features) for p in parts} == ({FeaturesByEvent} if mixed else {FeatureColumns})
    texts = {tuple(p.features.categorical[0].texts) for p in parts if isinstance(p.features, FeatureColumns)}
    assert mixed or len(texts) == 3  # each part codes its own texts: joined, they are numbered again
    joined = ModelPredictions.joined(parts)
    assert joined is not None
    assert _as_lists(joined) == _as_lists(PredictionFrame.from_columns(whole).models[0])


def test_parts_whose_features_do_not_line_up_are_detected_one_after_another() -> None:
    rng = random.Random(2)
    columns = PredictionFrame.from_columns(rows(_events(0, 5, rng))).models[0]
    other = PredictionFrame.from_columns(rows([{"model": "m", "features": {"z": 1.0}}] * 4)).models[0]
    assert ModelPredictions.joined([columns, other]) is None
    waiting = WaitingParts(wait_s=10.0)
    assert waiting.take(3, [columns], now=0.0) == [] and waiting.take(3, [other], now=1.0) == []
    released = waiting.release()
    assert list(released) == [3] and [len(p) for p in released[3]] == [5, 4] and waiting.held() == 0


def test_small_parts_wait_for_enough_events_or_long_enough_by_partition_and_model() -> None:
    rng = random.Random(3)
    part = PredictionFrame.from_columns(rows(_events(0, 100, rng))).models[0]
    waiting = WaitingParts(wait_s=1.0, fewest=250)
    assert waiting.take(0, [part], now=0.0) == [] and waiting.take(1, [part], now=0.2) == []
    assert waiting.take(0, [part], now=0.4) == [] and waiting.held() == 300
    [ready] = waiting.take(0, [part], now=0.6)  # partition 0's model reached 300 events: one part of them
    assert len(ready) == 300 and waiting.held() == 100
    assert waiting.due(now=1.1) == {}  # partition 1's part came at 0.2
    assert [len(p) for p in waiting.due(now=1.2)[1]] == [100] and waiting.held() == 0
    assert [len(p) for p in WaitingParts(wait_s=0.0).take(0, [part], now=0.0)] == [100]  # 0: nothing waits


def _alerts(monitor: DriftMonitor, frames: list[PredictionFrame], waiting: WaitingParts | None) -> list[tuple]:
    alerts = []
    for now, frame in enumerate(frames):
        parts = frame.models if waiting is None else waiting.take(0, frame.models, float(now))
        alerts += monitor.process_predictions(PredictionFrame(parts)) if parts else []
    if waiting is not None:
        for parts in waiting.release().values():
            alerts += monitor.process_predictions(PredictionFrame(parts))
    return [(a.kind, a.signal, a.request_id, a.change_point_request_id, a.window_size) for a in alerts]


def test_a_drift_is_detected_at_the_same_event_from_parts_held_and_joined(tmp_path: Path) -> None:
    """Twenty events a batch (a fleet's share of each batch), a shift in one feature after 6,000: the same
    alerts, at the same events, whether each part is detected alone or held until there are 256."""
    rng = random.Random(9)
    frames = [
        PredictionFrame.from_columns(predictions(rng, start, 20, {"at": 6_000, "mean": 1.5}))
        for start in range(0, 9_000, 20)
    ]
    alone = _alerts(DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0), frames, None)
    held = _alerts(DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0), frames, WaitingParts(wait_s=100.0))
    assert alone and held == alone


def _observer(stack: PrivateStack, tmp_path: Path, wait_s: float) -> tuple[str, DriftObserver]:
    """A model's name of its own, and a drift observer saving to the session's server whose parts wait."""
    sink = ClickHouseSink(stack.settings.clickhouse)
    store = DetectorStateStore(stack.settings.clickhouse, sink)
    observer = DriftObserver(
        lambda: DriftMonitor(SpecCatalog(tmp_path)), Detections(), store, sink, detection_wait_s=wait_s
    )
    return f"waiting-{uuid.uuid4().hex[:8]}", observer


def test_events_held_are_in_the_state_saved_before_a_commit(
    stack: PrivateStack, clickhouse: Any, tmp_path: Path
) -> None:
    model, observer = _observer(stack, tmp_path, wait_s=3600.0)
    rng = random.Random(5)
    try:
        for start in range(0, 2_500, 50):  # parts of 50: each held until there are 256
            batch = predictions(rng, start, 50, model=model)
            asyncio.run(observer.on_predictions(PredictionFrame.from_columns(batch, np.zeros(len(batch), int))))
        assert observer.waiting.held() == 100  # parts of 50 go six at a time (300 >= 256): 2,400 detected
        asyncio.run(observer.save_changed())  # as before each offset commit
        assert observer.waiting.held() == 0
        state = observer.store.load(model, 0)
        assert state is not None and state["events"] == 2_500
    finally:
        observer.close()


def test_parts_that_waited_are_detected_though_no_batch_comes(
    stack: PrivateStack, clickhouse: Any, tmp_path: Path
) -> None:
    """The stream pauses after a small part: it is detected once it has waited, not at the next batch."""
    model, observer = _observer(stack, tmp_path, wait_s=0.3)
    batch = predictions(random.Random(6), 0, 50, model=model)

    async def pause_after_one_part() -> tuple[int, int, float]:
        began = time.monotonic()
        await observer.on_predictions(PredictionFrame.from_columns(batch, np.zeros(len(batch), int)))
        held = observer.waiting.held()
        while model not in observer.monitors[0].models or observer.monitors[0].models[model].events < 50:
            assert time.monotonic() - began < 30, "the part that waited was never detected"
            await asyncio.sleep(0.02)
        return held, observer.monitors[0].models[model].events, time.monotonic() - began

    try:
        held, events, took = asyncio.run(pause_after_one_part())
        assert held == 50 and events == 50 and took >= 0.3
    finally:
        observer.close()


def test_a_quiet_model_s_held_alert_is_handed_to_the_gate_at_a_save_and_its_state_saved_without_it(
    stack: PrivateStack, clickhouse: Any, tmp_path: Path
) -> None:
    """Three features moved 300 events apart, the third's alert held back by the first's cooldown, and the model
    sends nothing more: the worker's save of the detectors' state (its timer, or a commit) hands the held
    alert to the alert gate once the clock has passed the cooldown's end, and saves the model's state, which
    no longer holds it (a restart would not send it again)."""
    from tests.streams.test_correlation import events
    from tests.streams.test_monitor import one_after_another

    model, sink = f"quiet-{uuid.uuid4().hex[:8]}", ClickHouseSink(stack.settings.clickhouse)
    clock = [1000.0]
    gate = Detections()
    make = one_after_another(0, {0: 5_000, 1: 5_300, 2: 5_600})
    observer = DriftObserver(
        lambda: DriftMonitor(SpecCatalog(tmp_path), clock=lambda: clock[0]),
        gate,
        DetectorStateStore(stack.settings.clickhouse, sink),
        sink,
        detection_wait_s=0.0,
    )
    try:
        sent = 0
        while not (0 in observer.monitors and observer.monitors[0].models[model].deferred):
            batch = events(make(sent, 100), sent, model=model)
            asyncio.run(observer.on_predictions(PredictionFrame.from_columns(batch, np.zeros(len(batch), int))))
            sent += 100
        assert [a.signal for a in gate.alerts] == ["f0", "f1"]
        asyncio.run(observer.save_changed())
        assert len(gate.alerts) == 2 and observer.store.load(model, 0)["deferred"]  # type: ignore[index]
        clock[0] += 1000.0  # past the cooldown's end in the model's event time
        asyncio.run(observer.save_changed())
        assert [a.signal for a in gate.alerts] == ["f0", "f1", "f2"] and "held_until_ts" in gate.alerts[2].evidence
        assert observer.store.load(model, 0)["deferred"] == []  # type: ignore[index]
        asyncio.run(observer.save_changed())
        assert len(gate.alerts) == 3
    finally:
        observer.close()
