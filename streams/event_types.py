"""The event contract as msgspec types: what a *valid* message looks like, parsed and type-checked in C.

The types are outside the garbage collector's watch (``gc=False``: they hold no cycles), so that a batch of
decoded events does not make every collection longer.

:mod:`streams.decode` tries these first. A message that fits them whole needs no per-field Python
checks but the few msgspec cannot express (feature names, timestamp range, RFC 3339 text); one that does
not fit (a bad event anywhere in an envelope, anything unusual) is parsed again by the decoder's field
rules, which say exactly what is wrong. So these types may be stricter than the contract, never looser.

>>> parse_predictions(b'{"model": "m", "request_id": "r1", "ts": 1700000000, "features": {"x": 1}, '
...                   b'"prediction": 1}')[0].features
{'x': 1.0}
>>> parse_predictions(b'{"events": [{"model": "m"}]}') is None  # "request_id" and more are missing
True
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

MAX_FEATURES = 2000
MAX_TEXT = 1024
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

Model = Annotated[str, Meta(pattern=MODEL_NAME)]
Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]
# JSON has no NaN, and msgspec refuses numbers beyond the float range: every float here is finite.
Value = float | Annotated[str, Meta(max_length=MAX_TEXT)]
EventId = Annotated[str, Meta(min_length=1, max_length=128)]
Version = Annotated[int, Meta(ge=0, lt=2**32)]


class PredictionEvent(msgspec.Struct, gc=False):
    """One prediction event (docs/events.md); a JSON integer arrives as a float, as the decoder stores it."""

    model: Model
    request_id: Text
    ts: float | str
    features: Annotated[dict[str, Value | None], Meta(max_length=MAX_FEATURES)]
    prediction: Value
    score: float | dict[str, float] | None = None
    model_version: Version | None = 0
    event_id: EventId | None = None
    events: Any = msgspec.UNSET  # present: the message is an envelope, not an event


class OutcomeEvent(msgspec.Struct, gc=False):
    """One outcome event (docs/events.md)."""

    model: Model
    request_id: Text
    ts: float | str
    label: Value
    event_id: EventId | None = None
    events: Any = msgspec.UNSET


class PredictionEnvelope(msgspec.Struct, gc=False):
    events: list[PredictionEvent]


class OutcomeEnvelope(msgspec.Struct, gc=False):
    events: list[OutcomeEvent]


# msgspec's errors (DecodeError, ValidationError), bytes that are not UTF-8 inside a string, nesting too deep
_UNFIT = (ValueError, RecursionError)
_predictions = (msgspec.json.Decoder(PredictionEnvelope), msgspec.json.Decoder(PredictionEvent))
_outcomes = (msgspec.json.Decoder(OutcomeEnvelope), msgspec.json.Decoder(OutcomeEvent))


def parse_predictions(value: bytes) -> list[PredictionEvent] | None:
    """The prediction events of a message value that fits the types whole, else None."""
    return _parse(value, *_predictions)  # type: ignore[return-value]


def parse_outcomes(value: bytes) -> list[OutcomeEvent] | None:
    """The outcome events of a message value that fits the types whole, else None."""
    return _parse(value, *_outcomes)  # type: ignore[return-value]


def _parse(value: bytes, envelope: msgspec.json.Decoder, event: msgspec.json.Decoder) -> list[Any] | None:
    # msgspec skips unknown fields unread: the whole value must be UTF-8 and spell no UTF-16 surrogate
    # (the field rules judge those, as rare as they are)
    if b"\\ud" in value or b"\\uD" in value:
        return None
    if not value.isascii():
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if b'"events"' in value:
        try:
            return envelope.decode(value).events  # type: ignore[no-any-return]
        except _UNFIT:
            pass  # perhaps an event that mentions "events" somewhere else
    try:
        single = event.decode(value)
    except _UNFIT:
        return None
    return None if single.events is not msgspec.UNSET else [single]
