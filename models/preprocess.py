"""Preprocessing fitted on a training window: standardised numeric features, indexed categories, classes, and
a regression's target standardised (the network learns ``(y - mean) / std``; :meth:`Preprocessor.values` turns
its outputs back into the target's unit).

The state is plain JSON (saved next to the weights), never pickled.

>>> p = Preprocessor.fit({"x": [1.0, 3.0, float("nan")]}, {"c": ["a", "b", "a"]}, ["yes", "no", "yes"], "binary")
>>> p.transform({"x": [1.0, 5.0]}, {"c": ["b", "zzz"]})[1].tolist()  # unknown category -> 0
[[2], [0]]
>>> p.classes, p.encode_labels(["no", "yes"]).tolist()
(('no', 'yes'), [0, 1])
>>> r = Preprocessor.fit({"x": [1.0, 2.0]}, {}, ["250000", "350000"], "regression", targets=[250000.0, 350000.0])
>>> r.encode_labels([250000.0, 400000.0]).tolist(), r.values(np.array([1.0])).tolist()
([-1.0, 2.0], [350000.0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from driftloop.streams.event_rules import boolean_text


@dataclass(frozen=True)
class Preprocessor:
    """Turns column data into the tensors a network takes: numbers standardised, NaN as 0, categories as ids."""

    task: str
    numeric: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    categorical: tuple[str, ...]
    vocabularies: tuple[tuple[str, ...], ...]  # id 0 is "unknown"; a category's id is its index + 1
    classes: tuple[str, ...]  # empty for regression
    # a regression's target as the network learns it, (y - target_mean) / target_std; versions trained before
    # driftloop standardised it learnt y itself (the defaults)
    target_mean: float = 0.0
    target_std: float = 1.0
    # a binary model's decision threshold: the ``positive`` class is predicted where its probability reaches it
    # (chosen on the validation split for F1: retrain.evaluation.with_decision_threshold); None: the most probable
    threshold: float | None = None
    positive: str = ""

    @classmethod
    def fit(
        cls,
        numeric: Mapping[str, Sequence[float]],
        categorical: Mapping[str, Sequence[str]],
        labels: Sequence[Any],
        task: str,
        *,
        targets: Sequence[float] | None = None,
        max_categories: int = 1000,
    ) -> Preprocessor:
        """Fitted on a training split. ``targets``: a regression's labels as numbers, which the network then learns
        standardised (without, it learns them as they are: a target in the hundreds of thousands, a house's price,
        is out of reach of a network whose outputs start near 0, and past float16 on a GPU)."""
        names = tuple(sorted(numeric))
        means, stds = [], []
        for name in names:
            values = np.asarray(numeric[name], dtype=np.float64)
            finite = values[np.isfinite(values)]
            means.append(float(finite.mean()) if finite.size else 0.0)
            stds.append(float(finite.std()) if finite.size > 1 and finite.std() > 1e-12 else 1.0)
        cats = tuple(sorted(categorical))
        vocabularies = []
        for name in cats:
            values, counts = np.unique(
                np.asarray(list(map(category_text, categorical[name])), dtype=str), return_counts=True
            )
            keep = values[np.argsort(-counts, kind="stable")[:max_categories]]
            vocabularies.append(tuple(sorted(str(v) for v in keep)))
        classes = () if task == "regression" else tuple(sorted({str(label) for label in labels}))
        target_mean, target_std = (
            _location_and_scale(targets) if task == "regression" and targets is not None else (0.0, 1.0)
        )
        return cls(task, names, tuple(means), tuple(stds), cats, tuple(vocabularies), classes, target_mean, target_std)

    @property
    def n_outputs(self) -> int:
        return 1 if self.task == "regression" else max(len(self.classes), 2)

    def transform(
        self, numeric: Mapping[str, Sequence[float]], categorical: Mapping[str, Sequence[Any]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(float32 rows × numeric features, int64 rows × categorical features); missing columns count as NaN,
        categories are looked up as :func:`category_text` gives them."""
        n = _rows(numeric, categorical)
        x = np.zeros((n, len(self.numeric)), dtype=np.float32)
        for j, name in enumerate(self.numeric):
            values = np.asarray(numeric.get(name, np.full(n, np.nan)), dtype=np.float64)
            standardised = (values - self.means[j]) / self.stds[j]
            x[:, j] = np.where(np.isfinite(standardised), standardised, 0.0)
        ids = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, name in enumerate(self.categorical):
            lookup = {value: i + 1 for i, value in enumerate(self.vocabularies[j])}
            column = categorical.get(name)
            if column is not None:
                ids[:, j] = [lookup.get(category_text(v), 0) for v in column]
        return x, ids

    def encode_labels(self, labels: Sequence[Any]) -> np.ndarray:
        """Class indices (-1 for a class training did not see), or a regression's targets as the network learns
        them."""
        if self.task == "regression":
            return ((np.asarray(labels, dtype=np.float64) - self.target_mean) / self.target_std).astype(np.float32)
        index = {c: i for i, c in enumerate(self.classes)}
        return np.asarray([index.get(str(label), -1) for label in labels], dtype=np.int64)

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """Each row's predicted class (its index in ``classes``) from the class probabilities ``[rows, classes]``:
        the most probable, or for a binary model with a threshold, the positive class where its probability
        reaches the threshold.

        >>> pre = Preprocessor("binary", (), (), (), (), (), ("fraud", "legit"), threshold=0.2, positive="fraud")
        >>> pre.decide(np.array([[0.3, 0.7], [0.1, 0.9]])).tolist()
        [0, 1]
        """
        if self.threshold is None or len(self.classes) != 2:
            return probabilities[:, : max(len(self.classes), 1)].argmax(axis=1)
        column = self.classes.index(self.positive)
        return np.where(probabilities[:, column] >= self.threshold, column, 1 - column)

    def values(self, outputs: np.ndarray) -> np.ndarray:
        """A regression network's outputs as values in the target's unit (float64)."""
        return np.asarray(outputs, dtype=np.float64) * self.target_std + self.target_mean

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Preprocessor:
        return cls(
            task=str(data["task"]),
            numeric=tuple(data["numeric"]),
            means=tuple(float(v) for v in data["means"]),
            stds=tuple(float(v) for v in data["stds"]),
            categorical=tuple(data["categorical"]),
            vocabularies=tuple(tuple(v) for v in data["vocabularies"]),
            classes=tuple(data["classes"]),
            target_mean=float(data.get("target_mean", 0.0)),
            target_std=float(data.get("target_std", 1.0)),
            threshold=None if data.get("threshold") is None else float(data["threshold"]),
            positive=str(data.get("positive", "")),
        )


def _location_and_scale(targets: Sequence[float]) -> tuple[float, float]:
    """The finite targets' mean and standard deviation (1 where they do not vary)."""
    values = np.asarray(targets, dtype=np.float64)
    finite = values[np.isfinite(values)]
    mean, std = (float(finite.mean()), float(finite.std())) if finite.size else (0.0, 0.0)
    if not (np.isfinite(mean) and np.isfinite(std)):  # past float range: learnt as they are (and diverging, said)
        return 0.0, 1.0
    return mean, std if std > 1e-12 * max(1.0, abs(mean)) else 1.0


def category_text(value: Any) -> str:
    """A categorical value as the events store it: a boolean as JSON spells it ("true", "false"), anything
    else as its text. A serving client's ``True`` is then the category its model was trained on.

    >>> category_text(True), category_text(np.bool_(False)), category_text("gold"), category_text(3)
    ('true', 'false', 'gold', '3')
    """
    if isinstance(value, bool | np.bool_):
        return boolean_text(bool(value))
    return str(value)


def _rows(numeric: Mapping[str, Sequence[float]], categorical: Mapping[str, Sequence[str]]) -> int:
    for columns in (numeric, categorical):
        for values in columns.values():
            return len(values)
    return 0
