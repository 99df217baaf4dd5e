"""The seam between ingestion and what watches the data (the drift detectors plug in here).

Ingestion calls every observer with each batch once ClickHouse holds it; an observer that fails is
logged and never holds ingestion back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from driftloop.streams.batch import ColumnBatch


class BatchObserver(Protocol):
    """Receives prediction batches and labeled batches, column by column, in arrival order per partition;
    ``partitions[i]`` is the Kafka partition row i was read from (for a labeled row: its outcome's). A labeled
    batch holds the labeled rows' columns but their prediction's features (``streams.join.LABELED_ROWS``: the
    features stay in ClickHouse), and ``features``, how many the prediction sent."""

    async def on_predictions(self, rows: ColumnBatch, partitions: Sequence[int]) -> None: ...

    async def on_labeled(self, rows: ColumnBatch, partitions: Sequence[int]) -> None: ...
