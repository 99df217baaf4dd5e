"""Correlation drift: a change in how pairs of a model's features vary together, found the moment it starts,
even where the features were independent before.

The ``joint`` signal (:mod:`streams.drift.joint`) scores each event's distance from the principal subspace
of a reference: it sees a correlation that breaks (two features that moved together no longer do: the event
leaves a direction the reference never used), and is blind to one that appears. Ten independent features
leave no direction unused; two of them starting to move together (correlation 0 → 0.9) put the events'
variance into one direction the reference already spans and take it out of another, and the distance from
the subspace does not change (in three seeds of the probe that found it, two never fired in 40,000 events).
Nor does any statistic of one event along fixed directions: a correlation is a product of two features, and
only products see it.

A :class:`CorrelationDrift` turns each event into one number that does, an **adaptive quadratic form**. Each
event's standardized features ``z`` (held within the reference's 1st and 99th percentiles, centred on their
running means, half-life :data:`~.joint.HALF_LIFE` events, and divided by the reference's spread) give the
products ``z zᵀ``, whose mean
on the reference is the reference's matrix ``R`` (its correlations off the diagonal). An exponentially weighted
mean of ``z zᵀ - R`` off the diagonal, ``M`` (half-life :data:`HALF_LIFE` events), says which pairs have been
moving away from ``R`` lately and which way; each event is scored by how far its own products go the same way:

    g = (zᵀ M z - tr(M R)) / √(2 tr(M R M R))

``M`` is taken from the events before (a block of :data:`BLOCK` events at a time), so on the reference
distribution ``g`` has mean 0 whatever ``M`` is, and variance 1 for Gaussian features (the denominator is
``zᵀ M z``'s own spread there): a stationary stream gives a stream of values the CUSUM (:mod:`.cusum`) can be
calibrated on like any other. Once a correlation changes, ``M`` turns towards the change within a few
half-lives, and ``g``'s mean moves up by about the change's size over ``M``'s own noise: the CUSUM's upper
charts see it (its default detector watches rises only: a fall is a stream closer to the reference's own
sample than new rows come, as when the reference's rows are replayed). The diagonal is left out (each
feature's spread is its own ``:spread`` signal's business), and so are means (the running centring: a mean's
shift is the feature's own signal's). The values are held within the percentiles before they are centred: a
heavy-tailed feature's one far value (a Cauchy ratio's) moved a running mean of values held only within the
reference's extremes by a standard deviation for hundreds of events, inflating every product of that
feature's while it lasted (7 false alarms in a million stationary events of three heavy-tailed features,
where charts calibrated on a stream of even spread expect none). The first :data:`WARM_UP` events after the
reference are not scored, while ``M`` settles from 0 to its noise.

Its columns are chosen by :mod:`.multivariate` (numeric features, and indicator columns of categorical
ones' main categories); columns of one group (one feature's indicators) are not paired. Its cost grows with
the columns' pairs (``d²`` an event; in process, 0.27 µs an event for ten columns, 0.8 for 32).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> def rows(n, rho):
...     x = rng.normal(size=(n, 3))
...     x[:, 1] = rho * x[:, 0] + np.sqrt(1 - rho**2) * x[:, 1]
...     return x
>>> drift = CorrelationDrift(3)
>>> drift.fit(rows(2000, 0.0))
>>> _ = drift.update(rows(WARM_UP, 0.0))  # M settles: nothing scored yet
>>> before, after = drift.update(rows(2000, 0.0)), drift.update(rows(2000, 0.7))
>>> bool(abs(before.mean()) < 0.1 < 0.5 < after[-1000:].mean())
True
>>> moved = drift.changed_pairs()[0]
>>> moved.first, moved.second, round(moved.recent, 1)
(0, 1, 0.7)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from driftloop.streams.drift.cusum import TAIL, pack_floats, unpack_floats
from driftloop.streams.drift.running import running_mean

HALF_LIFE = 250  # events: how fast the direction ``M`` follows the products
BLOCK = 100  # events scored with one ``M`` (it is updated after each block)
WARM_UP = 4 * HALF_LIFE  # events after the reference that only settle ``M``
RECENT = 500  # rows kept to say which pairs moved
_DECAY = 0.5 ** (1 / HALF_LIFE)


class Standard(NamedTuple):
    """A reference's columns as the multivariate signals standardize them: each held within its 1st and 99th
    percentiles (``low``, ``high``), less its ``mean``, over its ``std``; ``products`` the mean products of the
    standardized columns (their covariance)."""

    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    products: np.ndarray

    def snapshot(self) -> dict[str, Any]:
        return {
            "low": [v if np.isfinite(v) else None for v in self.low.tolist()],  # JSON has no infinity
            "high": [v if np.isfinite(v) else None for v in self.high.tolist()],
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "products": pack_floats(self.products.ravel()),
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> Standard:
        width = len(data["mean"])
        return cls(
            np.array([-np.inf if v is None else v for v in data["low"]], dtype=float),
            np.array([np.inf if v is None else v for v in data["high"]], dtype=float),
            np.asarray(data["mean"], dtype=float),
            np.asarray(data["std"], dtype=float),
            unpack_floats(data["products"]).reshape(width, width),
        )


def standardized(reference: np.ndarray) -> Standard:
    """The :class:`Standard` of ``reference`` (rows of columns)."""
    low, high = np.quantile(reference, [TAIL, 1 - TAIL], axis=0)
    held = np.clip(reference, low, high)
    mean = held.mean(axis=0)
    std = held.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    z = (held - mean) / std
    return Standard(low, high, mean, std, z.T @ z / len(z))


def restandardized(standard: Standard, rows: np.ndarray, columns: np.ndarray) -> Standard:
    """``standard`` with its ``columns`` (places) learnt anew from ``rows``, a reference gathered since they
    moved: their range, mean and spread, and their products with every column (the others standardized as
    before; their products with each other kept).

    >>> rng = np.random.default_rng(0)
    >>> before = standardized(rng.normal(size=(2000, 3)))
    >>> moved = rng.normal(size=(2000, 3)) + [5.0, 0.0, 0.0]
    >>> moved[:, 0] = 2 * moved[:, 0] + moved[:, 1]  # its mean, spread and correlation with the second
    >>> after = restandardized(before, moved, np.array([0]))
    >>> round(float(after.mean[0])), round(float(after.products[0, 1]), 1), bool(after.mean[1] == before.mean[1])
    (10, 0.4, True)
    """
    low, high, mean, std = (part.copy() for part in standard[:4])
    low[columns], high[columns] = np.quantile(rows[:, columns], [TAIL, 1 - TAIL], axis=0)
    held = np.clip(rows, low, high)
    mean[columns] = held[:, columns].mean(axis=0)
    spread = held[:, columns].std(axis=0)
    std[columns] = np.where(spread > 0, spread, 1.0)
    z = (held - mean) / std
    products = standard.products.copy()
    learnt = z[:, columns].T @ z / len(z)
    products[columns, :] = learnt
    products[:, columns] = learnt.T
    return Standard(low, high, mean, std, products)


class PairChange(NamedTuple):
    """Two columns (their places) whose correlation moved: on the reference, and over the last rows scored."""

    first: int
    second: int
    reference: float
    recent: float


class CorrelationDrift:
    """The adaptive quadratic form of the module docstring, over ``width`` features."""

    def __init__(self, width: int, *, groups: np.ndarray | None = None) -> None:
        self.width = width
        # columns of one group are never paired (one categorical feature's indicator columns: their products are
        # fixed by its shares, the feature's own signal's business); default: each column its own group
        self.groups = np.arange(width) if groups is None else np.asarray(groups, dtype=np.int64)
        self._apart = self.groups[:, None] != self.groups[None, :]  # the pairs paired (never the diagonal)
        # columns set aside while they are learnt anew (:meth:`set_aside`), and the pairs watched meanwhile
        self.aside = np.zeros(width, dtype=bool)
        self._watched = self._apart
        self.mean = np.zeros(width)
        self.std = np.ones(width)
        self.low = np.full(width, -np.inf)  # where each feature's values are held (the reference's percentiles)
        self.high = np.full(width, np.inf)
        self.level = np.zeros(width)  # the running means the values are centred on
        self.reference = np.eye(width)  # R: the products' means on the reference
        self.direction = np.zeros((width, width))  # M
        self.settled = 0  # events since the reference that moved M (scored from WARM_UP on)
        self.fitted = False
        self._recent = np.empty((0, width))  # the last RECENT rows scored, as scored: what changed_pairs judges

    def fit(self, reference: np.ndarray) -> None:
        """Learn the reference's means, spreads, range and products (rows held within their percentiles)."""
        standard = standardized(reference)
        self.low, self.high, self.mean, self.std = standard.low, standard.high, standard.mean, standard.std
        self.level, self.reference = self.mean.copy(), standard.products
        self.direction = np.zeros((self.width, self.width))
        self.settled = 0
        self.fitted = True

    def set_aside(self, columns: Sequence[int]) -> None:
        """Leave ``columns`` (places) out of the score until :meth:`take_back`: their pairs leave ``M``, and
        ``g`` stays of mean 0 and variance 1 on the other pairs (a feature that moved is learnt anew while the
        others are watched on)."""
        self.aside[list(columns)] = True
        self._watched = self._apart & ~self.aside[:, None] & ~self.aside[None, :]
        self.direction = self.direction * self._watched

    def take_back(self, standard: Standard) -> None:
        """The columns set aside, learnt anew in ``standard`` (:func:`restandardized`), watched again: their
        running means start at their new means."""
        aside = self.aside
        self.low, self.high, self.mean, self.std, self.reference = standard
        self.level = np.where(aside, standard.mean, self.level)
        self.aside = np.zeros(self.width, dtype=bool)
        self._watched = self._apart

    def update(self, rows: np.ndarray) -> np.ndarray:
        """Each row's score ``g`` (after :meth:`fit`); rows of the warm-up are left out: the scores are those of
        the last ``len(result)`` rows."""
        assert self.fitted, "fit first"
        if not len(rows):
            return np.empty(0)
        held = np.clip(rows, self.low, self.high)
        means = running_mean(held, self.level)
        z = (held - np.vstack([self.level[None, :], means[:-1]])) / self.std  # less the mean of the rows before
        self.level = means[-1]
        self._recent = np.concatenate([self._recent, z[-RECENT:]])[-RECENT:]
        scores = np.empty(len(z))
        whole = len(z) // BLOCK * BLOCK  # the call's whole blocks at once, then the rest as one block
        for part, at in ((z[:whole].reshape(-1, BLOCK, self.width), 0), (z[whole:][None], whole)):
            if part.size:
                directions = self._directions(part)
                scores[at : at + part.size // self.width] = self._scores(part, directions[:-1]).ravel()
                self.direction = directions[-1]
        skip = min(max(WARM_UP - self.settled, 0), len(z))
        self.settled += len(z)
        return scores[skip:]

    def changed_pairs(self, top: int = 3, *, before: int = 0) -> list[PairChange]:
        """The pairs (of columns in different groups) whose mean product over the last :data:`RECENT` rows scored
        (but the ``before`` last, where enough are left) moved the most from the reference's (``top`` at most;
        none that moved less than a quarter of the most)."""
        recent = self._products(before)
        if recent is None:
            return []
        first, second = np.triu_indices(self.width, k=1)
        apart = self._watched[first, second]
        first, second = first[apart], second[apart]
        moved = np.abs(recent[first, second] - self.reference[first, second])
        order = np.argsort(-moved, kind="stable")[:top]
        order = order[moved[order] >= moved[order[0]] / 4] if len(order) else order
        was, now = _correlations(self.reference), _correlations(recent)
        pairs = [(int(first[i]), int(second[i])) for i in order.tolist()]
        return [PairChange(i, j, float(was[i, j]), float(now[i, j])) for i, j in pairs]

    def moved_apart(self, columns: Sequence[int], *, before: int = 0) -> float:
        """The largest move of a correlation, from the reference's, of the pairs watched of none of ``columns``,
        over the rows :meth:`changed_pairs` reads."""
        recent = self._products(before)
        keep = self._watched.copy()
        keep[list(columns), :] = keep[:, list(columns)] = False
        first, second = np.nonzero(np.triu(keep, k=1))
        if recent is None or not len(first):
            return 0.0
        moves = np.abs(_correlations(recent) - _correlations(self.reference))[first, second]
        return float(moves.max())

    def _products(self, before: int) -> np.ndarray | None:
        """The mean products of the last rows scored but the ``before`` last (all of them where fewer than half
        would be left); None before any."""
        rows = self._recent
        if 0 < before <= len(rows) // 2:
            rows = rows[: len(rows) - before]
        return rows.T @ rows / len(rows) if self.fitted and len(rows) else None

    def snapshot(self) -> dict[str, Any]:
        return {
            "standard": Standard(self.low, self.high, self.mean, self.std, self.reference).snapshot(),
            "level": pack_floats(self.level),
            "direction": pack_floats(self.direction.ravel()),
            "settled": self.settled,
            "groups": self.groups.tolist(),
            "aside": np.flatnonzero(self.aside).tolist(),
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> CorrelationDrift:
        standard = Standard.restore(data["standard"])
        width = len(standard.mean)
        drift = cls(width, groups=data["groups"])
        drift.low, drift.high, drift.mean, drift.std, drift.reference = standard
        drift.level = unpack_floats(data["level"])
        drift.direction = unpack_floats(data["direction"]).reshape(width, width)
        drift.settled = int(data["settled"])
        drift.fitted = True
        if data.get("aside"):
            drift.set_aside(data["aside"])
        return drift

    def _scores(self, blocks: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """``g`` of each row of ``blocks`` (blocks, rows, features), each block's with its direction."""
        turned = directions @ self.reference
        spread = 2.0 * np.sum(turned * turned.transpose(0, 2, 1), axis=(1, 2))  # 2 tr(M R M R): zᵀ M z's variance
        quadratic = np.sum((blocks @ directions) * blocks, axis=2) - np.trace(turned, axis1=1, axis2=2)[:, None]
        moving = spread > 1e-24  # else no direction yet (or features that never vary): 0
        return np.where(moving[:, None], quadratic / np.sqrt(np.where(moving, spread, 1.0))[:, None], 0.0)

    def _directions(self, blocks: np.ndarray) -> np.ndarray:
        """``M`` before each block of ``blocks`` and after the last: each block's rows weighted as the
        exponential mean weighs them, its products less the reference's, off the diagonal."""
        size = blocks.shape[1]
        weights = (1 - _DECAY) * _DECAY ** np.arange(size - 1, -1, -1)
        moved = blocks.transpose(0, 2, 1) @ (blocks * weights[None, :, None]) - weights.sum() * self.reference
        moved *= self._watched  # off the diagonal, between groups, of columns not set aside
        directions = np.empty((len(blocks) + 1, self.width, self.width))
        directions[0] = self.direction
        for k, block in enumerate(moved):
            directions[k + 1] = _DECAY**size * directions[k] + block
        return directions


def _correlations(products: np.ndarray) -> np.ndarray:
    """The correlations of mean products (0 where a column never varied)."""
    scale = np.sqrt(np.clip(np.diag(products), 0.0, None))
    outer = np.outer(scale, scale)
    return np.divide(products, outer, out=np.zeros_like(products), where=outer > 0)
