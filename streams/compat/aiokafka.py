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

:func:`wait_for_fetches` sets how long the consumer's fetches wait for new data (``fetch_max_wait_ms``), on a
consumer Faust created with its own fixed wait (read by the fetcher that ``start()`` creates).

Written for aiokafka 0.14 (pinned ``==0.14.*``, :data:`WRITTEN_FOR`); ``tests/streams/test_library_internals.py``
fails when the function replaced here, or the attributes set, change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import aiokafka.errors as aiokafka_errors
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.structs import ConsumerRecord

from driftloop.streams.batch import UnreadableRecords

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
    """aiokafka's ``PartitionRecords._unpack_records``, one batch at a time, an unreadable batch skipped."""
    records = self._records
    while records.has_next():
        try:
            batch = records.next_batch()
        except Exception as exc:  # not even the header: skip one offset, the next fetch starts after it
            yield from _skip(self, self.next_fetch_offset, exc)
            return
        try:
            yield from _unpack_batch(self, batch)
        except Exception as exc:
            yield from _skip(self, batch.next_offset - 1, exc)


def _unpack_batch(self: Any, batch: Any) -> Iterator[ConsumerRecord[Any, Any]]:
    """One batch, as aiokafka 0.14 reads it (CRC, aborted transactions, control batches, records)."""
    tp = self._tp
    if self._check_crcs and not batch.validate_crc():
        raise aiokafka_errors.CorruptRecordException(f"Invalid CRC - {tp}")
    if self._isolation_level == READ_COMMITTED and batch.producer_id is not None:
        self._consume_aborted_up_to(batch.base_offset)
        if batch.is_control_batch and self._contains_abort_marker(batch):
            self._aborted_producers.discard(batch.producer_id)
        if batch.is_transactional and batch.producer_id in self._aborted_producers:
            self.next_fetch_offset = batch.next_offset
            return
    if batch.is_control_batch:
        self.next_fetch_offset = batch.next_offset
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
    timestamp_ms = int(time.time() * 1000)
    for offset in range(first, last + 1):
        self.next_fetch_offset = offset + 1
        yield ConsumerRecord(tp.topic, tp.partition, offset, timestamp_ms, 0, None, value, None, -1, len(value), ())


def wait_for_fetches(consumer: Any, *, max_wait_s: float, min_bytes: int) -> None:
    """Fetches of ``consumer`` (an ``AIOKafkaConsumer`` not yet started) return once ``min_bytes`` are there, or
    after ``max_wait_s``."""
    consumer._fetch_max_wait_ms = round(max_wait_s * 1000)
    consumer._fetch_min_bytes = min_bytes
