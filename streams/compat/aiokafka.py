"""aiokafka's internals that driftloop relies on (aiokafka 0.14): record batches the streams worker cannot read
become dead letters, not a crashed worker; and how long a fetch waits.

aiokafka decompresses and checks a fetched record batch while the consumer iterates it
(``aiokafka.consumer.fetcher.PartitionRecords._unpack_records``). A codec whose library is missing, an
unknown codec, a broken CRC or a malformed record raise out of ``getmany``: the Faust worker crashed, and
after a restart the same batch crashed it again. :func:`install` replaces that generator with one that reads
each batch exactly as aiokafka does, except that a batch that fails to read is skipped: each of its offsets
not yet handed on becomes a message whose value is one shared :class:`~streams.batch.UnreadableRecords`
naming the range and the error, logged once at ERROR.

Those messages travel through the worker like any other, so nothing about offsets changes: the decoder
turns the range into one dead letter (``dead_letters`` with ``source_offset`` .. ``source_offset_last``, and
the dead-letter topic), the batch is acknowledged once that is written, and the partition goes on after
the range; every readable batch around it is read as before. A CRC failure is not retried: a broker stores
a batch as it was written, so a second fetch brings the same bytes.

**Transactions.** The worker reads committed records only (``streams.compat.faust``). A transactional
producer (Kafka Streams, Flink, any client with a ``transactional.id``) writes a marker after each
transaction, which takes an offset; aiokafka skips markers and aborted batches without a message, which
left gaps in the offsets handed on. Each of those offsets now arrives as a message whose value is a
:class:`~streams.batch.NoEvent` (one shared value a kind): acknowledged with its neighbours, dropped by
the decoder, so commits go past it. A broker that keeps no index of aborted transactions (the embedded
one) sends an aborted batch as if it were committed; its abort marker, written after it, says otherwise,
and a batch whose marker is in the same fetch is judged by it (:func:`_transaction_ends`; a batch whose
marker is not fetched yet starts the next fetch, unless it is the fetch's first: a transaction larger
than a fetch is then taken as the broker sends it).

:func:`wait_for_fetches` sets how long the consumer's fetches wait for new data (``fetch_max_wait_ms``), on a
consumer Faust created with its own fixed wait (read by the fetcher that ``start()`` creates).

Written for aiokafka 0.14 (pinned ``==0.14.*``, :data:`WRITTEN_FOR`); ``tests/streams/test_library_internals.py``
fails when the function replaced here, or the attributes set, change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from operator import attrgetter
from typing import Any

import aiokafka.errors as aiokafka_errors
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.structs import ConsumerRecord

from driftloop.streams.batch import ABORTED, TRANSACTION_MARKER, UnreadableRecords

log = logging.getLogger("driftloop.streams")

READ_COMMITTED = aiokafka_fetcher.READ_COMMITTED
#: What :func:`install` replaces (kept for the check that the library did not change underneath it).
#: The library series this module was written for (pinned in pyproject.toml).
WRITTEN_FOR = {"aiokafka": "0.14."}

ORIGINAL_UNPACK_RECORDS = aiokafka_fetcher.PartitionRecords._unpack_records


def install() -> None:
    """Make every aiokafka consumer in this process skip unreadable batches as described above (idempotent)."""
    aiokafka_fetcher.PartitionRecords._unpack_records = _unpack_records  # type: ignore[method-assign]


def _unpack_records(self: Any) -> Iterator[ConsumerRecord[Any, Any]]:
    """aiokafka's ``PartitionRecords._unpack_records``, one batch at a time: an unreadable batch skipped, a
    transaction's markers and aborted batches handed on as :class:`~streams.batch.NoEvent` placeholders."""
    batches, unreadable = _headers(self._records)
    ends = _transaction_ends(self, batches)
    for index, batch in enumerate(batches):
        aborted = False
        if ends is not None:
            aborted = ends[index]
            if aborted is None and not batch.is_control_batch:
                if index:  # its marker lies past this fetch: the next fetch starts here, and brings it
                    return
                aborted = False  # a transaction larger than a fetch: what the broker says of it decides
        try:
            yield from _unpack_batch(self, batch, aborted=bool(aborted))
        except Exception as exc:
            yield from _skip(self, batch.next_offset - 1, exc)
    if unreadable is not None:  # not even a header: skip one offset, the next fetch starts after it
        yield from _skip(self, self.next_fetch_offset, unreadable)


def _headers(records: Any) -> tuple[list[Any], Exception | None]:
    """The record batches of a fetch (headers read, records not yet), up to the first one that cannot be read."""
    batches: list[Any] = []
    append, has_next, next_batch = batches.append, records.has_next, records.next_batch
    while has_next():
        try:
            append(next_batch())
        except Exception as exc:
            return batches, exc
    return batches, None


def _transaction_ends(self: Any, batches: list[Any]) -> list[bool | None] | None:
    """How each transactional batch of a read_committed fetch ends, from the markers in the same fetch: for a
    marker, whether it aborts; for a batch of records, whether the next marker of its producer aborts it (None
    where that marker is not in this fetch, or cannot be read). None when the fetch holds no transaction.

    A broker that keeps an index of aborted transactions sends it with each fetch, and aiokafka drops those
    batches by it; one that does not (the embedded broker) sends aborted batches as if committed. The
    markers are the log's own record of each transaction's end, and a read_committed fetch stops at the
    first transaction still open, so every batch fetched has its marker written after it."""
    if self._isolation_level != READ_COMMITTED or not any(map(_transactional, batches)):
        return None
    ends: list[bool | None] = [False] * len(batches)
    nearest: dict[int, bool | None] = {}  # producer id → whether its next marker aborts
    for index in range(len(batches) - 1, -1, -1):
        batch = batches[index]
        if not batch.is_transactional:
            continue
        if batch.is_control_batch:
            nearest[batch.producer_id] = ends[index] = _aborts(self, batch)
        else:
            ends[index] = nearest.get(batch.producer_id)
    return ends


_transactional = attrgetter("is_transactional")


def _aborts(self: Any, marker: Any) -> bool | None:
    """Whether a control batch is an abort marker (None: it cannot be read)."""
    try:
        return bool(self._contains_abort_marker(marker))
    except Exception:
        return None


def _unpack_batch(self: Any, batch: Any, *, aborted: bool) -> Iterator[ConsumerRecord[Any, Any]]:
    """One batch, as aiokafka 0.14 reads it (CRC, aborted transactions, control batches, records), except that
    the offsets of a marker or of an aborted batch are handed on as placeholders. ``aborted``: an abort
    marker, or a batch that one in the same fetch aborts (read by :func:`_transaction_ends`, as a marker's
    record can be read only once)."""
    tp = self._tp
    if self._check_crcs and not batch.validate_crc():
        raise aiokafka_errors.CorruptRecordException(f"Invalid CRC - {tp}")
    if self._isolation_level == READ_COMMITTED and batch.is_transactional:  # aiokafka: any producer id
        self._consume_aborted_up_to(batch.base_offset)
        if not batch.is_control_batch and (aborted or batch.producer_id in self._aborted_producers):
            yield from _placeholders(self, batch.next_offset - 1, ABORTED)
            return
        if batch.is_control_batch and aborted:
            self._aborted_producers.discard(batch.producer_id)
    if batch.is_control_batch:
        yield from _placeholders(self, batch.next_offset - 1, TRANSACTION_MARKER)
        return
    for record in batch:
        if record.offset < self.next_fetch_offset:
            continue  # a compressed message set, or a fetch that started inside this batch
        consumer_record = self._consumer_record(tp, record)
        self.next_fetch_offset = record.offset + 1
        yield consumer_record
    self.next_fetch_offset = batch.next_offset


def _skip(self: Any, last: int, error: Exception) -> Iterator[ConsumerRecord[Any, Any]]:
    """A message for each offset from the next one to hand on through ``last``, all with one shared value."""
    tp, first = self._tp, self.next_fetch_offset
    if last < first:
        return
    reason = f"{type(error).__name__}: {error}"
    value = UnreadableRecords.describe(tp.topic, tp.partition, first, last, reason)
    log.error(
        "skipped a record batch that cannot be read; its offsets are dead-lettered and the partition goes on",
        extra={"fields": {"topic": tp.topic, "partition": tp.partition, "first": first, "last": last,
                          "reason": reason}},
    )  # fmt: skip
    yield from _placeholders(self, last, value)


def _placeholders(self: Any, last: int, value: bytes) -> Iterator[ConsumerRecord[Any, Any]]:
    """A message of ``value`` for each offset from the next one to hand on through ``last``."""
    tp = self._tp
    timestamp_ms = int(time.time() * 1000)
    for offset in range(self.next_fetch_offset, last + 1):
        self.next_fetch_offset = offset + 1
        yield ConsumerRecord(tp.topic, tp.partition, offset, timestamp_ms, 0, None, value, None, -1, len(value), ())


def wait_for_fetches(consumer: Any, *, max_wait_s: float, min_bytes: int) -> None:
    """Fetches of ``consumer`` (an ``AIOKafkaConsumer`` not yet started) return once ``min_bytes`` are there, or
    after ``max_wait_s``."""
    consumer._fetch_max_wait_ms = round(max_wait_s * 1000)
    consumer._fetch_min_bytes = min_bytes
