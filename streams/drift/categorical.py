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

from collections import deque
from collections.abc import Sequence
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

    Categories are numbered as they come and counted in two arrays, so that a test costs a few array
    operations however many categories there are (a feature of 1,000 values is common); the numbering is
    renewed when categories no longer seen make up most of it (a feature with a new value every event).
    """

    name = "CategoricalShift"

    @classmethod
    def default_params(cls, *, alpha: float, reference: int) -> dict[str, Any]:
        return {}  # its level comes from the run length (:meth:`set_run_length`)

    @classmethod
    def from_config(cls, config: Any) -> CategoricalShift:
        return cls(**config.params)

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
        self._drift = False
        self._evidence: Any = None
        self.n = 0
        self._start_over()

    def set_run_length(self, events: float) -> None:
        """A test every ``clock`` values: a level of ``clock / events`` a test keeps ``events`` between alarms."""
        self.alpha = min(self.clock / events, 0.5)

    def alert_level(self, budget: float) -> dict[str, float]:
        return {"alpha": self.alpha}

    def _start_over(self, recent: Sequence[str] = ()) -> None:
        """An empty reference and ``recent`` as the window (category numbers renewed)."""
        self._column: dict[str, int] = {}  # category → its place in the count arrays
        self._categories: list[str] = []
        self._reference_counts = np.zeros(64, np.int64)
        self._window_counts = np.zeros(64, np.int64)
        self._reference_n = 0  # sum of the reference counts
        self._recent: deque[int] = deque(self._columns_of(recent), maxlen=self.window)
        self._window_counts[: len(self._categories)] = np.bincount(
            np.fromiter(self._recent, np.int64, len(self._recent)), minlength=len(self._categories)
        )

    @property
    def drift_detected(self) -> bool:
        return self._drift

    def update(self, x: Any) -> CategoricalShift:
        self.update_many([x])
        return self

    def update_many(self, values: Any) -> list[tuple[int, Evidence]]:
        """``update`` for each of ``values`` in turn, a run of values at a time: the reference fills in
        one step, and the window moves by up to ``clock`` values between two tests."""
        texts = [v if type(v) is str else str(v) for v in values]
        fired = []
        i = 0
        while i < len(texts):
            self._drift = False
            if len(self._categories) > 4 * (self.reference + self.window):
                self._renumber()  # between two runs: no run holds numbers of the old numbering
            if self._reference_n < self.reference:
                head = self._columns_of(texts[i : i + self.reference - self._reference_n])
                np.add.at(self._reference_counts, head, 1)
                self._reference_n += len(head)
                self.n += len(head)
                i += len(head)
                continue
            run = texts[i : i + self.clock - self.n % self.clock]  # up to the next test
            self._slide(self._columns_of(run))
            self.n += len(run)
            i += len(run)
            if len(self._recent) == self.window and self.n % self.clock == 0:
                self._test()
                if self._drift:
                    fired.append((i - 1, self._evidence))
        return fired

    def _columns_of(self, texts: Sequence[str]) -> list[int]:
        """The count arrays' places of ``texts``, numbering the categories not seen before."""
        columns = list(map(self._column.get, texts))
        if None in columns:
            for k, text in enumerate(texts):
                if columns[k] is None:
                    known = self._column.get(text)  # a category new to this run, numbered a moment ago
                    columns[k] = self._new_column(text) if known is None else known
        return columns  # type: ignore[return-value]

    def _new_column(self, category: str) -> int:
        column = len(self._categories)
        if column == len(self._reference_counts):
            self._reference_counts = np.concatenate([self._reference_counts, np.zeros_like(self._reference_counts)])
            self._window_counts = np.concatenate([self._window_counts, np.zeros_like(self._window_counts)])
        self._column[category] = column
        self._categories.append(category)
        return column

    def _renumber(self) -> None:
        """Number again only the categories in the reference or the window (the rest are forgotten)."""
        reference = self._counts(self._reference_counts)
        recent = [self._categories[c] for c in self._recent]
        self._start_over(recent)
        self._add_to_reference(reference)

    def _add_to_reference(self, counts: dict[str, int]) -> None:
        columns = self._columns_of(list(counts))  # first: numbering new categories may grow the arrays
        self._reference_counts[columns] += list(counts.values())
        self._reference_n += sum(counts.values())

    def _counts(self, counts: np.ndarray) -> dict[str, int]:
        present = np.flatnonzero(counts[: len(self._categories)])
        return {self._categories[c]: int(counts[c]) for c in present}

    def _slide(self, run: list[int]) -> None:
        """Append ``run`` to the window, dropping from its other end what no longer fits."""
        recent, counts = self._recent, self._window_counts
        overflow = len(recent) + len(run) - self.window
        if overflow > 0:
            dropped = list(islice(recent, min(overflow, len(recent))))
            np.subtract.at(counts, dropped, 1)
        np.add.at(counts, run[-self.window :], 1)
        recent.extend(run)

    def evidence(self) -> Any:
        return self._evidence

    def snapshot(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "reference": self._counts(self._reference_counts),
            "window": [self._categories[c] for c in self._recent],
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._start_over([str(v) for v in state.get("window", [])])
        self._add_to_reference({str(category): int(count) for category, count in state.get("reference", {}).items()})
        self.n = int(state.get("n", 0))
        self._drift = False

    def _test(self) -> None:
        k = len(self._categories)
        reference, window = self._reference_counts[:k], self._window_counts[:k]
        both = reference + window
        kept = (both >= self.min_count) & (both > 0)
        observed = np.stack([reference[kept], window[kept]]).astype(np.float64)
        pooled = (int(reference[~kept].sum()), int(window[~kept].sum()))
        if sum(pooled):
            observed = np.column_stack([observed, pooled])
        if observed.shape[1] < 2:
            return
        statistic, p_value, dof = _chi_square(observed)
        if p_value < self.alpha:
            self._fire(statistic, p_value, dof)

    def _fire(self, statistic: float, p_value: float, dof: int) -> None:
        reference, window = self._counts(self._reference_counts), self._counts(self._window_counts)
        ref_total, win_total = self._reference_n, len(self._recent)
        shares = {
            c: (round(reference.get(c, 0) / ref_total, 4), round(window.get(c, 0) / win_total, 4))
            for c in sorted(set(reference) | set(window))[:50]
        }
        new = sorted(c for c in window if c not in reference)[:20]
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
        self._start_over()


def _chi_square(observed: np.ndarray) -> tuple[float, float, int]:
    """Pearson's chi-square test of independence on a 2 × k table without continuity correction
    (``scipy.stats.chi2_contingency(table, correction=False)``, less its per-call overhead)."""
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    dof = observed.shape[1] - 1
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return statistic, float(chdtrc(dof, statistic)), dof
