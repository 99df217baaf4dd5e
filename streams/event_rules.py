"""The contract's field rules (docs/events.md): each field of an event checked, with an :class:`EventError`
that names what is wrong; the events' ids; and an event as a row, in its table's column order.

These judge any message the typed fast path (:mod:`streams.decode_fast`) does not take whole, and say
what is wrong with it; :func:`validate_prediction` and :func:`validate_outcome` are the SDK's checks.

>>> validate_outcome({"model": "m", "request_id": "r1", "ts": 1700000000, "label": 1}) == outcome_id(
...     None, "m", "r1", 1700000000000, "1")
True
>>> validate_prediction({"model": "m", "request_id": "r1", "ts": 1700000000, "features": {}, "prediction": None})
Traceback (most recent call last):
...
driftloop.infra.contract.EventError: missing required field "prediction"
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import zoneinfo
from typing import Any, NamedTuple

from driftloop.infra.contract import EventError
from driftloop.streams.event_types import (
    MAX_EPOCH,
    MAX_FEATURES,
    MAX_TEXT,
    MICROSECONDS_FROM,
    MILLISECONDS_FROM,
    MODEL_NAME,
    NANOSECONDS_FROM,
    valid_model_name,
)

FEATURE_NAME = re.compile(r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]{0,126}[^\x00-\x1f\x7f\s])?$")


class PredictionRow(NamedTuple):
    """A prediction event as a row of the ``predictions`` table (:data:`PREDICTION_COLUMNS`, in order), and
    the position of the message it came in (among its batch's messages)."""

    event_id: str
    model: str
    model_version: int
    request_id: str
    ts: int  # epoch seconds
    ts_ms: int
    num_name: list[str]
    num_value: list[float]
    cat_name: list[str]
    cat_value: list[str]
    missing: list[str]
    prediction: str
    prediction_num: float
    score: float
    scores_label: list[str]
    scores_probability: list[float]
    served: int
    latency_ms: float
    position: int = -1


class OutcomeRow(NamedTuple):
    """An outcome event as a row of the ``outcomes`` table (:data:`OUTCOME_COLUMNS`), and its message's position."""

    event_id: str
    model: str
    request_id: str
    ts: int
    ts_ms: int
    label: str
    label_num: float
    value: float
    position: int = -1


#: A row field's column: the nested columns' names have a dot (``num.name``).
_NESTED = {"num_name", "num_value", "cat_name", "cat_value", "scores_label", "scores_probability"}
PREDICTION_COLUMNS = tuple(f.replace("_", ".") if f in _NESTED else f for f in PredictionRow._fields[:-1])
OUTCOME_COLUMNS = OutcomeRow._fields[:-1]


def kind_of(value: Any) -> str:
    """The JSON kind of a value, for messages; a type JSON does not have (one given to the SDK) by its name."""
    kind = _KINDS.get(type(value))
    return kind if kind is not None else f"{type(value).__name__} (no JSON type)"


_KINDS = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    type(None): "null",
    int: "a number",
    float: "a number",
}


# --- field rules ------------------------------------------------------------------------------------------

known_features: set[str] = set()


def _model(event: dict[str, Any]) -> str:
    model = event.get("model")
    if type(model) is not str:
        raise EventError(_missing_or_type("model", model, "a string"))
    if not valid_model_name(model):
        raise EventError(f'"model" {model[:80]!r} must match {MODEL_NAME} (letters, digits, . _ -)')
    return model


def _text(event: dict[str, Any], field: str) -> str:
    value = event.get(field)
    if type(value) is not str:
        raise EventError(_missing_or_type(field, value, "a string"))
    if not value or len(value) > MAX_TEXT:
        raise EventError(f'"{field}" must be 1 to {MAX_TEXT} characters (got {len(value)})')
    return value


def _missing_or_type(field: str, value: Any, expected: str) -> str:
    if value is None:
        return f'missing required field "{field}"'
    return f'"{field}" must be {expected}, got {kind_of(value)}'


def _number(value: Any, what: str) -> float:
    kind = type(value)
    if kind is float:
        if value - value != 0.0:  # NaN or ±inf
            raise EventError(f"{what} must be a finite number, got {value}")
        return value  # type: ignore[no-any-return]
    if kind is int:
        try:
            number = float(value)
        except OverflowError:
            raise EventError(f"{what} is too large ({len(str(value))} digits)") from None
        return number
    raise EventError(f"{what} must be a number, got {kind_of(value)}")


def _timestamp(event: dict[str, Any]) -> tuple[int, int]:
    """(epoch seconds, epoch milliseconds) of ``ts``: RFC 3339 text, epoch seconds or epoch milliseconds."""
    value = event.get("ts")
    if type(value) is str:
        epoch = text_epoch(value)
    elif value is None:
        raise EventError('missing required field "ts"')
    else:
        try:
            epoch = epoch_seconds(_number(value, '"ts"'))
        except EventError:
            raise EventError(
                f'"ts" must be an RFC 3339 string or an epoch number (seconds, or milli-, micro- or nanoseconds), '
                f"got {kind_of(value)}"
            ) from None
    if not 0 <= epoch < MAX_EPOCH:
        raise EventError(
            f'"ts" {value!r} is outside 1970-01-01 .. 2106-02-07: send epoch seconds, milli-, micro- or '
            "nanoseconds (from 1973 on), or RFC 3339 text"
        )
    return int(epoch), round(epoch * 1000)


def epoch_seconds(number: float) -> float:
    """Epoch seconds of a number ``ts``: itself, or a thousandth of it from :data:`MILLISECONDS_FROM` on (the
    epoch milliseconds of Java's and JavaScript's clocks and of Kafka's own timestamps), a millionth from
    :data:`MICROSECONDS_FROM` (Go's ``UnixMicro``, database exports) and a billionth from
    :data:`NANOSECONDS_FROM` (Go's ``UnixNano``, Python's ``time.time_ns()``). Numbers between one unit's 2106
    and the next unit's 1973 are none of them, and stay out of range.

    >>> epoch_seconds(1795420800.25), epoch_seconds(1795420800250), epoch_seconds(1795420800250000)
    (1795420800.25, 1795420800.25, 1795420800.25)
    """
    if number < MILLISECONDS_FROM:
        return number
    if number < MICROSECONDS_FROM:
        return number / 1000
    return number / 1_000_000 if number < NANOSECONDS_FROM else number / 1_000_000_000


#: An epoch number written as text: protobuf's JSON mapping writes an ``int64`` field so (``"1795420800250"``).
#: Eight digits are not one: they are an ISO 8601 date (``"20261123"``), read as such.
_EPOCH_TEXT = re.compile(r"[0-9]{9,20}(?:\.[0-9]{1,9})?")


def text_epoch(value: str) -> float:
    """Epoch seconds of a ``ts`` sent as text: an epoch number as text (seconds, milli-, micro- or nanoseconds,
    as :func:`epoch_seconds` reads a number), or a time :func:`rfc3339_epoch` reads.

    >>> text_epoch("1795420800250"), text_epoch("1795420800.25"), text_epoch("2026-11-23T08:00:00.25Z")
    (1795420800.25, 1795420800.25, 1795420800.25)
    """
    if _EPOCH_TEXT.fullmatch(value):
        return epoch_seconds(float(value) if "." in value else int(value))
    return rfc3339_epoch(value)


def rfc3339_epoch(value: str) -> float:
    """Epoch seconds of an RFC 3339 time (no offset: UTC), and of the forms services print one in: a lower-case
    ``t`` and ``z`` (RFC 3339 section 5.6), a time zone in brackets after it (RFC 9557, Java's
    ``ZonedDateTime.toString()``: ``2026-11-23T09:00+01:00[Europe/Paris]``), and ``UTC`` or ``GMT`` after a
    space (Go's ``time.Time.String()``: ``2026-11-23 08:00:00 +0000 UTC``).

    >>> rfc3339_epoch("2026-11-23T09:00+01:00[Europe/Paris]") == rfc3339_epoch("2026-11-23 08:00:00 +0000 UTC")
    True
    """
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        parsed = _printed_time(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


#: The longest printed time read: Go's with nanoseconds and its monotonic reading, or a zone's name in brackets
#: and a few tags, are under 100 characters.
MAX_PRINTED_TIME = 128
_GO_MONOTONIC = re.compile(r" m=[+-][0-9.]+$")  # time.Now().String()'s monotonic clock reading
_SPACED_OFFSET = re.compile(r" ([+-][0-9]{2}:?[0-9]{2})$")
_ZONE_SUFFIX = re.compile(r"^(.*?)\[!?([^\]=]+)\](?:\[[^\]]*\])*$")  # RFC 9557: [zone], then [key=value] tags


def _printed_time(value: str) -> dt.datetime:
    """A time in one of the printed forms :func:`rfc3339_epoch` reads besides Python's ISO format."""
    if len(value) > MAX_PRINTED_TIME:  # no time is longer, and the patterns below take the square of a length
        raise EventError(f'"ts" {value[:40]!r}... is not an RFC 3339 time (2026-11-23T08:00:00Z)')
    text, zone = _GO_MONOTONIC.sub("", value), None
    if (bracketed := _ZONE_SUFFIX.match(text)) is not None:
        text, zone = bracketed.group(1), bracketed.group(2)
    if text[-4:].upper() in (" UTC", " GMT"):
        text, zone = text[:-4], zone or "UTC"
    text = _SPACED_OFFSET.sub(r"\1", text.strip())  # Go's and Ruby's "08:00:00.5 +0000"
    try:
        parsed = dt.datetime.fromisoformat(text.upper())  # upper: RFC 3339 allows a lower-case t and z
        if parsed.tzinfo is None and zone is not None:  # the zone says what the offset is
            parsed = parsed.replace(tzinfo=_time_zone(zone))
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise EventError(f'"ts" {value[:40]!r} is not an RFC 3339 time (2026-11-23T08:00:00Z)') from None
    return parsed


def _time_zone(name: str) -> dt.tzinfo:
    """An IANA time zone by its name (``Europe/Paris``); ``ValueError`` for anything else."""
    if name.upper() in ("UTC", "Z", "GMT"):
        return dt.UTC
    if not _ZONE_NAME.fullmatch(name):  # looked up as a file: no path, nothing long
        raise ValueError(f"not a time zone name: {name[:40]!r}")
    try:
        return zoneinfo.ZoneInfo(name)
    except OSError as exc:  # a name the system's zone files cannot hold
        raise ValueError(f"not a time zone name: {name[:40]!r}") from exc


_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+-]{0,29}(/[A-Za-z0-9_+-]{1,30}){0,2}")


def value_text(value: Any, field: str) -> tuple[str, float]:
    """A prediction or label as (canonical text, number or NaN): 1, 1.0 and "1" compare equal as text; true
    and "true" too (a class, not the number 1)."""
    kind = type(value)
    if kind is str:
        if len(value) > MAX_TEXT:
            raise EventError(f'"{field}" is longer than {MAX_TEXT} characters')
        return value, math.nan
    if kind is bool:
        return boolean_text(value), math.nan
    if value is None:
        raise EventError(f'missing required field "{field}"')
    number = _number(value, f'"{field}"')
    return number_text(number), number


def number_in(text: str) -> float | None:
    """The finite number a text reads as (``"12.50"``), else None (``"unknown"``, ``"nan"``, ``"inf"``).

    >>> number_in("12.50"), number_in("unknown"), number_in("inf")
    (12.5, None, None)
    """
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def boolean_text(value: bool) -> str:
    """The text of a JSON true or false, as a category or a class: "true" or "false"."""
    return "true" if value else "false"


def number_text(number: float) -> str:
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def prediction_id(given: Any, model: str, request_id: str, ts_ms: int, shadow: str = "") -> str:
    """The given id, else one derived from the event (``shadow``: :func:`shadow_key` of an unserved one)."""
    return _event_id(given, f"p\x1f{model}\x1f{request_id}\x1f{ts_ms}{shadow}")


def shadow_key(served: bool, version: int | None) -> str:
    """What sets a shadow's prediction apart from the served one of the same request and time (whose derived
    id stays what it always was)."""
    return "" if served else f"\x1fshadow\x1f{version or 0}"


def prediction_ids(
    given: list[str | None], models: list[str], request_ids: list[str], ts_ms: list[int], shadows: list[str]
) -> list[str]:
    """:func:`prediction_id` of many events (checked types: a given id is valid), hashed in one loop."""
    rows = zip(models, request_ids, ts_ms, shadows, strict=True)
    return _event_ids(
        given, [f"p\x1f{model}\x1f{request_id}\x1f{ts}{shadow}" for model, request_id, ts, shadow in rows]
    )


def outcome_id(given: Any, model: str, request_id: str, ts_ms: int, label: str) -> str:
    return _event_id(given, f"o\x1f{model}\x1f{request_id}\x1f{ts_ms}\x1f{label}")


def outcome_ids(
    given: list[str | None], models: list[str], request_ids: list[str], ts_ms: list[int], labels: list[str]
) -> list[str]:
    """:func:`outcome_id` of many events (checked types: a given id is valid), hashed in one loop."""
    rows = zip(models, request_ids, ts_ms, labels, strict=True)
    return _event_ids(
        given, [f"o\x1f{model}\x1f{request_id}\x1f{ts}\x1f{label}" for model, request_id, ts, label in rows]
    )


blake2b = hashlib.blake2b
_EMPTY_ID_HASH = blake2b(digest_size=16)  # copied for each id: a quarter cheaper than a new one with its arguments


def _derived_id(key: str) -> str:
    """The id derived from an event's key: its BLAKE2b digest of 16 bytes, in hex."""
    hashed = _EMPTY_ID_HASH.copy()
    hashed.update(key.encode("utf-8", "surrogatepass"))
    return hashed.hexdigest()


def _event_ids(given: list[str | None], keys: list[str]) -> list[str]:
    """Each event's given id, else the one derived from its key."""
    if given.count(None) != len(given):
        return list(map(_event_id, given, keys))
    return list(map(_derived_id, keys))


def _event_id(given: Any, key: str) -> str:
    if given is None:
        # Deterministic: the same event re-sent gets the same id, so ClickHouse keeps it once.
        return _derived_id(key)
    if type(given) is not str or not 0 < len(given) <= 128:
        raise EventError('"event_id" must be a string of 1 to 128 characters')
    return given  # type: ignore[no-any-return]


def _features(event: dict[str, Any]) -> tuple[list[str], list[float], list[str], list[str], list[str]]:
    features = event.get("features")
    if type(features) is not dict:
        raise EventError(_missing_or_type("features", features, "an object of name → number, string or null"))
    if len(features) > MAX_FEATURES:
        raise EventError(f'"features" has {len(features)} entries; at most {MAX_FEATURES} are accepted')
    names = list(features)
    if not known_features.issuperset(names):
        learn_names(names)
    values = list(features.values())
    if _NUMERIC.issuperset(map(type, values)):  # the common case, checked in C: every value a number
        try:
            numbers = [float(v) for v in values]
        except OverflowError:
            numbers = []  # an integer too large for a float: the slow path names it
        # a plain sum: finite values can overflow it (math.fsum would raise), and then each one is judged
        if len(numbers) == len(values) and math.isfinite(sum(numbers)):
            return names, numbers, [], [], []
    return features_one_by_one(features)


_NUMERIC = frozenset({float, int})


def learn_names(names: list[str]) -> None:
    for name in names:
        if name not in known_features:
            if not FEATURE_NAME.fullmatch(name):
                raise EventError(f"feature name {name[:80]!r} must be 1-128 printable characters")
            if len(known_features) < 100_000:
                known_features.add(name)


def features_one_by_one(
    features: dict[str, Any],
) -> tuple[list[str], list[float], list[str], list[str], list[str]]:
    num_names: list[str] = []
    num_values: list[float] = []
    cat_names: list[str] = []
    cat_values: list[str] = []
    missing: list[str] = []
    for name, value in features.items():
        kind = type(value)
        if is_nan(value):  # Python's json (and so pandas) writes a missing value so
            missing.append(name)
        elif kind is float or kind is int:
            num_names.append(name)
            num_values.append(_number(value, f"feature {name!r}"))
        elif kind is str:
            if len(value) > MAX_TEXT:
                raise EventError(f"feature {name!r} is longer than {MAX_TEXT} characters")
            cat_names.append(name)
            cat_values.append(value)
        elif value is None:
            missing.append(name)
        elif kind is bool:
            cat_names.append(name)
            cat_values.append(boolean_text(value))
        else:
            raise EventError(f"feature {name!r} must be a number, string, boolean or null, got {kind_of(value)}")
    return num_names, num_values, cat_names, cat_values, missing


def score_of(value: Any, prediction: str) -> tuple[float, list[str], list[float]]:
    if value is None or is_nan(value):  # absent, null or NaN: no score
        return math.nan, [], []
    if type(value) is dict:
        labels = list(value)
        probabilities = [_number(p, f'"score" of class {c!r}') for c, p in value.items()]
        score = value.get(prediction)
        return (
            (float(score) if score is not None else max(probabilities, default=math.nan)),
            labels,
            probabilities,
        )
    if type(value) is list:  # a probability vector, as predict_proba gives it: which class is which?
        raise EventError(
            '"score" must be a number or an object of class → probability ({"0": 0.2, "1": 0.8}), got a list'
        )
    return _number(value, '"score"'), [], []


def validate_prediction(event: dict[str, Any]) -> str:
    """Check a prediction event against the contract (``EventError`` says what is wrong); its event_id."""
    return prediction_row(event).event_id


def validate_outcome(event: dict[str, Any]) -> str:
    """Check an outcome event against the contract (``EventError`` says what is wrong); its event_id."""
    return outcome_row(event).event_id


def prediction_row(event: dict[str, Any], position: int = -1) -> PredictionRow:
    """``event`` as a row, each field checked (``EventError`` names the first one at fault)."""
    model = _model(event)
    request_id = _text(event, "request_id")
    ts, ts_ms = _timestamp(event)
    num_names, num_values, cat_names, cat_values, missing = _features(event)
    prediction, prediction_num = value_text(event.get("prediction"), "prediction")
    score, labels, probabilities = score_of(event.get("score"), prediction)
    version = event.get("model_version", 0)
    if version is None:
        version = 0
    elif type(version) is str and version.isascii() and version.isdigit() and len(version) <= 10:
        version = int(version)  # an int64 field as protobuf's JSON mapping writes it
    if type(version) is not int or not 0 <= version < 2**32:
        raise EventError('"model_version" must be a non-negative integer')
    served = event.get("served", True)
    if served is None:
        served = True
    if type(served) is not bool:
        raise EventError(f'"served" must be true or false, got {kind_of(served)}')
    event_id = prediction_id(event.get("event_id"), model, request_id, ts_ms, shadow_key(served, version))
    latency_ms = _optional_number(event.get("latency_ms"), '"latency_ms"')
    if latency_ms < 0:
        raise EventError(f'"latency_ms" must not be negative, got {latency_ms}')
    return PredictionRow(
        event_id,
        model,
        version,
        request_id,
        ts,
        ts_ms,
        num_names,
        num_values,
        cat_names,
        cat_values,
        missing,
        prediction,
        prediction_num,
        score,
        labels,
        probabilities,
        int(served),
        latency_ms,
        position,
    )


def outcome_row(event: dict[str, Any], position: int = -1) -> OutcomeRow:
    """``event`` as a row, each field checked (``EventError`` names the first one at fault)."""
    model = _model(event)
    request_id = _text(event, "request_id")
    ts, ts_ms = _timestamp(event)
    label, label_num = value_text(event.get("label"), "label")
    value = _optional_number(event.get("value"), '"value"')
    event_id = outcome_id(event.get("event_id"), model, request_id, ts_ms, label)
    return OutcomeRow(event_id, model, request_id, ts, ts_ms, label, label_num, value, position)


def is_nan(value: Any) -> bool:
    """Whether ``value`` is a float NaN: where the contract takes a missing value, the missing value."""
    return type(value) is float and value != value


def _optional_number(value: Any, what: str) -> float:
    """A finite number, or NaN for an absent one (left out, null or NaN)."""
    return math.nan if value is None or is_nan(value) else _number(value, what)
