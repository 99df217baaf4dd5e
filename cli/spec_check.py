"""``driftloop specs check``: a model's spec file read as every worker will read it, before they do.

A spec that loads can still be refused later: by the detection process (a detector's class refusing its
parameters), by a retraining job (an architecture parameter the network does not read). This check runs
all of it, so that a spec edited in a repository can be refused by its CI, not by a worker at 3 a.m.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from driftloop.infra.spec import SpecError, load_spec
from driftloop.models.architectures import ArchitectureError
from driftloop.retrain.tuning import check_spec_architecture
from driftloop.streams.drift.detectors import check_detectors
from driftloop.streams.drift.signals import MIN_REFERENCE


class SpecCheck(NamedTuple):
    """One file's verdict: the model it is for (its file name), and what is wrong with it ("" when nothing)."""

    path: Path
    model: str
    problem: str

    @property
    def ok(self) -> bool:
        return not self.problem


def check_spec_file(path: Path) -> SpecCheck:
    """Read ``path`` as the workers do and say what, if anything, they would refuse (naming the field)."""
    try:
        spec = load_spec(path)
    except SpecError as exc:
        return SpecCheck(path, path.stem, str(exc))
    try:
        check_detectors(spec, reference=max(spec.monitoring.warmup, MIN_REFERENCE))
        check_spec_architecture(spec)
    except (ValueError, ArchitectureError) as exc:
        return SpecCheck(path, spec.name, f"{path}: {exc}")
    return SpecCheck(path, spec.name, "")
