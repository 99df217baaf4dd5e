"""Benchmarks: each prints its ratio against a baseline measured in the same run."""

import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kafka import KafkaProducer

from driftloop.infra.settings import Settings

#: The checkout the benchmarks run from (the bare Faust app is imported from here by `faust -A`).
REPO = Path(__file__).resolve().parent.parent


@contextmanager
def scratch_home(prefix: str) -> Iterator[Path]:
    """A temporary home for a benchmark's private stack, removed when the benchmark is done: its ClickHouse data
    take a GB or more a run, and a few dozen runs left behind filled the disk. Kept when the run fails, for its
    logs (its path is printed)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield home
    except BaseException:
        print(f"the run failed; its home is kept for its logs: {home}", file=sys.stderr)
        raise
    shutil.rmtree(home, ignore_errors=True)


def load_producer(settings: Settings, *, linger_ms: int) -> KafkaProducer:
    """A producer for a benchmark's load: record batches of up to 1 MiB, requests of up to 8 MiB. With
    kafka-python's 16 KiB batches each envelope of 100 events (25 kB) was a record batch of its own, and the
    embedded broker's every fetch costs it more for each record batch it holds (its memory store is listed on
    each fetch): at 111,000 events/s its CPU rose from a third of a core to a whole one within 20 s and left the
    worker behind (p99 22 s), which said nothing about the worker."""
    return KafkaProducer(
        **settings.kafka_python_config(), linger_ms=linger_ms, batch_size=1 << 20, max_request_size=8 << 20
    )


def scrape_metrics(port: int) -> dict[str, float]:
    """A worker's metrics (``/metrics`` on ``port``): ``{'name{labels}': value}``, a sample a line."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return {name: float(value) for name, _, value in (line.rpartition(" ") for line in lines if line[:1] not in "#")}
