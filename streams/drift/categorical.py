"""A detector for categorical signals on River's interface: category frequencies that shift, or new ones.

>>> import random
>>> rng = random.Random(3)
>>> detector = CategoricalShift(alpha=1e-6)
>>> stream = [rng.choice("aab") for _ in range(3000)] + [rng.choice("abbc") for _ in range(1000)]
>>> fired = [i for i, x in enumerate(stream) if detector.update(x).drift_detected]
>>> 3000 <= fired[0] < 3200
True
"""

from __future__ import annotations

from collections import Counter, deque
from itertools import islice
from typing import Any

import numpy as np
from scipy.special import chdtrc
from scipy.stats import chi2

from driftloop.streams.drift.evidence import Evidence


class CategoricalShift:
    """Compares the last ``window`` values with a reference of ``reference`` values (chi-square test).

    The reference is the first ``reference`` values, and after each drift the ``reference`` values after it. The
    test is the two-sample chi-square on the (reference, window) by category table, so a category the
    reference never saw counts fully; categories seen fewer than ``min_count`` times in both are pooled.
    It runs every ``clock`` updates, and fires when its p-value is below ``alpha``.
    """

    name = "CategoricalShift"

    def __init__(
        self, alpha: float = 1e-6, window: int = 500, reference: int = 2000, clock: int = 50, min_count: int = 5
    ) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.alpha = alpha
        self.window = window
        self.reference = reference
        self.clock = clock
        self.min_count = min_count
        self._reference: Counter[str] = Counter()
        self._reference_n = 0  # sum of the reference counts
        self._recent: deque[str] = deque(maxlen=window)
        self._counts: Counter[str] = Counter()
        self._drift = False
        self._evidence: Any = None
        self.n = 0

    @property
    def drift_detected(self) -> bool:
        return self._drift

    def update(self, x: Any) -> CategoricalShift:
        self._drift = False
        x = str(x)
        self.n += 1
        if self._reference_n < self.reference:
            self._reference[x] += 1
            self._reference_n += 1
            return self
        if len(self._recent) == self.window:
            old = self._recent[0]
            self._counts[old] -= 1
            if not self._counts[old]:
                del self._counts[old]
        self._recent.append(x)
        self._counts[x] += 1
        if len(self._recent) == self.window and self.n % self.clock == 0:
            self._test()
        return self

    def update_many(self, values: Any) -> list[tuple[int, Evidence]]:
        """``update`` for each of ``values`` in turn, a run of values at a time: the reference fills in
        one step, and the window moves by up to ``clock`` values between two tests."""
        texts = [str(v) for v in values]
        fired = []
        i = 0
        while i < len(texts):
            self._drift = False
            if self._reference_n < self.reference:
                head = texts[i : i + self.reference - self._reference_n]
                self._reference.update(head)
                self._reference_n += len(head)
                self.n += len(head)
                i += len(head)
                continue
            run = texts[i : i + self.clock - self.n % self.clock]  # up to the next test
            self._slide(run)
            self.n += len(run)
            i += len(run)
            if len(self._recent) == self.window and self.n % self.clock == 0:
                self._test()
                if self._drift:
                    fired.append((i - 1, self._evidence))
        return fired

    def _slide(self, run: list[str]) -> None:
        """Append ``run`` to the window, dropping from its other end what no longer fits."""
        recent, counts = self._recent, self._counts
        overflow = len(recent) + len(run) - self.window
        if overflow > 0:
            dropped = list(islice(recent, min(overflow, len(recent))))
            counts.subtract(dropped)
            for category in set(dropped):
                if counts[category] <= 0:
                    del counts[category]
        counts.update(run[-self.window :])
        recent.extend(run)

    def evidence(self) -> Any:
        return self._evidence

    def snapshot(self) -> dict[str, Any]:
        return {"n": self.n, "reference": dict(self._reference), "window": list(self._recent)}

    def restore(self, state: dict[str, Any]) -> None:
        self._reference = Counter({str(k): int(v) for k, v in state.get("reference", {}).items()})
        self._reference_n = sum(self._reference.values())
        self._recent = deque((str(v) for v in state.get("window", [])), maxlen=self.window)
        self._counts = Counter(self._recent)
        self.n = int(state.get("n", 0))
        self._drift = False

    def _test(self) -> None:
        categories = sorted(set(self._reference) | set(self._counts))
        rows: list[list[int]] = [[], []]
        pooled = [0, 0]
        for category in categories:
            ref, win = self._reference.get(category, 0), self._counts.get(category, 0)
            if ref + win < self.min_count:
                pooled[0] += ref
                pooled[1] += win
            else:
                rows[0].append(ref)
                rows[1].append(win)
        if sum(pooled):
            rows[0].append(pooled[0])
            rows[1].append(pooled[1])
        columns = [i for i in range(len(rows[0])) if rows[0][i] + rows[1][i] > 0]
        if len(columns) < 2:
            return
        table = [[rows[0][i] for i in columns], [rows[1][i] for i in columns]]
        statistic, p_value, dof = _chi_square(table)
        if p_value < self.alpha:
            ref_total, win_total = sum(self._reference.values()), len(self._recent)
            shares = {
                c: (round(self._reference.get(c, 0) / ref_total, 4), round(self._counts.get(c, 0) / win_total, 4))
                for c in categories[:50]
            }
            new = sorted(c for c in self._counts if c not in self._reference)[:20]
            self._evidence = Evidence(
                statistic=float(statistic),
                threshold=float(chi2.isf(self.alpha, dof)),
                reference_size=ref_total,
                window_size=win_total,
                change_offset=win_total,
                details={"p_value": float(p_value), "shares_reference_vs_window": shares, "new_categories": new},
            )
            self._drift = True
            # the new normal: learn a fresh reference from what comes next
            self._reference, self._reference_n = Counter(), 0
            self._recent.clear()
            self._counts.clear()


def _chi_square(table: list[list[int]]) -> tuple[float, float, int]:
    """Pearson's chi-square test of independence on a 2 × k table without continuity correction
    (``scipy.stats.chi2_contingency(table, correction=False)``, less its per-call overhead)."""
    observed = np.asarray(table, dtype=np.float64)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    dof = observed.shape[1] - 1
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return statistic, float(chdtrc(dof, statistic)), dof
