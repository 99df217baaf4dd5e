"""Mean shift: many features' means moving a little together, each too little for its own signal.

Each feature's own chart is set for shifts of 0.2 to 2 of its standard deviations, and at a run length of
10⁸ events a model it waits for evidence: twenty features that each move by 0.1 of a deviation (a new
population of users, a sensor recalibrated across the board) went unseen by every signal over 100,000 events,
though together they are a shift of 0.45 deviations (the length of the shift in standardized units,
``0.1 √20``). Alibi-detect and NannyML look at all the features of a window at once (MMD, a classifier)
for this; here it is one number an event, in the spirit of :mod:`.correlation`.

A :class:`MeanShift` keeps the running mean ``m`` of the standardized events (each column held within the
reference's 1st and 99th percentiles, less the reference's mean, over its spread; half-life
:data:`~.running.HALF_LIFE` events), which says which way the columns have lately moved from the reference,
and scores each event ``z`` by how far it goes the same way:

    g = mᵀz / √(mᵀ R m)

with ``m`` from the events before it and ``R`` the reference's covariance of ``z``. On the reference
distribution ``g`` has mean 0 and variance 1 whatever ``m`` is, for any distribution of the features (it is
the sum of independent zero-mean terms along a fixed direction, over that sum's own spread). Once the columns
shift by ``δ``, ``m`` turns towards ``δ`` and ``g``'s mean rises to about ``|δ|``: the CUSUM's upper charts
see it (some 250–350 events for twenty features moved by 0.1, 600–1,000 for 0.05, in process). The first
:data:`~.correlation.WARM_UP` events after the reference are not scored, while ``m`` settles.

A shift that one feature seems to carry (its columns hold half of ``m``'s squared length or more:
:meth:`MeanShift.carrier`) is that feature's own signal's to report, and the alert is held for
:data:`~.monitor.HOLD_EVENTS` events (``streams.drift.monitor``): a model whose one feature moves by a
deviation gets that feature's alert, not this one's too. Where the feature's own alert does not come, the
held one goes out then: the running means are noisy (some 0.04 of a deviation each at
:data:`~.running.HALF_LIFE` 200), and five features that moved 0.08 each had one of them look like the
carrier when the score's chart fired; dropped then, the shift was never reported (the chart takes the values
after a detection for its next reference).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> shift = MeanShift(20)
>>> shift.fit(rng.normal(size=(2000, 20)))
>>> _ = shift.update(rng.normal(size=(WARM_UP, 20)))  # m settles: nothing scored yet
>>> before, after = shift.update(rng.normal(size=(3000, 20))), shift.update(rng.normal(0.1, 1, size=(3000, 20)))
>>> bool(abs(before.mean()) < 0.15 < 0.3 < after[-2000:].mean()), shift.carrier()
(True, None)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from driftloop.streams.drift.correlation import WARM_UP, Standard, standardized
from driftloop.streams.drift.cusum import pack_floats, unpack_floats
from driftloop.streams.drift.running import running_mean

__all__ = ["WARM_UP", "ColumnShift", "MeanShift"]

#: A shift whose largest feature (its columns together) holds this share of its squared length or more is that
#: feature's.
ONE_FEATURE = 0.5


class ColumnShift(NamedTuple):
    """A column's mean on the reference and lately, and the move in the reference's standard deviations."""

    column: int
    reference: float
    recent: float
    sigmas: float


class MeanShift:
    """The score of the module docstring over ``width`` columns (``groups``: the feature each column is of)."""

    def __init__(self, width: int, *, groups: np.ndarray | None = None) -> None:
        self.width = width
        self.groups = np.arange(width) if groups is None else np.asarray(groups, dtype=np.int64)
        self.standard: Standard | None = None
        self.level = np.zeros(width)  # the running mean of the held columns
        self.settled = 0  # events since the reference (scored from WARM_UP on)
        self.aside = np.zeros(width, dtype=bool)  # columns set aside while they are learnt anew

    @property
    def fitted(self) -> bool:
        return self.standard is not None

    def fit(self, reference: np.ndarray) -> None:
        self.standard = standardized(reference)
        self.level = self.standard.mean.copy()
        self.settled = 0

    def set_aside(self, columns: Sequence[int]) -> None:
        """Leave ``columns`` (places) out of ``m`` until :meth:`take_back`: ``g`` stays of mean 0 and variance 1
        along the other columns (a feature that moved is learnt anew while the others are watched on)."""
        self.aside[list(columns)] = True

    def take_back(self, standard: Standard) -> None:
        """The columns set aside, learnt anew in ``standard``, watched again from their new means."""
        self.level = np.where(self.aside, standard.mean, self.level)
        self.standard = standard
        self.aside = np.zeros(self.width, dtype=bool)

    def update(self, rows: np.ndarray) -> np.ndarray:
        """Each row's score ``g``; the warm-up's rows are left out: the scores are those of the last
        ``len(result)`` rows."""
        standard = self.standard
        assert standard is not None, "fit first"
        if not len(rows):
            return np.empty(0)
        held = np.clip(rows, standard.low, standard.high)
        means = running_mean(held, self.level)
        before = (np.vstack([self.level[None, :], means[:-1]]) - standard.mean) / standard.std  # m of each row
        if self.aside.any():
            before[:, self.aside] = 0.0
        self.level = means[-1]
        z = (held - standard.mean) / standard.std
        spread = np.einsum("ij,ij->i", before @ standard.products, before)  # mᵀ R m: mᵀz's variance
        moving = spread > 1e-24  # else no direction yet (or columns that never vary): 0
        scores = np.where(moving, np.einsum("ij,ij->i", before, z) / np.sqrt(np.where(moving, spread, 1.0)), 0.0)
        skip = min(max(WARM_UP - self.settled, 0), len(z))
        self.settled += len(z)
        return scores[skip:]  # type: ignore[no-any-return]

    def moved(self, top: int = 3) -> list[ColumnShift]:
        """The columns whose running means stand farthest from the reference's, in its standard deviations."""
        if self.standard is None:
            return []
        sigmas = np.where(self.aside, 0.0, (self.level - self.standard.mean) / self.standard.std)
        order = np.argsort(-np.abs(sigmas), kind="stable")[:top]
        return [
            ColumnShift(int(i), float(self.standard.mean[i]), float(self.level[i]), float(sigmas[i])) for i in order
        ]

    def carrier(self) -> int | None:
        """The feature (its group) whose columns hold :data:`ONE_FEATURE` of the shift's squared length or more,
        whose shift it looks like; None where the shift is spread over features."""
        if self.standard is None:
            return None
        squares = np.where(self.aside, 0.0, np.square((self.level - self.standard.mean) / self.standard.std))
        shares = np.bincount(self.groups, weights=squares)
        top = int(shares.argmax())
        return top if shares[top] >= ONE_FEATURE * float(squares.sum()) else None

    def snapshot(self) -> dict[str, Any]:
        assert self.standard is not None
        return {
            "standard": self.standard.snapshot(),
            "level": pack_floats(self.level),
            "settled": self.settled,
            "aside": np.flatnonzero(self.aside).tolist(),
        }

    @classmethod
    def restore(cls, data: dict[str, Any], *, groups: np.ndarray | None = None) -> MeanShift:
        standard = Standard.restore(data["standard"])
        shift = cls(len(standard.mean), groups=groups)
        shift.standard = standard
        shift.level = unpack_floats(data["level"])
        shift.settled = int(data["settled"])
        shift.set_aside(data.get("aside", []))
        return shift
