"""Every producer's batches are read: gzip, snappy, lz4 and zstd from two independent clients (kafka-python,
and librdkafka through confluent-kafka, which compresses as Java and Go services do), and a batch the worker
truly cannot read (a broken CRC written to the real broker, or a codec whose library is missing) is
dead-lettered as an offset range while the partition goes on and nothing readable is lost. What such
services send as they are (booleans, their clocks' epoch milliseconds) lands too."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import confluent_kafka
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.record import memory_records
from kafka.record.default_records import DefaultRecordBatch

from benchmarks import scrape_metrics
from driftloop.infra.clickhouse.client import connect
from driftloop.infra.network import free_port
from driftloop.infra.stack import stack as local_stack
from driftloop.streams.producer import EventProducer
from tests.stack_fixtures import PrivateStack, WorkerProcess, topic_records, wait_for

pytestmark = pytest.mark.integration

CODECS = ("gzip", "snappy", "lz4", "zstd")
FAST = {"DRIFTLOOP_BATCH_MAX_WAIT_S": "0.2"}


@pytest.fixture(scope="module")
def own(stack: PrivateStack) -> PrivateStack:
    """The session stack with this module's own topics and consumer group."""
    tag = uuid.uuid4().hex[:8]
    private = stack.with_env(DRIFTLOOP_TOPIC_PREFIX=f"codecs-{tag}.", DRIFTLOOP_WORKER_GROUP=f"codecs-{tag}", **FAST)
    local_stack.up(private.settings)  # the stack runs: this only provisions the module's topics
    return private


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def worker(own: PrivateStack, metrics_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    process = WorkerProcess(
        own, tmp_path_factory.mktemp("codecs") / "worker.log", DRIFTLOOP_METRICS_PORT=str(metrics_port)
    )
    yield process
    process.stop()


def events(model: str, n: int) -> list[dict]:
    return [
        {"model": model, "request_id": f"r{i}", "ts": 1_790_000_000 + i, "features": {"x": i / 7}, "prediction": 1}
        for i in range(n)
    ]


def messages(model: str, n: int) -> list[bytes]:
    """``n`` events: the first half one a message, the rest in envelopes of 25."""
    evs = events(model, n)
    half = n // 2
    single = [json.dumps(e).encode() for e in evs[:half]]
    return single + [json.dumps({"events": evs[i : i + 25]}).encode() for i in range(half, n, 25)]


def landed(stack: PrivateStack, model: str, table: str = "predictions") -> int:
    client = connect(stack.settings.clickhouse)
    try:
        return client.execute(f"SELECT count() FROM {table} FINAL WHERE model = %(m)s", {"m": model})[0][0]
    finally:
        client.disconnect()


def wait_landed(stack: PrivateStack, worker: WorkerProcess, model: str, n: int) -> None:
    def done() -> bool:
        assert worker.alive, f"the worker died:\n{worker.output()}"
        return landed(stack, model) >= n

    wait_for(done, timeout_s=120, what=f"{n} predictions of {model}")
    assert landed(stack, model) == n  # each event once


def send_kafka_python(stack: PrivateStack, values: list[bytes], codec: str | None, topic: str = "") -> None:
    producer = KafkaProducer(**stack.settings.kafka_python_config(), compression_type=codec, linger_ms=20)
    for value in values:
        producer.send(topic or stack.settings.topics.predictions, value, key=uuid.uuid4().bytes)
    producer.flush()
    producer.close()


def send_librdkafka(stack: PrivateStack, values: list[bytes], codec: str) -> None:
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": stack.settings.kafka_bootstrap, "compression.type": codec, "linger.ms": 20}
    )
    for value in values:
        producer.produce(stack.settings.topics.predictions, value, key=uuid.uuid4().bytes)
    assert producer.flush(30) == 0, "librdkafka could not deliver every message"


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("client", ["kafka-python", "librdkafka"])
def test_compressed_batches_land_every_event_once(own: PrivateStack, worker: WorkerProcess, client: str, codec: str):
    model = f"{codec}-{client}-{uuid.uuid4().hex[:6]}"
    values = messages(model, 400)
    (send_kafka_python if client == "kafka-python" else send_librdkafka)(own, values, codec)
    wait_landed(own, worker, model, 400)


def test_the_sdk_producer_compresses_when_asked(own: PrivateStack, worker: WorkerProcess) -> None:
    model = "sdk-zstd-" + uuid.uuid4().hex[:6]
    with EventProducer(own.settings, compression="zstd", max_events=50) as producer:
        for e in events(model, 300):
            producer.emit_prediction(model, request_id=e["request_id"], features=e["features"], prediction=1)
    wait_landed(own, worker, model, 300)
    with pytest.raises(ValueError, match="not one of gzip, snappy, lz4, zstd"):
        EventProducer(own.settings, compression="brotli")


def test_booleans_and_epoch_milliseconds_from_another_client_land_and_join(
    own: PrivateStack, worker: WorkerProcess
) -> None:
    """A service's events as a Java or JavaScript one sends them: ``ts`` from its clock in epoch milliseconds, a
    boolean feature, a boolean prediction and label. Each lands at its time, the boolean a category, and each
    outcome judges its prediction ("true" against "true")."""
    model = "booleans-" + uuid.uuid4().hex[:6]
    start_ms = 1_790_000_000_000
    predictions = [
        {"model": model, "request_id": f"r{i}", "ts": start_ms + 250 * i,
         "features": {"x": i / 7, "foreign": i % 3 == 0},
         "prediction": i % 2 == 0, "score": {"true": 0.7, "false": 0.3}}
        for i in range(60)
    ]  # fmt: skip
    outcomes = [
        {"model": model, "request_id": f"r{i}", "ts": start_ms + 250 * i + 1000, "label": i % 4 == 0} for i in range(60)
    ]
    producer = confluent_kafka.Producer({"bootstrap.servers": own.settings.kafka_bootstrap, "linger.ms": 20})
    for topic, evs in ((own.settings.topics.predictions, predictions), (own.settings.topics.outcomes, outcomes)):
        for i in range(0, 60, 20):
            producer.produce(topic, json.dumps({"events": evs[i : i + 20]}).encode(), key=model.encode())
    assert producer.flush(30) == 0, "librdkafka could not deliver every message"
    wait_landed(own, worker, model, 60)
    wait_for(lambda: landed(own, model, "labeled") >= 60, timeout_s=120, what=f"60 labeled rows of {model}")
    client = connect(own.settings.clickhouse)
    try:
        rows = client.execute(
            "SELECT request_id, ts_ms, cat.name, cat.value, prediction, score, label, correct FROM labeled FINAL"
            " WHERE model = %(m)s ORDER BY ts_ms",
            {"m": model},
        )
        seconds = client.execute("SELECT min(toUInt32(ts)) FROM predictions WHERE model = %(m)s", {"m": model})
    finally:
        client.disconnect()
    assert seconds == [(start_ms // 1000,)]
    assert [r[1] for r in rows] == [start_ms + 250 * i for i in range(60)]
    assert [(r[2], r[3]) for r in rows] == [(["foreign"], ["true" if i % 3 == 0 else "false"]) for i in range(60)]
    assert [(r[4], r[5], r[6]) for r in rows] == [
        ("true", 0.7, "true" if i % 4 == 0 else "false") if i % 2 == 0 else ("false", 0.3, "false") for i in range(60)
    ]  # the score of the class predicted, "false" among the score's classes as the prediction's text
    assert [r[7] for r in rows] == [int((i % 2 == 0) == (i % 4 == 0)) for i in range(60)]


@contextlib.contextmanager
def schema_registry() -> Iterator[str]:
    """A Schema Registry's two calls a serializer makes (where the subject is used, and registering its schema),
    answered with schema id 7: the serializer is Confluent's own, only the registry is this stand-in."""

    class Registry(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # associations of the topic: none
            self._reply({})

        def do_POST(self) -> None:  # register the subject's schema
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._reply({"id": 7, "version": 1, "schemaType": "JSON"})

        def _reply(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_messages_framed_by_other_clients_land_and_join(own: PrivateStack, worker: WorkerProcess) -> None:
    """Predictions from Confluent's JSON Schema serializer (its wire format: a zero byte and the schema id before
    the JSON), one a message, and as JSON arrays; outcomes as JSON lines (a log shipper's batches), some with a
    byte order mark. Every event lands once and every outcome joins; nothing is dead-lettered."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    model = "framed-" + uuid.uuid4().hex[:6]
    predictions, topics = events(model, 300), own.settings.topics
    outcomes = [{"model": model, "request_id": e["request_id"], "ts": e["ts"] + 5, "label": 1} for e in predictions]
    schema = json.dumps({"type": "object", "required": ["model", "request_id", "ts", "features", "prediction"]})
    with schema_registry() as url:
        serialize = JSONSerializer(schema, SchemaRegistryClient({"url": url}))
        context = SerializationContext(topics.predictions, MessageField.VALUE)
        framed = [serialize(e, context) for e in predictions[:150]]
    assert all(value[:5] == b"\x00\x00\x00\x00\x07" for value in framed)  # the wire format, as sent
    producer = confluent_kafka.Producer({"bootstrap.servers": own.settings.kafka_bootstrap, "linger.ms": 20})
    for value in framed:
        producer.produce(topics.predictions, value, key=model.encode())
    assert producer.flush(30) == 0, "librdkafka could not deliver every message"
    arrays = [json.dumps(predictions[i : i + 25]).encode() for i in range(150, 300, 25)]
    lines = [
        (b"\xef\xbb\xbf" if i % 100 == 0 else b"")
        + b"".join(json.dumps(o).encode() + b"\n" for o in outcomes[i : i + 50])
        for i in range(0, 300, 50)
    ]
    send_kafka_python(own, arrays, None)
    send_kafka_python(own, lines, None, topics.outcomes)
    wait_landed(own, worker, model, 300)
    wait_for(lambda: landed(own, model, "labeled") >= 300, timeout_s=120, what=f"300 labeled rows of {model}")
    assert landed(own, model, "labeled") == 300
    assert dead_letter_ranges(own, model) == []


def test_an_empty_envelope_is_nothing_to_land_and_stops_nothing(own: PrivateStack, worker: WorkerProcess) -> None:
    """A producer that flushes its buffer on a timer sends ``{"events": []}`` when nothing came: no event, and the
    events around it land."""
    model = "empty-" + uuid.uuid4().hex[:6]
    evs = events(model, 100)
    values = [b'{"events": []}', json.dumps({"events": evs[:50]}).encode(), b'{"events": []}']
    send_kafka_python(own, [*values, json.dumps(evs[50:]).encode()], None)
    send_kafka_python(own, [b'{"events": []}'], None, own.settings.topics.outcomes)
    wait_landed(own, worker, model, 100)
    assert "Traceback" not in worker.output()


def test_a_transactional_producers_aborted_events_never_land_and_its_markers_do_not_stall_commits(
    own: PrivateStack, worker: WorkerProcess
) -> None:
    """An exactly-once producer (a ``transactional.id``, as Kafka Streams, Flink and many librdkafka services
    have) writes a marker after each transaction, and its aborted transactions stay in the log. Two of them
    interleave on one partition, and a plain producer writes between them while one is open: the committed
    and plain events land once each, the aborted ones never (the embedded broker keeps no index of them:
    their marker says so), and the worker's commits reach the partition's end, past every marker."""
    model = "transactions-" + uuid.uuid4().hex[:6]
    topic, settings = own.settings.topics.predictions, own.settings
    good, aborted = events(model, 120), events(model, 200)[120:]  # the aborted events' request ids are others

    def transactional(name: str) -> confluent_kafka.Producer:
        producer = confluent_kafka.Producer(
            {"bootstrap.servers": settings.kafka_bootstrap, "transactional.id": f"{model}-{name}", "linger.ms": 5}
        )
        producer.init_transactions(30)
        return producer

    def send(producer: confluent_kafka.Producer, evs: list[dict], *, envelope: bool = False) -> None:
        for value in [json.dumps({"events": evs})] if envelope else map(json.dumps, evs):
            producer.produce(topic, value.encode(), partition=0)
        assert producer.flush(30) == 0

    first, second = transactional("first"), transactional("second")
    plain = confluent_kafka.Producer({"bootstrap.servers": settings.kafka_bootstrap})
    first.begin_transaction()
    send(first, good[:30])
    second.begin_transaction()
    send(second, aborted[:40])
    first.commit_transaction(30)
    send(plain, good[30:40])  # after the open transaction of ``second``: read once it ends (the broker's LSO)
    send(second, aborted[40:], envelope=True)
    second.abort_transaction(30)
    first.begin_transaction()
    send(first, good[40:], envelope=True)
    first.commit_transaction(30)

    wait_landed(own, worker, model, 120)  # the committed and plain events, each once: none aborted
    client = connect(settings.clickhouse)
    try:
        request_ids = {r for (r,) in client.execute(
            "SELECT request_id FROM predictions WHERE model = %(m)s", {"m": model}
        )}  # fmt: skip
        dead = client.execute("SELECT count() FROM dead_letters WHERE position(original, %(m)s) > 0", {"m": model})
    finally:
        client.disconnect()
    assert request_ids == {e["request_id"] for e in good}
    assert dead == [(0,)]
    group = KafkaConsumer(**settings.kafka_python_config(), group_id=settings.worker_group, enable_auto_commit=False)
    try:
        partition = TopicPartition(topic, 0)
        end = group.end_offsets([partition])[partition]
        wait_for(lambda: group.committed(partition) == end, timeout_s=60, what=f"the worker's commit at {end}")
    finally:
        group.close()
    assert "offsets skipped" not in worker.log_path.read_text(errors="replace")


def test_alert_consumers_read_compressed_alerts(own: PrivateStack) -> None:
    from driftloop.infra.contract import Alert
    from driftloop.streams.drift.subscribers import alert_stream

    sent = []
    for codec in CODECS:
        one = replace(Alert.example(), alert_id=f"{codec}-{uuid.uuid4().hex}")
        sent.append(one.alert_id)
        producer = KafkaProducer(**own.settings.kafka_python_config(), compression_type=codec)
        producer.send(own.settings.topics.alerts, json.dumps(one.to_json()).encode(), key=one.model.encode())
        producer.flush()
        producer.close()
    read = [a.alert_id for a, _ in alert_stream(own.settings, from_beginning=True, idle_timeout_s=5)]
    assert set(sent) <= set(read)


@contextlib.contextmanager
def broken_crc_batches() -> Iterator[None]:
    """While open, every record batch a kafka-python producer in this process builds has a broken CRC."""
    close = memory_records.MemoryRecordsBuilder.close

    def close_broken(self: memory_records.MemoryRecordsBuilder) -> None:
        built = self._closed
        close(self)
        if not built:
            buffer = bytearray(self._buffer)
            buffer[DefaultRecordBatch.CRC_OFFSET] ^= 0xFF
            self._buffer = buffer

    memory_records.MemoryRecordsBuilder.close = close_broken  # type: ignore[method-assign]
    try:
        yield
    finally:
        memory_records.MemoryRecordsBuilder.close = close  # type: ignore[method-assign]


def dead_letter_ranges(stack: PrivateStack, model_hint: str) -> list[tuple]:
    client = connect(stack.settings.clickhouse)
    try:
        return client.execute(
            "SELECT source_topic, source_partition, source_offset, source_offset_last, reason, event_index "
            "FROM dead_letters FINAL WHERE source_topic = %(t)s AND reason LIKE %(r)s ORDER BY source_offset",
            {"t": stack.settings.topics.predictions, "r": f"%{model_hint}%"},
        )
    finally:
        client.disconnect()


def test_a_batch_with_a_broken_crc_is_dead_lettered_and_the_partition_goes_on(
    own: PrivateStack, worker: WorkerProcess, metrics_port: int
) -> None:
    model = "crc-" + uuid.uuid4().hex[:6]
    topic = own.settings.topics.predictions
    producer = KafkaProducer(**own.settings.kafka_python_config(), linger_ms=50)

    def send(first: int, n: int) -> list[int]:
        futures = [producer.send(topic, json.dumps(e).encode(), partition=0) for e in events(model, first + n)[first:]]
        producer.flush()
        return [f.get(10).offset for f in futures]

    before = send(0, 100)
    with broken_crc_batches():
        broken = send(100, 50)
    after = send(150, 100)
    producer.close()
    assert before[-1] < broken[0] and broken[-1] < after[0]

    wait_landed(own, worker, model, 200)  # everything readable, before and after the broken batch
    rows = wait_for(lambda: dead_letter_ranges(own, "CorruptRecordException"), timeout_s=60, what="the range")
    ranges = [(r[1], r[2], r[3], r[5]) for r in rows if r[2] <= broken[0] <= r[3]]
    assert ranges == [(0, broken[0], broken[-1], -1)]
    assert "Invalid CRC" in rows[0][4]

    letters = [json.loads(r.value) for r in topic_records(own.settings, own.settings.topics.dead_letter)]
    assert [letter["source"] for letter in letters if letter["source"]["offset"] == broken[0]] == [
        {"topic": topic, "partition": 0, "offset": broken[0], "last_offset": broken[-1]}
    ]

    samples = wait_for(lambda: scrape_metrics(metrics_port), what="the metrics endpoint")
    assert samples["driftloop_unreadable_offsets_total"] >= len(broken)

    # the worker commits past the range: a restart does not read the broken batch again
    committed = KafkaConsumer(**own.settings.kafka_python_config(), group_id=own.settings.worker_group)

    def past_range() -> bool:
        return (committed.committed(TopicPartition(topic, 0)) or 0) > after[-1]

    wait_for(past_range, timeout_s=60, what="the committed offset past the broken batch")
    committed.close()
    assert worker.alive


def test_a_codec_library_that_is_missing_costs_those_batches_only(stack: PrivateStack, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    blind = stack.with_env(DRIFTLOOP_TOPIC_PREFIX=f"blind-{tag}.", DRIFTLOOP_WORKER_GROUP=f"blind-{tag}", **FAST)
    local_stack.up(blind.settings)
    hidden = tmp_path / "no-cramjam"
    (hidden / "cramjam").mkdir(parents=True)
    (hidden / "cramjam" / "__init__.py").write_text('raise ImportError("cramjam hidden by the test")\n')
    snappy_model, gzip_model = "snappy-" + tag, "gzip-" + tag
    send_kafka_python(blind, messages(snappy_model, 200), "snappy")
    send_kafka_python(blind, messages(gzip_model, 200), "gzip")

    worker = WorkerProcess(blind, tmp_path / "worker.log", PYTHONPATH=str(hidden))
    try:
        wait_landed(blind, worker, gzip_model, 200)  # gzip needs no library: read as before
        rows = wait_for(
            lambda: dead_letter_ranges(blind, "UnsupportedCodecError"), timeout_s=60, what="the snappy ranges"
        )
        assert landed(blind, snappy_model) == 0
        assert all("snappy" in r[4].lower() for r in rows)
        client = connect(blind.settings.clickhouse)
        messages_sent = client.execute(
            "SELECT sum(source_offset_last - source_offset + 1) FROM dead_letters FINAL WHERE source_topic = %(t)s "
            "AND reason LIKE '%%UnsupportedCodecError%%'",
            {"t": blind.settings.topics.predictions},
        )[0][0]
        client.disconnect()
        assert messages_sent == len(messages(snappy_model, 200))  # every snappy offset, none of the gzip ones
        assert worker.alive
    finally:
        worker.stop()
    assert worker.output().count("skipped a record batch that cannot be read") == len(rows)  # once a batch
