"""Decode and validate Kafka messages into column batches, in one pass per batch of messages.

A message value is UTF-8 JSON: one event object, or an envelope ``{"events": [...]}`` (or what other clients
frame as one: :mod:`streams.framing`). Good events become
rows; a message or event that breaks the contract (docs/events.md) becomes a :class:`DeadLetter` with a
reason, and decoding goes on: a bad record never stops a worker.

Two paths give the same result (``tests/streams/test_decode_fast_path.py`` holds them to it): a message
that fits the contract's msgspec types whole (:mod:`streams.event_types`, parsed and type-checked in C) is
turned into rows with the few checks left (:mod:`streams.decode_fast`); any other message is judged event by
event by the field rules (:mod:`streams.event_rules`), which say what is wrong.

>>> msgs = [Incoming(b'{"model": "m", "request_id": "r1", "ts": 1700000000, "features": {"x": 1.5}, '
...                  b'"prediction": 1}', "p", 0, 7), Incoming(b'{"model": "m"', "p", 0, 8)]
>>> decoded = decode_predictions(msgs)
>>> decoded.rows["num.value"], decoded.rows["prediction"]
([[1.5]], ['1'])
>>> decoded.dead[0].reason, decoded.dead[0].offset
("malformed JSON: Expecting ',' delimiter: line 1 column 14 (char 13)", 8)
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from driftloop.infra.contract import EventError
from driftloop.streams.batch import (
    NOT_MESSAGES,
    Column,
    ColumnBatch,
    DeadLetter,
    Decoded,
    GappedNumberRows,
    GappedTextRows,
    NoEvent,
    NumberRows,
    TextRows,
    UnreadableRecords,
    concatenate,
)
from driftloop.streams.decode_fast import (
    OUTCOMES,
    PREDICTIONS,
    FastPath,
    Interned,
    Parsed,
    Row,
    prediction_columns,
)
from driftloop.streams.event_rules import (
    OUTCOME_COLUMNS,
    PREDICTION_COLUMNS,
    OutcomeRow,
    PredictionRow,
    kind_of,
    outcome_row,
    prediction_row,
    validate_outcome,
    validate_prediction,
)
from driftloop.streams.event_types import NumericPrediction, spells_surrogate
from driftloop.streams.framing import as_envelope, is_framed, json_lines, unframed

__all__ = [
    "OUTCOME_COLUMNS",
    "PREDICTION_COLUMNS",
    "Decoded",
    "EventError",
    "Incoming",
    "OutcomeRow",
    "PredictionRow",
    "decode_outcomes",
    "decode_predictions",
    "event_sources",
    "validate_outcome",
    "validate_prediction",
]

MAX_MESSAGE_BYTES = 1 << 20


class Incoming(NamedTuple):
    """One Kafka message as the decoder needs it."""

    value: bytes
    topic: str
    partition: int
    offset: int


def decode_predictions(messages: Iterable[Incoming], *, max_bytes: int = MAX_MESSAGE_BYTES) -> Decoded:
    """Prediction events of ``messages`` as a ``predictions`` batch, and dead letters for the rest."""
    return _decode(messages, "predictions", PREDICTION_COLUMNS, PREDICTIONS, prediction_row, max_bytes)


def decode_outcomes(messages: Iterable[Incoming], *, max_bytes: int = MAX_MESSAGE_BYTES) -> Decoded:
    """Outcome events of ``messages`` as an ``outcomes`` batch, and dead letters for the rest."""
    return _decode(messages, "outcomes", OUTCOME_COLUMNS, OUTCOMES, outcome_row, max_bytes)


def event_sources(message: Incoming, table: str, *, max_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[int, bytes]]:
    """For each row that ``message`` decodes to (in order), where it came from: its index in the envelope (-1
    for a message of one event) and the event's bytes. ``table``: ``predictions`` or ``outcomes``.

    For the rare row that ClickHouse refuses: its dead letter names the one event, not the whole envelope.

    >>> envelope = b'{"events": [{"model": "m"}, {"model": "m", "request_id": "r", "ts": 1, "label": 0}]}'
    >>> event_sources(Incoming(envelope, "o", 0, 0), "outcomes")
    [(1, b'{"model": "m", "request_id": "r", "ts": 1, "label": 0}')]
    """
    to_row = {"predictions": prediction_row, "outcomes": outcome_row}[table]
    sources: list[tuple[int, bytes]] = []
    for index, event, problem in _events(message.value, max_bytes):
        if problem is not None:
            continue
        try:
            to_row(event, -1)
        except EventError:
            continue
        sources.append((index, message.value if index < 0 else _reencode(event)))
    return sources


#: Messages of one event each are parsed this many at once; a run that does not fit is halved, down to
#: :data:`SHORTEST_RUN`, below which each message is parsed alone.
RUN, SHORTEST_RUN = 1024, 8
#: Numeric events gathered from messages become columns once there are this many: while their objects are
#: still in a core's cache, and freed for the next messages' to reuse (made columns a batch at once, decoding
#: cost 20 to 26 % more: every event of the batch alive at once, in memory the process had to map anew).
CLOSE_AT = 256
#: Messages of many models (each model's gathered apart) are gathered up to this many events in all.
GATHER_AT = 8192


def _decode(
    messages: Iterable[Incoming],
    table: str,
    names: tuple[str, ...],
    fast: FastPath,
    to_row: Callable[[dict[str, Any], int], Row],
    max_bytes: int,
) -> Decoded:
    """Runs of messages of one event each through the typed fast path at once, any other message through it
    when it fits it whole (runs of envelopes of one shape together), else event by event through the field
    rules below, which name what is wrong."""
    batch = messages if isinstance(messages, list) else list(messages)
    pairs = [("num.name", "num.value"), ("cat.name", "cat.value")]
    named_values = tuple((names.index(n), names.index(v)) for n, v in pairs if n in names)
    out = Columns(len(names) + 1, named_values)  # the table's columns and each row's message position
    dead: list[DeadLetter] = []
    unreadable: UnreadableRecords | None = None
    wider_first: dict[bytes, int] = {}  # models whose messages are parsed with the wider type first

    def one(position: int, message: Incoming) -> None:
        value = message.value
        parsed = (
            fast.parse(value, wider_first)
            if value is not None and len(value) <= max_bytes and type(value) not in NOT_MESSAGES
            else None
        )
        if parsed is None and type(value) is bytes and len(value) <= max_bytes:
            framed = as_envelope(value)  # a Schema Registry header, a byte order mark, an array, JSON lines
            parsed = None if framed is None else fast.parse(framed, wider_first)
        if parsed is not None and parsed.shape is not None:
            gathered.add(position, parsed, message)  # added with the batch's other messages of its shape
            return
        if parsed is None or gathered.holds(parsed):
            gathered.close()  # what is gathered of its models first
        if parsed is None or not fast.add(parsed, [position] * len(parsed.events), out):
            by_rules(position, message)

    def by_rules(position: int, message: Incoming) -> None:
        nonlocal unreadable
        value = message.value
        if type(value) is NoEvent:  # a transaction's marker, or a record of an aborted transaction
            return
        if type(value) is UnreadableRecords:  # an offset of a record batch the consumer could not read
            if value is not unreadable:  # the batch's offsets share one value: one dead letter for them
                unreadable = value
                dead.append(value.dead_letter())
            return
        for index, event, problem in _events(value, max_bytes):
            if problem is None:
                try:
                    out.add_row(to_row(event, position))
                    continue
                except EventError as exc:
                    problem = str(exc)
            original = message.value if index < 0 else _reencode(event)
            dead.append(DeadLetter(problem, original, message.topic, message.partition, message.offset, index))

    gathered = _Gathered(fast, out, by_rules)

    def run(start: int, stop: int) -> None:
        """The messages from ``start`` to ``stop``: at once, else in halves, down to one at a time. (Halves
        wait in a list, not in calls of itself: a nested function that calls itself is a reference cycle,
        and everything the batch decoded would then wait for the garbage collector to be freed.)"""
        halves = [(start, stop)]
        while halves:
            start, stop = halves.pop()
            values = [message.value for message in batch[start:stop]]
            if is_framed(values[0]):  # a Schema Registry serializer's topic: each message framed
                values = [unframed(v).body if type(v) is bytes else v for v in values]
            if _single_events(values, max_bytes):
                gathered.close()
                if fast.add_single(values, start, out):
                    continue
                if stop - start >= 2 * SHORTEST_RUN:
                    middle = (start + stop) // 2
                    halves += [(middle, stop), (start, middle)]  # the first half first
                    continue
            for position in range(start, stop):
                one(position, batch[position])

    for start in range(0, len(batch), RUN):
        run(start, min(start + RUN, len(batch)))
    gathered.close()
    columns = out.finish()
    origins = columns.pop()
    return Decoded(ColumnBatch(table, dict(zip(names, columns, strict=True))), dead, origins)


@dataclass
class _Shape:
    """The messages of one shape gathered, and their events."""

    messages: list[tuple[int, Parsed, Incoming]] = field(default_factory=list)
    events: int = 0


class _Gathered:
    """Messages whose events share a shape (:class:`Parsed`: a prediction message's models, every outcome message
    one), gathered to be added to the batch together: each shape's when :data:`CLOSE_AT` of its events are
    gathered, all when :data:`GATHER_AT` are, or when a message of a model gathered is added otherwise. A
    model's events keep their order (its message of another shape, an envelope of two models, closes what is
    gathered first); the models of a batch interleave as the shapes close."""

    def __init__(self, fast: FastPath, out: Columns, by_rules: Callable[[int, Incoming], None]) -> None:
        self.fast, self.out, self.by_rules = fast, out, by_rules
        self.shapes: dict[Hashable, _Shape] = {}
        self.events = 0  # gathered, of every shape
        self.model_shapes: dict[str, Hashable] = {}  # each model's shape since all was last added

    def add(self, position: int, parsed: Parsed, message: Incoming) -> None:
        shape, seen, models = parsed.shape, self.model_shapes, parsed.models()
        if any(seen.get(model, shape) != shape for model in models):
            self.close()  # a model's messages of two shapes: the first added first
            seen = self.model_shapes
        seen.update(dict.fromkeys(models, shape))
        gathered = self.shapes.get(shape)
        if gathered is None:
            gathered = self.shapes[shape] = _Shape()
        gathered.messages.append((position, parsed, message))
        gathered.events += len(parsed.events)
        self.events += len(parsed.events)
        if gathered.events >= CLOSE_AT:
            del self.shapes[shape]
            self.events -= gathered.events
            self._add(gathered.messages)
        elif self.events >= GATHER_AT:
            self.close()

    def holds(self, parsed: Parsed) -> bool:
        """Whether messages of any of the models of ``parsed`` are gathered."""
        return bool(self.model_shapes) and not self.model_shapes.keys().isdisjoint(parsed.models())

    def close(self) -> None:
        """Adds everything gathered to the batch."""
        shapes = self.shapes
        self.shapes, self.events, self.model_shapes = {}, 0, {}
        for gathered in shapes.values():
            self._add(gathered.messages)

    def _add(self, messages: list[tuple[int, Parsed, Incoming]]) -> None:
        """Messages of one shape as columns at once; else (a feature a number in some messages and a text in
        others, names in two orders, an event for the field rules) each alone, in order."""
        add = self.fast.add
        if len(messages) > 1:
            events = list(itertools.chain.from_iterable(parsed.events for _, parsed, _ in messages))
            names = list(itertools.chain.from_iterable(parsed.names for _, parsed, _ in messages))
            positions = [position for position, parsed, _ in messages for _ in parsed.events]
            if add(messages[0][1]._replace(events=events, names=names), positions, self.out, rows=False):
                return
        for position, parsed, message in messages:
            if not add(parsed, [position] * len(parsed.events), self.out):
                self.by_rules(position, message)


def _single_events(values: list[Any], max_bytes: int) -> bool:
    """Whether ``values`` may be messages of one event each, worth parsing at once: several, all bytes under the
    limit, and the first no envelope (a topic of envelopes). An envelope further on fails the run's parse,
    which looks for one in the values joined (each value scanned alone cost 2.5 times as much)."""
    return (
        len(values) > 1
        and type(values[0]) is bytes
        and b'"events"' not in values[0]
        and all(type(value) is bytes for value in values)  # not None, nor a batch the consumer could not read
        and max(map(len, values)) <= max_bytes
    )


class Columns:
    """A batch's columns, gathered in message order from rows (:class:`PredictionRow`, :class:`OutcomeRow`:
    named tuples), from runs of :class:`NumericPrediction` events, which become columns :data:`CLOSE_AT` or
    more events at a time, and from events already made into columns (``decode_fast.prediction_columns``)."""

    def __init__(self, width: int, named_values: tuple[tuple[int, int], ...] = ()) -> None:
        self.parts: list[list[Column]] = []
        self.width = width
        self.named_values = named_values  # (names, values) columns: a feature's name, its value (num.*, cat.*)
        self.interned = Interned()  # what the batch's rows share (decode_fast.prediction_columns)
        self.rows: list[Row] = []
        self.events: list[NumericPrediction] = []
        self.names: list[list[str]] = []
        self.positions: list[int] = []

    def add_row(self, row: Row) -> None:
        if self.events:
            self._close_events()
        self.rows.append(row)

    def add_rows(self, rows: list[Row]) -> None:
        if self.events:
            self._close_events()
        self.rows += rows

    def add_numeric_predictions(
        self, events: list[NumericPrediction], names: list[list[str]], positions: list[int]
    ) -> None:
        if self.rows:
            self._close_rows()
        self.events += events
        self.names += names
        self.positions += positions
        if len(self.events) >= CLOSE_AT:
            self._close_events()

    def add_columns(self, columns: list[Column]) -> None:
        """Rows already in columns (the message position last)."""
        self._close()
        self.parts.append(columns)

    def finish(self) -> list[Column]:
        """Each column (the last: each row's message position)."""
        self._close()
        if len(self.parts) == 1:
            return self.parts[0]
        for names, values in self.named_values:
            _gap_alike(self.parts, names, values)
        return [concatenate([part[k] for part in self.parts]) for k in range(self.width)]

    def _close(self) -> None:
        """Close what is gathered (rows or numeric events: one of them at most) into a part."""
        if self.rows:
            self._close_rows()
        if self.events:
            self._close_events()

    def _close_rows(self) -> None:
        self.parts.append([list(column) for column in zip(*self.rows, strict=True)])
        self.rows = []

    def _close_events(self) -> None:
        columns = prediction_columns(self.events, self.names, self.positions, self.interned)
        assert columns is not None  # numeric events always give columns
        self.parts.append(columns)
        self.events, self.names, self.positions = [], [], []


def _gap_alike(parts: list[list[Column]], names: int, values: int) -> None:
    """Where some parts hold a column's values with gaps (nulls) and others whole, the whole ones as gapped
    too (their names: the one list every row of theirs shares), so that the parts join as one matrix."""
    if not any(type(part[values]) in (GappedNumberRows, GappedTextRows) for part in parts):
        return
    for part in parts:
        whole, shared = part[values], part[names]
        if type(whole) is NumberRows:
            part[values] = GappedNumberRows(whole.matrix, shared[0])
        elif type(whole) is TextRows:
            part[values] = GappedTextRows(whole.columns, shared[0])  # type: ignore[arg-type]


def _events(value: bytes | None, max_bytes: int) -> Iterator[tuple[int, Any, str | None]]:
    """(index in envelope or -1, event, problem) for every event of one message value."""
    if value is None:
        yield -1, None, "empty message (no value)"
        return
    if len(value) > max_bytes:
        yield -1, None, f"message of {len(value):,} bytes is over the {max_bytes:,}-byte limit"
        return
    body, schema_id = unframed(value)  # a Schema Registry serializer's header, a byte order mark
    lines = None
    try:
        doc = _json(body)
    except UnicodeDecodeError as exc:
        where = f"{exc.reason} at byte {exc.start + len(value) - len(body)}"
        yield -1, None, _malformed(f"not UTF-8: {where}", schema_id)
        return
    except json.JSONDecodeError as exc:
        lines = json_lines(body)
        if lines is None:
            yield -1, None, _malformed(f"malformed JSON: {exc}", schema_id)
            return
    except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        digits = f"{sys.get_int_max_str_digits():,}"
        yield -1, None, _malformed(f"malformed JSON: an integer of more than {digits} digits", schema_id)
        return
    except RecursionError:
        yield -1, None, "malformed JSON: nested too deeply"
        return
    # JSON may spell a lone UTF-16 surrogate (\\ud800) that no UTF-8 column can store: find those events.
    surrogates = spells_surrogate(body)
    if lines is not None:  # JSON lines: an event or an envelope a line
        try:
            docs = list(map(_json, lines))
        except (ValueError, RecursionError) as exc:
            yield -1, None, f"malformed JSON lines: {exc}"
            return
        events = [e for doc in docs for e in (doc["events"] if _is_envelope(doc) else [doc])]
    elif isinstance(doc, list) and doc and all(isinstance(item, dict) for item in doc):  # an array of events
        events = doc
    elif not isinstance(doc, dict):
        yield (
            -1,
            None,
            f'expected a JSON object (an event or {{"events": [...]}}) or an array of events, got {_kind(doc)}',
        )
        return
    elif "events" not in doc:
        yield -1, doc, _surrogate_problem(doc) if surrogates else None
        return
    else:
        events = doc["events"]
    if not isinstance(events, list):
        yield -1, None, f'envelope field "events" must be a list, got {kind_of(events)}'
        return
    for index, event in enumerate(events):
        if isinstance(event, dict):
            yield index, event, _surrogate_problem(event) if surrogates else None
        else:
            yield index, event, f"envelope item must be an event object, got {kind_of(event)}"


def _kind(doc: Any) -> str:
    return "an empty list" if doc == [] else kind_of(doc)


def _json(body: bytes) -> Any:
    return json.loads(body.decode("utf-8"))  # NaN and ±Infinity too (Python's json writes them): the rules judge


def _is_envelope(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("events"), list)


def _malformed(problem: str, schema_id: int | None) -> str:
    if schema_id is None:
        return problem
    return (
        f"a Schema Registry message (schema id {schema_id}) whose payload is not JSON ({problem}): driftloop reads "
        "JSON; produce with a JSON serializer (Confluent's JSONSerializer) or plain JSON, not Avro or Protobuf"
    )


def _surrogate_problem(event: dict[str, Any]) -> str | None:
    try:
        json.dumps(event, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not valid text"
    return None


def _reencode(event: Any) -> bytes:
    try:
        return json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError, RecursionError):
        return repr(event).encode("utf-8", "replace")
