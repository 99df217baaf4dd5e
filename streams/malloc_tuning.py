"""The C allocator's settings for driftloop's long-running processes (the worker and its children).

glibc's ``malloc`` serves a block of 128 KiB or more with a fresh ``mmap`` and unmaps it when freed, and it
gives the top of its heap back to the system once 128 KiB of it are free (both thresholds rise with use, but
not far). A batch's arrays (a 25-test by 1,000-category table, a feature matrix, a pickled piece) are of that
size and are made and dropped again for every batch: each time, the system maps their pages anew, and a page
fault costs some microseconds on a virtual machine. Measured on a categorical detector's run of tests: 57
page faults an operation and 370 µs, against none and 50 µs with the freed memory kept. The worker's
processes keep what they free (up to ``TRIM_THRESHOLD`` at the top of the heap) and take blocks of up to
``MMAP_THRESHOLD`` from the heap, at the cost of holding on to memory they used once.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("driftloop.streams")

#: Blocks smaller than this come from the heap (glibc's largest allowed value on 64 bits: 32 MiB).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the top of the heap kept for later blocks, up to this much (a process keeps at most this much
#: more than it holds: the worker's tree of four processes peaked at 612 MiB in the hostile-input test).
TRIM_THRESHOLD = 64 << 20
#: The heap grows by this much more than it needs at a time.
TOP_PAD = 4 << 20

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Set this process's allocator to keep and reuse what it frees (glibc); False where it cannot be set
    (another C library), and the process runs as it would have."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD))
    done = all(mallopt(parameter, value) == 1 for parameter, value in settings)  # 1: set
    if not done:
        log.debug("the C allocator's thresholds could not be set: left as they are")
    return done
