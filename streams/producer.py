"""The producer SDK: model servers publish predictions and outcomes in one line each.

Events are checked against the contract when they are emitted (an ``EventError`` names the field at fault),
batched into ``{"events": [...]}`` envelopes per (topic, model) by count, size and linger time, and keyed by
model so that one model's events stay ordered within a partition. ``event_id`` is filled in
deterministically when not given (the same event re-sent gets the same id) and returned.

Usage (with a running stack)::

    from streams.producer import EventProducer

    with EventProducer() as events:
        events.emit_prediction("fraud", request_id="r-17", features={"amount": 12.5, "country": "NL"},
                               prediction=1, score=0.93)
        events.emit_outcome("fraud", request_id="r-17", label=0)

Producers that do not use the SDK publish the same JSON, one event per message or in envelopes
(docs/events.md).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import numbers
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from infra.errors import DriftloopError
from infra.settings import Settings, get_settings
from streams.decode import EventError, validate_outcome, validate_prediction

log = logging.getLogger("driftloop.producer")


class DeliveryError(DriftloopError):
    """The broker did not accept some events; the message says how many and why."""


@dataclass
class _Envelope:
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    opened: float = field(default_factory=time.monotonic)


class EventProducer:
    """Publishes prediction and outcome events to driftloop's topics (see the module docstring).

    ``envelopes=False`` sends one event per message (what a plain Kafka client would do).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        envelopes: bool = True,
        max_events: int = 500,
        max_bytes: int = 512 * 1024,
        linger_s: float = 0.05,
        client_id: str = "driftloop-producer",
    ) -> None:
        self.settings = settings or get_settings()
        self.envelopes = envelopes
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self._producer = KafkaProducer(
            **self.settings.kafka_python_config(), client_id=client_id, acks="all", linger_ms=5, retries=5
        )
        self._buffers: dict[tuple[str, str], _Envelope] = {}
        self._lock = threading.Lock()
        self._failures: list[BaseException] = []
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._linger_loop, name="driftloop-producer-linger", daemon=True)
        if envelopes:
            self._flusher.start()

    # --- public API ---------------------------------------------------------------------------------------

    def emit_prediction(
        self,
        model: str,
        *,
        request_id: str,
        features: Mapping[Any, Any],
        prediction: Any,
        ts: float | dt.datetime | str | None = None,
        score: float | Mapping[str, float] | None = None,
        model_version: int | None = None,
        event_id: str | None = None,
    ) -> str:
        """Publish one prediction; returns its event_id. ``features``: name → number, string or None."""
        event: dict[str, Any] = {
            "model": model,
            "request_id": request_id,
            "ts": _ts(ts),
            "features": {str(k): _plain(v) for k, v in features.items()},
            "prediction": _plain(prediction),
        }
        if score is not None:
            event["score"] = (
                {str(k): _plain(v) for k, v in score.items()} if isinstance(score, Mapping) else _plain(score)
            )
        if model_version is not None:
            event["model_version"] = int(model_version)
        if event_id is not None:
            event["event_id"] = event_id
        event_id = validate_prediction(event)
        self._send(self.settings.topics.predictions, model, event)
        return event_id

    def emit_outcome(
        self,
        model: str,
        *,
        request_id: str,
        label: Any,
        ts: float | dt.datetime | str | None = None,
        event_id: str | None = None,
    ) -> str:
        """Publish one outcome (the true label of an earlier prediction); returns its event_id."""
        event: dict[str, Any] = {
            "model": model,
            "request_id": request_id,
            "ts": _ts(ts),
            "label": _plain(label),
        }
        if event_id is not None:
            event["event_id"] = event_id
        event_id = validate_outcome(event)
        self._send(self.settings.topics.outcomes, model, event)
        return event_id

    def flush(self, timeout_s: float | None = 30.0) -> None:
        """Send every buffered event and wait until the broker has them; ``DeliveryError`` if some failed."""
        with self._lock:
            for key in list(self._buffers):
                self._send_envelope(key)
        self._producer.flush(timeout=timeout_s)
        if self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryError(f"{len(failures)} message(s) were not delivered: {failures[0]!r}")

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Flush, then close the Kafka connection."""
        try:
            self.flush(timeout_s)
        finally:
            self._closed.set()
            self._producer.close(timeout=timeout_s)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ---------------------------------------------------------------------------------------

    def _send(self, topic: str, model: str, event: dict[str, Any]) -> None:
        payload = json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
        if not self.envelopes:
            self._produce(topic, model, payload)
            return
        with self._lock:
            envelope = self._buffers.setdefault((topic, model), _Envelope())
            envelope.parts.append(payload)
            envelope.size += len(payload) + 1
            if len(envelope.parts) >= self.max_events or envelope.size >= self.max_bytes:
                self._send_envelope((topic, model))

    def _send_envelope(self, key: tuple[str, str]) -> None:
        envelope = self._buffers.pop(key, None)
        if envelope and envelope.parts:
            self._produce(key[0], key[1], b'{"events":[' + b",".join(envelope.parts) + b"]}")

    def _produce(self, topic: str, model: str, value: bytes) -> None:
        future = self._producer.send(topic, key=model.encode(), value=value)
        future.add_errback(self._failed)

    def _failed(self, exc: BaseException) -> None:
        log.warning("event delivery failed", extra={"fields": {"error": repr(exc)}})
        self._failures.append(exc)

    def _linger_loop(self) -> None:
        while not self._closed.wait(self.linger_s / 2):
            now = time.monotonic()
            with self._lock:
                for key in [k for k, e in self._buffers.items() if now - e.opened >= self.linger_s]:
                    try:
                        self._send_envelope(key)
                    except KafkaError as exc:
                        self._failed(exc)


def _ts(value: float | dt.datetime | str | None) -> float | str:
    if value is None:
        return time.time()
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(value, str):
        return value
    return float(value)


def _plain(value: Any) -> Any:
    """A JSON-ready number or string from numpy and other numeric types; bools stay (and are refused)."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise EventError(f"{value!r} ({type(value).__name__}) is not a number, string or null")
