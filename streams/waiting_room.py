"""The outcomes that wait for their prediction, held in the ingestion process's memory.

``join_pending`` in ClickHouse is the record: every waiting outcome is a row there before its offset is
committed, and every later state (``matched``, ``expired``) a newer row. But the table keeps every outcome
that ever waited, so a sweep that read it (``FINAL``) cost more each day: 0.4 s of ClickHouse for 5 million
outcomes that once waited, every 5 s. The room holds what waits now, a partition at a time:

- a partition is **held** once its waiting rows were read from ClickHouse (the first sweep after it was
  assigned reads them, left there by the worker that owned it before, or by this one before a restart);
  from then on the sweep reads this room, and ClickHouse only for the predictions;
- an outcome that finds no prediction is added here as soon as its ``join_pending`` row is written, so that
  the batch of predictions that brings its prediction joins it at once (:meth:`OutcomeJoin.prompt
  <driftloop.streams.join.OutcomeJoin.prompt>`): an outcome sent a moment after its prediction, as a
  server that learns the truth at once sends it, is joined in well under a second, not at the next sweep;
- a partition no longer owned is let go (its new owner reads it), and a rebalance lets every partition go
  (:meth:`OutcomeJoin.hand_over <driftloop.streams.join.OutcomeJoin.hand_over>`), so that no outcome is
  joined here and by its next owner; past :data:`MAX_HELD` rows a partition is let go too, and its sweeps
  read ClickHouse as before: memory stays bounded when outcomes pile up that never meet a prediction.

>>> room = WaitingRoom(max_held=4)
>>> room.hold(0, [_row("o1", "r1", 0), _row("o2", "r2", 0)])
>>> room.add([_row("o3", "r3", 0), _row("o4", "r9", 1)])
>>> sorted(room.candidates(["r2", "r3", "r4"])), room.held, len(room)
(['o2', 'o3'], {0}, 4)
>>> room.add([_row("o5", "r5", 0)])  # a fifth row: past max_held, the partition with most is let go
>>> room.held, len(room), room.candidates(["r1"])
(set(), 1, [])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from driftloop.streams.batch import ColumnBatch

#: What the room keeps of a waiting outcome: a ``join_pending`` row's columns but its state and revision.
WAITING_COLUMNS = (
    "event_id",
    "model",
    "request_id",
    "ts",
    "ts_ms",
    "label",
    "label_num",
    "value",
    "source_partition",
    "arrived_at",
)
#: Waiting outcomes held in memory, all partitions together: some 630 bytes each, 63 MB in all. Outcomes
#: sent a moment after their predictions wait for well under a second: 100,000 is a second of a busy worker's.
MAX_HELD = 100_000

_ID, _REQUEST = WAITING_COLUMNS.index("event_id"), WAITING_COLUMNS.index("request_id")
#: A row's partition: where it is read from ``join_pending``, and whose owner joins it.
PARTITION = WAITING_COLUMNS.index("source_partition")


class WaitingRoom:
    """Waiting outcomes by ``event_id`` (rows of :data:`WAITING_COLUMNS`), findable by request id; see the
    module docstring."""

    def __init__(self, max_held: int = MAX_HELD) -> None:
        self.max_held = max_held
        self.held: set[int] = set()  # partitions whose waiting rows are all here
        self._rows: dict[str, tuple[Any, ...]] = {}
        self._by_request: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def hold(self, partition: int, rows: Iterable[tuple[Any, ...]]) -> None:
        """Hold ``partition`` with its waiting ``rows`` (read from ``join_pending``): all of it, or, past
        :attr:`max_held`, none of it."""
        rows = list(rows)
        if len(self._rows) + len(rows) > self.max_held:
            self.let_go({partition})
            return
        self._put(rows)
        self.held.add(partition)

    def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Outcomes that have just started to wait. Held partitions keep all of theirs; a partition that would
        pass :attr:`max_held` is let go (ClickHouse keeps its rows)."""
        self._put(rows)
        if len(self._rows) > self.max_held:
            for partition, _ in Counter(row[PARTITION] for row in self._rows.values()).most_common():
                self.let_go({partition})
                if len(self._rows) <= self.max_held:
                    break

    def partitions(self) -> set[int]:
        """The partitions of the rows here (held or not)."""
        return {row[PARTITION] for row in self._rows.values()}

    def let_go(self, partitions: set[int]) -> None:
        """Forget ``partitions``: not owned any more, or too many waiting (sweeps read them from ClickHouse)."""
        self.held -= partitions
        self.remove([eid for eid, row in self._rows.items() if row[PARTITION] in partitions])

    def remove(self, event_ids: Iterable[str]) -> None:
        """Outcomes joined or expired."""
        for event_id in event_ids:
            row = self._rows.pop(event_id, None)
            if row is not None:
                ids = self._by_request[row[_REQUEST]]
                ids.discard(event_id)
                if not ids:
                    del self._by_request[row[_REQUEST]]

    def candidates(self, request_ids: Iterable[str]) -> list[str]:
        """The waiting outcomes of these requests (their ``event_id``s): whose prediction may just have come."""
        if not self._by_request:
            return []
        found = self._by_request.keys() & set(request_ids)
        return [event_id for request_id in found for event_id in self._by_request[request_id]]

    def batch(self, event_ids: Iterable[str] | None = None, partitions: set[int] | None = None) -> ColumnBatch:
        """The rows of ``event_ids`` (default: all), of ``partitions`` (default: any), as ``join_pending``
        columns but the state and revision."""
        rows = self._rows.values() if event_ids is None else [self._rows[e] for e in event_ids if e in self._rows]
        if partitions is not None:
            rows = [row for row in rows if row[PARTITION] in partitions]
        return as_batch(list(rows))

    def _put(self, rows: Iterable[tuple[Any, ...]]) -> None:
        for row in rows:
            self._rows[row[_ID]] = row
            self._by_request.setdefault(row[_REQUEST], set()).add(row[_ID])


def as_batch(rows: Sequence[tuple[Any, ...]]) -> ColumnBatch:
    """The room's rows as ``join_pending`` columns (but the state and revision)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in WAITING_COLUMNS]
    return ColumnBatch("join_pending", {name: list(c) for name, c in zip(WAITING_COLUMNS, columns, strict=True)})


def rows_of(batch: ColumnBatch) -> list[tuple[Any, ...]]:
    """A batch with :data:`WAITING_COLUMNS` (and maybe more) as the room's rows."""
    return list(zip(*(batch[name] for name in WAITING_COLUMNS), strict=True))


def _row(event_id: str, request_id: str, partition: int) -> tuple[Any, ...]:
    """A row for the examples."""
    return (event_id, "m", request_id, 0, 0, "1", 1.0, float("nan"), partition, 0)
