"""A model's detector state as JSON text: written quickly, read back as the same state by any JSON reader.

Every model that saw events is saved at every offset commit (``streams.drift.observer``), and ``json.dumps``
took two thirds of a save: 0.77 of 1.2 ms for a model of ten features, some 2,000 numbers each written
through Python. msgspec writes the same JSON six times as fast, but it writes a number that is not finite,
which JSON has no word for (``json.dumps`` writes ``NaN`` and ``Infinity``, which Python reads back), as
``null``, as it writes None. So a text holding a ``null`` value is read back, and written again by
``json.dumps`` unless it reads back as the state (its nulls all None: a detector that learns its reference has
no calibration, so every model in its warm-up, and every model while a signal learns again after an alarm,
took ``json.dumps``'s way, a sixth of a fleet's detection); so is a state msgspec refuses (a lone surrogate in
a text, a type ``json.dumps`` would refuse too): whichever writes it, the text reads back (``json.loads``) as
the state written. (A calibration writes its infinite exponents as ``"inf"``: every model has some, for
charts its null rates cannot move.)

>>> text = state_text({"n": 3, "mean": np.float64(0.5), "values": [1.0, 2.5], "names": ["é"]})
>>> text, json.loads(text) == {"n": 3, "mean": 0.5, "values": [1.0, 2.5], "names": ["é"]}
('{"n":3,"mean":0.5,"values":[1.0,2.5],"names":["é"]}', True)
>>> state_text({"theta": 0.5, "calibration": None})  # a null that is None: msgspec's text
'{"theta":0.5,"calibration":null}'
>>> state_text({"theta": float("inf"), "calibration": None})  # a number not finite: json.dumps's words for it
'{"theta": Infinity, "calibration": null}'
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import numpy as np


def _number(value: Any) -> float:
    """numpy's floats as floats (``json.dumps`` writes them as floats; msgspec takes Python's only)."""
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")  # json.dumps decides (and refuses it)


_ENCODER = msgspec.json.Encoder(enc_hook=_number)
_DECODER = msgspec.json.Decoder()
_BEFORE, _AFTER = frozenset(b":[,"), frozenset(b",]}")  # around a value in msgspec's JSON (it writes no spaces)


def _holds_null(text: bytes) -> bool:
    """Whether msgspec's JSON ``text`` holds a ``null`` value (not a text with "null" in it, such as a null rate's
    name): each "null" found looked at once (a regular expression read the text 30 times as slowly)."""
    at = text.find(b"null")
    while at >= 0:
        if (at == 0 or text[at - 1] in _BEFORE) and (at + 4 == len(text) or text[at + 4] in _AFTER):
            return True
        at = text.find(b"null", at + 4)
    return False


def state_text(state: Any) -> str:
    """``state`` as JSON text: msgspec's, or ``json.dumps``'s where msgspec's would not read back the same."""
    try:
        text = _ENCODER.encode(state)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        return json.dumps(state)
    if _holds_null(text) and _DECODER.decode(text) != state:  # a number not finite, written as null
        return json.dumps(state)  # which tells them apart
    return text.decode()
