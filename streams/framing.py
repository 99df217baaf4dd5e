"""How producers frame the JSON of a message, besides one event or ``{"events": [...]}``.

Four framings of real clients are read as the envelope they stand for:

- **Confluent's wire format**: a Schema Registry serializer (Confluent's ``JSONSerializer`` in every language,
  ``KafkaJsonSchemaSerializer`` in Java) writes a zero byte and a four-byte schema id before the JSON. The id is
  not looked up: the JSON is read by this contract as any other. A frame whose payload is not JSON (Avro,
  Protobuf) is refused with a message that says so.
- **A UTF-8 byte order mark** (.NET's ``StreamWriter``, Windows tools): skipped.
- **A JSON array of events** (``json.dumps(events)``): the events of an envelope. An array of anything but
  objects is no array of events: the field rules refuse it whole.
- **JSON lines** (Fluent Bit, Vector, Logstash's ``json_lines``: an event, or an envelope, a line): the events
  of the lines, in order. A JSON text holds no raw line break inside a string, so a line is one value.

:func:`as_envelope` gives the fast path (:mod:`streams.decode_fast`) an envelope to parse; only a message it
could not parse as it came is looked at, so the common message costs nothing. :func:`unframed` and
:func:`json_lines` give the field rules (:mod:`streams.decode`) the same events with what is wrong with them.

>>> as_envelope(b'\\x00\\x00\\x00\\x00\\x07{"model": "m"}')
b'{"model": "m"}'
>>> as_envelope(b'[{"model": "m"}, {"model": "n"}]')
b'{"events":[{"model": "m"}, {"model": "n"}]}'
>>> as_envelope(b'{"model": "m"}\\n{"model": "n"}\\n')
b'{"events":[{"model": "m"},{"model": "n"}]}'
>>> as_envelope(b'{"model": "m"') is None  # nothing to unframe: the message is what it is
True
"""

from __future__ import annotations

from typing import NamedTuple

#: Confluent's wire format: the magic byte 0, then the schema id as four bytes (big-endian).
WIRE_MAGIC, WIRE_HEADER = 0, 5
BYTE_ORDER_MARK = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"
_FRAME_STARTS = (bytes([WIRE_MAGIC]), BYTE_ORDER_MARK[:1])


class Unframed(NamedTuple):
    """A message's JSON without its frame, and the Schema Registry id it was framed with (None: none)."""

    body: bytes
    schema_id: int | None


def is_framed(value: object) -> bool:
    """Whether ``value`` starts as a framed message does (a Schema Registry header or a byte order mark).

    >>> is_framed(b'\\x00\\x00\\x00\\x00\\x07{}'), is_framed(b'{}'), is_framed(None)
    (True, False, False)
    """
    return type(value) is bytes and value[:1] in _FRAME_STARTS


def unframed(value: bytes) -> Unframed:
    """``value`` without a Confluent wire-format header or a byte order mark (either, or neither).

    >>> unframed(b'\\x00\\x00\\x00\\x01\\x00{"a": 1}')
    Unframed(body=b'{"a": 1}', schema_id=256)
    >>> unframed(b'\\xef\\xbb\\xbf{"a": 1}').body
    b'{"a": 1}'
    """
    schema_id = None
    if len(value) > WIRE_HEADER and value[0] == WIRE_MAGIC:
        schema_id = int.from_bytes(value[1:WIRE_HEADER], "big")
        value = value[WIRE_HEADER:]
    if value.startswith(BYTE_ORDER_MARK):
        value = value[len(BYTE_ORDER_MARK) :]
    return Unframed(value, schema_id)


def json_lines(body: bytes) -> list[bytes] | None:
    """The lines of ``body`` when it is JSON lines: two or more lines (blank ones aside) that each hold an
    object, else None.

    >>> json_lines(b'{"a": 1}\\r\\n\\n{"a": 2}')
    [b'{"a": 1}', b'{"a": 2}']
    >>> json_lines(b'{\\n  "a": 1\\n}') is None  # one object written over several lines
    True
    """
    if b"\n" not in body:
        return None
    lines = [line for line in (raw.strip(_WHITESPACE) for raw in body.split(b"\n")) if line]
    if len(lines) < 2 or not all(line[:1] == b"{" and line[-1:] == b"}" for line in lines):
        return None
    return lines


def as_envelope(value: bytes) -> bytes | None:
    """``value`` as one event or an envelope, when it is framed in one of the ways above; None when it is not
    (it is read, or refused, as it came)."""
    body, schema_id = unframed(value)
    stripped = body.strip(_WHITESPACE)
    if stripped[:1] == b"[":
        return b'{"events":' + stripped + b"}"
    lines = json_lines(stripped)
    if lines is not None:
        return b'{"events":[' + b",".join(lines) + b"]}"
    return body if schema_id is not None or len(body) != len(value) else None
