"""The garbage collector's settings for driftloop's long-running processes (worker and its children)."""

from __future__ import annotations

import gc

#: Young-generation threshold of the worker's garbage collector (CPython's default: 700). Decoded events are
#: mostly lists; at 700 the collector ran 2,643 young and 21 full collections for 200,000 events in envelopes
#: and took 1.55 of the worker's 5.4 s (0.38 s at this threshold). Garbage without cycles is freed at once
#: either way; cycles wait a little longer.
GC_YOUNG_THRESHOLD = 50_000


def collect_less_often() -> None:
    """Tune this process's garbage collector for the worker: what exists at start-up is frozen out of every
    collection (modules, configuration), and young objects are collected every ``GC_YOUNG_THRESHOLD``."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 10)
