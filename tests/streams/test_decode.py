from __future__ import annotations

import json
import math

import pytest

from driftloop.streams.batch import NumberRows, TextRows
from driftloop.streams.decode import (
    EventError,
    Incoming,
    decode_outcomes,
    decode_predictions,
    validate_outcome,
    validate_prediction,
)

GOOD = {
    "model": "m",
    "request_id": "r",
    "ts": 1_790_000_000,
    "features": {"a": 1, "b": "x", "c": None},
    "prediction": "cat",
}
GOOD_OUTCOME = {"model": "m", "request_id": "r", "ts": 1_790_000_000, "label": "cat"}


def msg(value: object, offset: int = 0) -> Incoming:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return Incoming(raw, "t", 1, offset)


def test_a_prediction_becomes_one_row_with_typed_features() -> None:
    decoded = decode_predictions([msg(GOOD | {"score": {"cat": 0.9, "dog": 0.1}, "model_version": 4})])
    rows = decoded.rows
    assert not decoded.dead and len(rows) == 1
    assert (rows["num.name"], rows["num.value"]) == ([["a"]], [[1.0]])
    assert (rows["cat.name"], rows["cat.value"], rows["missing"]) == ([["b"]], [["x"]], [["c"]])
    assert (rows["score"], rows["scores.label"], rows["model_version"]) == ([0.9], [["cat", "dog"]], [4])


def test_envelopes_and_single_events_decode_alike_and_keep_their_origin() -> None:
    envelope = {"events": [GOOD | {"request_id": "e1"}, GOOD | {"request_id": "e2"}]}
    decoded = decode_predictions([msg(GOOD), msg(envelope, 1)])
    assert decoded.rows["request_id"] == ["r", "e1", "e2"]
    assert decoded.origins == [0, 1, 1]


def test_feature_values_of_events_that_send_the_same_names_are_one_matrix() -> None:
    numeric = {"model": "m", "request_id": "r", "ts": 1_790_000_000, "prediction": 1}
    same = [numeric | {"request_id": f"r{i}", "features": {"a": i, "b": i / 2}} for i in range(3)]
    messages = [msg({"events": same[:2]}), msg(same[2], 1)]
    values = decode_predictions(messages).rows["num.value"]
    assert isinstance(values, NumberRows) and values.matrix.tolist() == [[0.0, 0.0], [1.0, 0.5], [2.0, 1.0]]
    other_order = numeric | {"features": {"b": 9.0, "a": 8.0}}
    mixed = decode_predictions([*messages, msg(other_order, 2), msg(GOOD, 3)]).rows
    assert mixed["num.value"] == [[0.0, 0.0], [1.0, 0.5], [2.0, 1.0], [9.0, 8.0], [1.0]]
    assert mixed["num.name"] == [["a", "b"]] * 3 + [["b", "a"], ["a"]]


def test_text_values_of_events_that_send_the_same_features_are_kept_a_list_a_feature() -> None:
    event = {"model": "m", "ts": 1_790_000_000, "prediction": 1}
    same = [event | {"request_id": f"r{i}", "features": {"a": i, "c": f"x{i}", "d": "é"}} for i in range(4)]
    messages = [msg({"events": same[:2]}), msg({"events": same[2:]}, 1)]
    values = decode_predictions(messages).rows["cat.value"]
    assert isinstance(values, TextRows) and values.columns == [["x0", "x1", "x2", "x3"], ["é"] * 4]
    assert values == [["x0", "é"], ["x1", "é"], ["x2", "é"], ["x3", "é"]]
    other = event | {"request_id": "o", "features": {"c": "y", "a": 2}}  # another shape: rows of their own
    mixed = decode_predictions([*messages, msg(other, 2), msg(GOOD, 3)]).rows
    assert mixed["cat.value"] == [["x0", "é"], ["x1", "é"], ["x2", "é"], ["x3", "é"], ["y"], ["x"]]
    assert mixed["cat.name"] == [["c", "d"]] * 4 + [["c"], ["b"]]


def test_class_probabilities_of_events_that_send_the_same_classes_are_one_matrix() -> None:
    event = {"model": "m", "ts": 1_790_000_000, "features": {"a": 1.0}}
    scored = [
        event | {"request_id": f"r{i}", "prediction": p, "score": {"cat": c, "dog": 1 - c}}
        for i, (p, c) in enumerate([("cat", 0.75), ("dog", 0.25), ("bird", 0.5), ("cat", 1)])
    ]
    rows = decode_predictions([msg({"events": scored[:2]}), msg({"events": scored[2:]}, 1)]).rows
    probabilities = rows["scores.probability"]
    assert isinstance(probabilities, NumberRows)
    assert probabilities.matrix.tolist() == [[0.75, 0.25], [0.25, 0.75], [0.5, 0.5], [1.0, 0.0]]
    assert rows["scores.label"] == [["cat", "dog"]] * 4
    assert rows["score"] == [0.75, 0.75, 0.5, 1.0]  # "bird" is no class: the highest probability
    other = event | {"request_id": "o", "prediction": "dog", "score": {"dog": 0.5, "cat": 0.5}}  # another order
    mixed = decode_predictions([msg({"events": [*scored[:2], other]})]).rows
    assert mixed["scores.label"] == [["cat", "dog"], ["cat", "dog"], ["dog", "cat"]]
    assert mixed["scores.probability"] == [[0.75, 0.25], [0.25, 0.75], [0.5, 0.5]]


@pytest.mark.parametrize(
    ("ts", "seconds", "millis"),
    [
        (1_790_000_000.25, 1_790_000_000, 1_790_000_000_250),
        ("2026-11-23T08:00:00Z", 1_795_420_800, 1_795_420_800_000),
        ("2026-11-23T09:00:00.5+01:00", 1_795_420_800, 1_795_420_800_500),
        ("2026-11-23T08:00:00", 1_795_420_800, 1_795_420_800_000),
        ("2026-11-23t08:00:00.5z", 1_795_420_800, 1_795_420_800_500),  # RFC 3339 allows lower case
        # a time zone in brackets (RFC 9557; Java's ZonedDateTime.toString()), after an offset or in its place
        ("2026-11-23T09:00+01:00[Europe/Paris]", 1_795_420_800, 1_795_420_800_000),
        ("2026-11-23T09:00:00.5[!Europe/Paris][u-ca=iso8601]", 1_795_420_800, 1_795_420_800_500),
        ("2026-11-23T08:00Z[UTC]", 1_795_420_800, 1_795_420_800_000),
        ("2026-11-23 08:00:00.5 +0000 UTC m=+0.000131", 1_795_420_800, 1_795_420_800_500),  # Go's Time.String()
        ("2026-11-23 08:00:00 GMT", 1_795_420_800, 1_795_420_800_000),
    ],
)
def test_timestamps_are_rfc3339_or_epoch_seconds(ts: object, seconds: int, millis: int) -> None:
    rows = decode_predictions([msg(GOOD | {"ts": ts})]).rows
    assert (rows["ts"], rows["ts_ms"]) == ([seconds], [millis])


def test_served_and_latency_are_stored_and_a_shadow_prediction_has_an_id_of_its_own() -> None:
    served = GOOD | {"model_version": 1, "latency_ms": 3.5}
    shadow = GOOD | {"model_version": 2, "served": False}
    numeric = {"model": "m", "request_id": "r", "ts": 1_790_000_000, "features": {"a": 1.0}, "prediction": 1}
    for fast in (False, True):  # the field rules, and the typed fast path of numeric events
        events = (
            [numeric | {"model_version": 1}, numeric | {"model_version": 2, "served": False}]
            if fast
            else [served, shadow]
        )
        rows = decode_predictions([msg({"events": events})]).rows
        assert rows["served"] == [1, 0]
        assert rows["event_id"][0] != rows["event_id"][1]  # both kept: neither replaces the other
    rows = decode_predictions([msg(served), msg(GOOD, 1)]).rows
    assert rows["latency_ms"][0] == 3.5 and rows["latency_ms"][1] != rows["latency_ms"][1]  # NaN: not sent
    assert rows["event_id"][0] == rows["event_id"][1]  # a served prediction's derived id is what it always was


def test_an_outcome_carries_its_business_value() -> None:
    outcome = {"model": "m", "request_id": "r", "ts": 1_790_000_100, "label": 1}
    rows = decode_outcomes([msg(outcome | {"value": 12.5}), msg(outcome | {"request_id": "s"}, 1)]).rows
    assert rows["value"][0] == 12.5 and rows["value"][1] != rows["value"][1]
    with pytest.raises(EventError, match='"value" must be a number, got a string'):
        validate_outcome(outcome | {"value": "a lot"})


def test_a_missing_event_id_is_deterministic() -> None:
    first = validate_prediction(dict(GOOD))
    assert first == validate_prediction(dict(GOOD)) and len(first) == 32
    assert first != validate_prediction(GOOD | {"request_id": "other"})
    assert validate_prediction(GOOD | {"event_id": "mine"}) == "mine"
    assert validate_outcome({"model": "m", "request_id": "r", "ts": 1, "label": 1}) != validate_outcome(
        {"model": "m", "request_id": "r", "ts": 1, "label": 0}
    )


def test_numbers_and_classes_compare_as_text() -> None:
    rows = decode_predictions([msg(GOOD | {"prediction": 1.0}), msg(GOOD | {"prediction": 2.5})]).rows
    assert rows["prediction"] == ["1", "2.5"] and rows["prediction_num"] == [1.0, 2.5]
    outcome = decode_outcomes([msg({"model": "m", "request_id": "r", "ts": 1, "label": 1})]).rows
    assert outcome["label"] == ["1"]


def test_true_and_false_are_classes_and_categories() -> None:
    """A JSON true or false, as a prediction, a label or a feature, is the class or category "true" or "false"
    (as the text "true" is), not the number 1 or 0."""
    event = GOOD | {"features": {"a": 1, "flag": True, "other": False}, "prediction": True, "score": {"true": 0.8}}
    rows = decode_predictions([msg(event), msg({"events": [event | {"request_id": "r2", "prediction": False}]})]).rows
    assert rows["prediction"] == ["true", "false"] and rows["score"] == [0.8, 0.8]
    assert rows["cat.name"] == [["flag", "other"]] * 2 and rows["cat.value"] == [["true", "false"]] * 2
    assert rows["num.name"] == [["a"]] * 2 and all(x != x for x in rows["prediction_num"])
    outcomes = decode_outcomes(
        [msg({"model": "m", "request_id": "r", "ts": 1, "label": label}) for label in (True, False)]
    )
    assert outcomes.rows["label"] == ["true", "false"] and not outcomes.dead


@pytest.mark.parametrize("per_second", [1_000, 1_000_000, 1_000_000_000], ids=["ms", "µs", "ns"])
def test_a_number_ts_from_1973_in_milli_micro_or_nanoseconds_is_so(per_second: int) -> None:
    """Epoch milliseconds (Java's and JavaScript's clocks, Kafka's timestamps), microseconds (Go's ``UnixMicro``,
    database exports) and nanoseconds (Go's ``UnixNano``, Python's ``time.time_ns()``) land as the same event as
    its epoch seconds: the same time and the same derived id."""
    seconds = decode_predictions([msg(GOOD | {"ts": 1_790_000_000.123})]).rows
    ts = 1_790_000_000_123 * per_second // 1_000
    other = decode_predictions([msg(GOOD | {"ts": ts}), msg({"events": [GOOD | {"ts": ts}]})])
    assert not other.dead
    for column in ("event_id", "ts", "ts_ms"):
        assert other.rows[column] == seconds[column] * 2
    assert validate_outcome({"model": "m", "request_id": "r", "ts": 100_000_000_000, "label": 1}) == validate_outcome(
        {"model": "m", "request_id": "r", "ts": 100_000_000, "label": 1}
    )


def test_int64_fields_as_protobuf_s_json_mapping_writes_them_are_their_numbers() -> None:
    """Protobuf's JSON mapping (``JsonFormat``, ``MessageToJson``) writes an ``int64`` field as a string of its
    digits: a ``ts`` of epoch milliseconds as ``"1790000000123"``, a ``model_version`` as ``"3"``. They were
    refused ("not an RFC 3339 time", "must be a non-negative integer"): every event of a producer whose schema
    is a ``.proto``. They are the event their numbers are: the same time and derived id, on both decode paths
    (a numeric event is the typed fast path's); eight digits stay an ISO 8601 date."""
    event = {"model": "m", "request_id": "r", "features": {"a": 1.5}, "prediction": 1}
    as_numbers = decode_predictions([msg(event | {"ts": 1_790_000_000_123, "model_version": 3})]).rows
    for ts in ("1790000000123", "1790000000.123", "1790000000123000000"):
        texts = event | {"ts": ts, "model_version": "3"}
        decoded = decode_predictions([msg(texts), msg({"events": [texts | {"features": {"a": "x"}}]}, 1)])
        assert not decoded.dead, decoded.dead
        for column in ("event_id", "ts", "ts_ms", "model_version"):
            assert decoded.rows[column] == as_numbers[column] * 2
        typed = decode_predictions([msg(event | {"ts": ts, "model_version": 3})]).rows  # ts alone as text
        assert [typed[c] for c in ("event_id", "ts_ms")] == [as_numbers[c] for c in ("event_id", "ts_ms")]
    outcome = {"model": "m", "request_id": "r", "label": 1}
    assert validate_outcome(outcome | {"ts": "1790000000123"}) == validate_outcome(outcome | {"ts": 1_790_000_000_123})
    assert decode_predictions([msg(event | {"ts": "20261123"})]).rows["ts"] == [1_795_392_000]  # 2026-11-23
    for version in ("-3", "3.0", "x", "99999999999"):
        with pytest.raises(EventError, match='"model_version" must be a non-negative integer'):
            validate_prediction(event | {"ts": 1_790_000_000, "model_version": version})


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"model": None}, 'missing required field "model"'),
        ({"model": 7}, '"model" must be a string, got a number'),
        ({"model": "a b"}, '"model"'),
        ({"model": "ab\n"}, '"model"'),  # the pattern's $ must not let a trailing newline through
        ({"request_id": ""}, '"request_id" must be 1 to 1024 characters'),
        ({"ts": -5}, "outside 1970-01-01"),
        ({"ts": 5_000_000_000}, "send epoch seconds, milli-, micro- or nanoseconds (from 1973 on), or RFC 3339 text"),
        ({"ts": 5 * 10**15}, "outside 1970-01-01 .. 2106-02-07"),  # microseconds past 2106
        ({"ts": 5_000_000_000_000}, "outside 1970-01-01 .. 2106-02-07"),  # milliseconds past 2106
        ({"ts": True}, '"ts" must be an RFC 3339 string or an epoch number (seconds, or milli-, micro- or nanos'),
        ({"features": []}, '"features" must be an object'),
        ({"features": {"a": [True]}}, "feature 'a' must be a number, string, boolean or null, got a list"),
        ({"features": {"a": {"b": 1}}}, "got an object"),
        ({"features": {"a": 10**400}}, "too large"),
        ({"features": {"\x00bad": 1}}, "feature name"),
        ({"features": {"income\n": 1}}, "feature name"),  # fullmatch: a trailing newline is not a name
        ({"prediction": [1]}, '"prediction" must be a number, got a list'),
        ({"score": "high"}, '"score" must be a number, got a string'),
        ({"score": [0.2, 0.8]}, '"score" must be a number or an object of class → probability ({"0": 0.2, "1": 0.8})'),
        ({"model_version": -1}, '"model_version" must be a non-negative integer'),
        ({"event_id": 5}, '"event_id" must be a string'),
        ({"request_id": 12345}, '"request_id" must be a string, got a number'),
        ({"served": "no"}, '"served" must be true or false, got a string'),
        ({"served": 0}, '"served" must be true or false, got a number'),
        ({"latency_ms": -1}, '"latency_ms" must not be negative'),
        ({"latency_ms": "fast"}, '"latency_ms" must be a number, got a string'),
        ({"ts": "2026-11-23T08:00[Nowhere/Land]"}, "is not an RFC 3339 time"),
        # longer than any printed time: refused before the patterns for them (their cost is a length's square)
        ({"ts": "2026-11-23T08:00Z" + "[u-ca=iso8601]" * 10}, "is not an RFC 3339 time"),
        ({"ts": "2026-11-23" + "[a" * 300_000}, "is not an RFC 3339 time"),
    ],
)
def test_contract_violations_name_the_field(change: dict, reason: str) -> None:
    event = {k: v for k, v in (GOOD | change).items() if v is not None}
    with pytest.raises(EventError) as info:
        validate_prediction(event)
    assert reason in str(info.value)
    decoded = decode_predictions([msg(json.dumps(event).encode())])
    assert len(decoded.rows) == 0 and reason in decoded.dead[0].reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "malformed JSON"),
        (b"\xc3\x28", "not UTF-8"),
        (b'"text"', 'expected a JSON object (an event or {"events": [...]}) or an array of events, got a string'),
        (b'{"events": 3}', '"events" must be a list'),
        (
            b'{"model": "m", "request_id": "r", "ts": 1, "features": {"a": Infinity}, "prediction": 1}',
            "feature 'a' must be a finite number, got inf",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"model": "m", "features": {"a": ' + b"9" * 5000 + b"}}", "an integer of more than 4,300 digits"),
        (b'{"model": "m", "request_id": "\\ud800", "ts": 1, "features": {}, "prediction": 1}', "surrogate"),
    ],
)
def test_broken_messages_become_dead_letters_with_the_original_bytes(raw: bytes, reason: str) -> None:
    decoded = decode_predictions([msg(raw, 41), msg(GOOD, 42)])
    assert decoded.rows["request_id"] == ["r"]  # the good one after it still decodes
    (letter,) = decoded.dead
    assert reason in letter.reason
    assert (letter.original, letter.topic, letter.partition, letter.offset, letter.index) == (
        raw,
        "t",
        1,
        41,
        -1,
    )


def test_nan_is_a_missing_value_where_the_contract_takes_one_and_refused_elsewhere_event_by_event() -> None:
    """Python's json (and so pandas, and most Python services) writes a missing value as ``NaN``, which JSON does
    not have: a NaN feature is missing, as ``null`` is; a NaN score, business value or latency is absent. A NaN
    prediction or label, and ±Infinity anywhere, refuse that event only, not its envelope."""
    raw = json.dumps(  # Python's json writes NaN and Infinity as they are
        {"events": [
            GOOD | {"request_id": "nan-feature", "features": {"a": math.nan, "b": "x"}, "score": math.nan},
            GOOD | {"request_id": "inf-feature", "features": {"a": math.inf}},
            GOOD | {"request_id": "nan-prediction", "prediction": math.nan},
            GOOD | {"request_id": "fine", "latency_ms": math.nan},
        ]}
    ).encode()  # fmt: skip
    assert b"NaN" in raw and b"Infinity" in raw
    decoded = decode_predictions([msg(raw)])
    assert decoded.rows["request_id"] == ["nan-feature", "fine"]
    assert decoded.rows["missing"][0] == ["a"] and decoded.rows["cat.name"][0] == ["b"]
    assert math.isnan(decoded.rows["score"][0]) and math.isnan(decoded.rows["latency_ms"][1])
    assert [(d.index, d.reason) for d in decoded.dead] == [
        (1, "feature 'a' must be a finite number, got inf"),
        (2, '"prediction" must be a finite number, got nan'),
    ]
    outcomes = [GOOD_OUTCOME | {"value": math.nan}, GOOD_OUTCOME | {"request_id": "z", "label": math.nan}]
    decoded = decode_outcomes([msg({"events": outcomes})])
    assert decoded.rows["request_id"] == ["r"] and math.isnan(decoded.rows["value"][0])
    assert [(d.index, d.reason) for d in decoded.dead] == [(1, '"label" must be a finite number, got nan')]


def test_a_bad_event_in_an_envelope_is_dead_lettered_alone() -> None:
    envelope = {"events": [GOOD, GOOD | {"prediction": None}, "text", GOOD | {"request_id": "z"}]}
    decoded = decode_predictions([msg(envelope, 9)])
    assert decoded.rows["request_id"] == ["r", "z"]
    assert [(d.index, d.offset) for d in decoded.dead] == [(1, 9), (2, 9)]
    assert json.loads(decoded.dead[0].original)["request_id"] == "r"
    assert decoded.dead[1].reason == "envelope item must be an event object, got a string"


def test_an_array_of_event_objects_is_an_envelope_and_any_other_array_is_refused_whole() -> None:
    """``json.dumps(events)``: its events, a bad one dead-lettered alone. An array with anything but objects in it
    (``["a", "list"]``, ``[]``) is no array of events: refused whole, as before arrays were read."""
    decoded = decode_predictions([msg([GOOD, GOOD | {"prediction": None}, GOOD | {"request_id": "z"}], 9)])
    assert decoded.rows["request_id"] == ["r", "z"]
    assert [(d.index, d.offset, d.reason) for d in decoded.dead] == [(1, 9, 'missing required field "prediction"')]
    for value, kind in (([GOOD, "text"], "a list"), (["a", "list"], "a list"), ([], "an empty list")):
        (letter,) = decode_predictions([msg(value, 3)]).dead
        assert (letter.index, letter.original) == (-1, json.dumps(value).encode())
        assert letter.reason.startswith("expected a JSON object") and letter.reason.endswith(f"got {kind}")


def test_oversized_messages_are_refused_unread() -> None:
    decoded = decode_predictions([msg(GOOD | {"pad": "x" * 5000})], max_bytes=1024)
    assert "over the 1,024-byte limit" in decoded.dead[0].reason


def test_dead_letter_records_are_json_with_the_original() -> None:
    letter = decode_predictions([msg(b"\xff" * 200_000)]).dead[0]
    record = letter.to_json()
    assert record["original"] is None and record["truncated"] is True
    assert record["original_size"] == 200_000 and len(record["original_sha256"]) == 64
    json.dumps(record)


def test_derived_event_ids_are_what_they_always_were() -> None:
    """An id derived from an event's fields is how ClickHouse keeps a re-sent event once, across worker
    versions too: pinned here, for every path that derives one (field rules, typed, column-wise)."""
    prediction = {"model": "m", "request_id": "r1", "ts": 1_700_000_000, "prediction": 1}
    ids = {
        "2d069da6b3fc0e2ef57365f4cccde84c": prediction | {"features": {"a": 1.0}},  # numeric: the column-wise path
        "c6f8f674787bcab300b1866b94ccb5e4": prediction | {"features": {"a": 1.0}, "model_version": 2, "served": False},
    }
    for expected, event in ids.items():
        for value in (event, {"events": [event, event]}, event | {"features": {"a": "text"}}):
            assert set(decode_predictions([msg(value)]).rows["event_id"]) == {expected}
        assert decode_predictions([msg(event)] * 3).rows["event_id"] == [expected] * 3  # one-event messages at once
    outcome = {"model": "m", "request_id": "r1", "ts": 1_700_000_000, "label": 1}
    assert decode_outcomes([msg(outcome)]).rows["event_id"] == ["503196c44770abaa834eeca69bf822de"]
