"""What made a version: enough to train it again and to tell whether the result is the same.

A :class:`BuildRecord` is written with every version a job trains, in ``model_versions.build`` and in the
artifact's ``build.json``: the window's bounds (``since``, ``until_ms``, ``max_rows``, and ``joined_until``:
the last second whose labels the fetch saw, so that labels that arrive later are not counted in) and the rows'
fingerprint, each split's record, the spec as trained (chosen hyper-parameters in place), the search that
chose them, whether a regression's target was standardised, the seed, the device and CPU threads, the versions
of driftloop, torch, Python and numpy, the weights' digest, and the validation and test metrics.
"""

from __future__ import annotations

import math
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import torch

from driftloop.retrain.splits import SplitRecord


def software_versions() -> dict[str, str]:
    """The versions a rebuild is compared under."""
    try:
        driftloop = metadata.version("driftloop")
    except metadata.PackageNotFoundError:  # run from a checkout without an install
        driftloop = "unknown"
    return {
        "driftloop": driftloop,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


@dataclass(frozen=True)
class BuildRecord:
    """What made a version (see the module docstring). Times are epoch seconds, ``until_ms`` milliseconds."""

    since: float
    until_ms: int
    joined_until: int
    max_rows: int
    rows: int
    fingerprint: str
    splits: tuple[SplitRecord, ...]
    task: str
    spec: dict[str, Any]
    hyperparameters: dict[str, Any]
    seed: int
    device: str
    threads: int
    weights_sha256: str
    metrics: dict[str, dict[str, float]]
    tuning: dict[str, Any] = field(default_factory=dict)
    # a regression's target learnt standardised (``Preprocessor.fit``'s ``targets``): versions recorded before
    # driftloop did so learnt it as it was, and rebuild that way
    target_standardised: bool = False
    versions: dict[str, str] = field(default_factory=software_versions)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["splits"] = [s.to_json() for s in self.splits]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildRecord:
        """The record ``to_json`` made, as the registry's column gives it back (a metric that is no number, NaN,
        is null there)."""
        metrics = {
            split: {name: math.nan if value is None else value for name, value in values.items()}
            for split, values in data.get("metrics", {}).items()
        }
        return cls(**{**data, "metrics": metrics, "splits": tuple(SplitRecord.from_json(s) for s in data["splits"])})

    def split(self, name: str) -> SplitRecord:
        return next(s for s in self.splits if s.name == name)
