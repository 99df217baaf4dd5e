"""Preprocessing fitted on a training window: standardised numeric features, indexed categories, classes.

The state is plain JSON (saved next to the weights), never pickled.

>>> p = Preprocessor.fit({"x": [1.0, 3.0, float("nan")]}, {"c": ["a", "b", "a"]}, ["yes", "no", "yes"], "binary")
>>> p.transform({"x": [1.0, 5.0]}, {"c": ["b", "zzz"]})[1].tolist()  # unknown category -> 0
[[2], [0]]
>>> p.classes, p.encode_labels(["no", "yes"]).tolist()
(('no', 'yes'), [0, 1])
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

    @classmethod
    def fit(
        cls,
        numeric: Mapping[str, Sequence[float]],
        categorical: Mapping[str, Sequence[str]],
        labels: Sequence[Any],
        task: str,
        *,
        max_categories: int = 1000,
    ) -> Preprocessor:
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
        return cls(task, names, tuple(means), tuple(stds), cats, tuple(vocabularies), classes)

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
        if self.task == "regression":
            return np.asarray(labels, dtype=np.float32)
        index = {c: i for i, c in enumerate(self.classes)}
        return np.asarray([index.get(str(label), -1) for label in labels], dtype=np.int64)

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
        )


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
