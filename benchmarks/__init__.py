"""Benchmarks: each prints its ratio against a baseline measured in the same run."""

from pathlib import Path

#: The checkout the benchmarks run from (the bare Faust app is imported from here by `faust -A`).
REPO = Path(__file__).resolve().parent.parent
