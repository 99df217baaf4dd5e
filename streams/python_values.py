"""Python values as the event contract takes them: what the SDK and the serving client send for the values a
model server has at hand (numpy scalars, pandas' missing values, ``Decimal``, enums, UUIDs, datetimes).

The worker reads JSON only; these conversions happen before an event is written, so that a value with a JSON
form goes as that form, and one without (a time as a feature, bytes, a list) is refused with its type named.

>>> import numpy as np
>>> plain_value(np.str_("cat")), plain_value(np.float32(0.5)), present_value(float("nan")), plain_id(np.int64(7))
('cat', 0.5, None, '7')
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import numbers
import sys
import time
import uuid
from typing import Any

import numpy as np

from driftloop.infra.contract import EventError
from driftloop.streams.event_rules import is_nan


def python_ts(value: float | dt.datetime | str | np.datetime64 | None) -> float | str:
    """``ts`` as the contract takes it: None is now, a datetime its RFC 3339 text (a naive one is UTC), numpy's
    ``datetime64`` and numbers epoch seconds (the worker reads milli-, micro- and nanoseconds by their size)."""
    if value is None:
        return time.time()
    if _missing(value) or (isinstance(value, np.datetime64) and np.isnat(value)):
        raise EventError(f'"ts" is missing ({value!r}): give the time of the event, or None for now')
    if isinstance(value, np.datetime64):
        return float(value.astype("datetime64[us]").astype(np.int64)) / 1e6
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise EventError(
        f'"ts" must be a datetime, an RFC 3339 string or epoch seconds, got {value!r} ({type(value).__name__})'
    )


def present_value(value: Any) -> Any:
    """``value`` as :func:`plain_value` makes it, None for a NaN (pandas' and numpy's missing value)."""
    plain = plain_value(value)
    return None if is_nan(plain) else plain


def plain_id(value: Any) -> Any:
    """A request or event id as the contract takes it: an integer (a database's, numpy's) as its digits, a UUID
    as its text; any other type is left for the contract's rules to refuse."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        return str.__str__(value)
    return value


def plain_value(value: Any) -> Any:
    """A JSON-ready number, string, boolean or None from numpy's, pandas' and Python's own types: numpy scalars
    (``np.str_`` from a string array or scikit-learn's ``predict``), ``Decimal`` (a database's NUMERIC), enums
    (their value), pandas' missing values (``pd.NA``, ``NaT``: None)."""
    if value is None or type(value) in _JSON_SCALARS:
        return value
    if isinstance(value, np.datetime64 | np.timedelta64):
        if np.isnat(value):
            return None
        raise EventError(f"{value!r} is a time, not a number, string, boolean or null: send it as a number or text")
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return plain_value(value.item())
    if _missing(value):
        return None
    if isinstance(value, str):
        return str.__str__(value)  # a str subclass's own text (a str enum's value, not its name)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, enum.Enum):
        return plain_value(value.value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real | decimal.Decimal):
        return float(value)
    raise EventError(f"{value!r} ({type(value).__name__}) is not a number, string, boolean or null")


_JSON_SCALARS = (str, bool, int, float)


def _missing(value: Any) -> bool:
    """pandas' missing values (``pd.NA``, ``pd.NaT``), looked for only where pandas is loaded."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and (value is pandas.NA or value is pandas.NaT)
