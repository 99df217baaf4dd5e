"""The typed fast path (msgspec) gives exactly what the field rules give, for good and hostile messages alike."""

from __future__ import annotations

import gc
import itertools
import json
import math
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftloop.streams import decode, decode_fast
from driftloop.streams.batch import DeadLetter, GappedNumberRows, NumberRows, StackedRows, UnreadableRecords
from driftloop.streams.decode import Decoded, Incoming, decode_outcomes, decode_predictions
from driftloop.streams.drift.frame import PredictionFrame
from tests.reliability.hostile import hostile_message

EDGE_FIELDS = {
    "ts": st.sampled_from(
        [
            *(0, 1.5, 1_790_000_000.0006, 4_294_967_294.9, 4_294_967_295, -1),  # .0006: ms rounded, not cut
            *(1_790_000_000_123, 1_790_000_000_000.6, 100_000_000_000, 99_999_999_999, 4_294_967_295_000),  # ms
            *(
                1_790_000_000_123_456,
                10**14,
                10**14 - 1,
                1_790_000_000_123_456_789,
                10**17,
                4_294_967_295 * 10**9,
            ),  # µs, ns
            2**64,
            *(
                "2026-11-23T08:00:00Z",
                "2026-11-23 08:00",
                "2026-11-23t08:00:00.5z",
                "x",
                "2026-11-23T09:00[Europe/Paris]",
            ),
            *("2026-11-23 08:00:00 +0000 UTC", "2026-11-23T08:00[Nowhere/Land]", "2026-11-23T08:00[]", "x UTC"),
        ]
    ),
    "score": st.sampled_from([None, 0.5, 2, {"1": 0.8, "0": 0.2}, {"a": 1}, {}, {"1": True}, "0.5"]),
    "model_version": st.sampled_from([None, 0, 7, 2**32 - 1, 2**32, -1, 1.0, True]),
    "event_id": st.sampled_from([None, "e-1", "", "x" * 128, "x" * 129, 5, -5, 2**64, 10**130, True, 5.0]),
    "request_id": st.sampled_from(["r-1", 12345, 0, -7, 2**63, 2**64, 2**70, True, 5.0, "", None]),
    "prediction": st.sampled_from([1, 1.0, -0.0, 2.5, 1e20, "", "cat", None, True, False, "true", "x" * 1025]),
    "features": st.sampled_from(
        [
            {"a": 1e308, "b": 1e308},  # each value finite, their sum not
            {"a": 1, "b": "x", "c": None},
            {"a": True, "b": False, "c": 1, "d": "true", "e": None},
            {"events": 1.0},  # a feature named like the envelope's field
            {},
            {"a": 2**64},
            {"a": "x" * 1025},
            {" a": 1},
        ]
    ),
}


@st.composite
def edge_message(draw: st.DrawFn) -> bytes:
    """Events with unusual but possible field values, alone or in an envelope, sometimes with one bad."""
    events = []
    for k in range(draw(st.integers(1, 3))):
        event = {"model": "m", "request_id": f"r{k}", "ts": 1_790_000_000, "features": {"a": 1}, "prediction": 1}
        for name in draw(st.sets(st.sampled_from(sorted(EDGE_FIELDS)), max_size=3)):
            event[name] = draw(EDGE_FIELDS[name])
        events.append(event)
    if len(events) == 1 and draw(st.booleans()):
        return json.dumps(events[0]).encode()
    return json.dumps({"events": events}).encode()


def field_rules_only(decoder: object, messages: list[Incoming]) -> Decoded:
    nothing = decode_fast.FastPath(
        lambda value, wider_first: None, lambda parsed, positions, out, rows=True: False, lambda *_: False
    )
    with mock.patch.object(decode, "PREDICTIONS", nothing), mock.patch.object(decode, "OUTCOMES", nothing):
        return decoder(messages)  # type: ignore[operator, no-any-return]


def assert_same(fast: Decoded, rules: Decoded) -> None:
    """The same rows, each model's in message order (the fast path adds the messages of one shape together, so
    that models may interleave otherwise), and the same dead letters."""
    assert by_model(fast) == by_model(rules)
    assert sorted(fast.dead, key=where) == sorted(rules.dead, key=where)


def by_model(decoded: Decoded) -> list[str]:
    """Each row (its columns, and the message it came from) in order of model, then of its place: repr, where
    NaN equals NaN."""
    rows = [*zip(*decoded.rows.columns.values(), decoded.origins, strict=True)]
    models = decoded.rows["model"]
    return [repr(rows[k]) for k in sorted(range(len(rows)), key=models.__getitem__)]


def where(dead: DeadLetter) -> tuple[int, int]:
    return dead.offset, -1 if dead.index is None else dead.index


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(hostile_message("fuzz", itertools.repeat(7)).map(lambda m: m.value), min_size=1, max_size=4))
def test_hostile_messages_decode_the_same_with_and_without_the_fast_path(values: list[bytes]) -> None:
    messages = [Incoming(v, "predictions", 0, i) for i, v in enumerate(values)]
    assert_same(decode_predictions(messages), field_rules_only(decode_predictions, messages))


@settings(max_examples=300, deadline=None)
@given(st.lists(edge_message(), min_size=1, max_size=3))
def test_unusual_field_values_decode_the_same_with_and_without_the_fast_path(values: list[bytes]) -> None:
    messages = [Incoming(v, "predictions", 0, i) for i, v in enumerate(values)]
    assert_same(decode_predictions(messages), field_rules_only(decode_predictions, messages))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"model": st.sampled_from(["m", "bad name"]), "request_id": st.sampled_from(["r", ""])},
            optional={
                "ts": EDGE_FIELDS["ts"],
                "label": EDGE_FIELDS["prediction"],
                "event_id": EDGE_FIELDS["event_id"],
                "value": st.sampled_from([None, 0, 12.5, -3, 1e308, "12", True]),
            },
        ),
        min_size=1,
        max_size=3,
    )
)
def test_outcomes_decode_the_same_with_and_without_the_fast_path(events: list[dict]) -> None:  # type: ignore[type-arg]
    messages = [Incoming(json.dumps(e).encode(), "outcomes", 0, i) for i, e in enumerate(events)]
    messages.append(Incoming(json.dumps({"events": events}).encode(), "outcomes", 0, len(events)))
    assert_same(decode_outcomes(messages), field_rules_only(decode_outcomes, messages))


GOOD_EVENT = {"model": "m", "request_id": "r", "ts": 1_790_000_000, "features": {"a": 1.5, "b": 2}, "prediction": 1}
GOOD_OUTCOME = {"model": "m", "request_id": "r", "ts": 1_790_000_000, "label": 1}


def crafted_values(event: dict) -> list[bytes]:  # type: ignore[type-arg]
    """Messages that joined with their neighbours could read as some other number of events than one each."""
    one = json.dumps(event).encode()
    return [
        one + b" " + one,  # two events in one message
        one + one,
        one + b"\n" + one,
        json.dumps(event, indent=1).encode(),  # one event over several lines
        b" " + one,
        one + b" ",
        one[:-1],  # cut short ...
        b"{" + one[1:-1].split(b",")[-1] + b"}",  # ... and the rest
        b'{"model": "m", "request_id": "r", "ts": 1790000000, "features": {"a": [{}',  # merges with "{}]}"
        b"{}]}",
        b"{}",
        b"",
        b'{"\\u0065vents": []}',  # the envelope's field spelled with an escape
        json.dumps({"events": [event]}).encode(),
    ]


@st.composite
def single_event_messages(draw: st.DrawFn, good: dict, edge: st.SearchStrategy[bytes]) -> list[bytes]:  # type: ignore[type-arg]
    """Runs of good messages of one event each, among them (or not) unusual, hostile and crafted ones."""
    count = draw(st.integers(2, 70))
    values = [
        json.dumps({**good, "request_id": f"r{k}", "features": good.get("features")}).encode() for k in range(count)
    ]
    if "features" not in good:
        values = [json.dumps({**good, "request_id": f"r{k}"}).encode() for k in range(count)]
    unreadable = UnreadableRecords.describe("t", 0, 5, 9, "UnsupportedCodecError: zstd")
    for _ in range(draw(st.integers(0, 3))):
        odd = draw(st.one_of(edge, st.sampled_from([*crafted_values(good), None, unreadable])))
        values.insert(draw(st.integers(0, len(values))), odd)
    return values


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    single_event_messages(
        GOOD_EVENT, st.one_of(edge_message(), hostile_message("fuzz", itertools.repeat(7)).map(lambda m: m.value))
    )
)
def test_runs_of_single_event_messages_decode_as_each_alone(values: list[bytes]) -> None:
    """Messages of one event each are parsed many at once: a run with a message that is not exactly one good
    event (two, none, half of one, an envelope) gives what the field rules give message by message."""
    messages = [Incoming(v, "predictions", 0, i) for i, v in enumerate(values)]
    assert_same(decode_predictions(messages), field_rules_only(decode_predictions, messages))


@settings(max_examples=100, deadline=None)
@given(single_event_messages(GOOD_OUTCOME, st.just(json.dumps({**GOOD_OUTCOME, "ts": -1}).encode())))
def test_runs_of_single_outcome_messages_decode_as_each_alone(values: list[bytes]) -> None:
    messages = [Incoming(v, "outcomes", 0, i) for i, v in enumerate(values)]
    assert_same(decode_outcomes(messages), field_rules_only(decode_outcomes, messages))


def counting_parses(path: decode_fast.FastPath) -> tuple[decode_fast.FastPath, mock.Mock]:
    """``path``, and a mock that counts the messages it parses alone."""
    parse = mock.Mock(wraps=path.parse)
    return path._replace(parse=parse), parse


def test_runs_of_single_event_messages_are_parsed_at_once() -> None:
    """Without this, the equivalence above could hold because runs were never parsed together."""
    values = [json.dumps({**GOOD_EVENT, "request_id": f"r{k}"}).encode() for k in range(3000)]
    values[1500] = values[1500] + b" " + values[1500]  # two events, not JSON as one message: its run is halved
    messages = [Incoming(v, "predictions", 0, i) for i, v in enumerate(values)]
    predictions, one_by_one = counting_parses(decode_fast.PREDICTIONS)
    with mock.patch.object(decode, "PREDICTIONS", predictions):
        decoded = decode_predictions(messages)
    assert len(decoded.rows["request_id"]) == 2999 and [d.offset for d in decoded.dead] == [1500]
    assert decoded.origins[1499:1501] == [1499, 1501]
    assert one_by_one.call_count <= decode.SHORTEST_RUN * 2  # only the run around the odd message, alone
    values[1500] = json.dumps({"events": [GOOD_EVENT, GOOD_EVENT]}).encode()  # an envelope among them: the same
    predictions, one_by_one = counting_parses(decode_fast.PREDICTIONS)
    with mock.patch.object(decode, "PREDICTIONS", predictions):
        decoded = decode_predictions([Incoming(v, "predictions", 0, i) for i, v in enumerate(values)])
    assert len(decoded.rows["request_id"]) == 3001 and decoded.origins[1499:1503] == [1499, 1500, 1500, 1501]
    assert one_by_one.call_count <= decode.SHORTEST_RUN * 2
    outcomes = [Incoming(json.dumps({**GOOD_OUTCOME, "request_id": f"r{k}"}).encode(), "o", 0, k) for k in range(50)]
    outcomes_path, one_by_one = counting_parses(decode_fast.OUTCOMES)
    with mock.patch.object(decode, "OUTCOMES", outcomes_path):
        assert len(decode_outcomes(outcomes).rows["request_id"]) == 50
    assert one_by_one.call_count == 0


def test_a_run_that_begins_with_a_message_without_a_value_decodes() -> None:
    """A tombstone (no value) or a batch the consumer could not read, first in a run, once failed the batch."""
    good = [json.dumps({**GOOD_EVENT, "request_id": f"r{k}"}).encode() for k in range(20)]
    unreadable = UnreadableRecords.describe("t", 0, 0, 0, "CorruptRecordException: CRC")
    for odd in (None, unreadable):
        messages = [Incoming(v, "predictions", 0, i) for i, v in enumerate([odd, *good])]
        decoded = decode_predictions(messages)
        assert len(decoded.rows["request_id"]) == 20 and len(decoded.dead) == 1
        assert_same(decoded, field_rules_only(decode_predictions, messages))


def fast_path_of(path: decode_fast.FastPath, value: bytes) -> str:
    """Which part of the fast path took ``value`` alone: "columns", "rows", or "field rules" (none of it)."""
    out = decode.Columns(len(decode.PREDICTION_COLUMNS) + 1)
    parsed = path.parse(value, {})
    if parsed is None or not path.add(parsed, [0] * len(parsed.events), out):
        return "field rules"
    return "columns" if out.events or out.parts else "rows"


def test_valid_messages_take_the_fast_path() -> None:
    """Without this, the equivalence above could hold because the fast path never accepted anything."""
    event = {"model": "m", "request_id": "r", "ts": 1_790_000_000, "features": {"a": 1, "b": 2}, "prediction": 1}
    unusual = {**event, "request_id": "s", "features": {"a": 1, "b": None}, "score": {"1": 0.9}}
    assert fast_path_of(decode_fast.PREDICTIONS, json.dumps({"events": [event, event]}).encode()) == "columns"
    assert fast_path_of(decode_fast.PREDICTIONS, json.dumps(event).encode()) == "columns"
    # a feature null in some events and a number in the others: columns, the null a gap, in envelopes of
    # FEWEST_WITH_NULLS events or more (fewer: rows)
    few, enough = [event, unusual] * 7 + [event], [event, unusual] * 8
    assert len(few) + 1 == len(enough) == decode_fast.FEWEST_WITH_NULLS
    assert fast_path_of(decode_fast.PREDICTIONS, json.dumps({"events": few}).encode()) == "rows"
    assert fast_path_of(decode_fast.PREDICTIONS, json.dumps({"events": enough}).encode()) == "columns"
    text_and_number = {**event, "features": {"a": 1, "b": "x"}}  # the field rules take it, event by event
    assert fast_path_of(decode_fast.PREDICTIONS, json.dumps({"events": [event, text_and_number]}).encode()) == "rows"
    assert fast_path_of(decode_fast.PREDICTIONS, json.dumps(unusual).encode()) == "columns"
    labelled = {**unusual, "features": {"a": 1, "b": "x"}, "prediction": "1", "ts": "2026-11-23T08:00:00Z"}
    same_shape = [labelled, {**labelled, "features": {"a": 2.5, "b": "y"}, "score": {"0": 1.0}, "served": False}]
    assert fast_path_of(decode_fast.PREDICTIONS, json.dumps({"events": same_shape}).encode()) == "columns"
    outcome = {"model": "m", "request_id": "r", "ts": "2026-11-23T08:00:00Z", "label": "cat"}
    assert fast_path_of(decode_fast.OUTCOMES, json.dumps({"events": [outcome]}).encode()) == "rows"
    # outcomes with times in epoch seconds and labels all numbers or all texts: columns
    numbers = [{**outcome, "ts": 1_790_000_000.25, "label": label, "value": 2.5} for label in (0, 1, 2.5, 1)]
    texts = [{**outcome, "ts": 1_790_000_000, "label": label, "event_id": "o-1"} for label in ("cat", "dog")]
    for events in (numbers, texts):
        assert fast_path_of(decode_fast.OUTCOMES, json.dumps({"events": events}).encode()) == "columns"
    assert fast_path_of(decode_fast.OUTCOMES, json.dumps({"events": numbers + texts}).encode()) == "rows"


KIND_VALUES = {
    "number": st.one_of(st.integers(-5, 5), st.floats(-1e6, 1e6, allow_nan=False), st.just(1e308)),
    "text": st.sampled_from(["a", "b", "", "é", "x" * 1024, "x" * 1025]),
    "null": st.none(),
    "number or null": st.one_of(st.none(), st.integers(-5, 5), st.floats(-1e6, 1e6, allow_nan=False)),
    "text or null": st.one_of(st.none(), st.sampled_from(["a", "b", "", "é"])),
    "boolean": st.booleans(),
    "boolean or null": st.one_of(st.none(), st.booleans()),
}


@st.composite
def same_shape_envelope(draw: st.DrawFn) -> bytes:
    """An envelope whose events send the same features, each of one kind (number, text, null, or a number or
    a text null in some events), sometimes one breaking the pattern; scores, predictions, times and serving
    vary as producers send them."""
    kinds = draw(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(sorted(KIND_VALUES))))
    events = []
    for k in range(draw(st.integers(1, 5))):
        features = {name: draw(KIND_VALUES[kind]) for name, kind in kinds.items()}
        if kinds and draw(st.integers(0, 9)) == 0:
            features[next(iter(kinds))] = draw(st.sampled_from([1.0, "z", None, True]))  # breaks the pattern, perhaps
        event = {"model": "m", "request_id": f"r{k}", "ts": draw(EDGE_FIELDS["ts"]), "features": features}
        event["prediction"] = draw(st.sampled_from([0, 1, 2.5, "approve", "decline", 1e20, True, False]))
        event["score"] = draw(
            st.sampled_from([None, 0.25, {"approve": 0.7, "decline": 0.3}, {"true": 0.6, "false": 0.4}, {"x": 1.0}, {}])
        )
        if draw(st.booleans()):
            event |= {"served": draw(st.booleans()), "model_version": draw(st.sampled_from([0, 3])),
                      "latency_ms": draw(st.sampled_from([None, 2.5]))}  # fmt: skip
        events.append(event)
    return json.dumps({"events": events}).encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(same_shape_envelope(), min_size=1, max_size=3))
def test_envelopes_of_one_shape_decode_the_same_with_and_without_the_fast_path(values: list[bytes]) -> None:
    """The columns built for events that share one shape are the rows the field rules give them."""
    messages = [Incoming(v, "predictions", 0, i) for i, v in enumerate(values)]
    with mock.patch.object(decode_fast, "FEWEST_WITH_NULLS", 1):
        assert_same(decode_predictions(messages), field_rules_only(decode_predictions, messages))


@st.composite
def envelope_with_gaps(draw: st.DrawFn) -> bytes:
    """An envelope of valid events that send the same features, some of them null in some events (or in all,
    or in none): the columns with gaps, and their joining with the next envelope's."""
    kinds = draw(
        st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), st.sampled_from(sorted(KIND_VALUES)), min_size=1)
    )
    events = [
        {
            "model": draw(st.sampled_from(["m", "n"])),
            "request_id": f"r{k}",
            "ts": 1_790_000_000 + k,
            "features": {name: draw(KIND_VALUES[kind]) for name, kind in kinds.items()},
            "prediction": draw(st.sampled_from([0, 1, "yes"])),
        }
        for k in range(draw(st.integers(1, 12)))
    ]
    return json.dumps({"events": events}).encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(envelope_with_gaps(), min_size=1, max_size=3))
def test_envelopes_with_nulls_decode_the_same_with_and_without_the_fast_path(values: list[bytes]) -> None:
    """Features null in some events are gaps in their columns: the rows are those the field rules give
    (columns for envelopes of any size here)."""
    messages = [Incoming(v, "predictions", 0, i) for i, v in enumerate(values)]
    with mock.patch.object(decode_fast, "FEWEST_WITH_NULLS", 1):
        assert_same(decode_predictions(messages), field_rules_only(decode_predictions, messages))


@st.composite
def small_envelopes(draw: st.DrawFn) -> list[bytes]:
    """Envelopes of a few events of two models, each sending one of two sets of features: gathered by shape,
    they become columns together. The features' kinds vary from message to message (a feature a number in some
    and a text in others cannot be one column), and so do times, scores and predictions; now and then an event
    breaks a rule."""
    values = []
    for m in range(draw(st.integers(2, 24))):
        kinds = {
            "a": draw(st.sampled_from(["number", "number or null"])),
            draw(st.sampled_from("bc")): draw(st.sampled_from(["text", "text or null", "number"])),
        }
        events = []
        for k in range(draw(st.integers(1, 4))):
            event = {
                "model": draw(st.sampled_from(["m", "n"])),
                "request_id": f"r{m}-{k}",
                "ts": draw(st.sampled_from([1_790_000_000 + k, 1_790_000_000.0006, "2026-11-23T08:00:00Z"])),
                "features": {name: draw(KIND_VALUES[kind]) for name, kind in kinds.items()},
                "prediction": draw(st.sampled_from([0, 1, 2.5, "approve"])),
                "score": draw(st.sampled_from([None, 0.25, {"approve": 0.7, "decline": 0.3}])),
            }
            if draw(st.integers(0, 19)) == 0:
                event = draw(st.sampled_from([{**event, "ts": -1}, {**event, "features": {"a": 1}}, {"events": 1}]))
            events.append(event)
        values.append(json.dumps({"events": events}).encode())
    return values


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_envelopes())
def test_small_envelopes_gathered_decode_the_same_with_and_without_the_fast_path(values: list[bytes]) -> None:
    """A model's envelopes become columns at once; when they cannot (kinds differ between them, an event breaks
    a rule), each is taken alone: the rows are the field rules', each model's in message order."""
    messages = [Incoming(v, "predictions", 0, i) for i, v in enumerate(values)]
    assert_same(decode_predictions(messages), field_rules_only(decode_predictions, messages))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(
            st.fixed_dictionaries(
                {"model": st.just("m"), "request_id": st.sampled_from(["r", "s"]), "ts": EDGE_FIELDS["ts"]},
                optional={"label": st.sampled_from([0, 1, 2.5, "cat"]), "value": st.sampled_from([None, 1.5])},
            ),
            min_size=1,
            max_size=3,
        ),
        min_size=2,
        max_size=20,
    )
)
def test_small_outcome_envelopes_gathered_decode_the_same(envelopes: list[list[dict]]) -> None:  # type: ignore[type-arg]
    messages = [Incoming(json.dumps({"events": e}).encode(), "outcomes", 0, i) for i, e in enumerate(envelopes)]
    assert_same(decode_outcomes(messages), field_rules_only(decode_outcomes, messages))


def test_a_model_s_small_envelopes_become_columns_together() -> None:
    """Without this, the equivalence above could hold because envelopes were never gathered. Columns cost some
    50 µs of numpy calls however few the events: an envelope at a time, envelopes of two events took ten times
    as long an event as envelopes of 500."""
    event = {**GOOD_EVENT, "features": {"a": 1.5, "country": "NL"}, "ts": "2026-11-23T08:00:00Z"}
    values = [json.dumps({"events": [{**event, "request_id": f"r{k}-{j}"} for j in range(2)]}) for k in range(300)]
    messages = [Incoming(v.encode(), "predictions", 0, i) for i, v in enumerate(values)]
    with mock.patch.object(decode_fast, "prediction_columns", wraps=decode_fast.prediction_columns) as made:
        decoded = decode_predictions(messages)
    assert made.call_count == math.ceil(600 / decode.CLOSE_AT)
    assert decoded.origins == [k for k in range(300) for _ in range(2)] and not decoded.dead
    assert isinstance(decoded.rows["num.value"], NumberRows)
    # the model's message that leaves a feature out joins them (a gap in its column): still one set of columns
    # a numeric one (which the batch gathers itself) is added after what was gathered before it
    origins = [k for k in range(21) for _ in range(2 if k != 10 else 1)]
    # (with WIDER_FIRST_FOR = 0: by default its model's messages before it did not fit the numeric type, so it is
    # parsed with the wider type, as they were, and joins them)
    numeric = {"a": 2.0, "b": 3.0}
    for other, calls, wider in (
        ({"a": 2.0, "country": None}, 1, 32),
        ({"country": "DE"}, 1, 32),
        (numeric, 2, 0),
        (numeric, 1, 32),
    ):
        between = json.dumps({"events": [{**event, "ts": 1_790_000_000, "features": other}]})
        batch = [*values[:10], between, *values[10:20]]
        messages = [Incoming(v.encode(), "predictions", 0, i) for i, v in enumerate(batch)]
        with (
            mock.patch.object(decode_fast, "prediction_columns", wraps=decode_fast.prediction_columns) as made,
            mock.patch.object(decode_fast, "WIDER_FIRST_FOR", wider),
        ):
            decoded = decode_predictions(messages)
        assert made.call_count == calls and decoded.origins == origins
        assert_same(decoded, field_rules_only(decode_predictions, messages))
    # two models with features of their own, taking turns: each model's messages are gathered
    theirs = [json.dumps({"events": [{**event, "model": "n", "features": {"b": 2.0, "k": "x"}}] * 3})] * 20
    turns = [value for pair in zip(values[:20], theirs, strict=True) for value in pair]
    messages = [Incoming(v.encode(), "predictions", 0, i) for i, v in enumerate(turns)]
    with mock.patch.object(decode_fast, "prediction_columns", wraps=decode_fast.prediction_columns) as made:
        decoded = decode_predictions(messages)
    assert made.call_count == 2 and decoded.rows["model"] == ["m"] * 40 + ["n"] * 60
    assert decoded.origins == [k for k in range(0, 40, 2) for _ in range(2)] + [
        k for k in range(1, 40, 2) for _ in range(3)
    ]
    assert_same(decoded, field_rules_only(decode_predictions, messages))
    outcome = {**GOOD_OUTCOME, "ts": 1_790_000_000.5}
    values = [json.dumps({"events": [{**outcome, "request_id": f"r{k}"}] * 2}).encode() for k in range(100)]
    with mock.patch.object(decode_fast, "_outcome_columns", wraps=decode_fast._outcome_columns) as made:
        decoded = decode_outcomes([Incoming(v, "outcomes", 0, i) for i, v in enumerate(values)])
    assert made.call_count == 1 and len(decoded.rows["event_id"]) == 200


def test_models_with_features_of_their_own_stay_a_matrix_a_shape() -> None:
    """Models that send features of their own, as many as they like, in small envelopes taking turns: each
    shape's values stay a matrix (stacked, written as the list of rows they stand for), and a model's rows
    taken for its detectors are one matrix again."""

    def envelope(model: int, first: int) -> bytes:
        features = {f"m{model}.x{j}": float(first + j) for j in range(2 + model)} | {f"m{model}.k": "a"}
        event = {**GOOD_EVENT, "model": f"m{model}", "features": features}
        events = [{**event, "request_id": f"r{first}-{k}"} for k in range(3)]
        return json.dumps({"events": events}).encode()

    values = [envelope(k % 3, k) for k in range(300)]
    messages = [Incoming(v, "predictions", 0, i) for i, v in enumerate(values)]
    decoded = decode_predictions(messages)
    assert_same(decoded, field_rules_only(decode_predictions, messages))
    stacked = decoded.rows["num.value"]
    assert isinstance(stacked, StackedRows) and {part.matrix.shape[1] for part in stacked.parts} == {2, 3, 4}
    first_model = [k for k, model in enumerate(decoded.rows["model"]) if model == "m0"]
    assert isinstance(stacked.take(first_model), NumberRows) and isinstance(stacked.take([0, 899]), StackedRows)
    frame = PredictionFrame.from_columns(decoded.rows)
    for part in frame.models:
        width = 2 + int(part.model[1:])
        assert part.features.numeric.shape == (300, width)  # type: ignore[union-attr]
        first = [k for k in range(300) if k % 3 == width - 2]
        assert part.features.numeric[::3, 0].tolist() == [float(k) for k in first]  # type: ignore[union-attr]


@st.composite
def envelope_with_left_out(draw: st.DrawFn) -> bytes:
    """An envelope of valid events, each leaving out some of its model's features (or none), now and then in
    an order of its own; some features null in some events."""
    kinds = draw(
        st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), st.sampled_from(sorted(KIND_VALUES)), min_size=1)
    )
    events = []
    for k in range(draw(st.integers(1, 12))):
        sent = [name for name in kinds if draw(st.integers(0, 3))]
        if draw(st.integers(0, 9)) == 0:
            sent.reverse()
        event = {"model": draw(st.sampled_from(["m", "n"])), "request_id": f"r{k}", "ts": 1_790_000_000 + k}
        event["features"] = {name: draw(KIND_VALUES[kinds[name]]) for name in sent}
        events.append(event | {"prediction": draw(st.sampled_from([0, 1, "yes"]))})
    return json.dumps({"events": events}).encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(envelope_with_left_out(), min_size=1, max_size=3))
def test_envelopes_with_features_left_out_decode_the_same_with_and_without_the_fast_path(values: list[bytes]) -> None:
    """A feature an event left out is a gap in its column, and not among the row's nulls: the rows are those
    the field rules give (columns for envelopes of any size here)."""
    messages = [Incoming(v, "predictions", 0, i) for i, v in enumerate(values)]
    with mock.patch.object(decode_fast, "FEWEST_WITH_NULLS", 1):
        assert_same(decode_predictions(messages), field_rules_only(decode_predictions, messages))


def test_events_that_leave_features_out_become_columns() -> None:
    """Without this, the equivalence above could hold because such events were never made columns: optional
    features (sent when known) made every envelope take the typed rows, three times as long an event."""
    full = {**GOOD_EVENT, "features": {"a": 1.5, "b": 2.0, "k": "x"}}
    some = [full, {**full, "features": {"a": 1.0, "k": "y"}}, {**full, "features": {"b": 3.0, "k": None}}]
    value = json.dumps({"events": [{**event, "request_id": f"r{k}"} for k in range(10) for event in some]})
    decoded = decode_predictions([Incoming(value.encode(), "predictions", 0, 0)])
    assert isinstance(decoded.rows["num.value"], GappedNumberRows) and decoded.rows["num.value"].names == ["a", "b"]
    assert decoded.rows["num.name"][:3] == [["a", "b"], ["a"], ["b"]] and decoded.rows["missing"][:3] == [[], [], ["k"]]
    reordered = json.dumps({"events": [full, {**full, "features": {"k": "x", "a": 1.0}}] * 10})
    assert fast_path_of(decode_fast.PREDICTIONS, reordered.encode()) == "rows"  # its own order: the typed rows


def test_a_message_s_events_that_send_the_same_names_share_one_list_of_them() -> None:
    """Optional features: the names change from event to event, and come back; each distinct list is made
    once a message (the batch's columns are placed a list at a time: some 15 % of such a batch's decoding when
    every run of names had its own list)."""
    lists = [["a", "b", "k"], ["a", "k"], ["b", "k"]]
    order = [0, 1, 0, 0, 2, 1, 0, 2, 2, 0] * 3
    envelope = {
        "events": [
            {**GOOD_EVENT, "request_id": f"r{i}", "features": dict.fromkeys(lists[j], 1.0)} for i, j in enumerate(order)
        ]
    }
    parsed = decode_fast.parsed_predictions(json.dumps(envelope).encode(), {})
    assert parsed is not None
    assert [lists.index(names) for names in parsed.names] == order
    assert len({id(names) for names in parsed.names}) == len(lists)


def test_a_model_whose_messages_do_not_fit_the_numeric_type_has_them_parsed_with_the_wider_type_first() -> None:
    """Finding that a message does not fit the numeric type costs a failed parse (some 3 µs): a model whose
    message did not fit it has its next messages of the batch parsed with the wider type first, and tries the
    numeric one again every ``WIDER_FIRST_FOR`` messages; a model whose messages fit it is never tried otherwise,
    whatever the models between. Either way the rows are those of the field rules."""
    texts = {**GOOD_EVENT, "model": "texts", "features": {"a": 1.5, "country": "NL"}}
    numbers = {**GOOD_EVENT, "model": "numbers", "features": {"a": 1.5, "b": 2.0}}
    values = [
        json.dumps({"events": [{**event, "request_id": f"r{k}-{j}"} for j in range(3)]}).encode()
        for k in range(80)
        for event in (texts, numbers)
    ]
    messages = [Incoming(v, "predictions", 0, i) for i, v in enumerate(values)]
    with mock.patch.object(decode_fast, "parse_predictions", wraps=decode_fast.parse_predictions) as parse:
        decoded = decode_predictions(messages)
    numeric_first = {"texts": [], "numbers": []}
    for call in parse.call_args_list:
        model = json.loads(call.args[0])["events"][0]["model"]
        numeric_first[model].append(call.kwargs.get("numeric_first", True))
    assert numeric_first["numbers"] == [True] * 80
    every = decode_fast.WIDER_FIRST_FOR + 1  # a try of the numeric type, then as many of the wider type first
    assert numeric_first["texts"] == [k % every == 0 for k in range(80)]
    assert_same(decoded, field_rules_only(decode_predictions, messages))


def test_runs_of_column_built_events_and_rows_keep_message_order() -> None:
    event = {"model": "m", "request_id": "r", "ts": 1_790_000_000, "features": {"a": 1}, "prediction": 1}
    values = [
        {"events": [{**event, "request_id": "1"}, {**event, "request_id": "2"}]},  # columns
        {**event, "request_id": "3", "ts": "2026-11-23T08:00:00Z"},  # rows (RFC 3339 time)
        {**event, "request_id": "4"},  # columns
        {**event, "request_id": "5", "features": {" a": 1}},  # dead letter: feature name
        {**event, "request_id": "6", "prediction": None},  # dead letter: no prediction
        {**event, "request_id": "7", "features": {"b": None}},  # rows
    ]
    messages = [Incoming(json.dumps(v).encode(), "p", 0, i) for i, v in enumerate(values)]
    decoded = decode_predictions(messages)
    assert decoded.rows["request_id"] == ["1", "2", "3", "4", "7"]
    assert decoded.origins == [0, 0, 1, 2, 5]
    assert [d.offset for d in decoded.dead] == [3, 4]
    assert_same(decoded, field_rules_only(decode_predictions, messages))


def test_values_whose_sum_overflows_are_accepted_one_by_one() -> None:
    """Two finite features near the float limit once made the decoder raise (math.fsum overflowed), which
    failed the whole batch again and again instead of judging the event."""
    event = {"model": "m", "request_id": "r", "ts": 1_790_000_000, "features": {"a": 1e308, "b": 1e308}}
    for fast in (decode_predictions, lambda m: field_rules_only(decode_predictions, m)):
        decoded = fast([Incoming(json.dumps({**event, "prediction": 1}).encode(), "p", 0, 0)])
        assert decoded.rows["num.value"] == [[1e308, 1e308]] and not decoded.dead


def test_decoding_leaves_nothing_for_the_garbage_collector() -> None:
    """What a batch decodes is freed once it is dropped: a reference cycle (a nested function that called
    itself held the decoder's parts, an event's list for each class score among them) kept every batch's
    parts until the collector found them, and made it walk them while they lived."""
    singles = [json.dumps({**GOOD_EVENT, "request_id": f"r{k}"}).encode() for k in range(300)]
    singles[150] = singles[150] + b" " + singles[150]  # an odd message: its run is halved
    scored = {**GOOD_EVENT, "score": {"cat": 0.25, "dog": 0.75}, "prediction": "dog"}
    envelopes = [json.dumps({"events": [scored, {**scored, "features": {"a": "x"}}]}).encode(), b"{", b"[]"]
    messages = [Incoming(v, "predictions", 0, i) for i, v in enumerate([*singles, *envelopes])]
    gc.collect()
    gc.disable()
    try:
        decoded = decode_predictions(messages)
        assert len(decoded.rows) == 301 and len(decoded.dead) == 3
        del decoded
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_numeric_events_become_columns_a_part_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Numeric events become columns every ``CLOSE_AT`` events (while their objects are still in a core's
    cache, then freed for the next messages' to reuse), and the parts join into the columns that one part
    of the whole batch gives: feature values one matrix where the widths agree, rows in message order, and
    one list shared by every row without items."""

    def envelope(first: int, count: int, features: dict[str, float]) -> bytes:
        events = [{**GOOD_EVENT, "request_id": f"r{first + k}", "features": features} for k in range(count)]
        return json.dumps({"events": events}).encode()

    values = [envelope(30 * k, 30, {"a": 1.5, "b": float(k)}) for k in range(7)]
    wider = [*values[:3], envelope(500, 30, {"a": 1.0, "b": 2.0, "c": 3.0}), *values[3:]]
    for batch in (values, wider):
        messages = [Incoming(v, "predictions", 0, i) for i, v in enumerate(batch)]
        monkeypatch.setattr(decode, "CLOSE_AT", 10**9)
        whole = decode_predictions(messages)
        monkeypatch.setattr(decode, "CLOSE_AT", 50)
        with mock.patch.object(decode, "prediction_columns", wraps=decode.prediction_columns) as made:
            parts = decode_predictions(messages)
        assert made.call_count == len(batch) // 2 + len(batch) % 2  # two envelopes of 30 make a part
        assert_same(parts, whole)
        assert len({id(row) for row in parts.rows["cat.name"]}) == 1
    assert isinstance(
        decode_predictions([Incoming(v, "p", 0, i) for i, v in enumerate(values)]).rows["num.value"], NumberRows
    )


def test_rows_without_items_share_one_list_a_batch() -> None:
    """Envelopes of the other shapes (class scores, texts) become columns a message at a time: their rows
    without categorical features, nulls or class scores hold one list for the whole batch, which the insert
    writer and the frame find to be one by identity."""
    scored = {**GOOD_EVENT, "score": {"cat": 0.25, "dog": 0.75}, "prediction": "dog"}
    texts = {**GOOD_EVENT, "features": {"a": "x", "b": "y"}}
    values = [json.dumps({"events": [event] * 3}).encode() for event in (scored, scored, texts, texts)]
    rows = decode_predictions([Incoming(v, "predictions", 0, i) for i, v in enumerate(values)]).rows
    assert rows["scores.label"][:6] == [["cat", "dog"]] * 6 and rows["cat.name"][6:] == [["a", "b"]] * 6
    for name, empty_rows in (("cat.name", slice(6)), ("missing", slice(None)), ("scores.label", slice(6, None))):
        assert rows[name][empty_rows] == [[]] * len(rows[name][empty_rows])
        assert len({id(row) for row in rows[name][empty_rows]}) == 1, name


def test_a_batch_without_a_valid_event_has_empty_lists() -> None:
    """Nothing to join: each column, and the rows' origins, a plain empty list (not an empty stack of parts)."""
    for messages in ([], [Incoming(b"{bad", "predictions", 0, 0)]):
        decoded = decode_predictions(messages)
        assert all(type(column) is list and not column for column in decoded.rows.columns.values())
        assert type(decoded.origins) is list and not decoded.origins


def test_events_without_features_make_a_matrix_of_no_columns() -> None:
    """A model that sends no features (its predictions only): its rows' values are one matrix of no columns,
    not an empty list a row (which cost two thirds of decoding such events)."""
    values = [json.dumps({"events": [{**GOOD_EVENT, "features": {}}] * 300}).encode()] * 2
    messages = [Incoming(v, "predictions", 0, i) for i, v in enumerate(values)]
    decoded = decode_predictions(messages)
    assert isinstance(decoded.rows["num.value"], NumberRows) and decoded.rows["num.value"].matrix.shape == (600, 0)
    assert_same(decoded, field_rules_only(decode_predictions, messages))


def test_a_batch_holds_one_object_of_each_categorical_text_and_class() -> None:
    """The decoder takes each categorical text and each predicted class of a batch as one object, across
    events, messages and features: the detectors' coding, the insert and pickling then read a few objects,
    not one a value."""
    features = [{"a": f"v{i % 3}", "b": "v1"} for i in range(12)]
    predictions = [1, 0, "dog", "cat", 2.5, 2.5]  # two messages of each kind: whole numbers, labels, fractions
    values = [
        json.dumps({"events": [{**GOOD_EVENT, "features": f, "prediction": p} for f in features[:6]]})
        for p in predictions
    ]
    rows = decode_predictions([Incoming(v.encode(), "predictions", 0, i) for i, v in enumerate(values)]).rows
    texts = rows["cat.value"].flattened()
    assert texts == [text for p in predictions for f in features[:6] for text in f.values()]
    assert len({id(text) for text in texts}) == 3  # v0, v1 and v2, each one object
    classes = rows["prediction"]
    assert classes == [str(p) for p in predictions for _ in range(6)]
    assert len({id(text) for text in classes[:24]}) == 4  # "1", "0", "dog", "cat"


def test_a_batch_holds_one_list_of_each_pattern_of_nulls() -> None:
    """Envelopes with nulls give each row the names of what it sent, and its nulls: one list object for
    each pattern in the whole batch, which the ClickHouse writer encodes once."""
    events = [
        {**GOOD_EVENT, "request_id": f"r{k}", "features": {"a": None if k % 3 == 0 else 1.5, "b": 2.0, "c": None}}
        for k in range(60)
    ]
    values = [json.dumps({"events": events[i : i + 20]}).encode() for i in range(0, 60, 20)]
    rows = decode_predictions([Incoming(v, "predictions", 0, i) for i, v in enumerate(values)]).rows
    assert type(rows["num.value"]) is GappedNumberRows
    for name, patterns in (("num.name", [["a", "b"], ["b"]]), ("missing", [["c"], ["a", "c"]])):
        assert sorted(map(list, {tuple(row) for row in rows[name]})) == sorted(patterns)
        assert len({id(row) for row in rows[name]}) == 2, name


EVENTS = [
    {"model": "m", "request_id": f"r{k}", "ts": 1_790_000_000 + k, "features": {"a": k / 3, "b": "x"}, "prediction": 1}
    for k in range(6)
]
BAD = [*EVENTS[:2], {"model": "m", "request_id": "bad", "ts": 1, "prediction": 1}, *EVENTS[2:]]  # no features


def schema_registry(value: bytes) -> bytes:
    return b"\x00\x00\x00\x00\x07" + value  # Confluent's wire format: magic byte 0, schema id 7


#: How other clients frame messages, each beside the plain messages it stands for.
FRAMINGS = {
    "schema registry, one event a message": lambda evs: (
        [schema_registry(json.dumps(e).encode()) for e in evs],
        [json.dumps(e).encode() for e in evs],
    ),
    "schema registry, an envelope": lambda evs: (
        [schema_registry(json.dumps({"events": evs}).encode())],
        [json.dumps({"events": evs}).encode()],
    ),
    "byte order mark": lambda evs: (
        [b"\xef\xbb\xbf" + json.dumps({"events": evs}).encode()],
        [json.dumps({"events": evs}).encode()],
    ),
    "array": lambda evs: ([json.dumps(evs).encode()], [json.dumps({"events": evs}).encode()]),
    "json lines": lambda evs: (
        [b"".join(json.dumps(e).encode() + b"\r\n" for e in evs) + b"\n"],
        [json.dumps({"events": evs}).encode()],
    ),
    "json lines of envelopes": lambda evs: (
        [json.dumps({"events": evs[:3]}).encode() + b"\n" + json.dumps({"events": evs[3:]}).encode()],
        [json.dumps({"events": evs}).encode()],
    ),
}


@pytest.mark.parametrize("events", [EVENTS, BAD], ids=["good", "one bad"])
@pytest.mark.parametrize("framing", sorted(FRAMINGS))
def test_messages_framed_by_other_clients_decode_as_the_plain_ones_at_both_paths(framing: str, events: list) -> None:
    """A Schema Registry serializer's header, a byte order mark, a JSON array of events and JSON lines: the events
    they frame, as their plain messages give them (a bad event dead-lettered alone), at both paths."""
    framed, plain = FRAMINGS[framing](events)
    for decoder in (decode_predictions, decode_outcomes):
        fast = decoder([Incoming(v, "t", 0, k) for k, v in enumerate(framed)])
        assert_same(fast, field_rules_only(decoder, [Incoming(v, "t", 0, k) for k, v in enumerate(framed)]))
        as_plain = decoder([Incoming(v, "t", 0, k) for k, v in enumerate(plain)])
        assert by_model(fast) == by_model(as_plain)
        assert [(d.reason, d.offset, d.index) for d in fast.dead] == [
            (d.reason, d.offset, d.index) for d in as_plain.dead
        ]
    assert len(decode_predictions([Incoming(v, "t", 0, k) for k, v in enumerate(framed)]).rows) == 6


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(edge_message(), min_size=1, max_size=4), st.sampled_from([schema_registry, b"\xef\xbb\xbf".__add__]))
def test_framed_edge_messages_decode_as_they_would_unframed(values: list[bytes], frame: object) -> None:
    framed = [Incoming(frame(v), "t", 0, k) for k, v in enumerate(values)]  # type: ignore[operator]
    plain = decode_predictions([Incoming(v, "t", 0, k) for k, v in enumerate(values)])
    fast = decode_predictions(framed)
    assert_same(fast, field_rules_only(decode_predictions, framed))
    assert by_model(fast) == by_model(plain)
    assert [(d.reason, d.index) for d in fast.dead] == [(d.reason, d.index) for d in plain.dead]


def test_a_schema_registry_message_that_is_not_json_says_what_to_send() -> None:
    avro = b"\x00\x00\x00\x00\x09\x02\x06abc\xff"
    (letter,) = decode_predictions([Incoming(avro, "t", 0, 3)]).dead
    assert "schema id 9" in letter.reason and "JSON serializer" in letter.reason
    assert letter.original == avro


@pytest.mark.parametrize("value", [b'{"events": []}', b'{"events": []}\n{"events": []}\n', b"[]"])
def test_an_envelope_of_no_events_is_nothing_at_both_paths(value: bytes) -> None:
    """A producer that flushes an empty buffer on a timer: nothing lands, and the messages around it decode (the
    fast path raised on it, and so stopped the worker at that message). An empty list is no envelope: a dead
    letter, as it always was."""
    for decoder in (decode_predictions, decode_outcomes):
        messages = [Incoming(value, "t", 0, 0), Incoming(json.dumps(GOOD_EVENT | {"label": 1}).encode(), "t", 0, 1)]
        fast = decoder(messages)
        assert len(fast.rows) == 1 and fast.origins == [1]
        assert [d.reason for d in fast.dead] == (
            ['expected a JSON object (an event or {"events": [...]}) or an array of events, got an empty list']
            if value == b"[]"
            else []
        )
        assert_same(fast, field_rules_only(decoder, messages))
