"""Batches of rows kept column by column: the form ClickHouse inserts fastest and detectors read whole.

>>> batch = ColumnBatch("outcomes", {"event_id": ["a", "b"], "label": ["1", "0"]})
>>> len(batch), batch.take([1]).columns
(2, {'event_id': ['b'], 'label': ['0']})
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class _RowsOfList(Sequence[list[Any]]):
    """What a column that stands for a list of rows shares with that list: it is unhashable, adds to
    another sequence of rows as a list, and prints as the list."""

    __slots__ = ()

    __hash__ = None  # type: ignore[assignment]  # unhashable, like the list it stands for

    def __add__(self, other: Sequence[list[Any]]) -> list[list[Any]]:
        return [*self, *other]

    def __radd__(self, other: Sequence[list[Any]]) -> list[list[Any]]:
        return [*other, *self]

    def __repr__(self) -> str:
        return repr(list(self))


class NumberRows(_RowsOfList):
    """An array column whose rows all hold as many numbers, kept as one (rows × width) float matrix.

    It reads as the list of rows it stands for (``rows[i]`` is a list, and it compares equal to the list),
    and hands numpy the matrix whole (``np.asarray(rows)``): how the ClickHouse writer and the drift
    detectors take a batch's feature values without a Python object per value.

    >>> rows = NumberRows(np.array([[1.0, 2.0], [3.0, 4.0]]))
    >>> rows[1], rows == [[1.0, 2.0], [3.0, 4.0]], np.asarray(rows).shape
    ([3.0, 4.0], True, (2, 2))
    >>> [[0.5, 0.5]] + rows[:1], ColumnBatch("t", {"v": rows}).take([1]).columns
    ([[0.5, 0.5], [1.0, 2.0]], {'v': [[3.0, 4.0]]})
    """

    __slots__ = ("matrix",)

    def __init__(self, matrix: np.ndarray) -> None:
        if matrix.ndim != 2:
            raise ValueError(f"NumberRows needs a matrix (rows × width), got {matrix.ndim} dimension(s)")
        self.matrix = matrix

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    @overload
    def __getitem__(self, index: int) -> list[float]: ...

    @overload
    def __getitem__(self, index: slice) -> NumberRows: ...

    def __getitem__(self, index: int | slice) -> list[float] | NumberRows:
        if isinstance(index, slice):
            return NumberRows(self.matrix[index])
        return self.matrix[index].tolist()  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[list[float]]:
        return iter(self.matrix.tolist())

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self.matrix if dtype is None else self.matrix.astype(dtype, copy=False)

    def lengths(self) -> np.ndarray:
        """How many numbers each row holds (an ``Array`` column's sizes on the wire)."""
        count, width = self.matrix.shape
        return np.full(count, width, dtype=np.uint64)

    def flattened(self) -> np.ndarray:
        """Every number, row after row (the order of an ``Array`` column's values on the wire)."""
        return self.matrix.reshape(-1)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NumberRows):
            return self.matrix.shape == other.matrix.shape and bool(np.array_equal(self.matrix, other.matrix))
        return isinstance(other, Sequence) and self.matrix.tolist() == list(other)


class GappedNumberRows(_RowsOfList):
    """An array column whose rows hold numbers at some of the same places: one (rows × places) float matrix
    in which NaN marks a place the row does not hold, and the name of each place.

    The rows of an envelope whose events send the same features, some of them null in some events: a row
    holds the numbers its event sent, in the event's order (``num.value``), and a null is no number. The
    field rules take finite numbers only, so NaN stands for nothing else. Kept this way, a batch with nulls
    reaches the ClickHouse writer and the drift detectors as the matrix (a feature's column, its nulls
    marked), not as a Python list a row.

    >>> rows = GappedNumberRows(np.array([[1.0, 2.0], [np.nan, 4.0]]), ["x", "y"])
    >>> rows[1], rows == [[1.0, 2.0], [4.0]], rows.lengths().tolist(), rows.flattened().tolist()
    ([4.0], True, [2, 1], [1.0, 2.0, 4.0])
    >>> rows.take([1, 1]).matrix.tolist(), rows[:1]
    ([[nan, 4.0], [nan, 4.0]], [[1.0, 2.0]])
    """

    __slots__ = ("matrix", "names")

    def __init__(self, matrix: np.ndarray, names: list[str]) -> None:
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise ValueError(f"GappedNumberRows needs a matrix (rows × {len(names)} places), got shape {matrix.shape}")
        self.matrix = matrix
        self.names = names

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    @overload
    def __getitem__(self, index: int) -> list[float]: ...

    @overload
    def __getitem__(self, index: slice) -> GappedNumberRows: ...

    def __getitem__(self, index: int | slice) -> list[float] | GappedNumberRows:
        if isinstance(index, slice):
            return GappedNumberRows(self.matrix[index], self.names)
        row = self.matrix[index]
        return row[~np.isnan(row)].tolist()  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[list[float]]:
        return (row[held].tolist() for row, held in zip(self.matrix, self.held(), strict=True))

    def held(self) -> np.ndarray:
        """Whether each row holds a number at each place (rows × places)."""
        return ~np.isnan(self.matrix)

    def take(self, indices: Sequence[int] | np.ndarray) -> GappedNumberRows:
        """The rows at ``indices``, in that order."""
        return GappedNumberRows(self.matrix[np.asarray(indices, dtype=np.intp)], self.names)

    def lengths(self) -> np.ndarray:
        """How many numbers each row holds."""
        return self.held().sum(axis=1, dtype=np.uint64)  # type: ignore[no-any-return]

    def flattened(self) -> np.ndarray:
        """Every number held, row after row."""
        return self.matrix[self.held()]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and list(self) == list(other)


class TextRows(_RowsOfList):
    """An array column whose rows all hold as many texts, kept as a list per place in the row (column-major).

    It reads as the list of rows it stands for (``rows[i]`` is a list, and it compares equal to the list), as
    :class:`NumberRows` does for numbers. The decoder gathers an envelope's categorical features a feature at
    a time; kept that way, the categorical detectors take each feature's column as it is (coded, without
    making a row a list and the rows columns again), and the ClickHouse writer takes the texts row after row
    (:meth:`flattened`).

    >>> rows = TextRows([["a", "b", "c"], ["x", "y", "z"]])
    >>> rows[1], len(rows), rows == [["a", "x"], ["b", "y"], ["c", "z"]], rows.flattened()
    (['b', 'y'], 3, True, ['a', 'x', 'b', 'y', 'c', 'z'])
    >>> rows[1:].columns, rows.take([2, 0]).columns
    ([['b', 'c'], ['y', 'z']], [['c', 'a'], ['z', 'x']])
    """

    __slots__ = ("columns",)

    def __init__(self, columns: list[list[str]]) -> None:
        if not columns:
            raise ValueError("TextRows needs at least one column (rows of no texts are a list of empty lists)")
        if len({len(column) for column in columns}) != 1:
            raise ValueError(f"TextRows needs columns of one length, got {sorted({len(c) for c in columns})}")
        self.columns = columns

    @property
    def width(self) -> int:
        """The texts a row holds."""
        return len(self.columns)

    def __len__(self) -> int:
        return len(self.columns[0])

    @overload
    def __getitem__(self, index: int) -> list[str]: ...

    @overload
    def __getitem__(self, index: slice) -> TextRows: ...

    def __getitem__(self, index: int | slice) -> list[str] | TextRows:
        if isinstance(index, slice):
            return TextRows([column[index] for column in self.columns])
        return [column[index] for column in self.columns]

    def __iter__(self) -> Iterator[list[str]]:
        return map(list, zip(*self.columns, strict=True))

    def take(self, indices: Sequence[int] | np.ndarray) -> TextRows:
        """The rows at ``indices``, in that order."""
        places = np.asarray(indices, dtype=np.intp).tolist()
        if len(places) < 2:  # itemgetter of one place gives the value itself, of none is no itemgetter
            return TextRows([[column[place] for place in places] for column in self.columns])
        pick = operator.itemgetter(*places)
        return TextRows([list(pick(column)) for column in self.columns])

    def lengths(self) -> np.ndarray:
        """How many texts each row holds (an ``Array`` column's sizes on the wire)."""
        return np.full(len(self), self.width, dtype=np.uint64)

    def flattened(self) -> list[str]:
        """Every text, row after row (the order of an ``Array`` column's values on the wire)."""
        return _row_after_row(self.columns)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TextRows):
            return self.columns == other.columns
        return isinstance(other, Sequence) and len(self) == len(other) and list(self) == list(other)


class GappedTextRows(_RowsOfList):
    """An array column whose rows hold texts at some of the same places: a list a place, ``None`` where the
    row holds no text there, and the name of each place (:class:`GappedNumberRows` for texts: an envelope's
    categorical features, some of them null in some events).

    >>> rows = GappedTextRows([["a", None, "c"], ["x", "y", None]], ["k", "j"])
    >>> rows[1], rows[2], rows.lengths().tolist(), rows.flattened(), rows.take([2]).columns
    (['y'], ['c'], [2, 1, 1], ['a', 'x', 'y', 'c'], [['c'], [None]])
    """

    __slots__ = ("columns", "names")

    def __init__(self, columns: list[list[str | None]], names: list[str]) -> None:
        if len(columns) != len(names) or not columns:
            raise ValueError(f"GappedTextRows needs a column a place ({len(names)} names), got {len(columns)}")
        if len({len(column) for column in columns}) != 1:
            raise ValueError(f"GappedTextRows needs columns of one length, got {sorted({len(c) for c in columns})}")
        self.columns = columns
        self.names = names

    def __len__(self) -> int:
        return len(self.columns[0])

    @overload
    def __getitem__(self, index: int) -> list[str]: ...

    @overload
    def __getitem__(self, index: slice) -> GappedTextRows: ...

    def __getitem__(self, index: int | slice) -> list[str] | GappedTextRows:
        if isinstance(index, slice):
            return GappedTextRows([column[index] for column in self.columns], self.names)
        return [text for column in self.columns if (text := column[index]) is not None]

    def __iter__(self) -> Iterator[list[str]]:
        return ([text for text in row if text is not None] for row in zip(*self.columns, strict=True))

    def take(self, indices: Sequence[int] | np.ndarray) -> GappedTextRows:
        """The rows at ``indices``, in that order."""
        return GappedTextRows(TextRows(self.columns).take(indices).columns, self.names)  # type: ignore[arg-type]

    def lengths(self) -> np.ndarray:
        """How many texts each row holds."""
        held = np.zeros(len(self), dtype=np.uint64)
        for column in self.columns:
            held += np.fromiter(map(_is_text, column), dtype=bool, count=len(column))
        return held

    def flattened(self) -> list[str]:
        """Every text held, row after row."""
        return list(filter(_is_text, _row_after_row(self.columns)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and list(self) == list(other)


class StackedRows(_RowsOfList):
    """An array column of consecutive parts kept whole (:class:`NumberRows`, :class:`TextRows` and their gapped
    forms) that do not join as one: parts of different widths, or of different names. A batch of models that
    send features of their own is made a shape at a time (``streams.decode``); stacked, it reaches the
    ClickHouse writer and the drift detectors as each shape's matrix, not as a Python list a row (a model's
    rows, taken, are its parts joined: :meth:`take`).

    >>> rows = StackedRows([NumberRows(np.array([[1.0, 2.0]])), NumberRows(np.array([[3.0], [4.0]]))])
    >>> rows[1], rows == [[1.0, 2.0], [3.0], [4.0]], rows.lengths().tolist(), rows.flattened().tolist()
    ([3.0], True, [2, 1, 1], [1.0, 2.0, 3.0, 4.0])
    >>> rows.take([1, 2]).matrix.tolist(), rows.take([2, 0])
    ([[3.0], [4.0]], [[4.0], [1.0, 2.0]])
    """

    __slots__ = ("parts", "starts")

    def __init__(self, parts: Sequence[NumberRows | TextRows | GappedNumberRows | GappedTextRows]) -> None:
        self.parts = list(parts)
        self.starts = np.cumsum([0, *map(len, self.parts)])  # each part's first row, and the rows in all

    def __len__(self) -> int:
        return int(self.starts[-1])

    @overload
    def __getitem__(self, index: int) -> list[Any]: ...

    @overload
    def __getitem__(self, index: slice) -> Column: ...

    def __getitem__(self, index: int | slice) -> list[Any] | Column:
        if isinstance(index, slice):
            return self.take(range(len(self))[index])
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("StackedRows index out of range")
        part = int(np.searchsorted(self.starts, index, side="right")) - 1
        return self.parts[part][index - int(self.starts[part])]  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[list[Any]]:
        return itertools.chain.from_iterable(self.parts)

    def take(self, indices: Sequence[int] | np.ndarray) -> Column:
        """The rows at ``indices``, in that order: each run of them from one part taken from it, and the runs
        joined (:func:`concatenate`): a model's rows, made a shape at a time, are one matrix again."""
        places = np.asarray(indices, dtype=np.intp)
        if not len(places):
            return []
        parts = np.searchsorted(self.starts, places, side="right") - 1
        breaks = np.flatnonzero(np.diff(parts)) + 1
        runs = zip(np.split(places, breaks), parts[np.r_[0, breaks]].tolist(), strict=True)
        return concatenate([_take(self.parts[p], run - self.starts[p]) for run, p in runs])

    def lengths(self) -> np.ndarray:
        """How many items each row holds."""
        return np.concatenate([part.lengths() for part in self.parts])

    def flattened(self) -> np.ndarray | list[str]:
        """Every item held, row after row."""
        flat = [part.flattened() for part in self.parts]
        if all(isinstance(items, np.ndarray) for items in flat):
            return np.concatenate(flat)  # type: ignore[arg-type]
        return list(itertools.chain.from_iterable(flat))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and list(self) == list(other)


_WHOLE = (NumberRows, TextRows, GappedNumberRows, GappedTextRows)


def concatenate(parts: Sequence[Column]) -> Column:
    """One column of consecutive parts: a matrix (or texts a list a place) still where every part is one of one
    width (of the same names, where the parts have gaps); parts kept whole that are not, stacked
    (:class:`StackedRows`); else a list of rows."""
    if len(parts) <= 1:
        return parts[0] if parts else []
    kind = type(parts[0])
    if kind is NumberRows and all(type(part) is NumberRows for part in parts):
        if len({part.matrix.shape[1] for part in parts}) == 1:  # type: ignore[union-attr]
            return NumberRows(np.concatenate([part.matrix for part in parts]))  # type: ignore[union-attr]
    elif kind is TextRows and all(type(part) is TextRows for part in parts):
        pieces = [part.columns for part in parts]  # type: ignore[union-attr]
        if len(set(map(len, pieces))) == 1:
            return TextRows([list(itertools.chain.from_iterable(place)) for place in zip(*pieces, strict=True)])
    elif kind in (GappedNumberRows, GappedTextRows) and all(type(part) is kind for part in parts):
        names = parts[0].names  # type: ignore[union-attr]
        if all(part.names == names for part in parts):  # type: ignore[union-attr]
            if kind is GappedNumberRows:
                return GappedNumberRows(np.concatenate([part.matrix for part in parts]), names)  # type: ignore[union-attr]
            joined = [
                list(itertools.chain.from_iterable(place)) for place in zip(*(p.columns for p in parts), strict=True)
            ]  # type: ignore[union-attr]
            return GappedTextRows(joined, names)
    whole = [piece for part in parts for piece in (part.parts if type(part) is StackedRows else [part])]
    if all(type(part) in _WHOLE for part in whole):
        return StackedRows(whole)  # type: ignore[arg-type]
    return list(itertools.chain.from_iterable(parts))


_is_text = functools.partial(operator.is_not, None)  # in C: a place that holds a text (not None)


def _row_after_row(columns: Sequence[list[Any]]) -> list[Any]:
    """The items of columns of one length, row after row."""
    width = len(columns)
    flat: list[Any] = [None] * (width * len(columns[0]))
    for place, column in enumerate(columns):
        flat[place::width] = column
    return flat


class CodedTexts(Sequence[str]):
    """A column of texts kept as its distinct texts and, for each row, the place of its text among them.

    It reads as the list of texts it stands for (``column[i]`` is a text, and it compares equal to the list),
    and costs a code a row to send between processes instead of a string; a categorical detector counts codes
    and looks each distinct text up once (``streams.drift.categorical``).

    >>> column = CodedTexts.of(["b", "a", "b", "b"])
    >>> column.texts, column.codes.tolist(), column[2], column == ["b", "a", "b", "b"]
    (['b', 'a'], [0, 1, 0, 0], 'b', True)
    >>> column[1:].take([2, 0])
    ['b', 'a']
    """

    __slots__ = ("codes", "texts")

    def __init__(self, texts: list[str], codes: np.ndarray) -> None:
        self.texts = texts
        self.codes = codes

    @classmethod
    def of(cls, values: Sequence[str]) -> CodedTexts:
        """``values`` coded, texts in order of first appearance."""
        texts = list(dict.fromkeys(values))
        place = dict(zip(texts, range(len(texts)), strict=True))
        return cls(texts, np.fromiter(map(place.__getitem__, values), np.int32, len(values)))

    def __len__(self) -> int:
        return len(self.codes)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> CodedTexts: ...

    def __getitem__(self, index: int | slice) -> str | CodedTexts:
        if isinstance(index, slice):
            return CodedTexts(self.texts, self.codes[index])
        return self.texts[self.codes[index]]

    def __iter__(self) -> Iterator[str]:
        return map(self.texts.__getitem__, self.codes.tolist())

    def take(self, indices: Sequence[int] | np.ndarray) -> CodedTexts:
        """The rows at ``indices``, in that order."""
        return CodedTexts(self.texts, self.codes[np.asarray(indices, dtype=np.intp)])

    @classmethod
    def joined(cls, parts: Sequence[CodedTexts]) -> CodedTexts:
        """Consecutive columns as one: their texts in order of first appearance, each part's codes renumbered.

        >>> joined = CodedTexts.joined([CodedTexts.of(["b", "a"]), CodedTexts.of(["c", "b", None])])
        >>> joined.texts, joined.codes.tolist(), joined == ["b", "a", "c", "b", None]
        (['b', 'a', 'c', None], [0, 1, 2, 0, 3], True)
        """
        if len(parts) == 1:
            return parts[0]
        texts = dict.fromkeys(itertools.chain.from_iterable(part.texts for part in parts))
        place = {text: code for code, text in enumerate(texts)}
        codes = [np.array([place[text] for text in part.texts], dtype=np.int32)[part.codes] for part in parts]
        return cls(list(place), np.concatenate(codes) if codes else np.empty(0, np.int32))

    def without_nulls(self) -> tuple[np.ndarray, CodedTexts]:
        """Which rows are ``None`` (a null), and the other rows, coded among the texts but ``None``.

        >>> nulls, sent = CodedTexts.of(["a", None, "b", "a"]).without_nulls()
        >>> nulls.tolist(), sent.texts, sent.codes.tolist()
        ([False, True, False, False], ['a', 'b'], [0, 1, 0])
        """
        if None not in self.texts:
            return np.zeros(len(self.codes), dtype=bool), self
        code = self.texts.index(None)
        nulls = self.codes == code
        codes = self.codes[~nulls]
        codes -= codes > code
        return nulls, CodedTexts(self.texts[:code] + self.texts[code + 1 :], codes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # unhashable, like the list it stands for

    def __repr__(self) -> str:
        return repr(list(self))


Column = list[Any] | NumberRows | TextRows | GappedNumberRows | GappedTextRows | StackedRows


@dataclass(frozen=True)
class ColumnBatch:
    """Rows for one ClickHouse table, one column at a time (names as in the table, ``num.name`` included):
    a list per column, or for feature values in rows of one width a :class:`NumberRows` (numbers) or a
    :class:`TextRows` (texts), in rows with nulls a :class:`GappedNumberRows` or a :class:`GappedTextRows`."""

    table: str
    columns: dict[str, Column]

    def __post_init__(self) -> None:
        lengths = {len(values) for values in self.columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"{self.table}: columns of different lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, name: str) -> Column:
        return self.columns[name]

    def take(self, indices: Sequence[int]) -> ColumnBatch:
        """The rows at ``indices``, in that order (a :class:`NumberRows` column stays one matrix)."""
        return ColumnBatch(self.table, {k: _take(v, indices) for k, v in self.columns.items()})

    def concat(self, other: ColumnBatch) -> ColumnBatch:
        if other.table != self.table or other.columns.keys() != self.columns.keys():
            raise ValueError(f"cannot concatenate {other.table} rows to {self.table} rows")
        return ColumnBatch(self.table, {k: v + other.columns[k] for k, v in self.columns.items()})

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame of the batch (nested columns stay lists per row)."""
        import pandas as pd  # the event SDK needs no pandas; the tools that want frames have it

        return pd.DataFrame({k: v if isinstance(v, list) else list(v) for k, v in self.columns.items()})

    @classmethod
    def empty(cls, table: str, names: Sequence[str]) -> ColumnBatch:
        return cls(table, {name: [] for name in names})


#: (reason prefix, class) for dead letters; any other reason is an event that broke a field rule: ``invalid_event``.
REASON_CLASSES = (
    ("unreadable record batch", "unreadable_batch"),
    ("empty message", "empty"),
    ("message of ", "too_large"),
    ("not UTF-8", "not_utf8"),
    ("malformed JSON", "malformed_json"),
    ("expected a JSON object", "not_an_event"),
    ("envelope ", "not_an_event"),
    ("ClickHouse refused", "refused_by_clickhouse"),
)


@dataclass(frozen=True)
class DeadLetter:
    """A message, or one event of an envelope, that broke the event contract: the original bytes and why.

    >>> DeadLetter("malformed JSON: Expecting value", b"{", "predictions", 0, 7).reason_class
    'malformed_json'
    """

    reason: str
    original: bytes
    topic: str
    partition: int
    offset: int
    index: int = -1  # the event's position in an envelope; -1: the whole message
    last_offset: int | None = None  # an unreadable record batch: the last offset of the range from ``offset``

    @property
    def reason_class(self) -> str:
        """The kind of problem, one of a few (a metric's label): see :data:`REASON_CLASSES`."""
        return next((name for prefix, name in REASON_CLASSES if self.reason.startswith(prefix)), "invalid_event")

    def to_json(self, max_original: int = 128 * 1024) -> dict[str, Any]:
        """The dead-letter topic's record: reason, source coordinates and the original (text and base64).

        An original over ``max_original`` bytes is cut there (``truncated``), so that the record stays under
        the broker's message size; ``original_size`` and ``original_sha256`` still identify the whole.
        """
        kept = self.original[:max_original]
        try:
            text: str | None = kept.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {
            "reason": self.reason,
            "source": {"topic": self.topic, "partition": self.partition, "offset": self.offset}
            | ({} if self.last_offset is None else {"last_offset": self.last_offset}),
            "index": None if self.index < 0 else self.index,
            "original": text,
            "original_base64": base64.b64encode(kept).decode("ascii"),
            "original_size": len(self.original),
            "original_sha256": hashlib.sha256(self.original).hexdigest(),
            "truncated": len(kept) < len(self.original),
        }


class UnreadableRecords(bytes):
    """The value the streams worker's consumer hands on for each offset of a record batch it cannot read.

    A batch the consumer cannot decompress or check (an unknown codec, a missing codec library, a broken
    CRC) is skipped, and every offset in it arrives as a message whose value is one shared instance of this
    class (``streams.compat.aiokafka``): the offsets go through the worker like any other, so they are
    acknowledged only once their dead letter is written. Its bytes say what happened; no producer can send
    one (a Kafka value arrives as plain ``bytes``).

    >>> value = UnreadableRecords.describe("driftloop.predictions", 2, 100, 149, "CorruptRecordException: bad CRC")
    >>> value.dead_letter().offset, value.dead_letter().last_offset, value.offsets
    (100, 149, 50)
    >>> bytes(value)
    b'unreadable record batch: offsets 100-149 of driftloop.predictions[2]: CorruptRecordException: bad CRC'
    """

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    reason: str

    @classmethod
    def describe(cls, topic: str, partition: int, first: int, last: int, reason: str) -> UnreadableRecords:
        value = cls(f"unreadable record batch: offsets {first}-{last} of {topic}[{partition}]: {reason}".encode())
        value.topic, value.partition, value.first_offset, value.last_offset = topic, partition, first, last
        value.reason = reason
        return value

    @property
    def offsets(self) -> int:
        return self.last_offset - self.first_offset + 1

    def dead_letter(self) -> DeadLetter:
        """One dead letter for the whole range (keyed by its first offset, so a re-delivery replaces it)."""
        return DeadLetter(
            f"unreadable record batch ({self.offsets} offsets): {self.reason}",
            bytes(self),
            self.topic,
            self.partition,
            self.first_offset,
            last_offset=self.last_offset,
        )

    def __reduce__(self) -> tuple[Any, ...]:  # pickled whole on the way to the ingestion process
        return (UnreadableRecords.describe, (self.topic, self.partition, self.first_offset, self.last_offset,
                                             self.reason))  # fmt: skip


class NoEvent(bytes):
    """The value the streams worker's consumer hands on for each offset that holds no producer's event: a
    transaction's commit or abort marker, and each record of an aborted transaction (the worker reads
    committed records only). Handed on, not left out, so that these offsets are acknowledged with the
    records around them and commits go past them; decoding drops them. No producer can send one (a Kafka
    value arrives as plain ``bytes``).

    >>> bytes(TRANSACTION_MARKER), bytes(ABORTED)
    (b'transaction marker', b'aborted transaction')
    """


#: A transaction's commit or abort marker.
TRANSACTION_MARKER = NoEvent(b"transaction marker")
#: A record of an aborted transaction.
ABORTED = NoEvent(b"aborted transaction")
#: The types of value a consumer hands on that are no producer's message.
NOT_MESSAGES = frozenset({UnreadableRecords, NoEvent})


@dataclass
class Decoded:
    """What decoding a list of messages gave: good rows, dead letters for the rest, and for each row the
    index of the message it came from."""

    rows: ColumnBatch
    dead: list[DeadLetter] = field(default_factory=list)
    origins: list[int] = field(default_factory=list)


def _take(column: Column, indices: Sequence[int] | np.ndarray) -> Column:
    if type(column) is NumberRows:
        return NumberRows(column.matrix[np.asarray(indices, dtype=np.intp)])
    if type(column) in (TextRows, GappedNumberRows, GappedTextRows, StackedRows):
        return column.take(indices)  # type: ignore[union-attr]
    return [column[i] for i in indices]


def served_only(rows: ColumnBatch) -> ColumnBatch:
    """The rows whose answer reached the caller: a shadow version's predictions (``served`` 0) are not the
    traffic, and its errors are judged by the release controller, not by the drift detectors."""
    served = rows.columns.get("served")
    if served is None or all(served):
        return rows
    return rows.take([i for i, flag in enumerate(served) if flag])


def by_partition(rows: ColumnBatch, partitions: Sequence[int]) -> list[tuple[int, ColumnBatch]]:
    """``rows`` split by the Kafka partition each was read from (``partitions[i]``), in order of first row.

    >>> rows = ColumnBatch("t", {"x": [1, 2, 3]})
    >>> [(p, part["x"]) for p, part in by_partition(rows, [4, 0, 4])]
    [(4, [1, 3]), (0, [2])]
    """
    first = partitions[0] if len(partitions) else 0
    if all(p == first for p in partitions):
        return [(first, rows)] if len(rows) else []
    groups: dict[int, list[int]] = {}
    for i, partition in enumerate(partitions):
        groups.setdefault(partition, []).append(i)
    return [(partition, rows.take(indices)) for partition, indices in groups.items()]
