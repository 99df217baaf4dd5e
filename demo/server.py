"""The demo's model server: serves the scenario at a steady rate and reports outcomes after a delay.

Predictions come from :class:`models.serving.ModelClient` with ``emit=True`` (so every prediction is
published and monitored, and a new version is scored in shadow, given its canary share and swapped in as
champion without a restart). Outcomes, as in life, arrive later: each application's true label is published
a random delay after its prediction, by another producer (the system that learns whether the loan was
repaid), with the business value of the decision served (``scenario.business_value``).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from driftloop.infra.settings import Settings
from driftloop.models.serving import ModelClient
from driftloop.streams.producer import EventProducer

from .scenario import DriftScenario, business_value

TICK_S = 0.1


@dataclass
class ServingStats:
    """What the server has done so far, read by the live view (plain counters, one writer)."""

    sent: int = 0
    outcomes_sent: int = 0
    version: int = 0  # the champion's
    routing: dict[str, int | float | None] = field(default_factory=dict)  # champion, shadow, canary, share
    by_new_versions: int = 0  # events served while a version other than the first one was champion
    drift_ts: float = float("nan")  # wall clock of the first drifted event
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=500))  # whether each recent one was right

    @property
    def recent_accuracy(self) -> float:
        return float(np.mean(self.recent)) if self.recent else float("nan")


class DemoServer:
    """Drives ``scenario`` through the champion at ``rate`` events/s; outcomes follow after ``label_delay_s``.

    With ``after_swap``, it serves past the scenario's end (the drifted world's events again, with new request
    ids; at most as many again) until a version other than the first has served ``after_swap`` events: the
    recovery is then seen however long the retraining took on a busy machine.
    """

    def __init__(
        self,
        settings: Settings,
        model: str,
        scenario: DriftScenario,
        *,
        rate: float,
        label_delay_s: float = 2.0,
        run_id: str,
        after_swap: int = 0,
    ) -> None:
        self.settings = settings
        self.model = model
        self.scenario = scenario
        self.rate = rate
        self.label_delay_s = label_delay_s
        self.run_id = run_id
        self.after_swap = after_swap
        self.stats = ServingStats()
        self.error: BaseException | None = None  # why ``run`` stopped early, if it did
        self._rng = np.random.default_rng(scenario.seed)
        self._due: list[tuple[float, int]] = []  # heap of (when, event index)
        self._decisions: dict[int, str] = {}  # event index → the decision served, until its outcome is sent

    def run(self, stop: threading.Event) -> None:
        """Serve every event (or until ``stop``), then deliver the outcomes still due; failures go to ``error``."""
        try:
            self._run(stop)
        except Exception as exc:
            self.error = exc

    def _run(self, stop: threading.Event) -> None:
        client = ModelClient(self.model, self.settings, emit=True)
        outcomes = EventProducer(self.settings, client_id="driftloop-demo-outcomes")
        try:
            self.stats.version = client.version
            self._serve(client, outcomes, stop)
            deadline = time.time() + self.label_delay_s * 10
            while self._due and not stop.is_set() and time.time() < deadline:
                self._deliver(outcomes, time.time())
                time.sleep(TICK_S)
        finally:
            client.close()
            outcomes.close()

    def _serve(self, client: ModelClient, outcomes: EventProducer, stop: threading.Event) -> None:
        features, labels = self.scenario.features, self.scenario.labels.to_numpy()
        start, index, total = time.monotonic(), 0, self.scenario.events
        first_version = client.version
        while (index < total or self._serve_on(index)) and not stop.is_set():
            target = min(2 * total, int((time.monotonic() - start) * self.rate) + 1)
            if index < total:
                target = min(total, target)
            if target > index:
                now = time.time()
                if index <= self.scenario.drift_index < target:
                    self.stats.drift_ts = now
                ids = [self.request_id(i) for i in range(index, target)]
                rows = [self.row(i) for i in range(index, target)]
                served = client.predict(features.iloc[rows], request_ids=ids)
                self.stats.version = served.version
                self.stats.routing = client.routing
                if served.version != first_version:  # a new champion (a canary's share alone does not count)
                    self.stats.by_new_versions += target - index
                self._decisions.update(zip(range(index, target), map(str, served.values), strict=True))
                correct = np.asarray(served.values, dtype=object) == labels[rows]
                self.stats.recent.extend(correct.tolist())
                delays = self._rng.exponential(self.label_delay_s, target - index)
                for i, delay in zip(range(index, target), delays, strict=True):
                    heapq.heappush(self._due, (now + float(delay), i))
                index = target
                self.stats.sent = index
            self._deliver(outcomes, time.time())
            time.sleep(TICK_S)

    def _serve_on(self, index: int) -> bool:
        """Past the scenario's end: whether to go on until a new version has served ``after_swap`` events."""
        return index < 2 * self.scenario.events and self.stats.by_new_versions < self.after_swap

    def row(self, index: int) -> int:
        """The scenario row event ``index`` serves: past the end, the drifted world's rows again."""
        events, drift = self.scenario.events, self.scenario.drift_index
        return index if index < events else drift + (index - events) % (events - drift)

    def _deliver(self, outcomes: EventProducer, now: float) -> None:
        labels = self.scenario.labels
        while self._due and self._due[0][0] <= now:
            when, i = heapq.heappop(self._due)
            row = self.row(i)
            label = labels.iat[row]
            value = business_value(self._decisions.pop(i), label, float(self.scenario.features["loan"].iat[row]))
            outcomes.emit_outcome(self.model, request_id=self.request_id(i), label=label, ts=when, value=value)
            self.stats.outcomes_sent += 1

    def request_id(self, index: int) -> str:
        return f"{self.run_id}-{index}"
