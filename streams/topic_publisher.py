"""Records published as JSON on a topic by the worker's child processes (which have no Faust app)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from kafka import KafkaProducer

from driftloop.infra.settings import Settings


class JsonRecord(Protocol):
    def to_json(self) -> dict[str, Any]: ...


Record = TypeVar("Record", bound=JsonRecord)


class KafkaTopicPublisher(Generic[Record]):
    """Publishes records (dead letters, alerts) as JSON on ``topic``, keyed by ``key(record)``, with a
    kafka-python producer (opened at the first record), and returns once the broker has them all."""

    def __init__(self, settings: Settings, topic: str, key: Callable[[Record], str]) -> None:
        self.settings = settings
        self.topic = topic
        self.key = key
        self._producer: KafkaProducer | None = None

    async def publish(self, records: Sequence[Record]) -> None:
        await asyncio.to_thread(self._publish, records)

    def _publish(self, records: Sequence[Record]) -> None:
        if self._producer is None:
            self._producer = KafkaProducer(**self.settings.kafka_python_config(), acks="all")
        sent = [
            self._producer.send(self.topic, json.dumps(r.to_json()).encode(), key=self.key(r).encode("utf-8"))
            for r in records
        ]
        self._producer.flush(timeout=30)
        for record in sent:
            record.get(timeout=30)  # raises what the broker said, if it refused

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
