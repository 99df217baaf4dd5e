"""Hostile input: 10,000 generated messages, good ones mixed with broken ones, through the real worker.

Every bad message must reach dead-letter with a reason, every good event must land exactly once, the worker
must live through all of it, and its memory must stay bounded.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from infra.clickhouse.client import connect
from tests.reliability.hostile import Message, messages
from tests.reliability.scenarios import isolated, rss_mb
from tests.stack_fixtures import PrivateStack, WorkerProcess, wait_for

pytestmark = pytest.mark.integration

COUNT = 10_000


def test_ten_thousand_hostile_messages_are_dead_lettered_and_the_good_ones_land(
    stack: PrivateStack, tmp_path: Path
) -> None:
    private = isolated(stack, "fuzz")
    model = "fuzz-" + uuid.uuid4().hex[:6]
    generated = messages(model, COUNT)
    good = {rid for m in generated if m.good for rid in m.request_ids}
    topic = private.settings.topics.predictions

    producer = KafkaProducer(**private.settings.kafka_python_config(), max_request_size=4 << 20, linger_ms=20)
    futures = [(m, producer.send(topic, m.value)) for m in generated]
    producer.flush()
    sent: dict[tuple[int, int], Message] = {}
    for message, future in futures:
        metadata = future.get(timeout=30)
        sent[(metadata.partition, metadata.offset)] = message
    producer.close()
    bad = {coordinates for coordinates, m in sent.items() if not m.good}

    worker = WorkerProcess(private, tmp_path / "worker.log", DRIFTLOOP_BATCH_MAX_WAIT_S="0.2")
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(worker.process.pid))
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    client = connect(private.settings.clickhouse)
    try:

        def settled() -> bool:
            assert worker.alive, worker.output()
            landed = client.execute("SELECT uniqExact(request_id) FROM predictions WHERE model = %(m)s", {"m": model})
            letters = client.execute("SELECT uniqExact(source_partition, source_offset) FROM dead_letters")
            return landed[0][0] >= len(good) and letters[0][0] >= len(bad)

        wait_for(settled, timeout_s=240, interval_s=1.0, what="every message landed or dead-lettered")
        time.sleep(1)
        landed = client.execute("SELECT request_id FROM predictions FINAL WHERE model = %(m)s", {"m": model})
        letters = client.execute(
            "SELECT source_partition, source_offset, event_index, reason FROM dead_letters FINAL "
            "WHERE source_topic = %(t)s",
            {"t": topic},
        )
    finally:
        done.set()
        client.disconnect()
        worker.stop()

    assert sorted(r for (r,) in landed) == sorted(good)  # every good event, once; nothing else
    dead = {(p, o) for p, o, _, _ in letters}
    wrongly_dead = {sent[c].kind for c in dead - bad}
    assert not wrongly_dead, f"good messages dead-lettered: {wrongly_dead}"
    missing = {sent[c].kind for c in bad - dead}
    assert not missing, f"bad messages neither landed nor dead-lettered: {missing}"
    assert all(reason.strip() for *_, reason in letters)  # each with its reason
    assert peak[0] < 1024, f"worker peaked at {peak[0]:.0f} MiB"
