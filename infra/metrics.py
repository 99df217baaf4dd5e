"""Prometheus metrics: each worker serves its own on ``/metrics`` (``DRIFTLOOP_METRICS_PORT``, 0: off).

Workers keep plain counters in their own dataclasses (batch-level, nothing per event); a
:class:`CounterCollector` turns them into Prometheus families when the endpoint is scraped, so the hot
path never touches the Prometheus client.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> registry = CollectorRegistry()
>>> registry.register(CounterCollector(lambda: [counter("driftloop_demo", "Demo events.", {("x",): 3}, ["kind"])]))
>>> print(generate_latest(registry).decode().splitlines()[-1])
driftloop_demo_total{kind="x"} 3.0
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import numpy as np
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("driftloop.metrics")
F = TypeVar("F", CounterMetricFamily, GaugeMetricFamily)


def counter(
    name: str, documentation: str, values: Mapping[tuple[str, ...], float], labels: Sequence[str] = ()
) -> CounterMetricFamily:
    """A counter family from ``{label values: value}`` (``{(): value}`` for one without labels)."""
    return _filled(CounterMetricFamily(name, documentation, labels=list(labels)), values)


def gauge(
    name: str, documentation: str, values: Mapping[tuple[str, ...], float], labels: Sequence[str] = ()
) -> GaugeMetricFamily:
    """A gauge family from ``{label values: value}`` (see :func:`counter`)."""
    return _filled(GaugeMetricFamily(name, documentation, labels=list(labels)), values)


def _filled(family: F, values: Mapping[tuple[str, ...], float]) -> F:
    for label_values, value in values.items():
        family.add_metric(list(label_values), value)
    return family


class Histogram:
    """Cumulative buckets, count and sum of observations; cheap enough to call once per batch.

    >>> h = Histogram((0.1, 1.0))
    >>> h.observe(0.05); h.observe(0.5); h.observe(3.0)
    >>> h.counts, h.count, round(h.total, 2)
    ([1, 2], 3, 3.55)
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * len(self.bounds)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1

    def observe_many(self, values: np.ndarray) -> None:
        """Observe every value of ``values`` at once (a batch's events: numpy, not a loop a value).

        >>> h = Histogram((0.1, 1.0))
        >>> h.observe_many(np.array([0.05, 0.5, 3.0, 1.0]))
        >>> h.counts, h.count, round(h.total, 2)
        ([1, 3], 4, 4.55)
        """
        if not len(values):
            return
        per_bucket = np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self.bounds) + 1)
        self.counts = [have + int(new) for have, new in zip(self.counts, np.cumsum(per_bucket[:-1]), strict=True)]
        self.count += len(values)
        self.total += float(values.sum())

    def buckets(self) -> list[tuple[str, float]]:
        """Prometheus's cumulative buckets, ``+Inf`` last."""
        return [(repr(b), c) for b, c in zip(self.bounds, self.counts, strict=True)] + [("+Inf", self.count)]

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        return HistogramMetricFamily(name, documentation, buckets=self.buckets(), sum_value=self.total)


def histogram(
    name: str, documentation: str, values: Mapping[tuple[str, ...], Histogram], labels: Sequence[str]
) -> HistogramMetricFamily:
    """A histogram family from ``{label values: histogram}``."""
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    for label_values, observed in values.items():
        family.add_metric(list(label_values), observed.buckets(), observed.total)
    return family


class CounterCollector(Collector):
    """A Prometheus collector that asks ``collect_fn`` for its families at every scrape."""

    def __init__(self, collect_fn: Callable[[], Iterable[Metric]]) -> None:
        self.collect_fn = collect_fn

    def collect(self) -> Iterable[Metric]:
        try:
            yield from self.collect_fn()
        except Exception:  # a scrape must never take a worker down
            log.exception("collecting metrics failed")


def serve_metrics(port: int, collect_fn: Callable[[], Iterable[Metric]], *, host: str = "0.0.0.0") -> int | None:
    """Serve ``/metrics`` on ``port`` in a background thread; the port, or None when off or taken."""
    if port <= 0:
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CounterCollector(collect_fn))
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.warning(
            "metrics endpoint not started: port taken (set DRIFTLOOP_METRICS_PORT or DRIFTLOOP_RETRAIN_METRICS_PORT)",
            extra={"fields": {"port": port, "error": str(exc)}},
        )
        return None
    log.info("metrics endpoint started", extra={"fields": {"url": f"http://{host}:{port}/metrics"}})
    return port
