"""A model's ``correlation`` and ``mean_shift`` signals: which of its features they watch together (the adaptive
quadratic form of :mod:`.correlation`, the running direction of :mod:`.mean_shift`), and each batch's columns.

The columns are the model's numeric features and, for each categorical feature, an **indicator column** of each
of its main categories (1.0 where an event has that category): the correlation of an indicator with a numeric
feature is how far that feature's mean in the category stands from its mean elsewhere, and of two features'
indicators how much more often their categories come together than by chance, and an indicator's mean is its
category's share. So the correlation signal sees a relation that changes while every feature keeps its
distribution, between numbers (two amounts that start moving together), between a category and a number
(amounts by channel: high on the web and low in the app, then the other way round) and between two categories
(a device that follows the channel, then the other one); each feature's own signal sees none of these, the
``joint`` signal only the first. The mean shift sees numbers and shares moving a little together.

The main categories are those of at least :data:`MIN_SHARE` of the reference's events and at most
``1 - MIN_SHARE`` (:data:`PER_FEATURE` at most a feature, the most common first); where they cover all but
:data:`COMPLETE` of the events, the most common of them is left out, the baseline (``k - 1`` of ``k``, as dummy
coding does: its column would be the others' complement, and the rarer categories are the ones people ask
about). One feature's indicators are never paired with each other: their products are fixed by its shares (its
own signal's business). A feature of a thousand rare values gives no column. At most :data:`MAX_NUMERIC`
numeric features (the first by name) and :data:`MAX_INDICATORS` indicator columns are watched: the work an event
grows with the square of the columns.

The reference is the first ``reference_size`` events of the features the first batch sent (their columns chosen
from it); numeric features that more than half of them left null are left out, and only events that sent every
numeric feature watched are scored.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> def batch(n, sign):
...     channel = rng.choice(["web", "app"], size=n).tolist()
...     amount = sign * np.where(np.array(channel) == "web", 1.0, -1.0) + rng.normal(size=n)
...     every = list(range(n))
...     return {"amount": (every, amount)}, {"channel": (every, channel)}
>>> signals = MultivariateSignals(reference_size=2000)
>>> _ = signals.update(2000, *batch(2000, +1))  # the reference
>>> [column.label for column in signals.columns]
['amount', 'channel=web']
>>> _ = signals.update(WARM_UP, *batch(WARM_UP, +1))  # the warm-up: nothing scored
>>> before, after = (signals.update(2000, *batch(2000, sign)).correlation for sign in (+1, -1))
>>> bool(abs(before.mean()) < 0.2 < 1.0 < after[-1000:].mean())
True
>>> move = signals.changed_pairs()[0]
>>> move.labels, round(move.reference, 1), round(move.recent, 1)
(('amount', 'channel=web'), 0.7, -0.7)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from driftloop.streams.batch import CodedTexts
from driftloop.streams.drift.correlation import WARM_UP, CorrelationDrift, Standard, restandardized
from driftloop.streams.drift.cusum import within_magnitude
from driftloop.streams.drift.mean_shift import MeanShift

__all__ = ["WARM_UP", "Column", "ColumnMove", "MultivariateSignals", "PairMove", "Scored", "Seen"]

MAX_NUMERIC = 64  # numeric features watched (the first by name)
MAX_INDICATORS = 16  # indicator columns watched (of the categorical features, by name)
PER_FEATURE = 4  # indicator columns a categorical feature gives at most
MIN_SHARE = 0.05  # a main category is at least this share of the reference's events (and at most 1 - it)
COMPLETE = 0.99  # main categories that cover this share of the events: the most common of them left out
MIN_ROWS = 200  # complete reference rows the signal needs (else it is off for the model)

#: A feature's values in a batch as the extraction has them: the positions of the events that sent it, and
#: its values there (numbers: an array or a list; categories: a coded column or a list of texts).
FeatureValues = Mapping[str, tuple[Sequence[int], Any]]


class Column(NamedTuple):
    """A numeric feature's values, or (``category`` set) the indicator of one category of a categorical one."""

    feature: str
    category: str | None = None

    @property
    def label(self) -> str:
        return self.feature if self.category is None else f"{self.feature}={self.category}"


class PairMove(NamedTuple):
    """Two columns whose correlation moved: on the reference, and over the last events scored."""

    columns: tuple[Column, Column]
    reference: float
    recent: float

    @property
    def labels(self) -> tuple[str, str]:
        return self.columns[0].label, self.columns[1].label


class ColumnMove(NamedTuple):
    """A column whose mean moved: on the reference, lately, and by how many of the reference's deviations."""

    column: Column
    reference: float
    recent: float
    sigmas: float


class Seen(NamedTuple):
    """What the signals say moved, at a moment (:meth:`MultivariateSignals.seen`): the pairs whose correlation
    moved most, how far the pairs of none of the first pair's features moved, the columns whose means moved
    most, and the feature a mean shift looks like (None: spread)."""

    pairs: list[PairMove]
    others: float
    moved: list[ColumnMove]
    carrier: str | None


class Scored(NamedTuple):
    """A batch's scores of each signal, and the positions in the batch of the events they are of."""

    positions: np.ndarray
    correlation: np.ndarray
    mean_shift: np.ndarray


class MultivariateSignals:
    """The columns of a model's correlation and mean-shift signals, its :class:`~.correlation.CorrelationDrift`
    and its :class:`~.mean_shift.MeanShift`."""

    def __init__(self, *, reference_size: int = 2000) -> None:
        self.reference_size = reference_size
        self.columns: list[Column] = []
        # both None while the reference is gathered, or where the signals are off
        self.correlation: CorrelationDrift | None = None
        self.mean_shift: MeanShift | None = None
        self.off = False  # the reference gave fewer than two features to pair
        self._numeric: list[str] = []  # the features whose reference is gathered (those of the first batch)
        self._categorical: list[str] = []
        # the reference's batches as they came: how many of their first events it takes, their size, their features
        self._gathered: list[tuple[int, int, FeatureValues, FeatureValues]] = []
        self._count = 0
        self._again: list[np.ndarray] = []  # rows since columns were set aside, to learn them anew from

    def update(self, count: int, numeric: FeatureValues, categorical: FeatureValues) -> Scored:
        """The scores of a batch of ``count`` events (none for the reference's events and the warm-up's)."""
        return self.score(*self.rows(count, numeric, categorical))

    def rows(self, count: int, numeric: FeatureValues, categorical: FeatureValues) -> tuple[np.ndarray, np.ndarray]:
        """The rows of a batch of ``count`` events to :meth:`score`, and their positions in it: those after the
        reference, which the batch's first events complete (and the signals are fitted on), of the events that
        sent every numeric feature watched. A batch's rows may be scored in parts, a moved feature set aside
        between two (:meth:`relearn`)."""
        nothing = np.empty((0, len(self.columns))), np.empty(0, dtype=np.int64)
        if self.off or not count:
            return nothing
        first = 0  # the batch's first event after the reference
        if self.correlation is None:
            first = self._gather(count, numeric, categorical)
            if self._count < self.reference_size:
                return nothing
            self._fit()
            if self.correlation is None or first == count:
                return nothing
        rows, positions = self._rows(count, numeric, categorical)
        if first:
            rows, positions = rows[positions >= first], positions[positions >= first]
        return rows, positions

    def score(self, rows: np.ndarray, positions: np.ndarray) -> Scored:
        """The scores of ``rows`` (at ``positions``; :meth:`rows`), none for the warm-up's."""
        if self.correlation is None or self.mean_shift is None or not len(rows):
            return Scored(np.empty(0, dtype=np.int64), np.empty(0), np.empty(0))
        correlation, mean_shift = self.correlation.update(rows), self.mean_shift.update(rows)  # the same warm-up
        if self.correlation.aside.any():
            self._learn_again(rows)
        return Scored(positions[len(positions) - len(correlation) :], correlation, mean_shift)

    @property
    def fitted(self) -> bool:
        """Whether the reference is learnt (its columns chosen, both signals fitted)."""
        return self.correlation is not None and self.mean_shift is not None

    def relearn(self, feature: str) -> bool:
        """Set the columns of ``feature``, whose distribution moved, aside and learn them anew from the next
        ``reference_size`` events, while both signals watch the other columns on; whether it has any (after
        :attr:`fitted`).

        Learning both signals anew, as they did until session 56, left them blind to every change for some
        5,500 events after any feature's alert (the reference, the warm-up and their charts' own reference): a
        correlation that appeared 1,500 to 3,500 events after a feature's alert was taken into the new
        reference, seen only by the ``joint`` signal, 2,000 events late, its change placed late, or not at all.
        A state saved while columns are learnt anew gathers their rows again from the restore on."""
        assert self.correlation is not None and self.mean_shift is not None, "fitted first"
        columns = [i for i, column in enumerate(self.columns) if column.feature == feature]
        if not columns:
            return False
        self.correlation.set_aside(columns)
        self.mean_shift.set_aside(columns)
        self._again = []  # the columns set aside before learn from the same rows as these
        return True

    def changed_pairs(self, top: int = 3, *, before: int = 0) -> list[PairMove]:
        """The pairs of columns whose correlation over the last events scored (but the ``before`` last) moved the
        most from the reference."""
        if self.correlation is None:
            return []
        return [
            PairMove((self.columns[i], self.columns[j]), reference, recent)
            for i, j, reference, recent in self.correlation.changed_pairs(top, before=before)
        ]

    def moved_columns(self, top: int = 3) -> list[ColumnMove]:
        """The columns whose running means stand farthest from the reference's (in its deviations)."""
        if self.mean_shift is None:
            return []
        return [ColumnMove(self.columns[m.column], m.reference, m.recent, m.sigmas) for m in self.mean_shift.moved(top)]

    def seen(self, *, before: int = 0) -> Seen:
        """What moved, as the rows scored so far say (the pairs: but the ``before`` last, scored after the
        detection): an alert's evidence, taken when it was detected (a feature detected to move later in the
        batch is set aside since, and named no more)."""
        pairs = self.changed_pairs(before=before)
        others = 0.0
        if pairs and self.correlation is not None:
            features = {column.feature for column in pairs[0].columns}
            mine = [i for i, column in enumerate(self.columns) if column.feature in features]
            others = self.correlation.moved_apart(mine, before=before)
        return Seen(pairs, others, self.moved_columns(top=5), self.shift_carrier())

    def shift_carrier(self) -> str | None:
        """The feature whose shift the columns' shift looks like (:meth:`.MeanShift.carrier`); None where it is
        spread over features."""
        group = None if self.mean_shift is None else self.mean_shift.carrier()
        return None if group is None else str(np.unique([column.feature for column in self.columns])[group])

    def snapshot(self) -> dict[str, Any] | None:
        """The columns and the fitted state, JSON-ready (None while the reference is gathered: it is gathered
        again)."""
        if self.off:
            return {"columns": [], "correlation": None}
        if self.correlation is None or self.mean_shift is None:
            return None
        return {
            "columns": [list(column) for column in self.columns],
            "correlation": self.correlation.snapshot(),
            "mean_shift": self.mean_shift.snapshot(),
        }

    @classmethod
    def restore(cls, data: dict[str, Any], *, reference_size: int = 2000) -> MultivariateSignals:
        signals = cls(reference_size=reference_size)
        if not data["columns"]:
            signals.off = True
        else:
            signals.columns = [Column(feature, category) for feature, category in data["columns"]]
            signals.correlation = CorrelationDrift.restore(data["correlation"])
            signals.mean_shift = MeanShift.restore(data["mean_shift"], groups=signals.correlation.groups)
        return signals

    def _gather(self, count: int, numeric: FeatureValues, categorical: FeatureValues) -> int:
        """Keep the batch's events that the reference still lacks; how many it took."""
        if not self._gathered:
            self._numeric = sorted(numeric)[:MAX_NUMERIC]
            self._categorical = sorted(categorical)
        take = min(count, self.reference_size - self._count)
        self._gathered.append((take, count, dict(numeric), dict(categorical)))
        self._count += take
        return take

    def _fit(self) -> None:
        """Choose the columns from the reference's events, and fit both signals on the events' rows of them (built
        as every later batch's are, :meth:`_rows`)."""
        gathered, self._gathered = self._gathered, []
        nulls = dict.fromkeys(self._numeric, 0)
        for take, count, numeric, _ in gathered:
            for name in self._numeric:
                sent = numeric.get(name)
                nulls[name] += int(np.isnan(_numbers(count, *sent)[:take]).sum()) if sent is not None else take
        # a number null in most of the reference's events would leave most events unscored
        self.columns = [Column(name) for name in self._numeric if nulls[name] <= self._count / 2]
        for name in self._categorical:
            counts: Counter[Any] = Counter()
            for take, _, _, categorical in gathered:
                if name in categorical:
                    positions, values = categorical[name]
                    counts.update(text for position, text in zip(positions, values, strict=True) if position < take)
            room = MAX_INDICATORS - sum(column.category is not None for column in self.columns)
            self.columns += [Column(name, category) for category in _main_categories(counts, self._count)[:room]]
        groups = np.unique([column.feature for column in self.columns], return_inverse=True)[1]
        if len(set(groups.tolist())) < 2:
            self.off, self.columns = True, []
            return
        parts = [(self._rows(count, numeric, categorical), take) for take, count, numeric, categorical in gathered]
        rows = np.concatenate([part[positions < take] for (part, positions), take in parts])
        if len(rows) < MIN_ROWS:
            self.off, self.columns = True, []
            return
        self.correlation = CorrelationDrift(len(self.columns), groups=groups)
        self.correlation.fit(rows)
        self.mean_shift = MeanShift(len(self.columns), groups=groups)
        self.mean_shift.fit(rows)

    def _learn_again(self, rows: np.ndarray) -> None:
        """Gather ``rows`` for the columns set aside; once they are ``reference_size``, learn those columns
        anew from them (:func:`~.correlation.restandardized`) and watch them again."""
        assert self.correlation is not None and self.mean_shift is not None
        self._again.append(rows)
        if sum(map(len, self._again)) < self.reference_size:
            return
        gathered = np.concatenate(self._again)[: self.reference_size]
        self._again = []
        drift = self.correlation
        before = Standard(drift.low, drift.high, drift.mean, drift.std, drift.reference)
        standard = restandardized(before, gathered, np.flatnonzero(drift.aside))
        drift.take_back(standard)
        self.mean_shift.take_back(standard)

    def _rows(self, count: int, numeric: FeatureValues, categorical: FeatureValues) -> tuple[np.ndarray, np.ndarray]:
        """The batch's columns, of the events that sent every numeric feature watched, and their positions."""
        columns = []
        for column in self.columns:
            values = numeric.get(column.feature) if column.category is None else categorical.get(column.feature)
            if column.category is None:
                columns.append(_numbers(count, *values) if values is not None else np.full(count, np.nan))
            else:
                columns.append(_indicator(count, column.category, *values) if values is not None else np.zeros(count))
        rows = within_magnitude(np.column_stack(columns), copied=True)
        complete = ~np.isnan(rows).any(axis=1)
        if complete.all():
            return rows, np.arange(count)
        positions = np.flatnonzero(complete)
        return rows[positions], positions


def _main_categories(counts: Counter[Any], events: int) -> list[str]:
    """The categories of at least ``MIN_SHARE`` and at most ``1 - MIN_SHARE`` of ``events`` (``counts``: each
    category's events), the most common first, :data:`PER_FEATURE` at most; the most common left out where they
    cover :data:`COMPLETE` of them."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    main = [(text, n / events) for text, n in ranked if MIN_SHARE <= n / events <= 1 - MIN_SHARE][:PER_FEATURE]
    if len(main) >= 2 and sum(share for _, share in main) >= COMPLETE:
        main = main[1:]
    return [str(text) for text, _ in main]


def _numbers(count: int, positions: Sequence[int], values: Any) -> np.ndarray:
    """A numeric feature's column of a batch of ``count`` events (NaN where an event did not send it)."""
    if len(positions) == count:
        return np.asarray(values, dtype=np.float64)
    column = np.full(count, np.nan)
    column[np.asarray(positions, dtype=np.intp)] = np.asarray(values, dtype=np.float64)
    return column


def _indicator(count: int, category: str, positions: Sequence[int], values: Any) -> np.ndarray:
    """1.0 where an event of the batch has ``category``, else 0.0 (a null too)."""
    if isinstance(values, CodedTexts):
        hits = np.array([text == category for text in values.texts], dtype=np.float64)[values.codes]
    else:
        hits = np.fromiter((text == category for text in values), dtype=np.float64, count=len(values))
    if len(positions) == count:
        return hits
    column = np.zeros(count)
    column[np.asarray(positions, dtype=np.intp)] = hits
    return column
