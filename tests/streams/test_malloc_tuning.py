"""The worker's processes keep the memory they free: a batch's arrays made and dropped again do not make the
system map their pages anew each time (streams.malloc_tuning)."""

from __future__ import annotations

import subprocess
import sys

import pytest

FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from driftloop.streams.malloc_tuning import keep_freed_memory
    assert keep_freed_memory()
running = np.ones((1000, 35))
ends, starts = np.arange(10, 35), np.arange(0, 25)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(300):  # a categorical detector's window counts: three 200 KB arrays made and dropped
    running[:, ends] - running[:, starts]  # noqa: B018
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator: Linux")
def test_arrays_made_and_dropped_reuse_their_memory() -> None:
    plain, tuned = page_faults("plain"), page_faults("tuned")
    assert plain > 300 * 40  # pages mapped again and again (glibc's thresholds at their defaults)
    assert tuned < plain / 20, f"{tuned} page faults with the freed memory kept, {plain} without"
