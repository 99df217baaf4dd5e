"""A detector state the worker cannot read (saved by another version of driftloop, or damaged) does not stop the
model's detection: its detectors start afresh, a warning names the model, and the next save is readable."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftloop.infra.contract import Alert
from driftloop.infra.spec import SpecCatalog
from driftloop.streams.drift.frame import PredictionFrame
from driftloop.streams.drift.monitor import DriftMonitor
from driftloop.streams.drift.observer import DetectorStateStore, DriftObserver
from driftloop.streams.drift.snapshot import snapshot_model
from driftloop.streams.sink import ClickHouseSink
from tests.stack_fixtures import PrivateStack
from tests.streams.test_monitor import predictions


class Detections:
    """The alert gate's side of the observer: what it was handed."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def publish(self, alerts: list[Alert]) -> None:
        self.alerts += alerts


def _saved_state(model: str, tmp_path: Path) -> dict[str, Any]:
    """A real model's state, as a worker saves it."""
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    rng = random.Random(4)
    for start in range(0, 4000, 2000):
        monitor.process_predictions(predictions(rng, start, 2000, model=model))
    return json.loads(json.dumps(snapshot_model(monitor, model)))


def _unknown_packing(state: dict[str, Any]) -> str:
    signal = next(iter(state["signals"].values()))
    signal["state"]["recent"] = {"float16": "AAA="}  # a form of a later version
    return json.dumps(state)


DAMAGES = {
    "not JSON": lambda state: json.dumps(state)[:-40],
    "values packed in an unknown form": _unknown_packing,
    "a signal without its fields": lambda state: json.dumps(state | {"signals": {"f0": {"type": "data"}}}),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_an_unreadable_detector_state_starts_the_model_afresh(
    stack: PrivateStack, clickhouse: Any, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    model = f"unreadable-{uuid.uuid4().hex[:8]}"
    text = DAMAGES[damage](_saved_state(model, tmp_path))
    clickhouse.execute(
        "INSERT INTO detector_state (model, partition, state, events, saved_at, revision) VALUES",
        [(model, 0, text, 4000, 0, 1)],
    )
    sink = ClickHouseSink(stack.settings.clickhouse)
    store = DetectorStateStore(stack.settings.clickhouse, sink)
    observer = DriftObserver(lambda: DriftMonitor(SpecCatalog(tmp_path)), Detections(), store, sink)
    rows = predictions(random.Random(5), 0, 3000, model=model)
    try:
        with caplog.at_level(logging.WARNING, logger="driftloop"):
            asyncio.run(observer.on_predictions(PredictionFrame.from_columns(rows, np.zeros(len(rows), int))))
        assert observer.monitors[0].models[model].events == 3000  # afresh: not the saved 4,000 and more
        warned = [r for r in caplog.records if "unreadable" in r.getMessage()]
        assert warned and warned[0].fields["model"] == model  # type: ignore[attr-defined]
        asyncio.run(observer.flush())
        assert store.load(model, 0)["events"] == 3000  # type: ignore[index]
    finally:
        observer.close()
