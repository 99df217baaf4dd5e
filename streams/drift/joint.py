"""Joint drift: a change in how a model's numeric features move together, while each one's distribution may
stay the same (two features whose correlation flips from +0.8 to -0.8).

A :class:`JointDrift` learns the features' principal components on a reference of standardized events (the
components that explain ``variance`` of it, always leaving at least one out) and turns every later event
into one number, its PCA reconstruction error: the squared distance from the reference's subspace, which
NannyML computes per batch and which is computed here per event. That stream is a numeric signal of the
model (``joint``), watched by the same detector, confirmation and policy as every other one; when it fires,
:meth:`JointDrift.contributions` names the features whose residuals grew the most.

Each later event's features are held within the reference's range first (each feature's lowest and highest
value, where it varies), as the detector holds its values (``streams.drift.cusum``, point 5): the rows are
centred on a running mean, and one value far past the reference (a heavy-tailed feature's, a Cauchy or
Pareto one) moved that mean for hundreds of rows, each of them scored far off the subspace: a run of extreme
values that raised a false alarm on stationary streams about once a million events (three heavy-tailed
features, the detector's own values already held).

The distance from the subspace sees a correlation that breaks, not one that appears (independent features
leave no direction unused): the ``correlation`` signal (:mod:`.correlation`) scores each event's products of
features against the reference's.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> def pairs(n, rho):
...     a = rng.normal(size=n)
...     return np.column_stack([a, rho * a + np.sqrt(1 - rho**2) * rng.normal(size=n), rng.normal(size=n)])
>>> joint = JointDrift(["x", "y", "z"], reference_size=2000)
>>> joint.update(pairs(2000, 0.8)) is None  # the reference: nothing to score yet
True
>>> before, after = joint.update(pairs(2000, 0.8)).mean(), joint.update(pairs(2000, -0.8)).mean()
>>> bool(after > 5 * before), sorted(joint.contributions(pairs(2000, -0.8))[:2])
(True, ['x', 'y'])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftloop.streams.drift.cusum import RESOLUTION, pack_floats, unpack_floats, within_magnitude
from driftloop.streams.drift.running import HALF_LIFE, running_mean

__all__ = ["HALF_LIFE", "JointDrift", "running_mean"]

#: Components kept: those that explain this share of the reference's variance (at least one is left out).
EXPLAINED = 0.9
RECENT = 500  # rows kept to say which features changed


#: A squared residual below this many standard deviations² is rounding, taken as 0.
ROUNDING = 1e-9


class JointDrift:
    """PCA reconstruction error of standardized numeric features (see the module docstring)."""

    def __init__(self, names: list[str], *, reference_size: int = 2000, variance: float = EXPLAINED) -> None:
        self.names = list(names)
        self.reference_size = reference_size
        self.variance = variance
        self._reference: list[np.ndarray] = []
        self._collected = 0
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.components: np.ndarray | None = None  # (kept, features), orthonormal rows (None: restored without)
        self._complement: np.ndarray | None = None  # orthonormal rows spanning what the components leave out
        self.residual_mean: np.ndarray | None = None  # per feature, on the reference
        self._recent = np.empty((0, len(self.names)))  # the last RECENT rows scored: what contributions judge
        self._level: np.ndarray | None = None  # the features' running mean (half-life HALF_LIFE rows)
        # each feature's range on the reference, later rows held within it (infinite: a constant feature)
        self.low = np.full(len(self.names), -np.inf)
        self.high = np.full(len(self.names), np.inf)

    @property
    def fitted(self) -> bool:
        return self._complement is not None

    @property
    def _by_complement(self) -> bool:
        """Whether the complement is the smaller basis: residuals are projections onto it, and it is what a
        snapshot saves (a restored detector has it alone, and computes as the original did)."""
        assert self._complement is not None
        return self.components is None or len(self._complement) < len(self.components)

    def update(self, rows: np.ndarray) -> np.ndarray | None:
        """Each row's reconstruction error once the reference is complete (None before; rows that complete the
        reference are part of it and get no score)."""
        rows = within_magnitude(rows)  # the reference's squares within the largest float
        if not self.fitted:
            take = rows[: self.reference_size - self._collected]
            self._reference.append(take)
            self._collected += len(take)
            if self._collected >= self.reference_size:
                self._fit(np.concatenate(self._reference))
            rows = rows[len(take) :]
            if not self.fitted or not len(rows):
                return None

        held = np.clip(rows, self.low, self.high)
        centred = self._centre(held)
        complement = self._complement
        assert complement is not None
        # the smaller product: a row's residual off the components is its part along their complement
        if self.components is None or len(complement) < 2 * len(self.components):
            errors = np.square(((centred - self.mean) / self.std) @ complement.T).sum(axis=1)
        else:
            errors = np.square(self._residuals(centred)).sum(axis=1)
        # rounding: where fewer than two features vary, the residual is the arithmetic's own error, whose
        # moments are no reference (a chart on them alarmed every few thousand events)
        errors[errors < ROUNDING] = 0.0
        return errors  # type: ignore[no-any-return]

    def contributions(self, rows: np.ndarray | None = None, top: int = 3) -> list[str]:
        """The features whose squared residuals on ``rows`` (default: the last rows scored) grew the most
        against the reference."""
        rows = self._recent if rows is None else rows
        if not self.fitted or not len(rows):
            return []
        # grown by how much, not by what factor: a feature the reference's components explain whole has a
        # residual of almost nothing, and any noise would be a large factor of it
        growth = np.square(self._residuals(rows)).mean(axis=0) - self.residual_mean
        order = np.argsort(-growth, kind="stable")
        return [self.names[i] for i in order[:top]]

    def snapshot(self) -> dict[str, Any] | None:
        """The fitted reference as JSON-ready data (None before the fit: the reference is gathered again).

        The smaller basis is saved, its float64 bytes packed (``cusum.pack_floats``): a model's state is saved
        at every offset commit, and the components of a model of 500 independent features (some 380 by 500,
        to explain 90 % of their variance) were 4.2 MB of JSON text of its 7 MB, every 2.8 s; their
        complement (some 120 rows), packed, is 0.6 MB."""
        if not self.fitted:
            return None
        assert self.mean is not None and self.std is not None and self.residual_mean is not None
        basis, matrix = ("complement", self._complement) if self._by_complement else ("components", self.components)
        assert matrix is not None
        return {
            "names": self.names,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            basis: pack_floats(matrix.ravel()),
            "residual_mean": self.residual_mean.tolist(),
            "low": [v if np.isfinite(v) else None for v in self.low.tolist()],  # JSON has no infinity
            "high": [v if np.isfinite(v) else None for v in self.high.tolist()],
            "level": pack_floats(self._level) if self._level is not None else None,
        }

    @classmethod
    def restore(cls, data: dict[str, Any], *, reference_size: int = 2000) -> JointDrift:
        joint = cls(data["names"], reference_size=reference_size)
        joint.mean, joint.std = np.asarray(data["mean"]), np.asarray(data["std"])
        if "complement" in data:
            joint._complement = unpack_floats(data["complement"]).reshape(-1, len(joint.names))
        else:  # the components (a JSON list in a state saved before packing)
            joint.components = unpack_floats(data["components"]).reshape(-1, len(joint.names))
            joint._complement = _complement(joint.components)
        joint.residual_mean = np.asarray(data["residual_mean"])
        width = len(joint.names)  # a state saved before the ranges: unbounded, as it ran
        joint.low = np.array([-np.inf if v is None else v for v in data.get("low", [None] * width)], dtype=float)
        joint.high = np.array([np.inf if v is None else v for v in data.get("high", [None] * width)], dtype=float)
        if data.get("level"):  # the running means the rows are centred on (saved since session 51)
            joint._level = unpack_floats(data["level"])
        return joint

    def _fit(self, reference: np.ndarray) -> None:
        self._reference = []
        self.mean = reference.mean(axis=0)
        std = reference.std(axis=0)
        floor = np.abs(self.mean) * RESOLUTION  # values that differ by rounding are one value (cusum.RESOLUTION)
        self.std = np.where(std > 0, np.maximum(std, floor), 1.0)
        low, high = np.nanmin(reference, axis=0), np.nanmax(reference, axis=0)
        varies = low < high
        self.low, self.high = np.where(varies, low, -np.inf), np.where(varies, high, np.inf)
        standard = (reference - self.mean) / self.std
        _, singular, vt = np.linalg.svd(standard, full_matrices=False)
        explained = np.cumsum(singular**2) / max(float(np.sum(singular**2)), 1e-12)
        kept = min(int(np.searchsorted(explained, self.variance) + 1), len(self.names) - 1)
        self.components = vt[: max(kept, 0)]
        self._complement = _complement(self.components)
        self.residual_mean = np.square(self._residuals(reference)).mean(axis=0)

    def _centre(self, rows: np.ndarray) -> np.ndarray:
        """Each row less the features' running mean before it: a feature's mean moving (its own signal's
        business) leaves the joint signal within a few half-lives, how the features move together does not."""
        level = self.mean.copy() if self._level is None else self._level  # type: ignore[union-attr]
        before = running_mean(rows, level)
        levels = np.vstack([level[None, :], before[:-1]])  # the mean of the rows before each row
        self._level = before[-1]
        centred = rows - levels + self.mean
        self._recent = np.concatenate([self._recent, centred])[-RECENT:]
        return centred  # type: ignore[no-any-return]

    def _residuals(self, rows: np.ndarray) -> np.ndarray:
        standard = (rows - self.mean) / self.std
        if self._by_complement:  # the residual is the projection onto the complement
            return standard @ self._complement.T @ self._complement  # type: ignore[union-attr,no-any-return]
        return standard - standard @ self.components.T @ self.components  # type: ignore[union-attr,no-any-return]


def _complement(components: np.ndarray) -> np.ndarray:
    """Orthonormal rows spanning the directions orthogonal to ``components`` (orthonormal rows): with them,
    the whole space. A row's residual off the components is its projection onto these."""
    kept, width = components.shape
    if not kept:
        return np.eye(width)
    basis, _ = np.linalg.qr(components.T, mode="complete")  # its first columns span the components'
    return np.ascontiguousarray(basis[:, kept:].T)
