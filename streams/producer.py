"""The producer SDK: model servers publish predictions and outcomes in one line each.

Events are checked against the contract when they are emitted (an ``EventError`` names the field at fault),
batched into ``{"events": [...]}`` envelopes per (topic, model) by count, size and linger time, and keyed by
model so that one model's events stay ordered within a partition (or spread over several: ``spread``).
``event_id`` is filled in deterministically when not given (the same event re-sent gets the same id) and
returned.

Delivery is at-least-once: a process that exits without ``close()`` sends what the producer holds first, for up
to :data:`EXIT_FLUSH_S` (an atexit hook; a WARNING says what was not delivered); while the broker is away,
messages are retried for up to two minutes (``delivery_timeout_s``), one request in flight per connection so
that a retry cannot overtake the message after it. When the broker comes back as a new instance (a new cluster
id: the embedded broker keeps nothing across a restart), the producer provisions the topics and sends again what
the broker acknowledged in the last ``replay_s`` seconds (``streams.replay``). A retry or a replay may store a
message twice; ClickHouse results count each ``event_id`` once. ``on_delivery`` is told where each message
landed (topic, partition, offset, its events' ids).

Usage (with a running stack)::

    from driftloop.streams.producer import EventProducer

    with EventProducer() as events:
        events.emit_prediction("fraud", request_id="r-17", features={"amount": 12.5, "country": "NL"},
                               prediction=1, score=0.93)
        events.emit_outcome("fraud", request_id="r-17", label=0)

A producer made before the process forks (gunicorn's ``--preload``, uWSGI, Celery's prefork pool) sends from
each child: its first call there starts a connection and threads of the child's own (``infra.forks``).

Producers that do not use the SDK publish the same JSON, one event per message or in envelopes
(docs/events.md).

The parts: ``streams.envelopes`` (batching), ``streams.partitioning`` (keys), ``streams.delivery`` (sending at
least once), ``streams.instance_watch`` and ``streams.replay`` (a broker that came back empty); the events' rules:
``streams.event_rules``.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import json
import logging
import multiprocessing.util
import os
import uuid
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from driftloop.infra.forks import ForkWatch
from driftloop.infra.settings import Settings, get_settings
from driftloop.streams.compat.kafka_python import let_go
from driftloop.streams.decode import validate_outcome, validate_prediction
from driftloop.streams.delivery import COMPRESSIONS, Delivery, DeliveryError, KafkaSender
from driftloop.streams.envelopes import EnvelopeBuffer
from driftloop.streams.instance_watch import InstanceWatch
from driftloop.streams.partitioning import KeyRotation, spread_keys
from driftloop.streams.python_values import plain_id, plain_value, present_value, python_ts
from driftloop.streams.replay import ReplayRing

__all__ = ["COMPRESSIONS", "Delivery", "DeliveryError", "EventProducer", "spread_keys"]
log = logging.getLogger("driftloop.producer")
#: Seconds a process that exits without ``close()`` waits for the broker to take what it holds.
EXIT_FLUSH_S = 5.0


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
        self._key = KeyRotation(spread, lambda topic: self._sender.partitions_for(topic))
        self.spread = spread
        self.settings = settings or get_settings()
        self.envelopes = envelopes
        self.on_delivery = on_delivery
        # what it is made with: its connection and threads again in a forked process, itself in a spawned one
        self._arguments: dict[str, Any] = dict(
            envelopes=envelopes, max_events=max_events, max_bytes=max_bytes, linger_s=linger_s,
            delivery_timeout_s=delivery_timeout_s, replay_s=replay_s, replay_bytes=replay_bytes,
            instance_check_s=instance_check_s, client_id=client_id, compression=compression, spread=spread,
            on_delivery=on_delivery,
        )  # fmt: skip
        self._start()
        self._process = ForkWatch()
        self._closed = False
        # Events emitted are accepted: a process that exits without close() (a pre-fork server's worker recycled,
        # a pod stopped) sends what it holds first, for up to EXIT_FLUSH_S.
        self._exit_hook = functools.partial(_flush_at_exit, weakref.ref(self))
        self._hook_exit()

    def _start(self) -> None:
        """The connection and the threads: made here, and again in a process forked from this one."""
        made = self._arguments
        self._sender = KafkaSender(
            self.settings,
            ReplayRing(max_bytes=made["replay_bytes"], max_age_s=made["replay_s"]),
            client_id=made["client_id"],
            delivery_timeout_s=made["delivery_timeout_s"],
            compression=made["compression"],
            on_delivery=self.on_delivery,
        )
        self._envelopes = (
            EnvelopeBuffer(
                self._send_envelope,
                max_events=made["max_events"],
                max_bytes=made["max_bytes"],
                linger_s=made["linger_s"],
                on_error=self._sender.failed,
            )
            if self.envelopes
            else None
        )
        self._watch = InstanceWatch(self.settings, self._sender, made["instance_check_s"])

    def _hook_exit(self) -> None:
        """Send what this producer holds when its process ends without close(): at the interpreter's exit (an
        atexit hook registered after the Kafka producer's own, so that it runs first), and at the end of a
        multiprocessing worker, which ends with ``os._exit`` after multiprocessing's finalizers."""
        atexit.unregister(self._exit_hook)
        atexit.register(self._exit_hook)
        self._finalizer = multiprocessing.util.Finalize(None, self._exit_hook, exitpriority=0)

    def _start_in_child(self) -> None:
        """In a process forked from the one that made this producer (gunicorn's ``--preload``, uWSGI, Celery's
        prefork pool): a connection and threads of its own. The events the parent had not sent yet at the fork
        are the parent's to send, and are dropped here with the inherited producer, which is let go without
        touching the sockets it shares with the parent (``infra.forks``)."""
        let_go(self._sender.producer)
        self._start()
        self._hook_exit()  # after the new Kafka producer's own atexit hook: run before it closes that producer
        log.info(
            "a forked process: the producer starts a connection of its own",
            extra={"fields": {"pid": os.getpid()}},
        )

    # --- public API ---------------------------------------------------------------------------------------

    def emit_prediction(
        self,
        model: str,
        *,
        request_id: str | int | uuid.UUID,
        features: Mapping[Any, Any],
        prediction: Any,
        ts: float | dt.datetime | str | np.datetime64 | None = None,
        score: float | Mapping[str, float] | None = None,
        model_version: int | None = None,
        event_id: str | int | uuid.UUID | None = None,
        served: bool = True,
        latency_ms: float | None = None,
    ) -> str:
        """Publish one prediction; returns its event_id. ``features``: name → number, string, boolean or None
        (missing, as a NaN is; a NaN score is no score); ``served=False`` for a prediction not returned to the
        caller (a shadow version's); ``latency_ms``: the serving time of the batch it was part of."""
        event: dict[str, Any] = {
            "model": model,
            "request_id": plain_id(request_id),
            "ts": python_ts(ts),
            "features": {str(k): present_value(v) for k, v in features.items()},
            "prediction": plain_value(prediction),
        }
        if isinstance(score, Mapping):
            event["score"] = {str(k): plain_value(v) for k, v in score.items()}
        elif (plain := present_value(score)) is not None:
            event["score"] = plain
        if (version := present_value(model_version)) is not None:  # a float column's 2.0 is version 2
            event["model_version"] = int(version) if isinstance(version, float) and version.is_integer() else version
        if event_id is not None:
            event["event_id"] = plain_id(event_id)
        if not served:
            event["served"] = False
        if (latency := present_value(latency_ms)) is not None:  # a NaN is no latency, as the contract reads it
            event["latency_ms"] = latency
        event_id = validate_prediction(event)
        self._process.restart(self._start_in_child)
        self._send(self.settings.topics.predictions, model, event, event_id)
        return event_id

    def emit_outcome(
        self,
        model: str,
        *,
        request_id: str | int | uuid.UUID,
        label: Any,
        ts: float | dt.datetime | str | np.datetime64 | None = None,
        event_id: str | int | uuid.UUID | None = None,
        value: float | None = None,
    ) -> str:
        """Publish one outcome (the true label of an earlier prediction); returns its event_id. ``value``: the
        business value of the decision (revenue won, loss avoided), the KPI of the release gate and scorecard."""
        event: dict[str, Any] = {
            "model": model,
            "request_id": plain_id(request_id),
            "ts": python_ts(ts),
            "label": plain_value(label),
        }
        if (plain := present_value(value)) is not None:
            event["value"] = plain
        if event_id is not None:
            event["event_id"] = plain_id(event_id)
        event_id = validate_outcome(event)
        self._process.restart(self._start_in_child)
        self._send(self.settings.topics.outcomes, model, event, event_id)
        return event_id

    def flush(self, timeout_s: float | None = 30.0) -> None:
        """Send every buffered event and wait until the broker has them; ``DeliveryError`` if some failed."""
        self._process.restart(self._start_in_child)
        self._send_held(timeout_s, ask_broker=True)

    def _send_held(self, timeout_s: float | None, *, ask_broker: bool) -> None:
        """Send the open envelopes and wait for the broker to take everything; ``ask_broker``: then ask it for
        its id (acknowledged is not enough: a broker that restarted empty acknowledges, then drops)."""
        if self._envelopes is not None:
            self._envelopes.flush()
        self._sender.flush(timeout_s)
        if ask_broker and self._watch.watching and self._watch.check():
            self._sender.flush(timeout_s)
        self._sender.raise_failures()

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Flush, then close the Kafka connection."""
        self._process.restart(self._start_in_child)
        self._closed = True
        atexit.unregister(self._exit_hook)
        self._finalizer.cancel()
        try:
            self.flush(timeout_s)
        finally:
            if self._envelopes is not None:
                self._envelopes.close()
            self._watch.close()
            self._sender.close(timeout_s)

    def _flush_at_exit(self) -> None:
        """At the interpreter's exit, without close(): send what this process holds (a forked process that never
        emitted holds nothing of its own: the parent's events are the parent's)."""
        if self._closed or self._process.in_new_process():
            return
        try:  # a process that ends cannot replay: the broker is not asked for its id
            self._send_held(EXIT_FLUSH_S, ask_broker=False)
        except Exception as exc:  # the process ends either way: say what was lost
            log.warning(
                "events not delivered before the process exited",
                extra={"fields": {"error": f"{type(exc).__name__}: {exc}", "waited_s": EXIT_FLUSH_S}},
            )

    def __reduce__(self) -> tuple[Any, ...]:
        """A producer handed to another process (``multiprocessing``'s spawn and forkserver starts: the default
        on macOS and, from Python 3.14, on Linux) is made there anew with the same settings and options: its
        connection and threads cannot travel, and what it holds is sent from here."""
        return functools.partial(EventProducer, **self._arguments), (self.settings,)

    @property
    def replays(self) -> int:
        """Times the broker came back as a new instance and recent messages were sent again."""
        return self._watch.replays

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ---------------------------------------------------------------------------------------

    def _send(self, topic: str, model: str, event: dict[str, Any], event_id: str) -> None:
        payload = json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
        if self._envelopes is None:
            self._sender.send(topic, self._key(topic, model), payload, (event_id,))
        else:
            self._envelopes.add(topic, model, payload, event_id)

    def _send_envelope(self, topic: str, model: str, value: bytes, event_ids: tuple[str, ...]) -> None:
        self._sender.send(topic, self._key(topic, model), value, event_ids)


def _flush_at_exit(producer: weakref.ref[EventProducer]) -> None:
    """The atexit hook of a producer still open (held weakly: a producer collected has nothing left to send)."""
    if (alive := producer()) is not None:
        alive._flush_at_exit()
