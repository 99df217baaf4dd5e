"""A model's detector state written as JSON text (``streams.drift.state_json``): it reads back as the state.

msgspec writes it where that reads back the same, ``json.dumps`` where msgspec would write a number that is not
finite as ``null`` (or refuses the state): these tests hold the text to ``json.dumps``'s, value for
value, on states of every kind, and check that a real model's state takes the fast way.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from driftloop.infra.spec import SpecCatalog
from driftloop.streams.drift.cusum import CUSUM, Calibration
from driftloop.streams.drift.monitor import DriftMonitor
from driftloop.streams.drift.snapshot import restore_model, snapshot_model
from driftloop.streams.drift.state_json import state_text
from tests.streams.test_monitor import predictions

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True).map(np.float64),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
)
TEXTS = st.one_of(
    st.text(),  # lone surrogates among them: msgspec refuses those
    st.sampled_from(["null", ":null,", "[null]", "f3:null_rate", "null_rate:null", "é✓", "", "NaN", "Infinity"]),
)
STATES = st.recursive(
    st.one_of(st.none(), NUMBERS, TEXTS),
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(TEXTS, inner, max_size=6)),
    max_leaves=40,
)


def _same(a: object, b: object) -> bool:
    """Equal as JSON values (an object's keys in any order), a NaN equal to a NaN, and of the same JSON kind (an
    int is not a float)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=400, deadline=None)
@given(STATES)
@example(math.inf)  # a null at either end of the text
@example([None, {"f:null_rate": math.nan}, ":null,"])
@example({"\ud800": 1.0})  # a lone surrogate: msgspec refuses it
def test_a_state_reads_back_as_json_dumps_writes_it(state: object) -> None:
    assert _same(json.loads(state_text(state)), json.loads(json.dumps(state)))


def test_a_model_s_state_is_written_by_msgspec_and_restores_the_same_detectors(tmp_path: Path) -> None:
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    rng = random.Random(2)
    for start in range(0, 12_000, 2_000):
        monitor.process_predictions(predictions(rng, start, 2_000))
    state = snapshot_model(monitor, "m")
    text = state_text(state)
    assert text != json.dumps(state) and ": " not in text  # msgspec's (json.dumps puts a space after each colon)
    assert _same(json.loads(text), json.loads(json.dumps(state)))
    restored = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    restore_model(restored, "m", json.loads(text))
    assert _same(json.loads(state_text(snapshot_model(restored, "m"))), json.loads(text))


def test_a_model_learning_its_references_is_written_by_msgspec(tmp_path: Path) -> None:
    """A detector that learns its reference (a model's warm-up; a signal after an alarm) has no calibration, a
    ``null`` in the text: it reads back as the state, so msgspec's text stands (``json.dumps`` wrote every such
    model's state, three times as slowly); a number that is not finite beside it still takes ``json.dumps``."""
    monitor = DriftMonitor(SpecCatalog(tmp_path), clock=lambda: 1.0)
    monitor.process_predictions(predictions(random.Random(3), 0, 1_000))
    state = snapshot_model(monitor, "m")
    calibrations = [
        signal["state"]["calibration"] for signal in state["signals"].values() if "calibration" in signal["state"]
    ]
    assert len(calibrations) > 20 and calibrations.count(None) == len(calibrations)  # the CUSUM signals learn
    text = state_text(state)
    assert ": " not in text and ":null" in text  # msgspec's, with its nulls
    assert _same(json.loads(text), json.loads(json.dumps(state)))
    state["signals"]["f0"]["state"]["n"] = math.nan
    assert state_text(state) == json.dumps(state)


def test_a_calibration_s_infinite_exponents_are_written_as_text_and_read_back() -> None:
    """A chart its reference cannot move (a null rate's lower charts) has an infinite exponent: JSON has no
    number for it, and msgspec would write it as null."""
    detector = CUSUM(run_length=1e8, reference=2000)
    detector.update_many([0.0] * 1990 + [1.0] * 10)  # a 0/1 rate: its lower charts cannot move
    calibration = detector.calibration
    assert calibration is not None and not all(map(math.isfinite, calibration.thetas))
    text = state_text(detector.snapshot())
    assert '"inf"' in text and "Infinity" not in text
    assert Calibration.from_dict(json.loads(text)["calibration"]) == calibration
    old = calibration.as_dict() | {"thetas": list(calibration.thetas)}  # as states before wrote them
    assert Calibration.from_dict(json.loads(json.dumps(old))) == calibration
