"""Retraining on a schedule: the spec's ``retraining.schedule`` (cron, UTC) or ``retraining.interval_s``.

A schedule continues from the model's last scheduled run (read back from ``retrain_runs`` after a restart), so
a worker that was down at the scheduled time runs the missed run once when it is back, not once per miss. A
model seen for the first time starts its schedule then: it is not trained at once. With both a cron
expression and an interval, whichever comes first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from driftloop.infra.cron import Cron
from driftloop.infra.errors import DriftloopError
from driftloop.infra.spec import RetrainingSpec, SpecCatalog

log = logging.getLogger("driftloop.retrain")


def next_run(rules: RetrainingSpec, last: float) -> float:
    """When the next scheduled run is due after one at ``last`` (inf: the spec has no schedule)."""
    due = float("inf")
    if rules.schedule:
        due = Cron.parse(rules.schedule).next_after(last)
    if rules.interval_s:
        due = min(due, last + rules.interval_s)
    return due


class Scheduler:
    """Which models' scheduled runs are due (see the module docstring); ``clock`` is wall-clock seconds."""

    def __init__(self, specs: SpecCatalog, clock: Callable[[], float] = time.time) -> None:
        self.specs = specs
        self.clock = clock
        self._last: dict[str, float] = {}

    def restore(self, last_runs: Mapping[str, float]) -> None:
        """Each model's last scheduled run (``retrain_runs``), from which its schedule continues."""
        for model, started in last_runs.items():
            self._last[model] = max(started, self._last.get(model, 0.0))

    def due(self, owns: Callable[[str], bool]) -> list[str]:
        """The models this worker owns whose scheduled run is due now."""
        now = self.clock()
        due = []
        for model in self.specs.names():
            try:
                rules = self.specs.get(model).retraining
            except DriftloopError:
                continue  # a broken spec file: the alert path says so
            if not (rules.schedule or rules.interval_s) or not owns(model):
                continue
            last = self._last.setdefault(model, now)
            if now >= next_run(rules, last):
                due.append(model)
        return due

    def started(self, model: str) -> None:
        self._last[model] = self.clock()
