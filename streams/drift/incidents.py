"""A PagerDuty subscriber's open incidents, and when each is resolved.

An alert opens (or folds into) the incident of its model and signal (``dedup_key``). The incident is resolved
when the model's alert cooldown (``monitoring.cooldown_s`` of its spec) passes without a new alert of that
signal, or when the model's champion is replaced (an announcement on ``model-versions``): the version that
drifted no longer serves. A release notice that pages (a rollback, a rejection:
``streams.drift.release_notices``) opens the incident of the model's ``release`` signal, resolved by its
cooldown alone. Incidents live in the subscriber's memory: after a restart, those opened before are left to
PagerDuty's own auto-resolve.

>>> from dataclasses import replace
>>> from driftloop.infra.contract import RELEASE, Alert
>>> incidents = Incidents(lambda model: 60.0)
>>> incidents.opened(replace(Alert.example(), model_version=3), now=0.0)
>>> incidents.quiet(now=30.0), incidents.replaced("fraud", 3), incidents.replaced("fraud", 4)
([], [], ['fraud/amount'])
>>> incidents.opened(replace(Alert.example(), model_version=5, kind=RELEASE, signal=RELEASE), now=100.0)
>>> incidents.replaced("fraud", 4), incidents.quiet(now=160.0)
([], ['fraud/release'])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from driftloop.infra.contract import RELEASE, Alert
from driftloop.streams.drift.routing import dedup_key


@dataclass
class OpenIncident:
    """An incident this subscriber triggered and has not resolved."""

    key: str
    model: str
    version: int
    signal: str
    last_alert: float  # wall clock of its latest alert
    quiet_s: float  # resolved once this long passes without a new one


class Incidents:
    """Open incidents by ``dedup_key``; ``quiet_s(model)`` is how long a model's incident stays open unalerted."""

    def __init__(self, quiet_s: Callable[[str], float]) -> None:
        self.quiet_s = quiet_s
        self.open: dict[str, OpenIncident] = {}

    def opened(self, alert: Alert, now: float) -> None:
        key = dedup_key(alert)
        self.open[key] = OpenIncident(
            key, alert.model, alert.model_version, alert.signal, now, self.quiet_s(alert.model)
        )

    def quiet(self, now: float) -> list[str]:
        """The incidents whose cooldown passed without a new alert: closed here, to be resolved."""
        return self._close([k for k, i in self.open.items() if now - i.last_alert >= i.quiet_s])

    def replaced(self, model: str, champion: int) -> list[str]:
        """``model``'s drift incidents of versions other than its new ``champion``: closed here, to be resolved. A
        release incident (a rollback, a rejection) is not: the champion a rollback brings back is its remedy,
        not its end; it is resolved when its cooldown passes quiet."""
        return self._close(
            [k for k, i in self.open.items() if i.model == model and i.version != champion and i.signal != RELEASE]
        )

    def _close(self, keys: list[str]) -> list[str]:
        for key in keys:
            del self.open[key]
        return keys
