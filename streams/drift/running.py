"""The features' running means that the joint and correlation signals centre each event on: a feature's mean
moving is its own signal's business, how the features move together is theirs."""

from __future__ import annotations

import numpy as np

HALF_LIFE = 200  # rows: how fast the running mean the rows are centred on follows a feature's mean
_DECAY = 0.5 ** (1 / HALF_LIFE)
_SPAN = 8 * HALF_LIFE  # rows the running mean is taken over in one closed form (its factors stay below 2^8)
_POWERS = _DECAY ** np.arange(1, _SPAN + 1)


def running_mean(rows: np.ndarray, level: np.ndarray) -> np.ndarray:
    """The features' exponentially weighted mean after each row, from ``level`` before the first: ``m_t =
    d m_(t-1) + (1 - d) x_t`` with ``d`` for a half-life of :data:`HALF_LIFE` rows (scipy's ``lfilter`` gives
    the same to rounding; scipy.signal is a second of imports).

    Over a span of rows the recursion has a closed form, ``m_t = d^t (m_0 + (1 - d) Σ_(s<=t) d^-s x_s)``: a
    running sum, taken :data:`_SPAN` rows at a time so that ``d^-s`` stays small.

    >>> running_mean(np.array([[1.0], [1.0]]), np.array([0.0])).ravel().round(6).tolist()  # 1 - d, 1 - d²
    [0.00346, 0.006908]
    """
    means = np.empty(rows.shape)
    for start in range(0, len(rows), _SPAN):
        x = rows[start : start + _SPAN]
        powers = _POWERS[: len(x), None]
        sums = np.cumsum(x * ((1 - _DECAY) / powers), axis=0)
        sums += level
        means[start : start + len(x)] = sums * powers
        level = means[start + len(x) - 1]
    return means
