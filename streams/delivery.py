"""Sending the SDK's messages to Kafka at least once (kafka-python).

While the broker is away, messages are retried for up to ``delivery_timeout_s``, one request in flight per
connection so that a retry cannot overtake the message after it. A message the broker fails with an unexpected
server error is sent again (up to :data:`MAX_SEND_AGAIN` times) from the producer's own thread. What the broker
acknowledged goes to the replay ring (``streams.replay``); ``on_delivery`` is told where each message landed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.errors import UnknownError

from driftloop.infra.errors import DriftloopError
from driftloop.infra.settings import Settings
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


class KafkaSender:
    """kafka-python's producer, with acks from all replicas, ordered retries, sends again on server errors,
    and a record of what was acknowledged (``replay``) and what failed (:meth:`raise_failures`)."""

    def __init__(
        self,
        settings: Settings,
        replay: ReplayRing,
        *,
        client_id: str,
        delivery_timeout_s: float,
        compression: str | None,
        on_delivery: Callable[[Delivery], None] | None,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression {compression!r} is not one of gzip, snappy, lz4, zstd (or None)")
        self.replay = replay
        self.on_delivery = on_delivery
        # Not kafka-python's idempotent mode: a broker that restarts without its state fails the batches
        # in flight (UnknownProducerId) instead of retrying them; event ids make plain retries safe.
        self._producer = KafkaProducer(
            **settings.kafka_python_config(),
            client_id=client_id,
            acks="all",
            linger_ms=5,
            # envelopes sent within the linger share a record batch (kafka-python's 16 KiB held one envelope of
            # a hundred predictions each): fewer requests for any broker, and the embedded one's fetches cost
            # it more for each batch it holds; under the 1 MB a Kafka broker takes in one batch by default
            batch_size=512 << 10,
            enable_idempotence=False,
            max_in_flight_requests_per_connection=1,
            delivery_timeout_ms=int(delivery_timeout_s * 1000),
            compression_type=compression,
        )
        self._lock = threading.Lock()
        self._failures: list[BaseException] = []
        self._failed_sends: list[Sent] = []
        self._again: queue.SimpleQueue[Sent] = queue.SimpleQueue()

    @property
    def producer(self) -> KafkaProducer:
        """kafka-python's producer underneath (let go of in a forked process: ``streams.compat.kafka_python``)."""
        return self._producer

    def partitions_for(self, topic: str) -> Collection[int] | None:
        return self._producer.partitions_for(topic)  # type: ignore[no-any-return]

    def send(self, topic: str, key: bytes, value: bytes, event_ids: tuple[str, ...], attempt: int = 0) -> None:
        future = self._producer.send(topic, key=key, value=value)
        future.add_callback(lambda m: self._delivered(m, Sent(topic, key, value, event_ids, time.time(), attempt)))
        future.add_errback(lambda exc: self.failed(exc, Sent(topic, key, value, event_ids, time.time(), attempt)))

    def send_again(self) -> bool:
        """Send what failed on a server error once more (from a thread of ours, not kafka-python's)."""
        again = []
        while not self._again.empty():
            again.append(self._again.get())
        for sent in again:
            self.send(sent.topic, sent.key, sent.value, sent.event_ids, sent.attempt + 1)
        return bool(again)

    def take_failed(self) -> list[Sent]:
        """What failed for good so far (to send again to a new broker instance); its failures are forgiven."""
        with self._lock:
            failed, self._failed_sends, self._failures = self._failed_sends, [], []
        return failed

    def flush(self, timeout_s: float | None) -> None:
        """Wait until the broker has every message sent, including those sent again on server errors."""
        self._producer.flush(timeout=timeout_s)
        while self.send_again():
            self._producer.flush(timeout=timeout_s)

    def raise_failures(self) -> None:
        """``DeliveryError`` when messages failed since the last call (each failure is reported once)."""
        with self._lock:
            failures, self._failures, self._failed_sends = self._failures, [], []
        if failures:
            raise DeliveryError(f"{len(failures)} message(s) were not delivered: {failures[0]!r}")

    def close(self, timeout_s: float | None) -> None:
        self._producer.close(timeout=timeout_s)

    def failed(self, exc: BaseException, sent: Sent | None = None) -> None:
        if sent is not None and isinstance(exc, UnknownError) and sent.attempt < MAX_SEND_AGAIN:
            # An unexpected server error (the embedded broker gives one while a restarted instance
            # still has records of a dropped topic in the way): send the message again.
            self._again.put(sent)
            return
        log.warning("event delivery failed", extra={"fields": {"error": repr(exc)}})
        with self._lock:
            self._failures.append(exc)
            if sent is not None:
                self._failed_sends.append(sent)

    def _delivered(self, metadata: Any, sent: Sent) -> None:
        self.replay.add(sent)
        if self.on_delivery is not None:
            self.on_delivery(Delivery(metadata.topic, metadata.partition, metadata.offset, sent.event_ids))
