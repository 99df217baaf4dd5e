"""Small parts of a model's predictions held back a moment, to be detected together with the next ones.

A model's detectors cost about a millisecond a batch before their first event (35 signals, each some Python
steps), whatever the batch holds of it. A worker's batches close every 0.35 s (``DRIFTLOOP_BATCH_MAX_WAIT_S``),
so a fleet spreads each batch thin: 200 models at 10,000 events/s in all put some 20 events of each model in a
batch, and detection cost some 44 µs an event against 2.7 for one model at the same rate (``benchmarks/fleet.py``;
32 to 37 with parts waiting a second).
:class:`WaitingParts` holds a model's part of a batch while it has fewer than :data:`FEWEST` events, until its
events reach that many or its oldest has waited ``wait_s`` (``DRIFTLOOP_DETECTION_WAIT_S``): its detectors then
take them in one part (:meth:`~streams.drift.frame.ModelPredictions.joined`), in order. A model's alerts come
up to that much later; their place in its events does not move. A part of :data:`FEWEST` events or more is
detected at once, as are the parts held when the state is saved (every offset commit), handed over, or the
partition's labeled rows come: nothing held is ever missing from a saved state.

>>> import numpy as np
>>> from driftloop.streams.drift.frame import FeatureColumns
>>> def part(model, n):
...     return ModelPredictions(model, 1, np.ones(n, np.int64), np.arange(n), [f"r{i}" for i in range(n)],
...                             np.zeros(n), np.zeros(n), ["0"] * n, FeatureColumns(["x"], np.zeros((n, 1)), [], []))
>>> waiting = WaitingParts(wait_s=1.0)
>>> [len(p) for p in waiting.take(0, [part("small", 10), part("big", 500)], now=0.0)]  # the big part at once
[500]
>>> waiting.take(0, [part("small", 10)], now=0.5), waiting.held()
([], 20)
>>> [(p.model, len(p)) for p in waiting.due(now=1.0)[0]]  # the oldest waited a second: both parts, as one
[('small', 20)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from driftloop.streams.drift.frame import ModelPredictions

#: A model's part of a batch with this many events or more is detected at once (its detectors' cost before
#: the first event is then a few µs an event).
FEWEST = 256


class WaitingParts:
    """Parts of models' predictions held back, by partition and model, in the order they came."""

    def __init__(self, wait_s: float, fewest: int = FEWEST) -> None:
        self.wait_s = wait_s
        self.fewest = fewest
        self._held: dict[tuple[int, str], list[ModelPredictions]] = {}
        self._since: dict[tuple[int, str], float] = {}  # when each held model's oldest part came
        self._events = 0  # held, in all (read after every message the detection process answers)

    def take(self, partition: int, parts: Sequence[ModelPredictions], now: float) -> list[ModelPredictions]:
        """What of ``parts`` (a batch's, of ``partition``) to detect now: each model's part with what it held
        before, once they are :attr:`fewest` events or more; the rest is held."""
        ready: list[ModelPredictions] = []
        for part in parts:
            key = (partition, part.model)
            if key not in self._held and (len(part) >= self.fewest or self.wait_s <= 0):
                ready.append(part)
                continue
            self._held.setdefault(key, []).append(part)
            self._since.setdefault(key, now)
            self._events += len(part)
            if sum(map(len, self._held[key])) >= self.fewest:
                ready += self._release(key)
        return ready

    def due(self, now: float) -> dict[int, list[ModelPredictions]]:
        """The parts whose oldest event has waited :attr:`wait_s`, by partition."""
        return self._release_where(lambda key: now - self._since[key] >= self.wait_s)

    def release(self, partition: int | None = None) -> dict[int, list[ModelPredictions]]:
        """Every part held (of ``partition``, or of all), by partition."""
        return self._release_where(lambda key: partition is None or key[0] == partition)

    def next_due(self) -> float | None:
        """When the part that has waited longest is due (None: nothing waits)."""
        return min(self._since.values()) + self.wait_s if self._since else None

    def held(self) -> int:
        """Events held, in all."""
        return self._events

    def _release_where(self, chosen: Callable[[tuple[int, str]], bool]) -> dict[int, list[ModelPredictions]]:
        released: dict[int, list[ModelPredictions]] = {}
        for key in [key for key in self._held if chosen(key)]:
            released.setdefault(key[0], []).extend(self._release(key))
        return released

    def _release(self, key: tuple[int, str]) -> list[ModelPredictions]:
        parts = self._held.pop(key)
        del self._since[key]
        self._events -= sum(map(len, parts))
        joined = ModelPredictions.joined(parts)
        return [joined] if joined is not None else parts  # features that do not line up: one part after another
