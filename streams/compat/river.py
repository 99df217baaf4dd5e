"""River's ADWIN, fed a batch at a time: the private parts of it that driftloop uses (River 0.26).

River's ``ADWIN.update`` is a Python method around its Rust window: after a detection it resets the flag
and the window (``_reset``), then hands the value to ``_helper.update``, which answers whether the window
found a change, and sets ``_drift_detected``. ``streams.drift.detectors`` does the same for a run of
values without a Python call a value (``map`` over :func:`window_update`). This module is the one place
that touches those names; ``tests/streams/test_library_internals.py`` fails when River changes them.

>>> from river import drift
>>> detector = drift.ADWIN()
>>> update = window_update(detector)
>>> any(map(update, [0.0] * 100 + [1.0] * 100)), detector.drift_detected
(True, False)
>>> mark_detected(detector); detector.drift_detected
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # River is imported where a model's spec names one of its detectors, not before
    from river import drift

#: The library series this module was written for (pinned in pyproject.toml).
WRITTEN_FOR = {"river": "0.26."}


def window_update(detector: drift.ADWIN) -> Callable[[float], bool]:
    """ADWIN's window update: one value in, whether the window cut (found a change)."""
    return detector._helper.update  # type: ignore[no-any-return]


def start_after_detection(detector: drift.ADWIN) -> None:
    """What ``ADWIN.update`` does first after a detection: a fresh window."""
    if detector._drift_detected:
        detector._reset()


def mark_detected(detector: drift.ADWIN) -> None:
    """What ``ADWIN.update`` does when the window cut: ``drift_detected`` reads True until the next update."""
    detector._drift_detected = True
