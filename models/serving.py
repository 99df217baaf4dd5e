"""The serving client: predictions from the current champion, swapped to a new one without a restart.

``ModelClient("fraud")`` loads the champion (its artifact verified against the registry's sha256), predicts
on a batch of rows (a DataFrame or dicts) and says which version made each prediction. A background thread
listens on ``model-versions``; when a new champion is announced it loads and verifies it, then swaps one
reference: a batch always runs on one version, and no request fails during a swap. With ``emit=True`` the
client also publishes every prediction event (producer SDK), so a model server is monitored in one line.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from kafka import KafkaConsumer

from driftloop.infra.errors import DriftloopError
from driftloop.infra.settings import Settings, get_settings
from driftloop.models.artifacts import LoadedModel
from driftloop.models.inference import predict_columns
from driftloop.models.registry import ModelRegistry

log = logging.getLogger("driftloop.serving")


class NoChampionError(DriftloopError):
    """The model has no champion version yet."""


@dataclass(frozen=True)
class Predictions:
    """A batch's predictions, the probability of each predicted class (NaN for regression), and the version."""

    model: str
    version: int
    values: list[Any]
    scores: list[float]
    request_ids: list[str]


class ModelClient:
    """Predicts with a model's champion and follows its promotions (see the module docstring)."""

    def __init__(
        self,
        model: str,
        settings: Settings | None = None,
        *,
        emit: bool = False,
        watch: bool = True,
        device: str = "cpu",
    ) -> None:
        self.model = model
        self.settings = settings or get_settings()
        self.device = device
        self.registry = ModelRegistry(self.settings)
        champion = self.registry.champion(model)
        if champion is None:
            raise NoChampionError(
                f"{model} has no champion yet: train one with `driftloop retrain --model {model} --now`"
            )
        self._current: LoadedModel = self.registry.load(champion, device=device)
        self.swaps = 0
        self._stop = threading.Event()
        self._producer = None
        if emit:
            from driftloop.streams.producer import (
                EventProducer,  # the loop closes here: served predictions are monitored
            )

            self._producer = EventProducer(self.settings)
        self._watcher = threading.Thread(target=self._watch, name=f"driftloop-watch-{model}", daemon=True)
        if watch:
            self._ready = threading.Event()
            self._watcher.start()
            self._ready.wait(timeout=30)

    @property
    def version(self) -> int:
        return self._current.version

    def predict(
        self, rows: pd.DataFrame | Sequence[Mapping[str, Any]], request_ids: Sequence[str] | None = None
    ) -> Predictions:
        current = self._current  # one reference read: the whole batch uses one version
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        pre = current.preprocessor
        numeric = {n: frame[n].to_numpy(dtype=np.float64, na_value=np.nan) for n in pre.numeric if n in frame}
        categorical = {n: frame[n].astype(str).tolist() for n in pre.categorical if n in frame}
        values, scores = predict_columns(current.network, pre, numeric, categorical, self.device)
        ids = list(request_ids) if request_ids is not None else [uuid.uuid4().hex for _ in range(len(frame))]
        result = Predictions(self.model, current.version, values.tolist(), [float(s) for s in scores], ids)
        if self._producer is not None:
            records = frame.to_dict(orient="records")
            for features, value, score, request_id in zip(records, result.values, result.scores, ids, strict=True):
                self._producer.emit_prediction(
                    self.model,
                    request_id=request_id,
                    features={k: _plain(v) for k, v in features.items()},
                    prediction=value,
                    score=None if score != score else score,
                    model_version=current.version,
                )
        return result

    def close(self) -> None:
        self._stop.set()
        if self._producer is not None:
            self._producer.close()
        self.registry.close()

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _watch(self) -> None:
        consumer = KafkaConsumer(
            self.settings.topics.model_versions,
            **self.settings.kafka_python_config(),
            auto_offset_reset="latest",
            enable_auto_commit=False,
        )
        try:
            consumer.poll(timeout_ms=100)  # joins the topic at its end before we say we are ready
            self._ready.set()
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        self._on_announcement(record.value)
        except Exception:
            log.exception("stopped following model versions")
        finally:
            self._ready.set()
            consumer.close()

    def _on_announcement(self, value: bytes) -> None:
        try:
            event = json.loads(value)
        except ValueError:
            return
        if event.get("model") != self.model or event.get("status") != "champion":
            return
        if event.get("version") == self._current.version:
            return
        try:
            record = self.registry.get(self.model, int(event["version"]))
            loaded = self.registry.load(record, device=self.device)  # verified before it may serve
        except DriftloopError as exc:
            log.error("new champion refused; serving the current one", extra={"fields": {"error": str(exc)}})
            return
        self._current = loaded  # the swap: one reference assignment, between batches
        self.swaps += 1
        log.warning("swapped to a new champion", extra={"fields": {"model": self.model, "version": loaded.version}})


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    return value.item() if hasattr(value, "item") else value
