"""Batches of rows kept column by column: the form ClickHouse inserts fastest and detectors read whole.

>>> batch = ColumnBatch("outcomes", {"event_id": ["a", "b"], "label": ["1", "0"]})
>>> len(batch), batch.take([1]).columns
(2, {'event_id': ['b'], 'label': ['0']})
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class ColumnBatch:
    """Rows for one ClickHouse table, as one list per column (names as in the table, ``num.name`` included)."""

    table: str
    columns: dict[str, list[Any]]

    def __post_init__(self) -> None:
        lengths = {len(values) for values in self.columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"{self.table}: columns of different lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, name: str) -> list[Any]:
        return self.columns[name]

    def take(self, indices: Sequence[int]) -> ColumnBatch:
        """The rows at ``indices``, in that order."""
        return ColumnBatch(self.table, {k: [v[i] for i in indices] for k, v in self.columns.items()})

    def concat(self, other: ColumnBatch) -> ColumnBatch:
        if other.table != self.table or other.columns.keys() != self.columns.keys():
            raise ValueError(f"cannot concatenate {other.table} rows to {self.table} rows")
        return ColumnBatch(self.table, {k: v + other.columns[k] for k, v in self.columns.items()})

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame of the batch (nested columns stay lists per row)."""
        return pd.DataFrame(self.columns)

    @classmethod
    def empty(cls, table: str, names: Sequence[str]) -> ColumnBatch:
        return cls(table, {name: [] for name in names})


@dataclass(frozen=True)
class DeadLetter:
    """A message, or one event of an envelope, that broke the event contract: the original bytes and why."""

    reason: str
    original: bytes
    topic: str
    partition: int
    offset: int
    index: int = -1  # the event's position in an envelope; -1: the whole message

    def to_json(self, max_original: int = 128 * 1024) -> dict[str, Any]:
        """The dead-letter topic's record: reason, source coordinates and the original (text and base64).

        An original over ``max_original`` bytes is cut there (``truncated``), so that the record stays under
        the broker's message size; ``original_size`` and ``original_sha256`` still identify the whole.
        """
        kept = self.original[:max_original]
        try:
            text: str | None = kept.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {
            "reason": self.reason,
            "source": {"topic": self.topic, "partition": self.partition, "offset": self.offset},
            "index": None if self.index < 0 else self.index,
            "original": text,
            "original_base64": base64.b64encode(kept).decode("ascii"),
            "original_size": len(self.original),
            "original_sha256": hashlib.sha256(self.original).hexdigest(),
            "truncated": len(kept) < len(self.original),
        }


@dataclass
class Decoded:
    """What decoding a list of messages gave: good rows, dead letters for the rest, and for each row the
    index of the message it came from."""

    rows: ColumnBatch
    dead: list[DeadLetter] = field(default_factory=list)
    origins: list[int] = field(default_factory=list)
