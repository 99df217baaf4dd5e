"""Prediction batches as the drift monitor reads them: grouped by model, numbers in numpy arrays.

The detection process (:mod:`streams.drift.process`) receives every batch the worker writes. As the
sink's lists of Python objects, a batch costs more to send between processes than to run the detectors
on: every float is pickled and unpickled on its own. A :class:`PredictionFrame` holds the columns the
monitor reads as arrays (a copy of memory each way), grouped by model, and a model's features as one
matrix when every event sent the same ones: the matrix's columns are what the detectors take. Categorical
features then travel coded (:class:`~streams.batch.CodedTexts`): a code an event, each distinct text once.

>>> from driftloop.streams.batch import ColumnBatch
>>> rows = ColumnBatch("predictions", {
...     "model": ["a", "b", "a"], "model_version": [1, 1, 2], "request_id": ["r1", "r2", "r3"],
...     "ts_ms": [1000, 2000, 3000], "num.name": [["x", "y"]] * 3, "num.value": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
...     "cat.name": [[]] * 3, "cat.value": [[]] * 3, "missing": [[]] * 3,
...     "prediction": ["1", "0", "1"], "prediction_num": [1.0, 0.0, 1.0], "score": [0.9, 0.2, 0.8]})
>>> a, b = PredictionFrame.from_columns(rows).models
>>> a.model, a.version, a.request_ids, a.features.numeric_names, a.features.numeric.T.tolist()
('a', 2, ['r1', 'r3'], ['x', 'y'], [[1.0, 5.0], [2.0, 6.0]])
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from driftloop.streams.batch import (
    CodedTexts,
    ColumnBatch,
    GappedNumberRows,
    GappedTextRows,
    NumberRows,
    StackedRows,
    TextRows,
    concatenate,
)

#: The ``predictions`` columns that hold an event's features (each row: a list).
FEATURE_COLUMNS = ("num.name", "num.value", "cat.name", "cat.value", "missing")
_BY_EVENT = ("num_name", "num_value", "cat_name", "cat_value", "missing")  # the same, as FeaturesByEvent's fields
#: The ``predictions`` columns a frame is made from.
PREDICTION_INPUTS = (
    "model",
    "model_version",
    "request_id",
    "ts_ms",
    *FEATURE_COLUMNS,
    "prediction",
    "prediction_num",
    "score",
)


@dataclass(frozen=True)
class FeatureColumns:
    """The events' features, one column per feature. Where an event sent a feature null, or did not send it
    (its model sends it in other events), a numeric column holds NaN (the field rules take finite numbers
    only) and a categorical one ``None``: both are a missing value. ``null_names``: the features sent as
    null only."""

    numeric_names: list[str]
    numeric: np.ndarray  # (events, numeric features), float64, NaN: null
    categorical_names: list[str]
    categorical: list[CodedTexts]  # one column per categorical feature, an entry per event (None: null)
    null_names: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.numeric_names) + len(self.categorical_names) + len(self.null_names)

    def take(self, index: np.ndarray | slice) -> FeatureColumns:
        """The events at ``index`` (positions, or a slice), in that order."""
        categorical = [c[index] if isinstance(index, slice) else c.take(index) for c in self.categorical]
        return FeatureColumns(
            self.numeric_names, self.numeric[index], self.categorical_names, categorical, self.null_names
        )


@dataclass(frozen=True)
class FeaturesByEvent:
    """Events whose features make no columns (a feature a number in one event, a text in another): each
    event's own, as the ``predictions`` table has them."""

    num_name: list[list[str]]
    num_value: list[list[float]] | NumberRows
    cat_name: list[list[str]]
    cat_value: list[list[str]] | TextRows
    missing: list[list[str]]

    @property
    def count(self) -> int:
        """Features of the first event (sent, or sent as null)."""
        return len(self.num_name[0]) + len(self.cat_name[0]) + len(self.missing[0])


@dataclass(frozen=True)
class ModelPredictions:
    """One model's events of a batch, in the batch's order."""

    model: str
    version: int  # the newest model version among the events
    versions: np.ndarray  # int64: the version that served each event
    ts_ms: np.ndarray  # int64
    request_ids: list[str]
    score: np.ndarray  # float64, NaN where the event sent none
    prediction_num: np.ndarray  # float64, NaN where the prediction is not a number
    prediction: list[str]
    features: FeatureColumns | FeaturesByEvent
    partition: int = 0  # the Kafka partition the events were read from

    def __len__(self) -> int:
        return len(self.request_ids)

    def chunks(self, size: int) -> list[ModelPredictions]:
        """The events in runs of at most ``size``, in order (itself when it is no longer)."""
        if len(self) <= size:
            return [self]
        return [self._slice(slice(start, start + size)) for start in range(0, len(self), size)]

    @classmethod
    def joined(cls, parts: Sequence[ModelPredictions]) -> ModelPredictions | None:
        """One model's consecutive parts (of one partition) as one, in order; None where their features do not
        line up (columns of other features, or columns and events' own features)."""
        if len(parts) == 1:
            return parts[0]
        features = _joined_features([part.features for part in parts])
        if features is None:
            return None
        versions = np.concatenate([part.versions for part in parts])
        return cls(
            parts[0].model,
            max(part.version for part in parts),
            versions,
            np.concatenate([part.ts_ms for part in parts]),
            list(chain.from_iterable(part.request_ids for part in parts)),
            np.concatenate([part.score for part in parts]),
            np.concatenate([part.prediction_num for part in parts]),
            list(chain.from_iterable(part.prediction for part in parts)),
            features,
            parts[0].partition,
        )

    def _slice(self, part: slice) -> ModelPredictions:
        features: FeatureColumns | FeaturesByEvent
        if isinstance(self.features, FeatureColumns):
            features = self.features.take(part)
        else:
            g = self.features
            features = FeaturesByEvent(
                g.num_name[part], g.num_value[part], g.cat_name[part], g.cat_value[part], g.missing[part]
            )
        versions = self.versions[part]
        return ModelPredictions(
            self.model,
            int(versions.max()) if len(versions) else self.version,
            versions,
            self.ts_ms[part],
            self.request_ids[part],
            self.score[part],
            self.prediction_num[part],
            self.prediction[part],
            features,
            self.partition,
        )


@dataclass(frozen=True)
class PredictionFrame:
    """A batch of predictions for the drift monitor: each model's events (models in order of first event)."""

    models: list[ModelPredictions]

    def __len__(self) -> int:
        return sum(map(len, self.models))

    def by_partition(self) -> dict[int, PredictionFrame]:
        """The frame of each partition's events (models in order of first event)."""
        frames: dict[int, list[ModelPredictions]] = {}
        for part in self.models:
            frames.setdefault(part.partition, []).append(part)
        return {partition: PredictionFrame(parts) for partition, parts in frames.items()}

    @classmethod
    def from_columns(cls, rows: ColumnBatch, partitions: np.ndarray | None = None) -> PredictionFrame:
        """The frame of a ``predictions`` batch (the sink's columns; :data:`PREDICTION_INPUTS` are read), one
        part per model, or with ``partitions`` (the Kafka partition of each row) per model and partition."""
        if not len(rows):
            return cls([])
        versions, ts_ms = np.asarray(rows["model_version"], np.int64), np.asarray(rows["ts_ms"], np.int64)
        score, prediction_num = np.asarray(rows["score"], np.float64), np.asarray(rows["prediction_num"], np.float64)
        feature_columns = [rows[name] for name in FEATURE_COLUMNS]
        features = _features(FeaturesByEvent(*feature_columns))  # the whole batch's, when its models send the same
        models = []
        for model, partition, index in _index_by_model(rows["model"], partitions):
            if isinstance(features, FeatureColumns):
                part = features if index is None else features.take(index)
            else:  # a model's own features: those of one model that it sends in some events only are gaps
                part = _features(FeaturesByEvent(*(_take(column, index) for column in feature_columns)), one_model=True)
            models.append(
                ModelPredictions(
                    model=model,
                    version=int((versions if index is None else versions[index]).max()),
                    versions=versions if index is None else versions[index],
                    ts_ms=ts_ms if index is None else ts_ms[index],
                    request_ids=_take(rows["request_id"], index),
                    score=score if index is None else score[index],
                    prediction_num=prediction_num if index is None else prediction_num[index],
                    prediction=_take(rows["prediction"], index),
                    features=part,
                    partition=partition,
                )
            )
        return cls(models)


def _joined_features(parts: list[FeatureColumns | FeaturesByEvent]) -> FeatureColumns | FeaturesByEvent | None:
    """The features of consecutive parts as one: columns of the same features, or events' own (not matrices of
    other widths); else None."""
    first = parts[0]
    if isinstance(first, FeatureColumns):
        names = (first.numeric_names, first.categorical_names, first.null_names)
        if not all(
            isinstance(p, FeatureColumns) and (p.numeric_names, p.categorical_names, p.null_names) == names
            for p in parts
        ):
            return None
        columns: list[FeatureColumns] = parts  # type: ignore[assignment]
        return FeatureColumns(
            first.numeric_names,
            np.concatenate([p.numeric for p in columns]),
            first.categorical_names,
            [CodedTexts.joined([p.categorical[j] for p in columns]) for j in range(len(first.categorical_names))],
            first.null_names,
        )
    if not all(isinstance(p, FeaturesByEvent) for p in parts):
        return None
    own: list[FeaturesByEvent] = parts  # type: ignore[assignment]
    fields = [concatenate([getattr(p, name) for p in own]) for name in _BY_EVENT]
    if any(isinstance(values, StackedRows) for values in fields):  # matrices of other widths: kept apart
        return None
    return FeaturesByEvent(*fields)  # type: ignore[arg-type]


def _index_by_model(models: list[str], partitions: np.ndarray | None) -> list[tuple[str, int, np.ndarray | None]]:
    """Each (model, partition)'s row positions, in order (``None``: every row), models in order of first row.

    >>> [(m, p, i.tolist()) for m, p, i in _index_by_model(["a", "b", "a", "a"], np.array([3, 1, 0, 3]))]
    [('a', 0, [2]), ('a', 3, [0, 3]), ('b', 1, [1])]
    """
    codes = {model: code for code, model in enumerate(dict.fromkeys(models))}
    first = int(partitions[0]) if partitions is not None else 0
    uniform = partitions is None or bool((partitions == first).all())
    if len(codes) == 1 and uniform:
        return [(models[0], first, None)]
    code = np.fromiter(map(codes.__getitem__, models), np.intp, len(models))
    width = 1 if uniform else int(partitions.max()) + 1  # type: ignore[union-attr]
    if not uniform:
        code = code * width + partitions  # (model, partition) as one number
    order = np.argsort(code, kind="stable")
    counts = np.bincount(code)
    present = np.flatnonzero(counts)
    groups = np.split(order, np.cumsum(counts[present])[:-1])
    names = list(codes)
    return [
        (names[c // width], first if uniform else int(c % width), index)
        for c, index in zip(present.tolist(), groups, strict=True)
    ]


def _take(column: Any, index: np.ndarray | None) -> Any:
    if index is None:
        return column
    if not isinstance(column, list):  # rows kept whole (a matrix, texts a list a place)
        return NumberRows(column.matrix[index]) if type(column) is NumberRows else column.take(index)
    if len(index) == 1:
        return [column[index[0]]]
    return list(operator.itemgetter(*index.tolist())(column))


def _by_feature(rows: Sequence[list[str]]) -> Sequence[Sequence[str]]:
    """Each place's texts, of rows that all hold as many."""
    return rows.columns if isinstance(rows, TextRows) else list(zip(*rows, strict=True))


def _features(rows: FeaturesByEvent, *, one_model: bool = False) -> FeatureColumns | FeaturesByEvent:
    """The features of events, a column each where they make columns: the events sent the same names (the
    common case: a matrix as the decoder made it, its nulls gaps), or, with ``one_model``, any names (a
    feature an event did not send is missing there). Else each event's own: the models of a batch that send
    different features (each is then taken alone), a feature a number in some events and a text in others."""
    gapped = type(rows.num_value) is GappedNumberRows or type(rows.cat_value) is GappedTextRows
    columns = _features_with_nulls(rows) if gapped else _same_features(rows)
    if columns is None and one_model:
        columns = _features_of_any_names(rows)
    return rows if columns is None else columns


def _same_features(rows: FeaturesByEvent) -> FeatureColumns | None:
    """The features of events that sent the same names, the same of them null (most often none); else None."""
    numeric_names, categorical_names, missing = rows.num_name[0], rows.cat_name[0], rows.missing
    # (list.count compares in C, and at once where rows share one list of names, as the decoder makes them)
    same = (
        missing.count(missing[0]) == len(missing)
        and rows.num_name.count(numeric_names) == len(missing)
        and rows.cat_name.count(categorical_names) == len(missing)
    )
    if not same:
        return None
    width, values = len(numeric_names), rows.num_value
    if isinstance(values, NumberRows):
        numeric = values.matrix
    else:
        numeric = np.fromiter(chain.from_iterable(values), np.float64, width * len(values))
    return FeatureColumns(
        list(numeric_names),
        numeric.reshape(len(values), width),
        list(categorical_names),
        [CodedTexts.of(column) for column in _by_feature(rows.cat_value)] if categorical_names else [],
        list(missing[0]),
    )


def _features_with_nulls(rows: FeaturesByEvent) -> FeatureColumns | None:
    """The features of events that sent the same names, some null in some events (the decoder keeps their
    values with gaps, :class:`~streams.batch.GappedNumberRows`): each feature's column, its nulls marked.
    None where the rows do not say so (events that did not all send the same names)."""
    numeric_names = _place_names(rows.num_value, rows.num_name)
    categorical_names = _place_names(rows.cat_value, rows.cat_name)
    if numeric_names is None or categorical_names is None:
        return None
    patterns = {id(row): row for row in rows.missing}.values()  # the decoder's rows share a list a pattern
    always = set().union(*patterns).difference(numeric_names, categorical_names)  # null, with no column
    if not all(always.issubset(row) for row in patterns):  # null in some events, not sent by others
        return None
    null_names = [name for name in rows.missing[0] if name in always]
    values, texts = rows.num_value, rows.cat_value
    numeric = np.empty((len(rows.missing), 0)) if isinstance(values, list) else values.matrix
    categorical = [] if isinstance(texts, list) else [CodedTexts.of(column) for column in texts.columns]
    return FeatureColumns(list(numeric_names), numeric, list(categorical_names), categorical, null_names)


def _place_names(values: Any, names: list[list[str]]) -> list[str] | None:
    """The name of each place of a feature-values column: its own (rows with gaps), else the one list every
    row of a matrix (texts a list a place) shares, none for rows without items; None otherwise."""
    if type(values) in (GappedNumberRows, GappedTextRows):
        return values.names  # type: ignore[no-any-return]
    if isinstance(values, list):
        return None if any(values) else []
    return names[0] if names.count(names[0]) == len(names) else None


#: Columns for events that sent different names are made while the events sent at least one in this many
#: of the places (a bag of words, each event a few of thousands of names, would be a matrix of gaps).
_DENSEST_GAPS = 4


def _features_of_any_names(rows: FeaturesByEvent) -> FeatureColumns | None:
    """The features of one model's events that did not all send the same names (a feature left out of some
    events, or null in some): a column for each name any event sent, the others missing there. None where a
    feature is a number in one event and a text in another."""
    num_name, cat_name, count = rows.num_name, rows.cat_name, len(rows.num_name)
    numeric_names = list(dict.fromkeys(chain.from_iterable(num_name)))
    categorical_names = list(dict.fromkeys(chain.from_iterable(cat_name)))
    valued = set(numeric_names) | set(categorical_names)
    if len(valued) != len(numeric_names) + len(categorical_names):
        return None
    sent = sum(map(len, num_name)) + sum(map(len, cat_name))
    if sent * _DENSEST_GAPS < count * len(valued):  # mostly gaps (each event a few of many names): its own
        return None
    numeric = np.full((count, len(numeric_names)), np.nan)
    if numeric_names:
        events, columns = _places(num_name, numeric_names)
        numeric[events, columns] = np.fromiter(chain.from_iterable(rows.num_value), np.float64, len(events))
    categorical = []
    if categorical_names:
        events, columns = _places(cat_name, categorical_names)
        grid = np.full((len(categorical_names), count), None, dtype=object)
        grid[columns, events] = list(chain.from_iterable(rows.cat_value))
        categorical = [CodedTexts.of(column) for column in grid.tolist()]
    null_names = [name for name in dict.fromkeys(chain.from_iterable(rows.missing)) if name not in valued]
    return FeatureColumns(numeric_names, numeric, categorical_names, categorical, null_names)


def _places(names: list[list[str]], columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The event (row) and the column of each name the events sent, in order."""
    column = {name: place for place, name in enumerate(columns)}
    lengths = np.fromiter(map(len, names), np.intp, len(names))
    rows = np.repeat(np.arange(len(names)), lengths)
    return rows, np.fromiter(map(column.__getitem__, chain.from_iterable(names)), np.intp, len(rows))
