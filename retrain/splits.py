"""Train / validation / test splits by time, each with a record of exactly which rows it holds.

The test split is the most recent ``test_fraction`` of the window, validation the most recent
``validation_fraction`` of the rest, train what is left: a model is never judged on rows older than the ones it
learnt from. A split's fingerprint is the sha256 of its rows' event ids in order, so a later rebuild can tell
whether it sees the same rows.

>>> fingerprint(["a", "b"]) == fingerprint(["a", "b"]) != fingerprint(["b", "a"])
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from driftloop.retrain.dataset import LabeledData


def fingerprint(event_ids: Iterable[str]) -> str:
    """The sha256 of the event ids, in their order (one per line)."""
    digest = hashlib.sha256()
    for event_id in event_ids:
        digest.update(event_id.encode())
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class SplitRecord:
    """What one split holds: its row count, its time range (epoch seconds) and its rows' fingerprint."""

    name: str
    rows: int
    ts_from: float
    ts_to: float
    fingerprint: str

    @classmethod
    def of(cls, name: str, data: LabeledData) -> SplitRecord:
        if not len(data):
            return cls(name, 0, 0.0, 0.0, fingerprint(()))
        return cls(name, len(data), float(data.ts[0]), float(data.ts[-1]), fingerprint(data.event_ids))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SplitRecord:
        return cls(**data)


@dataclass(frozen=True)
class Splits:
    """The three splits of one window, oldest to newest."""

    train: LabeledData
    validation: LabeledData
    test: LabeledData

    @classmethod
    def by_time(cls, data: LabeledData, test_fraction: float, validation_fraction: float) -> Splits:
        history, test = data.split(test_fraction)
        train, validation = history.split(validation_fraction)
        return cls(train, validation, test)

    def records(self) -> tuple[SplitRecord, ...]:
        return (
            SplitRecord.of("train", self.train),
            SplitRecord.of("validation", self.validation),
            SplitRecord.of("test", self.test),
        )
