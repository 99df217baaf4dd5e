"""The library internals that driftloop relies on are still what its code was written for.

One module per library (``streams.compat``): ``streams.compat.aiokafka`` re-implements aiokafka 0.14's
``PartitionRecords._unpack_records`` and sets its consumer's fetch wait; ``streams.compat.faust`` overrides
faust-streaming 0.15's consumer; ``streams.compat.river`` feeds River 0.26's ADWIN window;
``infra.clickhouse.columnar_insert`` takes over clickhouse-driver 0.2's ``Client.send_data``;
``streams.compat.kafka_python`` marks kafka-python 3.0's producer closed in a forked process (what that leaves
behind is tested through the SDK in ``tests/streams/test_producer.py``). Each names the
versions it was written for (``WRITTEN_FOR``). When an upgrade changes what they rely on, these tests fail and
say which module to read again.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import struct
import tempfile
from importlib.metadata import version

import pytest
from aiokafka.consumer.fetcher import READ_COMMITTED, READ_UNCOMMITTED, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

from driftloop.infra.clickhouse import columnar_insert
from driftloop.streams.batch import ABORTED, TRANSACTION_MARKER, UnreadableRecords
from driftloop.streams.compat import aiokafka as unreadable_batches
from driftloop.streams.compat import faust as faust_compat
from driftloop.streams.compat import kafka_python as kafka_python_compat
from driftloop.streams.compat import river as river_compat

COMPAT_MODULES = [unreadable_batches, faust_compat, river_compat, columnar_insert, kafka_python_compat]


@pytest.mark.parametrize("module", COMPAT_MODULES, ids=lambda m: m.__name__)
def test_each_compat_module_names_the_installed_series(module: object) -> None:
    written_for: dict[str, str] = module.WRITTEN_FOR  # type: ignore[attr-defined]
    assert written_for, f"{module.__name__} names no library"  # type: ignore[attr-defined]
    for library, series in written_for.items():
        assert version(library).startswith(series), (
            f"{library} {version(library)} is installed; {module.__name__} was written for {series}*: read it again"  # type: ignore[attr-defined]
        )


# sha256 of the sources of what driftloop re-implements or takes over, as of the pinned versions
AIOKAFKA_0_14_UNPACK_RECORDS = "b803e6d46480732c7a7faa8e784b338bcdd4e707ea67fba96c013654b04b8a08"


def test_aiokafka_unpack_records_is_what_compat_aiokafka_was_written_for() -> None:
    source = inspect.getsource(unreadable_batches.ORIGINAL_UNPACK_RECORDS)
    digest = hashlib.sha256(source.encode()).hexdigest()
    assert digest == AIOKAFKA_0_14_UNPACK_RECORDS, (
        "aiokafka's PartitionRecords._unpack_records changed: bring streams/compat/aiokafka.py in line with it"
    )


RIVER_0_26_ADWIN_UPDATE = "362cbf78e687aa58a274d6ed99d8fe374fd7e464bc5443eb27295386dc30ddc1"
CLICKHOUSE_DRIVER_0_2_SEND_DATA = "cd7905b85b95139ac09b763eaf5cb256b1b62c99555fda27e256d86002e13f35"


def sha256_of_source(function: object) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()  # type: ignore[arg-type]


def test_river_adwin_update_is_what_compat_river_was_written_for() -> None:
    from river import drift

    assert sha256_of_source(drift.ADWIN.update) == RIVER_0_26_ADWIN_UPDATE, (
        "River's ADWIN.update changed: bring streams/compat/river.py in line with it"
    )


def test_clickhouse_driver_send_data_is_what_columnar_insert_was_written_for() -> None:
    from clickhouse_driver import Client

    assert sha256_of_source(Client.send_data) == CLICKHOUSE_DRIVER_0_2_SEND_DATA, (
        "clickhouse-driver's Client.send_data changed: bring infra/clickhouse/columnar_insert.py in line with it"
    )


def test_faust_drain_messages_is_what_compat_faust_was_written_for() -> None:
    from faust.transport import consumer as faust_consumer

    drain = inspect.getsource(faust_consumer.Consumer._drain_messages)
    # compat.faust takes over this exact call (with streams.prompt_delivery), and _add_gap
    assert (
        "await self.wait_first(\n                                callback(message), self.suspend_flow.wait()" in drain
    )
    assert "await self._add_gap(tp, r_offset + 1, offset)" in drain


FAUST_0_15_LANE_SOURCES = {
    "getmany": "4b168d84882a70d6e3e2f9804430a63b92f8fd117d3187cbb4aeb54305bda34e",
    "ack": "5fcf41cf45153475de3790dc56fec1b83335956dc8b3bf7ff6bbb2b57627f03f",
    "wait_empty": "e4662fe24f094819add590b2d75f233840e77823b432aea6504539768572102f",
}


@pytest.mark.parametrize("name", sorted(FAUST_0_15_LANE_SOURCES))
def test_faust_consumer_methods_the_record_lanes_follow_are_unchanged(name: str) -> None:
    """compat.faust's getmany is Faust's with lanes, its acknowledge is Faust's ack in bulk, and its
    wait_empty drains the lanes before Faust's: a change to any of these must be brought over."""
    from faust.transport import consumer as faust_consumer

    assert sha256_of_source(getattr(faust_consumer.Consumer, name)) == FAUST_0_15_LANE_SOURCES[name], (
        f"faust-streaming's Consumer.{name} changed: bring StrictOffsetsConsumer (streams/compat/faust.py) in line"
    )


def test_the_worker_consumer_fetches_with_the_configured_wait() -> None:
    """compat.faust sets aiokafka's ``_fetch_max_wait_ms`` on the consumer Faust creates (which hard-codes
    1,500 ms): the attribute must be what ``start()`` gives its fetcher, and the app's consumer must get it."""
    from aiokafka import AIOKafkaConsumer
    from faust.transport.drivers import aiokafka as faust_kafka

    from driftloop.infra.settings import Settings
    from driftloop.streams.app_factory import create_app
    from driftloop.streams.compat.faust import FETCH_MIN_BYTES, PromptFetchThread

    assert version("aiokafka").startswith("0.14.")
    start = inspect.getsource(AIOKafkaConsumer.start)
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in start and "fetch_min_bytes=self._fetch_min_bytes" in start
    assert "fetch_max_wait_ms=1500" in inspect.getsource(faust_kafka.AIOKafkaConsumerThread._create_worker_consumer)

    async def created() -> AIOKafkaConsumer:  # aiokafka creates its consumer inside a running loop
        home = tempfile.mkdtemp()
        settings = Settings.from_env({"DRIFTLOOP_KAFKA_FETCH_MAX_WAIT_S": "0.25", "DRIFTLOOP_HOME": home})
        app = create_app(settings, app_id="fetch-wait")
        thread = app.consumer._thread
        assert isinstance(thread, PromptFetchThread)
        return thread._create_worker_consumer(app.transport)

    consumer = asyncio.run(created())
    assert (consumer._fetch_max_wait_ms, consumer._fetch_min_bytes) == (250, FETCH_MIN_BYTES)


def test_offsets_are_committed_only_after_the_apps_checkpoint_says_yes() -> None:
    """compat.faust awaits ``app.checkpoint`` in ``_commit_offsets``, which Faust calls once the offsets are
    computed: the worker's detector state saved there covers every offset committed."""
    from faust.transport import consumer as faust_consumer
    from faust.types import TP

    from driftloop.infra.settings import Settings
    from driftloop.streams.app_factory import create_app

    commit_tps = inspect.getsource(faust_consumer.Consumer._commit_tps)
    assert commit_tps.index("self._filter_committable_offsets(tps)") < commit_tps.index("self._commit_offsets(")
    asked: list[str] = []

    async def refused() -> bool:
        asked.append("checkpoint")
        return False

    async def commit() -> bool:
        app = create_app(Settings.from_env({"DRIFTLOOP_HOME": tempfile.mkdtemp()}), app_id="checkpoint")
        app.checkpoint = refused  # type: ignore[attr-defined]
        tp = TP("driftloop.predictions", 0)
        done = await app.consumer._commit_offsets({tp: 10})
        assert app.consumer._committed_offset.get(tp) is None  # nothing recorded as committed
        return done

    assert asyncio.run(commit()) is False
    assert asked == ["checkpoint"]


CRC_OFFSET = struct.calcsize(">qiib")  # a v2 batch: base offset, length, leader epoch, magic, then the CRC
ATTRIBUTES_OFFSET = CRC_OFFSET + 4  # the CRC covers the batch from its attributes on
CONTROL = 0x20  # the attributes' bit of a control batch (a transaction's marker)


def batch(base_offset: int, values: list[bytes], *, break_crc: bool = False, producer: int | None = None) -> bytes:
    """A v2 record batch; of a transaction of ``producer`` when given."""
    builder = DefaultRecordBatchBuilder(
        2, 0, producer is not None, -1 if producer is None else producer, 0, -1, 1 << 20
    )
    for delta, value in enumerate(values):
        builder.append(delta, timestamp=1_790_000_000_000, key=None, value=value, headers=[])
    buffer = builder.build()
    struct.pack_into(">q", buffer, 0, base_offset)  # the base offset is outside the CRC, as a broker sets it
    if break_crc:
        buffer[CRC_OFFSET] ^= 0xFF
    return bytes(buffer)


def marker(offset: int, producer: int, *, commit: bool) -> bytes:
    """A transaction's marker, as a broker writes it: a control batch of one record whose key is the marker's
    version and type (0 abort, 1 commit)."""
    builder = DefaultRecordBatchBuilder(2, 0, True, producer, 0, -1, 1 << 20)
    builder.append(0, timestamp=1_790_000_000_000, key=struct.pack(">hh", 0, commit), value=b"\0\0\0\0\0\0", headers=[])
    buffer = builder.build()
    struct.pack_into(">q", buffer, 0, offset)
    struct.pack_into(">h", buffer, ATTRIBUTES_OFFSET, struct.unpack_from(">h", buffer, ATTRIBUTES_OFFSET)[0] | CONTROL)
    struct.pack_into(">I", buffer, CRC_OFFSET, calc_crc32c(bytes(buffer[ATTRIBUTES_OFFSET:])))
    return bytes(buffer)


def partition_records(buffer: bytes, fetch_offset: int = 0, *, committed: bool = False, aborted=()) -> PartitionRecords:
    tp = TopicPartition("t", 4)
    level = READ_COMMITTED if committed else READ_UNCOMMITTED
    return PartitionRecords(tp, MemoryRecords(buffer), list(aborted), fetch_offset, None, None, True, level)


def records(buffer: bytes, fetch_offset: int = 0, **how) -> list:
    return list(partition_records(buffer, fetch_offset, **how))


@pytest.fixture(autouse=True)
def installed():  # type: ignore[no-untyped-def]
    unreadable_batches.install()
    yield
    PartitionRecords._unpack_records = unreadable_batches.ORIGINAL_UNPACK_RECORDS  # type: ignore[method-assign]


def test_a_broken_batch_becomes_one_shared_value_for_each_of_its_offsets_and_reading_goes_on() -> None:
    fetched = batch(10, [b"a", b"b", b"c"]) + batch(13, [b"d", b"e"], break_crc=True) + batch(15, [b"f"])
    got = records(fetched, fetch_offset=10)
    assert [r.offset for r in got] == [10, 11, 12, 13, 14, 15]
    assert [r.value for r in got if not isinstance(r.value, UnreadableRecords)] == [b"a", b"b", b"c", b"f"]
    skipped = [r.value for r in got if isinstance(r.value, UnreadableRecords)]
    assert len(skipped) == 2 and skipped[0] is skipped[1]
    assert (skipped[0].topic, skipped[0].partition, skipped[0].first_offset, skipped[0].last_offset) == ("t", 4, 13, 14)
    assert skipped[0].reason == "CorruptRecordException: [Error 2] CorruptRecordException: Invalid CRC - " + repr(
        TopicPartition("t", 4)
    )


def test_readable_batches_read_as_aiokafka_reads_them() -> None:
    fetched = batch(0, [b"x", b"y"]) + batch(2, [b"z"])
    mine = [(r.offset, r.value, r.timestamp) for r in records(fetched, fetch_offset=1)]
    PartitionRecords._unpack_records = unreadable_batches.ORIGINAL_UNPACK_RECORDS  # type: ignore[method-assign]
    theirs = [(r.offset, r.value, r.timestamp) for r in records(fetched, fetch_offset=1)]
    assert mine == theirs == [(1, b"y", 1_790_000_000_000), (2, b"z", 1_790_000_000_000)]


def test_aborted_transactions_and_markers_become_placeholders_by_the_markers_in_the_fetch() -> None:
    """The embedded broker sends no index of aborted transactions: an aborted batch is known by its abort
    marker, later in the same fetch. Every offset is handed on (no gap to stall commits), the aborted ones
    and the markers as placeholders; producers interleave, each judged by its own marker."""
    fetched = (
        batch(0, [b"a", b"b"], producer=7)  # aborted by 7's marker at 4
        + batch(2, [b"c"], producer=8)  # committed by 8's marker at 5
        + batch(3, [b"plain"])
        + marker(4, 7, commit=False)
        + marker(5, 8, commit=True)
        + batch(6, [b"d"], producer=7)  # 7's next transaction, committed at 7
        + marker(7, 7, commit=True)
    )
    got = records(fetched, committed=True)
    assert [r.offset for r in got] == list(range(8))
    assert [r.value for r in got] == [ABORTED, ABORTED, b"c", b"plain", TRANSACTION_MARKER, TRANSACTION_MARKER, b"d",
                                      TRANSACTION_MARKER]  # fmt: skip
    assert got[0].value is ABORTED and got[4].value is TRANSACTION_MARKER


def test_a_batch_whose_marker_is_not_fetched_starts_the_next_fetch() -> None:
    """A transactional batch whose marker lies past the fetch is left for the next fetch (which starts at it and
    brings its marker), unless it is the fetch's first: a transaction larger than a fetch is read as sent."""
    partition = partition_records(batch(0, [b"a"]) + batch(1, [b"b"], producer=7), committed=True)
    assert [r.value for r in partition] == [b"a"]
    assert partition.next_fetch_offset == 1
    assert [r.value for r in records(batch(1, [b"b"], producer=7), fetch_offset=1, committed=True)] == [b"b"]


def test_a_brokers_index_of_aborted_transactions_is_still_obeyed() -> None:
    """Apache Kafka sends the aborted transactions with each fetch: aiokafka's reading of them is kept, with the
    batches' offsets handed on as placeholders."""
    fetched = batch(0, [b"a", b"b"], producer=7) + batch(2, [b"c"])
    assert [r.value for r in records(fetched, committed=True, aborted=[(7, 0)])] == [ABORTED, ABORTED, b"c"]


def test_read_uncommitted_takes_every_record_and_hands_markers_on_as_placeholders() -> None:
    fetched = batch(0, [b"a"], producer=7) + marker(1, 7, commit=False) + batch(2, [b"b"])
    assert [r.value for r in records(fetched)] == [b"a", TRANSACTION_MARKER, b"b"]
