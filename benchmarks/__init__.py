"""Benchmarks: each prints its ratio against a baseline measured in the same run."""

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The checkout the benchmarks run from (the bare Faust app is imported from here by `faust -A`).
REPO = Path(__file__).resolve().parent.parent


@contextmanager
def scratch_home(prefix: str) -> Iterator[Path]:
    """A temporary home for a benchmark's private stack, removed when the benchmark is done: its ClickHouse data
    take a GB or more a run, and a few dozen runs left behind filled the disk. Kept when the run fails, for its
    logs (its path is printed)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield home
    except BaseException:
        print(f"the run failed; its home is kept for its logs: {home}", file=sys.stderr)
        raise
    shutil.rmtree(home, ignore_errors=True)
