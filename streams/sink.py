"""The ClickHouse sink: columnar batch inserts, retried while ClickHouse is unavailable, never dropping rows.

One ``write`` is one ``INSERT`` of a whole batch (clickhouse-driver's columnar form). While ClickHouse is
down or overloaded the write retries with exponential backoff and does not return: the agent calling it
stops taking messages, Faust stops fetching once its buffers are full, and memory stays bounded; no offset
is committed for rows not yet written. Rows ClickHouse can never take (a value the column type rejects)
are isolated by bisecting the batch and returned as rejected with the reason, so that the caller can
dead-letter them instead of blocking forever.

An array column that is empty in every row of a batch is left out of its ``INSERT`` when the table gives it
no ``DEFAULT`` (the server then stores ``[]`` itself): categorical features, nulls and class probabilities
are mostly absent, and clickhouse-driver spends Python time on each row of each array column it sends.

Inserts are at-least-once; the tables are ReplacingMergeTrees keyed by ``event_id``, so a batch written
twice (a crash before the offset commit) is counted once by queries that read with ``FINAL``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from clickhouse_driver import errors as ch_errors

from driftloop.infra.clickhouse.client import SharedClient
from driftloop.infra.clickhouse.columnar_insert import ExternalColumns, row_count
from driftloop.infra.errors import DriftloopError
from driftloop.infra.settings import ClickHouseEndpoint
from driftloop.streams.batch import Column, ColumnBatch

log = logging.getLogger("driftloop.sink")

# Server error codes that mean "try again later" rather than "this data is wrong".
_TRANSIENT_SERVER_CODES = frozenset(
    {
        ch_errors.ErrorCodes.TIMEOUT_EXCEEDED,
        ch_errors.ErrorCodes.TOO_MANY_SIMULTANEOUS_QUERIES,
        ch_errors.ErrorCodes.MEMORY_LIMIT_EXCEEDED,
        ch_errors.ErrorCodes.SOCKET_TIMEOUT,
        ch_errors.ErrorCodes.NETWORK_ERROR,
        ch_errors.ErrorCodes.TOO_MANY_PARTS,
        ch_errors.ErrorCodes.UNKNOWN_TABLE,  # not provisioned yet: `driftloop stack up` fixes it, rows wait
        ch_errors.ErrorCodes.UNKNOWN_DATABASE,
        ch_errors.ErrorCodes.READONLY,
        ch_errors.ErrorCodes.ALL_CONNECTION_TRIES_FAILED,
        ch_errors.ErrorCodes.CANNOT_ALLOCATE_MEMORY,
    }
)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff between retries: ``initial_s`` doubling up to ``max_s``."""

    initial_s: float = 0.2
    max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_s, self.initial_s * 2 ** min(attempt, 30)))


@dataclass
class SinkMetrics:
    """Counters of one sink; read them from the worker (logs, status) or tests."""

    rows_written: Counter[str] = field(default_factory=Counter)
    batches_written: Counter[str] = field(default_factory=Counter)
    rows_rejected: int = 0
    retries: int = 0
    rows_waiting: int = 0  # rows in a write that is retrying: the backpressure in effect
    largest_batch: int = 0
    last_batch_rows: int = 0
    last_insert_s: float = 0.0
    last_error: str = ""

    def batch_done(self, table: str, rows: int, rejected: int = 0) -> None:
        """A write of ``rows`` rows of ``table`` done, ``rejected`` of them refused."""
        self.rows_written[table] += rows - rejected
        self.batches_written[table] += 1
        self.rows_rejected += rejected
        self.largest_batch = max(self.largest_batch, rows)
        self.last_batch_rows = rows


@dataclass(frozen=True)
class Rejected:
    """A row ClickHouse refused: its index in the batch and why."""

    index: int
    reason: str


class ClickHouseSink:
    """Writes :class:`ColumnBatch` es to ClickHouse; see the module docstring for the guarantees."""

    def __init__(self, endpoint: ClickHouseEndpoint, *, backoff: Backoff | None = None) -> None:
        self.endpoint = endpoint
        self.backoff = backoff or Backoff()
        self.metrics = SinkMetrics()
        self._client = SharedClient(endpoint)
        self._lock = threading.Lock()  # one write (with its retries) at a time
        self._closed = threading.Event()
        self._plain_arrays: dict[str, frozenset[str]] = {}  # table -> its array columns without a DEFAULT

    async def write(self, batch: ColumnBatch) -> list[Rejected]:
        """Insert ``batch``; retries until it is written; returns the rows ClickHouse can never take."""
        if not len(batch):
            return []
        return await asyncio.to_thread(self.write_blocking, batch)

    def write_blocking(self, batch: ColumnBatch) -> list[Rejected]:
        """The blocking form of :meth:`write`, for threads and tools outside asyncio."""
        if not len(batch):
            return []
        with self._holding(len(batch)):
            rejected = self._write_isolating(batch, list(range(len(batch))))
        self.metrics.batch_done(batch.table, len(batch), len(rejected))
        return rejected

    async def insert_select(self, table: str, columns: Sequence[str], select: str, source: ExternalColumns) -> None:
        """Insert into ``table``'s ``columns`` what ``select`` makes of ``source``, an external table sent with the
        query (rows the server completes from what it holds, as the labeled rows take their prediction's
        features); retried while ClickHouse is away, as :meth:`write` is. Raises :class:`InsertRefusedError`
        when ClickHouse refuses it: ``select`` is the project's, so that is a bug to fix, not a row to isolate."""
        rows = row_count(source.columns)
        if not rows:
            return
        names = ", ".join(f"`{name}`" for name in columns)
        query = f"INSERT INTO `{self.endpoint.database}`.`{table}` ({names}) {select}"
        await asyncio.to_thread(self._insert_select_blocking, table, rows, query, source)

    def _insert_select_blocking(self, table: str, rows: int, query: str, source: ExternalColumns) -> None:
        with self._holding(rows):
            error = self._retrying(table, rows, lambda: self._client.execute(query, external_tables=[source]))
        if error is not None and _PARTITIONS_OF_ONE_INSERT in error and rows > 1:  # see is_transient: in halves
            middle = rows // 2
            for part in (slice(0, middle), slice(middle, rows)):
                half = ExternalColumns(source.name, source.structure, [column[part] for column in source.columns])
                self._insert_select_blocking(table, row_count(half.columns), query, half)
            return
        if error is not None:
            raise InsertRefusedError(f"ClickHouse refused {rows} {table} rows ({error}); the query was: {query}")
        self.metrics.batch_done(table, rows)

    def close(self) -> None:
        self._closed.set()
        self._client.close()

    # --- internals ---------------------------------------------------------------------------------------

    @contextmanager
    def _holding(self, rows: int) -> Iterator[None]:
        """One write at a time (with its retries); its rows count as waiting meanwhile."""
        with self._lock:
            self.metrics.rows_waiting += rows
            try:
                yield
            finally:
                self.metrics.rows_waiting -= rows

    def _write_isolating(self, batch: ColumnBatch, indices: list[int]) -> list[Rejected]:
        """Insert the rows at ``indices``; on a data error, bisect to find the rows at fault."""
        error = self._insert_retrying(batch.take(indices) if len(indices) != len(batch) else batch)
        if error is None:
            return []
        if len(indices) == 1:
            return [Rejected(indices[0], f"ClickHouse refused the row: {error}")]
        middle = len(indices) // 2
        return self._write_isolating(batch, indices[:middle]) + self._write_isolating(batch, indices[middle:])

    def _insert_retrying(self, batch: ColumnBatch) -> str | None:
        """Insert until it succeeds (None) or fails for a reason retrying cannot fix (its message)."""

        def insert() -> None:
            columns = self._columns_to_send(batch)
            names = ", ".join(f"`{name}`" for name in columns)
            query = f"INSERT INTO `{self.endpoint.database}`.`{batch.table}` ({names}) VALUES"
            self._client.execute(query, list(columns.values()), columnar=True)

        return self._retrying(batch.table, len(batch), insert)

    def _retrying(self, table: str, rows: int, insert: Callable[[], object]) -> str | None:
        """Run ``insert`` until it succeeds (None) or fails for a reason retrying cannot fix (its message)."""
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                insert()
                self.metrics.last_insert_s = time.perf_counter() - started
                if attempt:
                    log.warning(
                        "ClickHouse insert succeeded after retries",
                        extra={"fields": {"table": table, "rows": rows, "attempts": attempt + 1}},
                    )
                return None
            except Exception as exc:
                if not is_transient(exc):
                    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
                self.metrics.retries += 1
                self.metrics.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
                delay = self.backoff.delay(attempt)
                log.warning(
                    "ClickHouse unavailable; holding the batch and retrying",
                    extra={
                        "fields": {
                            "table": table,
                            "rows": rows,
                            "attempt": attempt + 1,
                            "retry_in_s": round(delay, 2),
                            "error": self.metrics.last_error,
                        }
                    },
                )
                if self._closed.wait(delay):
                    raise SinkClosedError(f"sink closed while {rows} {table} rows waited") from exc
                attempt += 1

    def _columns_to_send(self, batch: ColumnBatch) -> dict[str, Column]:
        """The batch's columns but the arrays the server fills alike: empty in every row, without a DEFAULT."""
        if batch.table not in self._plain_arrays:
            described = self._client.execute(
                "SELECT name, startsWith(type, 'Array(') AND default_kind = '' FROM system.columns"
                " WHERE database = %(d)s AND table = %(t)s",
                {"d": self.endpoint.database, "t": batch.table},
            )
            if not described:  # no such table (yet): send everything, and let the insert say what is wrong
                return batch.columns
            self._plain_arrays[batch.table] = frozenset(name for name, plain in described if plain)
        plain = self._plain_arrays[batch.table]
        return {name: values for name, values in batch.columns.items() if name not in plain or _any_item(values)}


class SinkClosedError(DriftloopError, RuntimeError):
    """The sink was closed (the worker is stopping) while a batch waited for ClickHouse: it was not written."""


class InsertRefusedError(DriftloopError, RuntimeError):
    """ClickHouse refused an ``INSERT ... SELECT`` of the project's own (a schema the worker does not match:
    run ``driftloop stack up`` to migrate it, or report the query in the message)."""


_PARTITIONS_OF_ONE_INSERT = "partitions for single INSERT block"


def _any_item(rows: Column) -> bool:
    """Whether any row of an array column holds anything."""
    return any(rows) if isinstance(rows, list) else bool(rows.lengths().any())


def is_transient(exc: Exception) -> bool:
    """Whether ``exc`` is ClickHouse being away or overloaded (retrying helps), not a refusal of the query."""
    if isinstance(exc, ch_errors.ServerException):
        # TOO_MANY_PARTS is ClickHouse asking for slower inserts, but also (ClickHouse 19.3 on) a block of rows
        # from more than `max_partitions_per_insert_block` weeks (a backfill of years): retried, it never goes
        # in, and the worker stalled on it; a refusal, it is written in halves until each goes in
        return exc.code in _TRANSIENT_SERVER_CODES and _PARTITIONS_OF_ONE_INSERT not in str(exc.message)
    return isinstance(exc, ch_errors.NetworkError | ch_errors.SocketTimeoutError | OSError | EOFError)
