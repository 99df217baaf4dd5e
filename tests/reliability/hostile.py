"""Hypothesis strategies for hostile Kafka messages, each tagged with what the worker must do with it."""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TS0 = 1_790_000_000
SQL = ("x'); DROP TABLE predictions; --", 'a" OR 1=1 --', "`; SELECT * FROM system.users", "labeled; DROP DATABASE x")

# Values of the wrong type for each field (a number is a valid `ts` and `prediction`, and a boolean a valid
# `prediction`, so not listed there).
WRONG: dict[str, list[object]] = {
    "model": [123, [1], {"a": 1}, None, True],
    "request_id": [123, [1], {"a": 1}, None, True],
    "features": [123, [1], None, True, "text"],
    "prediction": [[1], {"a": 1}, None],
    "ts": [[1], {"a": 1}, None, True, "yesterday"],
}


@dataclass(frozen=True)
class Message:
    """One Kafka message value and its fate: ``good`` ones land (``event_ids`` of them), bad ones dead-letter."""

    value: bytes
    good: bool
    kind: str  # what it tries: "valid", "nan feature", "envelope", "broken json", "inf / huge", ...
    request_ids: tuple[str, ...] = ()


def _printable(max_size: int) -> st.SearchStrategy[str]:
    # no control characters, no lone surrogates: the contract's "printable" text
    return st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=max_size)


FEATURE_NAMES = _printable(40).filter(lambda s: s == s.strip()) | st.sampled_from(SQL)
FEATURE_VALUES = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**53), 2**53)
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
    | st.booleans()
    | st.none()
)


def good_event(model: str, request_id: str) -> st.SearchStrategy[dict]:  # type: ignore[type-arg]
    return _good_events(model).map(lambda event: {**event, "request_id": request_id})


@functools.lru_cache(maxsize=8)
def _good_events(model: str) -> st.SearchStrategy[dict]:  # type: ignore[type-arg]
    # one strategy a model, its request id set after the draw: a strategy built anew for each of thousands of
    # draws is validated anew each time (a fifth of hypothesis' time)
    return st.fixed_dictionaries(
        {
            "model": st.just(model),
            "request_id": st.just(""),
            "ts": st.integers(0, 10**6).map(lambda s: TS0 + s),
            "features": st.dictionaries(FEATURE_NAMES, FEATURE_VALUES, min_size=1, max_size=6),
            "prediction": st.integers(0, 1) | st.booleans() | _printable(12),
        },
        optional={"score": st.floats(0, 1), "model_version": st.integers(0, 2**31)},
    )


def _with_raw_feature(event: dict, raw: bytes) -> bytes:  # type: ignore[type-arg]
    """``event`` with one more feature whose value is the raw JSON text ``raw`` (a name no other feature has)."""
    placeholder = "\u2603hostile\u2603"
    features = {k: v for k, v in event["features"].items() if k != "hostile"} | {"hostile": placeholder}
    return json.dumps({**event, "features": features}).encode().replace(json.dumps(placeholder).encode(), raw)


def _mutations(base: bytes) -> st.SearchStrategy[tuple[str, bytes]]:
    event = json.loads(base)
    deep = st.integers(1, 60_000).map(lambda d: ("deep nesting", _with_raw_feature(event, b"[" * d + b"]" * d)))
    return st.one_of(
        st.integers(1, len(base) - 1).map(lambda k: ("broken json", base[:k])),
        st.integers(0, len(base) - 1).map(lambda k: ("not utf-8", base[:k] + b"\xff\xfe" + base[k:])),
        st.sampled_from(sorted(WRONG)).flatmap(
            lambda field: st.sampled_from(WRONG[field]).map(
                lambda wrong: ("wrong type", json.dumps({**event, field: wrong}).encode())
            )
        ),
        st.sampled_from(["Infinity", "-Infinity", "1e400", "1" + "0" * 400, "9" * 5000]).map(
            lambda number: ("inf / huge", _with_raw_feature(event, number.encode()))
        ),
        deep,
        st.integers(1025, 5000).map(lambda n: ("giant string", json.dumps({**event, "request_id": "r" * n}).encode())),
        st.builds(lambda: ("giant message", json.dumps({**event, "pad": "x" * (1 << 20)}).encode())),  # when drawn
        st.sampled_from(["\x00", "\x1b[31m", "m\nx", " m"]).map(
            lambda name: ("control characters", json.dumps({**event, "model": name}).encode())
        ),
        st.sampled_from(SQL).map(lambda name: ("sql in model name", json.dumps({**event, "model": name}).encode())),
        st.sampled_from([b"", b"null", b"[]", b"42", b'"text"', b'{"events": 5}', b'{"events": [1]}']).map(
            lambda v: ("not an event", v)
        ),
    )


def hostile_message(model: str, serial: Iterator[int], tag: str = "g") -> st.SearchStrategy[Message]:
    """One message: a valid event (30 %, and 10 % with a feature ``NaN``), an envelope of valid events (10 %) or
    a broken one (50 %)."""

    @st.composite
    def message(draw: st.DrawFn) -> Message:
        rid = f"{tag}-{next(serial):09d}"  # unique across every draw; one width, so draws do not shift bounds
        event = draw(good_event(model, rid))
        base = json.dumps(event).encode()
        choice = draw(st.integers(0, 9))
        if choice < 3:
            return Message(base, True, "valid", (rid,))
        if choice == 3:  # Python's json writes a missing value as NaN: a missing feature, the event good
            return Message(_with_raw_feature(event, b"NaN"), True, "nan feature", (rid,))
        if choice == 4:
            others = [draw(good_event(model, f"{rid}-{k}")) for k in range(draw(st.integers(1, 5)))]
            ids = tuple(e["request_id"] for e in others)
            return Message(json.dumps({"events": others}).encode(), True, "envelope", ids)
        kind, value = draw(_mutations(base))
        return Message(value, False, kind)

    return message()


def messages(model: str, count: int, seed: int = 0, max_giant: int = 30) -> list[Message]:
    """``count`` messages (about half good), generated by hypothesis with a fixed seed.

    At most ``max_giant`` of them are over the 1 MiB limit: each is a megabyte through the broker.
    """
    out: list[Message] = []
    giants = itertools.count(1)
    strategy = hostile_message(model, itertools.count(), tag=f"g{seed}")
    per_example = 10  # fewer, larger examples: hypothesis' own cost is per example

    @settings(max_examples=count * 12 // (10 * per_example) + 1, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.lists(strategy, min_size=per_example, max_size=per_example))
    def collect(batch: list[Message]) -> None:
        out.extend(m for m in batch if m.kind != "giant message" or next(giants) <= max_giant)

    collect()
    return out[:count]
