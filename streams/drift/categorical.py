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

import base64
import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.special import chdtrc, chdtri, gammaln

from driftloop.streams.batch import CodedTexts
from driftloop.streams.drift.cusum import SPLIT_SIDE, first_change
from driftloop.streams.drift.evidence import Evidence

#: The most values a run of tests takes at once, and the most counts (tests by categories) it holds.
RUN, RUN_COUNTS = 5000, 1 << 21
#: The long window is tested every this many clocks: its tests a tenth of it apart (a test's cost is in
#: categories by tests; a window ten times as long moves as little between ten clocks as the short one in one).
LONG_CLOCK = 10
_ONLY_TEXT = frozenset({str})
#: The reference learnt after an alarm is searched for a change of its own, looked at as ``streams.drift.cusum``
#: looks at a numeric one (:func:`~driftloop.streams.drift.cusum.looks`: each side of a split holds at least
#: ``SPLIT_SIDE`` values) with :func:`category_split`: a split whose statistic passes the level SPLIT_ALPHA a look
#: (:func:`split_threshold`) is an alarm.
SPLIT_ALPHA = 1e-9
#: A category a share of the values below this is pooled with the other rare ones for the search (its cells
#: then expect five values at the shortest side).
SPLIT_POOL = 0.05


class CategorySplit(NamedTuple):
    """A change of category shares within a reference (:func:`category_split`): its first value, the
    statistic, the number of categories compared (the rare ones pooled), and each category's share before and
    after it."""

    at: int
    statistic: float
    columns: int
    shares: dict[str, tuple[float, float]]


class CategoricalShift:
    """Compares the last ``window`` values, and the last ``long_window``, with a reference of ``reference``
    values (chi-square tests).

    The reference is the first ``reference`` values, and after each drift the ``reference`` values after it. A
    test is the two-sample chi-square on the (reference, window) by category table, so a category the
    reference never saw counts fully; categories expected fewer than ``min_count`` times in the window are
    pooled (:func:`_cells`). The short window is tested every ``clock`` updates and the long one every
    ``LONG_CLOCK`` clocks, each at ``alpha / 2`` (``alpha`` alone with ``long_window = 0``), and the detector
    fires when a p-value is below it. The short window sees a large change within a few hundred values; the
    long one a share that moves by a few points, which a window of 500 cannot tell from noise (one category of
    ten from 10 % to 14.5 %, the traffic of 200 categories moving a tenth of itself onto 20 of them: never
    caught in 60,000 values with the short window and a reference of 2,000, measured). An alarm places the
    change within its window where its values turn from the reference's kind to the window's
    (:func:`_since_change`), not at the window's first value (up to ``long_window`` values early).

    The reference grows, up to ``max_reference`` values: the values that leave the long window join it each
    time they are as many as it holds (it doubles), so that its shares are known well enough for the long
    window's small moves to show. A change is caught while its values are in the windows, before they join it.

    Categories are numbered as they come and counted in arrays, and the tests of a run of values are made
    at once: each test's window counts are differences of running counts, its statistic a sum over the
    table (:func:`_chi_squares`), so a run costs a few array operations however many categories and tests
    it holds. Where categories outnumber the values between two tests many times over (a feature of 1,000
    values is common), a test's sums are the test before's, updated by the few categories whose counts
    changed: a test costs what its values do, not what its categories do. A coded column
    (:class:`~streams.batch.CodedTexts`) has each distinct text looked up once. The numbering is renewed
    when categories no longer seen make up most of it (a feature with a new value every event).
    """

    name = "CategoricalShift"

    @classmethod
    def default_params(cls, *, alpha: float, reference: int) -> dict[str, Any]:
        return {}  # its level comes from the run length (:meth:`set_run_length`)

    @classmethod
    def from_config(cls, config: Any) -> CategoricalShift:
        return cls(**config.params)

    def __init__(
        self,
        alpha: float = 1e-6,
        window: int = 500,
        reference: int = 2000,
        clock: int = 50,
        min_count: int = 5,
        long_window: int = 5000,
        max_reference: int = 32_000,
    ) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if long_window and long_window <= window:
            raise ValueError(f"long_window must be 0 or more than window ({window}), got {long_window}")
        self.alpha = alpha
        self.window = window
        self.long_window = long_window
        self._windows = (window, long_window) if long_window else (window,)
        self._held = max(self._windows)  # the last values held: the longest window
        self.max_reference = max(max_reference, reference)
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
        """An empty reference and ``recent`` as the window (category numbers renewed). No reference being
        learnt after an alarm is searched any longer (:meth:`_split_learning`): its values' numbers are gone."""
        self._relearning = False  # the reference is learnt after an alarm: searched for a change of its own
        self._learned: list[np.ndarray] = []  # its values' places, in order, while it is searched
        self._column: dict[str, int] = {}  # category → its place in the count arrays
        self._categories: list[str] = []
        self._reference_counts = np.zeros(64, np.int64)
        self._reference_n = 0  # sum of the reference counts
        self._aging = np.zeros(64, np.int64)  # the values that left the longest window since the reference grew
        self._aging_n = 0
        self._recent = self._columns_of(list(recent)[-self._held :])  # the longest window's values, oldest first

    def learn_again(self) -> None:
        """Learn the reference again from the next value, as after an alarm of its own (and searched for a change
        of its own as that one is): the values moved, by a change another signal of them reported. Nothing while
        a reference is learnt."""
        if self._reference_n >= self.reference:
            self._learn_again()

    def _learn_again(self) -> None:
        """A fresh reference from the next value, searched for a change of its own (after an alarm, or
        :meth:`learn_again`)."""
        self._start_over()
        self._relearning = True

    @property
    def drift_detected(self) -> bool:
        return self._drift

    def update(self, x: Any) -> CategoricalShift:
        self.update_many([x])
        return self

    def update_many(self, values: Any) -> list[tuple[int, Evidence]]:
        """``update`` for each of ``values`` in turn (texts, or a :class:`CodedTexts`), a run at a time: the
        reference fills in one step, and a run's tests are made at once."""
        coded = values if isinstance(values, CodedTexts) else CodedTexts.of(_texts(values))
        places = self._known_places(coded.texts)  # each distinct text's place in the count arrays, or -1
        fired: list[tuple[int, Evidence]] = []
        i, count = 0, len(coded)
        while i < count:
            if len(self._categories) > 4 * (self.reference + self._held):
                self._renumber()  # between two runs: no run holds numbers of the old numbering
                places = self._known_places(coded.texts)
            if self._reference_n < self.reference:
                head = self._places(coded, slice(i, i + self.reference - self._reference_n), places)
                self._reference_counts[: len(self._categories)] += np.bincount(head, minlength=len(self._categories))
                self._reference_n += len(head)
                self.n += len(head)
                i += len(head)
                if self._relearning and len(head):
                    self._learned.append(head)
                    found = self._split_learning(len(head))
                    if found is not None:
                        fired.append((i - len(head) + found[0], found[1]))
                continue
            room = max(RUN_COUNTS // max(len(self._categories), 1), 1) * self.clock
            growth = self._values_until_growth()
            if growth == 0:
                self._grow()
                continue
            run = self._places(coded, slice(i, i + min(RUN, room, RUN if growth is None else growth)), places)
            taken, drift = self._run(run)
            self.n += taken
            i += taken
            if drift:  # it started over: categories numbered anew
                fired.append((i - 1, self._evidence))
                places[:] = -1
        self._drift = bool(fired) and fired[-1][0] == count - 1
        return fired

    def _known_places(self, texts: list[str]) -> np.ndarray:
        """The count arrays' place of each of ``texts`` (distinct), -1 for a category not numbered yet: each
        looked up once a call, so that a run's values need numbering only where a category is new."""
        return np.fromiter(map(self._column.get, texts, itertools.repeat(-1)), np.int64, len(texts))

    def _places(self, coded: CodedTexts, part: slice, places: np.ndarray) -> np.ndarray:
        """The count arrays' places of the values ``coded[part]``, numbering the categories not seen before (in
        order of first appearance); ``places``: those already looked up, by code."""
        codes = coded.codes[part]
        columns = places[codes]
        if len(columns) and columns.min() < 0:
            unknown, first = np.unique(codes[columns < 0], return_index=True)
            unknown = unknown[np.argsort(first)]  # in order of first appearance
            texts = list(map(coded.texts.__getitem__, unknown.tolist()))
            known = list(map(self._column.get, texts))
            if None in known:  # categories never seen: numbered now
                known = [self._new_column(text) if at is None else at for text, at in zip(texts, known, strict=True)]
            places[unknown] = known
            columns = places[codes]
        return columns

    def _columns_of(self, texts: Sequence[str]) -> np.ndarray:
        """The count arrays' places of ``texts``, numbering the categories not seen before."""
        coded = CodedTexts.of(texts)
        return self._places(coded, slice(None), np.full(len(coded.texts), -1, np.int64))

    def _new_column(self, category: str) -> int:
        column = len(self._categories)
        if column == len(self._reference_counts):
            self._reference_counts = np.concatenate([self._reference_counts, np.zeros_like(self._reference_counts)])
            self._aging = np.concatenate([self._aging, np.zeros_like(self._aging)])
        self._column[category] = column
        self._categories.append(category)
        return column

    def _renumber(self) -> None:
        """Number again only the categories in the reference, the windows or the values to join the reference
        (the rest are forgotten)."""
        reference, aging = self._counts(self._reference_counts), self._counts(self._aging)
        recent = [self._categories[c] for c in self._recent.tolist()]
        self._start_over(recent)
        self._add_to_reference(reference)
        self._add_to_aging(aging)

    def _add_to_reference(self, counts: dict[str, int]) -> None:
        columns = self._columns_of(list(counts))  # first: numbering new categories may grow the arrays
        self._reference_counts[columns] += np.asarray(list(counts.values()), np.int64)  # none: an empty reference
        self._reference_n += sum(counts.values())

    def _add_to_aging(self, counts: dict[str, int]) -> None:
        columns = self._columns_of(list(counts))  # first: numbering new categories may grow the arrays
        self._aging[columns] += np.asarray(list(counts.values()), np.int64)
        self._aging_n += sum(counts.values())

    def _growing(self) -> bool:
        """Whether the reference still grows: short of ``max_reference``, and its categories seen ``min_count``
        times on average (a feature of a value per user or per event gains nothing from a longer reference,
        and would hold every value)."""
        k = len(self._categories)
        return (
            self._reference_n < self.max_reference
            and np.count_nonzero(self._reference_counts[:k]) * self.min_count <= self._reference_n
        )

    def _values_until_growth(self) -> int | None:
        """How many more values until the reference next grows (0: now; None: it does not): when the values that
        left the longest window are as many as it holds, or fill it up to ``max_reference``."""
        if not self._growing():
            return None
        target = min(self._reference_n, self.max_reference - self._reference_n)
        return max(target - self._aging_n, 0) + self._held - len(self._recent)

    def _grow(self) -> None:
        """The values that left the longest window join the reference."""
        k = len(self._categories)
        self._reference_counts[:k] += self._aging[:k]
        self._reference_n += self._aging_n
        self._aging[:k] = 0
        self._aging_n = 0

    def _counts(self, counts: np.ndarray) -> dict[str, int]:
        present = np.flatnonzero(counts[: len(self._categories)])
        return {self._categories[c]: int(counts[c]) for c in present}

    def _run(self, run: np.ndarray) -> tuple[int, bool]:
        """Slide the windows over ``run`` (places), testing each every ``clock`` values once it is full: how many
        values were taken (up to the first test that fired, if one did), and whether one fired (then
        :meth:`_fire` has started over)."""
        k, level = len(self._categories), self.alpha / len(self._windows)
        values = np.concatenate([self._recent, run])  # the longest window so far, then the run
        # a test after each value whose count is a multiple of the clock, once the window is full
        ends = np.arange(len(self._recent) + (-self.n - 1) % self.clock + 1, len(values) + 1, self.clock)
        first: tuple[int, int, float, float, int] | None = None  # (end, window, statistic, p-value, dof)
        for window in self._windows:
            full = ends[ends >= window]
            if window != self.window:  # the long window: every LONG_CLOCK clocks
                full = full[(self.n - len(self._recent) + full) % (LONG_CLOCK * self.clock) == 0]
            if not len(full):
                continue
            statistics, p_values, dofs = _chi_squares(self._reference_counts[:k], values, full, window, self.min_count)
            fires = np.flatnonzero(p_values < level)
            if len(fires) and (first is None or full[fires[0]] < first[0]):
                at = int(fires[0])
                first = (int(full[at]), window, float(statistics[at]), float(p_values[at]), int(dofs[at]))
        if first is not None:
            end, window, statistic, p_value, dof = first
            self._recent = values[end - window : end]
            self._fire(statistic, p_value, dof, level)
            return end - (len(values) - len(run)), True
        left = values[: max(len(values) - self._held, 0)]  # the values that leave the longest window
        if len(left) and self._growing():
            self._aging[:k] += np.bincount(left, minlength=k)
            self._aging_n += len(left)
        self._recent = values[-self._held :]
        return len(run), False

    def evidence(self) -> Any:
        return self._evidence

    def snapshot(self) -> dict[str, Any]:
        learned = np.concatenate(self._learned) if self._learned else np.zeros(0, np.int64)
        return {
            "n": self.n,
            "reference": self._counts(self._reference_counts),
            "aging": self._counts(self._aging),
            "window": pack_window(self._categories, self._recent),
            **({"learned": pack_window(self._categories, learned)} if self._relearning else {}),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._start_over(unpack_window(state.get("window", [])))
        self._add_to_reference({str(category): int(count) for category, count in state.get("reference", {}).items()})
        self._add_to_aging({str(category): int(count) for category, count in state.get("aging", {}).items()})
        if "learned" in state:  # a reference searched while it is learnt after an alarm
            self._relearning = True
            self._learned = [self._columns_of(unpack_window(state["learned"]))]
        self.n = int(state.get("n", 0))
        self._drift = False

    def _split_learning(self, new: int) -> tuple[int, Evidence] | None:
        """A change of shares within the reference learnt after an alarm (:func:`category_split`), found once
        its ``new`` last values came: which of them first showed it (the alarm's), and its evidence, the change
        placed by all the values at hand. The reference starts again after the alarm's value (values of the old
        shares left in it were a change of their own there, as ``streams.drift.cusum`` found)."""
        learned = np.concatenate(self._learned)
        found = first_change(
            learned, new, lambda some: category_change(some, self._categories),
            lambda some: category_split(some, self._categories),
        )  # fmt: skip
        if found is None:
            return None
        seen, first, split = found
        after = learned[seen:]
        k = len(self._categories)
        self._reference_counts[:k] = np.bincount(after, minlength=k)
        self._reference_n = len(after)
        self._learned = [after]
        new_categories = sorted(c for c, (before, after) in split.shares.items() if after > 0 and not before)
        dof = first.columns - 1
        self._evidence = Evidence(
            statistic=first.statistic,
            threshold=split_threshold(dof, seen),
            reference_size=split.at,
            window_size=seen - split.at,
            change_offset=seen - split.at - 1,
            details={
                "p_value": min(split_tail(dof, seen, first.statistic), 1.0),
                "shares_reference_vs_window": dict(sorted(split.shares.items())[:50]),
                "new_categories": new_categories[:20],
                "found_in": "the reference learnt after an alarm",
            },
        )
        return seen - (len(learned) - new) - 1, self._evidence

    def _fire(self, statistic: float, p_value: float, dof: int, level: float) -> None:
        window_counts = np.bincount(self._recent, minlength=len(self._categories))
        reference, window = self._counts(self._reference_counts), self._counts(window_counts)
        ref_total, win_total = self._reference_n, len(self._recent)
        shares = {
            c: (round(reference.get(c, 0) / ref_total, 4), round(window.get(c, 0) / win_total, 4))
            for c in sorted(set(reference) | set(window))[:50]
        }
        new = sorted(c for c in window if c not in reference)[:20]
        self._evidence = Evidence(
            statistic=float(statistic),
            threshold=float(chdtri(dof, level)),
            reference_size=ref_total,
            window_size=win_total,
            change_offset=_since_change(self._reference_counts[: len(window_counts)], window_counts, self._recent),
            details={"p_value": float(p_value), "shares_reference_vs_window": shares, "new_categories": new},
        )
        self._drift = True
        self._learn_again()  # the new normal


def _since_change(reference: np.ndarray, window: np.ndarray, places: np.ndarray) -> int:
    """How many of a window's last values (``places``, counted by category in ``window``) came after the change
    it shows: where the running sum of each value's log-likelihood ratio, of the window's shares against the
    reference's, is lowest (a CUSUM's estimate: values of the reference's kind pull it down, values of the new
    kind up), so that the change is placed where it began, not at the window's first value (up to a whole
    window early, and a retraining learnt from rows of the old world).

    >>> reference = np.array([500, 500])  # half a, half b
    >>> places = np.array([0, 1] * 300 + [1] * 400)  # 600 values as before, then 400 of b only
    >>> 350 <= _since_change(reference, np.bincount(places), places) <= 450
    True
    """
    ratio = np.log((window + 0.5) / (window.sum() + 0.5 * len(window))) - np.log(
        (reference + 0.5) / (reference.sum() + 0.5 * len(reference))
    )
    sums = np.concatenate([[0.0], np.cumsum(ratio[places])])
    return max(len(places) - int(np.argmin(sums)), 1)


def category_split(places: np.ndarray, categories: Sequence[str]) -> CategorySplit | None:
    """The split of ``places`` (values' places among ``categories``) whose two-sample chi-square of category
    counts, before against after it, is largest, each side at least :data:`SPLIT_SIDE` values, the categories of
    a share below :data:`SPLIT_POOL` pooled; None for fewer values, or fewer than two columns to compare. The
    statistic at a split ``k`` of ``n`` values is ``n / (k (n - k)) Σ_c (O_kc - k p_c)² / p_c`` (``O_kc``: the
    category's count before it, ``p_c``: its share of all), a chi-square of ``columns - 1`` degrees of freedom at
    any one split.

    >>> rng = np.random.default_rng(2)
    >>> split = category_split(np.concatenate([rng.choice(3, 600, p=[.5, .3, .2]), rng.choice(3, 600)]), "abc")
    >>> abs(split.at - 600) < 60, split.statistic > 30, split.columns, split.shares["a"][0] > split.shares["a"][1]
    (True, True, 3, True)
    """
    n = len(places)
    if n < 2 * SPLIT_SIDE:
        return None
    present, column = np.unique(places, return_inverse=True)
    totals = np.bincount(column)
    common = totals >= SPLIT_POOL * n
    pooled = int(np.count_nonzero(~common))
    if pooled:  # the rare categories as one column
        column = np.where(common, np.cumsum(common) - 1, int(np.count_nonzero(common)))[column]
        totals = np.bincount(column)
    columns = len(totals)
    if columns < 2:
        return None
    counts = np.zeros((n + 1, columns))
    counts[np.arange(1, n + 1), column] = 1.0
    np.cumsum(counts, axis=0, out=counts)
    k = np.arange(SPLIT_SIDE, n - SPLIT_SIDE + 1)
    share = totals / n
    gaps = counts[k] - k[:, None] * share
    statistics = n / (k * (n - k)) * (gaps * gaps / share).sum(axis=1)
    best = int(np.argmax(statistics))
    at = int(k[best])
    before = np.bincount(column[:at], minlength=columns) / at
    after = np.bincount(column[at:], minlength=columns) / (n - at)
    names = [categories[c] for c in present[common].tolist()] + (["(rare, pooled)"] if pooled else [])
    shares = {name: (round(float(b), 4), round(float(a), 4)) for name, b, a in zip(names, before, after, strict=True)}
    return CategorySplit(at, float(statistics[best]), columns, shares)


def category_change(places: np.ndarray, categories: Sequence[str]) -> CategorySplit | None:
    """Where the shares of ``places`` change, when they do: their :func:`category_split`, where its statistic
    passes :func:`split_threshold` for as many values."""
    split = category_split(places, categories)
    return split if split is not None and split.statistic > split_threshold(split.columns - 1, len(places)) else None


def split_tail(dof: int, n: int, statistic: float) -> float:
    """The chance that the largest of :func:`category_split`'s statistics over ``n`` values of one set of
    shares passes ``statistic`` (``dof`` degrees of freedom): James, James and Siegmund's approximation for the
    largest of a chi-square process over the splits ``t`` from ``SPLIT_SIDE / n`` to ``1 - SPLIT_SIDE / n``,
    ``x^d e^{-x²/2} / (2^{d/2} Γ(d/2)) [log((1 - t₀)² / t₀²) (1 - d / x²) + 4 / x²]`` at ``x² = statistic``.

    >>> split_tail(2, 2000, 50.0) < 1e-8, split_tail(2, 2000, 10.0) > 0.01
    (True, True)
    """
    if statistic <= dof:
        return 1.0
    start = SPLIT_SIDE / n
    span = 2 * math.log((1 - start) / start)
    log_density = 0.5 * dof * math.log(statistic) - statistic / 2 - 0.5 * dof * math.log(2) - float(gammaln(dof / 2))
    return math.exp(log_density) * max(span * (1 - dof / statistic) + 4 / statistic, 0.0)


@functools.lru_cache(maxsize=4096)
def split_threshold(dof: int, n: int, alpha: float = SPLIT_ALPHA) -> float:
    """The statistic past which :func:`category_split`'s largest passes with chance ``alpha``
    (:func:`split_tail`), by bisection."""
    low, high = float(dof) + 1.0, float(dof) + 1000.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if split_tail(dof, n, middle) > alpha else (low, middle)
    return high


def pack_window(categories: list[str], places: np.ndarray) -> dict[str, Any]:
    """A window of values (``places`` in ``categories``) for a saved state: the categories it holds, and each
    value's place among them in as few bits as they need (4 for 16 categories), in base64. As a list of texts,
    a window of 5,000 values was some 30 kB of a model's state at each save, for each categorical feature.

    >>> saved = pack_window(["a", "b", "c"], np.array([2, 0, 2]))
    >>> saved["categories"], unpack_window(saved)
    (['c', 'a'], ['c', 'a', 'c'])
    >>> unpack_window(pack_window([str(i) for i in range(300)], np.arange(300)))[-2:], unpack_window(["x", "y"])
    (['298', '299'], ['x', 'y'])
    """
    present, first, codes = np.unique(places, return_index=True, return_inverse=True)
    order = np.argsort(first)  # the categories in the order the window first holds them: one window, one text
    present, codes = present[order], np.argsort(order)[codes]
    bits = next(b for b in (4, 8, 16, 32) if len(present) <= 1 << b)
    if bits == 4:  # two a byte
        codes = np.append(codes, 0) if len(codes) % 2 else codes
        packed = ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8)
    else:
        packed = codes.astype(f"<u{bits // 8}")
    return {
        "categories": [categories[c] for c in present.tolist()],
        "bits": bits,
        "size": len(places),
        "codes": base64.b64encode(packed.tobytes()).decode("ascii"),
    }


def unpack_window(saved: dict[str, Any] | list[Any]) -> list[str]:
    """A window saved by :func:`pack_window` as its texts (or one saved as a list of texts, before it)."""
    if not isinstance(saved, dict):
        return [str(v) for v in saved]
    raw, bits = base64.b64decode(saved["codes"]), int(saved["bits"])
    if bits == 4:
        pairs = np.frombuffer(raw, dtype=np.uint8)
        codes = np.column_stack([pairs >> 4, pairs & 15]).ravel()
    else:
        codes = np.frombuffer(raw, dtype=f"<u{bits // 8}")
    categories = [str(c) for c in saved["categories"]]
    return [categories[c] for c in codes[: int(saved["size"])].tolist()]


def _texts(values: Sequence[Any]) -> Sequence[str]:
    """``values`` as texts (the list itself when they all are: its types checked in C, not a step a value)."""
    if _ONLY_TEXT.issuperset(map(type, values)):
        return values
    return [v if type(v) is str else str(v) for v in values]


def _chi_squares(
    reference: np.ndarray, values: np.ndarray, ends: np.ndarray, window: int, min_count: int
) -> tuple[np.ndarray, ...]:
    """Pearson's chi-square test of the reference (its counts by category) against the window of ``window``
    values ending at each of ``ends`` (increasing), as ``scipy.stats.chi2_contingency(table,
    correction=False)`` makes it on each table (without its per-call overhead): categories seen fewer than
    ``min_count`` times in both pooled into one (when any is), no test (a p-value of 1) with fewer than two
    columns. (statistics, p-values, dofs)

    Where the tables hold many more cells than values move between the tests (many categories), a test's
    sums are the test before's, updated by the categories whose window counts changed
    (:func:`_sliding_sums`); else each table is summed whole (:func:`_table_sums`)."""
    moving = 2 * (int(ends[-1]) - int(ends[0]))  # values that enter or leave a window between the first and last
    if len(reference) * len(ends) > 3 * moving:
        sums = _sliding_sums(reference, values, ends, window, max(min_count, 1))
    else:
        sums = _table_sums(reference, _window_counts(values, ends, window, len(reference)), window, max(min_count, 1))
    return _tests(*sums, int(reference.sum()), window)


def _window_counts(values: np.ndarray, ends: np.ndarray, window: int, k: int) -> np.ndarray:
    """The counts of ``values[end - window : end]`` for each of ``ends`` (``k`` categories by tests): running
    counts at the windows' edges, counted once per stretch between two edges, less those at their starts."""
    edges, at = np.unique(np.concatenate([ends - window, ends]), return_inverse=True)
    stretches = len(edges) - 1
    stretch = np.repeat(np.arange(stretches), np.diff(edges))
    counts = np.bincount(values[edges[0] : edges[-1]] * stretches + stretch, minlength=k * stretches)
    running = np.zeros((k, stretches + 1), np.int64)
    np.cumsum(counts.reshape(k, stretches), axis=1, out=running[:, 1:])
    return running[:, at[len(ends) :]] - running[:, at[: len(ends)]]


def _cells(
    reference: np.ndarray, windows: np.ndarray, r_total: int, window: int, min_count: int
) -> tuple[np.ndarray, ...]:
    """Each category's two cells, as one term of the statistic (times ``R W``): with row totals ``R`` and
    ``W``, ``(W r - R w)² / (r + w)``; and whether the category is kept (expected ``min_count`` times in the
    window, ``(r + w) W / (R + W) >= min_count``: Cochran's rule, without which a reference many times the
    window gives its rare categories' terms a heavier tail than the chi-square's, 1 to 5 false alarms a
    million values, measured), else its term is 0 and it is pooled."""
    both = windows + reference
    kept = both * window >= min_count * (r_total + window)  # expected min_count times in the window (Cochran)
    gap = (window * reference - r_total * windows).astype(np.float64)
    gap *= gap
    return np.divide(gap, both, out=np.zeros(both.shape), where=kept), kept


def _table_sums(reference: np.ndarray, windows: np.ndarray, window: int, min_count: int) -> tuple[np.ndarray, ...]:
    """For each window (a column of ``windows``, its counts by category): the sum of the kept categories'
    terms, how many are kept, and the pooled reference and window counts."""
    r_total = int(reference.sum())
    cells, kept = _cells(reference[:, None], windows, r_total, window, min_count)
    return cells.sum(axis=0), kept.sum(axis=0), r_total - reference @ kept, window - (windows * kept).sum(axis=0)


def _sliding_sums(
    reference: np.ndarray, values: np.ndarray, ends: np.ndarray, window: int, min_count: int
) -> tuple[np.ndarray, ...]:
    """:func:`_table_sums` of the windows ending at ``ends``, from the first window's table and, for each
    later one, the terms of the categories whose counts changed since the window before: how many values a
    category gained or lost at each test is counted in one array of categories by tests, and only its
    changed cells are worked on (at most twice the values between two tests, against every category)."""
    tests, r_total, k = len(ends), int(reference.sum()), len(reference)
    start, stop = int(ends[0]), int(ends[-1])
    first = np.bincount(values[start - window : start], minlength=k)
    cells, kept = _cells(reference, first, r_total, window, min_count)
    # the test at which each value after the first window enters it, and the value ``window`` before it leaves
    step = np.repeat(np.arange(1, tests), np.diff(ends))
    moved = np.bincount(values[start:stop] * tests + step, minlength=k * tests)
    moved -= np.bincount(values[start - window : stop - window] * tests + step, minlength=k * tests)
    changed = np.flatnonzero(moved != 0)  # by category, then test (a mask is scanned 4 times as fast as ints)
    change = moved[changed]
    category, test = np.divmod(changed, tests)
    # each changed count: the first window's, plus the category's changes so far (a running sum per category)
    running = np.cumsum(change)
    starts = np.flatnonzero(np.diff(category)) + 1
    before = np.repeat(np.concatenate([[0], running[starts - 1]]), np.diff(starts, prepend=0, append=len(change)))
    after_counts = first[category] + running - before
    before_counts = after_counts - change
    r = reference[category]
    after_cells, after_kept = _cells(r, after_counts, r_total, window, min_count)
    before_cells, before_kept = _cells(r, before_counts, r_total, window, min_count)
    kept_change = after_kept.astype(np.int64) - before_kept

    def running_total(base: float, changes: np.ndarray) -> np.ndarray:
        return base + np.cumsum(np.bincount(test, changes, minlength=tests))

    pooled_window = after_counts * ~after_kept - before_counts * ~before_kept
    return (
        running_total(cells.sum(), after_cells - before_cells),
        running_total(int(kept.sum()), kept_change),
        running_total(r_total - int(reference @ kept), -r * kept_change),
        running_total(window - int(first @ kept), pooled_window),
    )


def _tests(
    kept_terms: np.ndarray, kept: np.ndarray, pooled_r: np.ndarray, pooled_w: np.ndarray, r_total: int, window: int
) -> tuple[np.ndarray, ...]:
    """(statistics, p-values, dofs) of tests from their sums (:func:`_table_sums`): the pooled cells' term
    added where anything is pooled, and a p-value of 1 where fewer than two columns are left."""
    pooled = pooled_r + pooled_w
    pooled_gap = (window * pooled_r - r_total * pooled_w).astype(np.float64)
    terms = kept_terms + np.divide(pooled_gap * pooled_gap, pooled, out=np.zeros(len(pooled)), where=pooled > 0)
    statistics = terms / (r_total * window)
    columns = kept + (pooled > 0)
    dofs = np.maximum(columns - 1, 1)
    p_values = np.where(columns >= 2, chdtrc(dofs, statistics), 1.0)
    return statistics, p_values, dofs
