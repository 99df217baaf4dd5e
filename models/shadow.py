"""A shadow version's scoring, off the caller's thread: the caller's answer never waits for a version that
does not answer it.

The serving client hands each batch the shadow should score to :class:`ShadowScorer` (a copy of its rows:
the caller may reuse its frame once ``predict`` returns) and returns; a thread of the scorer's own scores the
batches in the order they came, each as its own batch (its ``latency_ms`` is then the shadow's time for
that batch, comparable with the champion's in the scorecard), and publishes the answers with
``served = false``.

A shadow that cannot keep up is not allowed to slow serving down: once :data:`MAX_ROWS_WAITING` requests
wait for it, a new batch is not scored (``dropped`` counts its requests; a WARNING says so, once a minute
at most). The release gate judges a shadow on the requests it did score. A shadow that raises on a batch
costs that batch's shadow answers (logged), never the caller's.

>>> import numpy as np, pandas as pd
>>> published = []
>>> scorer = ShadowScorer(
...     lambda loaded, frame: (frame["x"].to_numpy() > 0, np.full(len(frame), 0.5)),
...     lambda records, values, scores, ids, versions, ms: published.extend(zip(ids, values, versions)),
... )
>>> class Loaded: version = 2
>>> scorer.submit(Loaded(), pd.DataFrame({"x": [1.0, -1.0]}), [{"x": 1.0}, {"x": -1.0}], ["a", "b"])
>>> scorer.drain(timeout_s=10), published
(True, [('a', True, 2), ('b', False, 2)])
>>> scorer.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

log = logging.getLogger("driftloop.serving")

#: Requests that may wait for the shadow before new ones are not scored by it (a few seconds of a busy
#: client's traffic, some MiB of rows).
MAX_ROWS_WAITING = 20_000

#: The least time between two WARNINGs that the shadow drops requests.
DROP_WARNING_S = 60.0

Score = Callable[[Any, pd.DataFrame], tuple[np.ndarray, np.ndarray]]
Publish = Callable[[list[dict[str, Any]], list[Any], list[float], list[str], list[int], float], None]


class _Batch(NamedTuple):
    """A batch the shadow is to score: the version, the rows (the scorer's own copy), the events' features
    and the request ids."""

    loaded: Any
    frame: pd.DataFrame
    records: list[dict[str, Any]]
    ids: list[str]


class ShadowScorer:
    """Scores a shadow version's batches on a thread of its own and publishes its answers (see the module
    docstring). ``score(loaded, frame)`` gives (values, scores); ``publish(records, values, scores, ids,
    versions, latency_ms)`` sends them."""

    def __init__(self, score: Score, publish: Publish, *, max_rows_waiting: int = MAX_ROWS_WAITING) -> None:
        self._score = score
        self._publish = publish
        self._max_rows = max_rows_waiting
        self._waiting: deque[_Batch] = deque()
        self._rows_waiting = 0
        self._busy = False  # a batch taken from the queue and not yet published
        self._closed = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self.dropped = 0  # requests the shadow did not score: it was behind by max_rows_waiting
        self.failed = 0  # requests of batches the shadow raised on
        self._last_warning = -DROP_WARNING_S

    def submit(self, loaded: Any, frame: pd.DataFrame, records: list[dict[str, Any]], ids: list[str]) -> None:
        """Score ``frame`` (the scorer's to keep: not changed by anyone after) with ``loaded`` later, or count
        its requests dropped when the shadow is too far behind. Never waits."""
        with self._changed:
            if self._closed:
                return
            if self._waiting and self._rows_waiting + len(frame) > self._max_rows:
                self._drop(len(frame))
                return
            self._waiting.append(_Batch(loaded, frame, records, ids))
            self._rows_waiting += len(frame)
            self._changed.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="driftloop-shadow", daemon=True)
                self._thread.start()

    def drain(self, timeout_s: float | None = 30.0) -> bool:
        """Wait until every batch submitted is scored and published; False when ``timeout_s`` ran out first."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._waiting and not self._busy, timeout=timeout_s)

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Score and publish what waits (up to ``timeout_s``), then stop the thread; later batches are ignored."""
        self.drain(timeout_s)
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _drop(self, rows: int) -> None:
        self.dropped += rows
        now = time.monotonic()
        if now - self._last_warning >= DROP_WARNING_S:
            self._last_warning = now
            log.warning(
                "the shadow version cannot keep up: requests are served without its answers",
                extra={"fields": {"dropped": self.dropped, "waiting": self._rows_waiting}},
            )

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting or self._closed)
                if not self._waiting:
                    return  # closed, and nothing waits
                batch = self._waiting.popleft()
                self._rows_waiting -= len(batch.frame)
                self._busy = True
            try:
                self._score_and_publish(batch)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def _score_and_publish(self, batch: _Batch) -> None:
        version = batch.loaded.version
        started = time.perf_counter()
        try:
            values, scores = self._score(batch.loaded, batch.frame)
        except Exception:
            self.failed += len(batch.frame)
            log.exception("the shadow version failed on a batch", extra={"fields": {"version": version}})
            return
        latency_ms = (time.perf_counter() - started) * 1000
        versions = [version] * len(batch.frame)
        try:
            self._publish(batch.records, values.tolist(), scores.tolist(), batch.ids, versions, latency_ms)
        except Exception:  # the producer refused them (closed, or an event it cannot send): logged, not raised
            log.exception("the shadow version's answers were not published", extra={"fields": {"version": version}})
