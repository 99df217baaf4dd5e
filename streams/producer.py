"""The producer SDK: model servers publish predictions and outcomes in one line each.

Events are checked against the contract when they are emitted (an ``EventError`` names the field at fault),
batched into ``{"events": [...]}`` envelopes per (topic, model) by count, size and linger time, and keyed by
model so that one model's events stay ordered within a partition (or spread over several: ``spread``).
``event_id`` is filled in deterministically when not given (the same event re-sent gets the same id) and
returned.

Delivery is at-least-once: while the broker is away, messages are retried for up to two minutes
(``delivery_timeout_s``), one request in flight per connection so that a retry cannot overtake the
message after it. When the broker comes back as a new instance (a new cluster id: the embedded broker
keeps nothing across a restart), the producer provisions the topics and sends again what the broker
acknowledged in the last ``replay_s`` seconds (``streams.replay``). A retry or a replay may store a
message twice; ClickHouse results count each ``event_id`` once. ``on_delivery`` is told where each
message landed (topic, partition, offset, its events' ids).

Usage (with a running stack)::

    from driftloop.streams.producer import EventProducer

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
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, UnknownError
from kafka.partitioner.default import murmur2

from driftloop.infra.contract import EventError
from driftloop.infra.errors import DriftloopError
from driftloop.infra.kafka.cluster import CANNOT_ASK, ClusterIdProbe
from driftloop.infra.kafka.topics import provision_topics
from driftloop.infra.settings import Settings, get_settings
from driftloop.streams.decode import validate_outcome, validate_prediction
from driftloop.streams.replay import ReplayRing, Sent

log = logging.getLogger("driftloop.producer")


COMPRESSIONS = (None, "gzip", "snappy", "lz4", "zstd")
MAX_SEND_AGAIN = 50  # sends of one message after the broker failed it with an unexpected server error


class DeliveryError(DriftloopError):
    """The broker did not accept some events; the message says how many and why."""


@dataclass(frozen=True)
class Delivery:
    """One message the broker acknowledged: where it is, and the ids of the events it carries."""

    topic: str
    partition: int
    offset: int
    event_ids: tuple[str, ...]


@dataclass
class _Envelope:
    parts: list[bytes] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    size: int = 0
    opened: float = field(default_factory=time.monotonic)


class EventProducer:
    """Publishes prediction and outcome events to driftloop's topics (see the module docstring).

    ``envelopes=False`` sends one event per message (what a plain Kafka client would do).
    ``compression``: ``"gzip"``, ``"snappy"``, ``"lz4"`` or ``"zstd"`` compresses each record batch (None, the
    default, sends them as they are: on a local network the CPU costs more than the bytes; across
    zones or a metered link, ``"zstd"`` or ``"lz4"`` shrink envelopes of JSON several times). Every driftloop
    consumer reads all four.
    ``instance_check_s``: how often it asks the cluster for its id (and on every ``flush``; None: never);
    ``replay_s`` / ``replay_bytes``: what it keeps to send again when the id changes.
    ``spread``: a model's messages take turns on this many keys (its name and a number), so that a busy
    model's events spread over up to as many partitions, and several workers share its traffic
    (``docs/scaling.md``); 1, the default, keeps each model on one partition, its events in order.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        envelopes: bool = True,
        max_events: int = 500,
        max_bytes: int = 512 * 1024,
        linger_s: float = 0.05,
        delivery_timeout_s: float = 120.0,
        replay_s: float = 60.0,
        replay_bytes: int = 64 << 20,
        instance_check_s: float | None = 1.0,
        client_id: str = "driftloop-producer",
        compression: str | None = None,
        spread: int = 1,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression {compression!r} is not one of gzip, snappy, lz4, zstd (or None)")
        if spread < 1:
            raise ValueError(f"spread must be 1 or more (the keys a model's messages take turns on), not {spread}")
        self.spread = spread
        self._spread_keys: dict[tuple[str, str], list[bytes]] = {}
        self._turns: dict[tuple[str, str], int] = {}
        self.settings = settings or get_settings()
        self.envelopes = envelopes
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self.on_delivery = on_delivery
        # Not kafka-python's idempotent mode: a broker that restarts without its state fails the batches
        # in flight (UnknownProducerId) instead of retrying them; event ids make plain retries safe.
        self._producer = KafkaProducer(
            **self.settings.kafka_python_config(),
            client_id=client_id,
            acks="all",
            linger_ms=5,
            enable_idempotence=False,
            max_in_flight_requests_per_connection=1,
            delivery_timeout_ms=int(delivery_timeout_s * 1000),
            compression_type=compression,
        )
        self._buffers: dict[tuple[str, str], _Envelope] = {}
        self._lock = threading.Lock()
        self._failures: list[BaseException] = []
        self._failed_sends: list[Sent] = []
        self._again: queue.SimpleQueue[Sent] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._linger_loop, name="driftloop-producer-linger", daemon=True)
        if envelopes:
            self._flusher.start()
        self._replay = ReplayRing(max_bytes=replay_bytes, max_age_s=replay_s)
        self._cluster = ClusterIdProbe(self.settings)
        self._cluster_id: str | None = None
        self._blind = False
        self._watching = instance_check_s is not None
        self.replays = 0  # times the broker came back as a new instance and recent messages were sent again
        if instance_check_s is not None:
            threading.Thread(
                target=self._watch_loop, args=(instance_check_s,), name="driftloop-producer-watch", daemon=True
            ).start()

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
        served: bool = True,
        latency_ms: float | None = None,
    ) -> str:
        """Publish one prediction; returns its event_id. ``features``: name → number, string or None;
        ``served=False`` for a prediction not returned to the caller (a shadow version's); ``latency_ms``: the
        serving time of the batch it was part of."""
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
        if not served:
            event["served"] = False
        if latency_ms is not None:
            event["latency_ms"] = float(latency_ms)
        event_id = validate_prediction(event)
        self._send(self.settings.topics.predictions, model, event, event_id)
        return event_id

    def emit_outcome(
        self,
        model: str,
        *,
        request_id: str,
        label: Any,
        ts: float | dt.datetime | str | None = None,
        event_id: str | None = None,
        value: float | None = None,
    ) -> str:
        """Publish one outcome (the true label of an earlier prediction); returns its event_id. ``value``: the
        business value of the decision (revenue won, loss avoided), the KPI of the release gate and scorecard."""
        event: dict[str, Any] = {
            "model": model,
            "request_id": request_id,
            "ts": _ts(ts),
            "label": _plain(label),
        }
        if value is not None:
            event["value"] = _plain(value)
        if event_id is not None:
            event["event_id"] = event_id
        event_id = validate_outcome(event)
        self._send(self.settings.topics.outcomes, model, event, event_id)
        return event_id

    def flush(self, timeout_s: float | None = 30.0) -> None:
        """Send every buffered event and wait until the broker has them; ``DeliveryError`` if some failed."""
        with self._lock:
            for key in list(self._buffers):
                self._send_envelope(key)
        self._producer.flush(timeout=timeout_s)
        while self._send_again():  # what failed on a server error, until it is taken or gives up
            self._producer.flush(timeout=timeout_s)
        # Acknowledged is not enough: a broker that restarted empty acknowledges, then drops. Ask it.
        if self._watching and self._check_instance():
            self._producer.flush(timeout=timeout_s)
        if self._failures:
            failures, self._failures, self._failed_sends = self._failures, [], []
            raise DeliveryError(f"{len(failures)} message(s) were not delivered: {failures[0]!r}")

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Flush, then close the Kafka connection."""
        try:
            self.flush(timeout_s)
        finally:
            self._closed.set()
            self._producer.close(timeout=timeout_s)
            self._cluster.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ---------------------------------------------------------------------------------------

    def _send(self, topic: str, model: str, event: dict[str, Any], event_id: str) -> None:
        payload = json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
        if not self.envelopes:
            self._produce(topic, self._key(topic, model), payload, (event_id,))
            return
        with self._lock:
            envelope = self._buffers.setdefault((topic, model), _Envelope())
            envelope.parts.append(payload)
            envelope.event_ids.append(event_id)
            envelope.size += len(payload) + 1
            if len(envelope.parts) >= self.max_events or envelope.size >= self.max_bytes:
                self._send_envelope((topic, model))

    def _send_envelope(self, key: tuple[str, str]) -> None:
        envelope = self._buffers.pop(key, None)
        if envelope and envelope.parts:
            value = b'{"events":[' + b",".join(envelope.parts) + b"]}"
            self._produce(key[0], self._key(*key), value, tuple(envelope.event_ids))

    def _key(self, topic: str, model: str) -> bytes:
        """The message key: the model's name, or with ``spread`` the next of its keys (:func:`spread_keys`)."""
        if self.spread == 1:
            return model.encode()
        keys = self._spread_keys.get((topic, model))
        if keys is None:
            count = len(self._producer.partitions_for(topic) or ()) or 1
            keys = self._spread_keys[(topic, model)] = spread_keys(model, self.spread, count)
        turn = self._turns[(topic, model)] = (self._turns.get((topic, model), -1) + 1) % len(keys)
        return keys[turn]

    def _produce(self, topic: str, key: bytes, value: bytes, event_ids: tuple[str, ...], attempt: int = 0) -> None:
        future = self._producer.send(topic, key=key, value=value)
        future.add_callback(lambda m: self._delivered(m, Sent(topic, key, value, event_ids, time.time(), attempt)))
        future.add_errback(lambda exc: self._failed(exc, Sent(topic, key, value, event_ids, time.time(), attempt)))

    def _delivered(self, metadata: Any, sent: Sent) -> None:
        self._replay.add(sent)
        if self.on_delivery is not None:
            self.on_delivery(Delivery(metadata.topic, metadata.partition, metadata.offset, sent.event_ids))

    def _failed(self, exc: BaseException, sent: Sent | None = None) -> None:
        if sent is not None and isinstance(exc, UnknownError) and sent.attempt < MAX_SEND_AGAIN:
            # An unexpected server error (the embedded broker gives one while a restarted instance
            # still has records of a dropped topic in the way): send the message again.
            self._again.put(sent)
            return
        log.warning("event delivery failed", extra={"fields": {"error": repr(exc)}})
        self._failures.append(exc)
        if sent is not None:
            self._failed_sends.append(sent)

    def _send_again(self) -> bool:
        """Send what failed on a server error once more (from a thread of ours, not kafka-python's)."""
        again = []
        while not self._again.empty():
            again.append(self._again.get())
        for sent in again:
            self._produce(sent.topic, sent.key, sent.value, sent.event_ids, sent.attempt + 1)
        return bool(again)

    def _watch_loop(self, interval_s: float) -> None:
        while not self._closed.wait(interval_s):
            self._send_again()
            self._check_instance()

    def _check_instance(self) -> bool:
        """Ask the cluster for its id; when it changed, send recent and failed messages again (True)."""
        if self._blind:
            return False
        try:
            cluster_id = self._cluster()
        except CANNOT_ASK as exc:
            self._blind = True
            log.warning("Kafka does not say its cluster id; broker restarts will not be noticed",
                        extra={"fields": {"error": repr(exc)}})  # fmt: skip
            return False
        except Exception:
            return False  # away: kafka-python retries what is pending; the next check asks again
        previous, self._cluster_id = self._cluster_id, cluster_id
        if previous is None or previous == cluster_id:
            return False
        try:
            provision_topics(self.settings, [self.settings.topics.predictions, self.settings.topics.outcomes])
        except DriftloopError as exc:
            log.error("could not provision the topics on the new broker instance", extra={"fields": {"error": exc}})
        with self._lock:
            again = self._replay.take() + self._failed_sends
            self._failed_sends, self._failures = [], []
            for sent in again:
                self._produce(sent.topic, sent.key, sent.value, sent.event_ids)
        self.replays += 1
        log.error(
            "Kafka came back as a new instance without its data; sending recent events again",
            extra={"fields": {"old_cluster_id": previous, "new_cluster_id": cluster_id, "messages": len(again),
                              "events": sum(len(s.event_ids) for s in again)}},
        )  # fmt: skip
        return True

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


def spread_keys(model: str, spread: int, partitions: int) -> list[bytes]:
    """Keys ``model#j`` that Kafka's default partitioner (murmur2, as kafka-python and the Java client use it)
    puts on ``min(spread, partitions)`` different partitions of a topic of ``partitions``. ``#`` is never
    part of a model name: no other model's key.

    >>> keys = spread_keys("fraud", 4, 6)
    >>> len(keys), len({(murmur2(k) & 0x7FFFFFFF) % 6 for k in keys})
    (4, 4)
    """
    wanted, keys, number = min(spread, partitions), {}, 0
    while len(keys) < wanted:
        key = f"{model}#{number}".encode()
        keys.setdefault((murmur2(key) & 0x7FFFFFFF) % partitions, key)
        number += 1
    return list(keys.values())
