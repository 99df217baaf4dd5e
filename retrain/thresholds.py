"""Retraining on a threshold: the spec's ``retraining.threshold`` on the champion's live metric.

Every :data:`CHECK_S`, for each model this worker owns whose spec sets a threshold, the champion's most recent
``threshold_rows`` labeled rows are held against it (the live metric below it: accuracy, or the spec's F1 or
ROC AUC; MAE above it; beyond doubt at the
release's confidence: :meth:`release.controller.ReleaseController.worse_than`). A champion worse than its
threshold makes a job due on the spec's whole training window, unless the model is busy: a job pending or
cooling down, or a newer version already on its way (a candidate, a shadow or a canary), which is what the
last job made. After a job it started, the same champion is judged again only on rows predicted since (after a
restart too: :meth:`ThresholdWatch.restore`): a job whose challenger lost is not run again on the evidence that
started it (a threshold the data cannot meet would otherwise retrain at every cooldown).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from driftloop.infra.errors import DriftloopError
from driftloop.infra.spec import SpecCatalog
from driftloop.release.controller import ReleaseController
from driftloop.release.stats import Comparison

#: Seconds between two looks at one model's champion.
CHECK_S = 60.0
#: Stages of a version on its way to replace the champion: no threshold job while one is.
IN_FLIGHT = frozenset({"candidate", "shadow", "canary"})


@dataclass(frozen=True)
class BelowThreshold:
    """A champion worse than its model's threshold: the comparison that says so."""

    model: str
    version: int
    threshold: float
    comparison: Comparison


class ThresholdWatch:
    """Which owned models' champions are worse than their threshold (see the module docstring)."""

    def __init__(
        self,
        specs: SpecCatalog,
        release: ReleaseController,
        *,
        clock: Callable[[], float] = time.time,
        check_s: float = CHECK_S,
    ) -> None:
        self.specs = specs
        self.release = release
        self.clock = clock
        self.check_s = check_s
        self._checked: dict[str, float] = {}
        self._started: dict[str, tuple[int, int]] = {}  # model -> (its champion, epoch ms) at the last job it started

    def due(self, owns: Callable[[str], bool], busy: Callable[[str], bool]) -> list[BelowThreshold]:
        """The models ``owns`` says are this worker's, not ``busy``, whose champion is worse than its threshold."""
        now = self.clock()
        below = []
        for model in self.specs.names():
            try:
                spec = self.specs.get(model)
            except DriftloopError:
                continue  # a broken spec file: the alert path says so
            rules = spec.retraining
            if rules.threshold is None or not owns(model) or busy(model):
                continue
            if now - self._checked.get(model, -float("inf")) < self.check_s:
                continue
            self._checked[model] = now
            versions = self.release.registry.versions(model)
            champion = self.release.registry.routing(model, versions).champion
            if champion is None or any(v.status in IN_FLIGHT for v in versions):
                continue
            last_version, last_ms = self._started.get(model, (0, 0))
            since_ms = last_ms if last_version == champion.version else 0
            worse = self.release.worse_than(spec, champion, rules.threshold, rules.threshold_rows, since_ms=since_ms)
            if worse is not None:
                below.append(BelowThreshold(model, champion.version, rules.threshold, worse))
        return below

    def restore(self, last_runs: Mapping[str, tuple[int, float]]) -> None:
        """Each model's last threshold job (``retrain_runs``: the champion it judged, its start in epoch seconds),
        so that a restarted worker does not start one again on the same evidence."""
        for model, (version, started) in last_runs.items():
            self._started[model] = (version, round(started * 1000))

    def started(self, found: BelowThreshold) -> None:
        """A job was started for ``found``: its champion is judged again on rows predicted from now on."""
        self._started[found.model] = (found.version, round(self.clock() * 1000))
