"""Train a version again from its build record and compare (``driftloop models rebuild M N``).

The rows are fetched with the record's own query (window, row limit, and the labels joined before the
original fetch: labels that came later do not count) and must carry the recorded fingerprint, split by split;
if they do not (rows deleted, a retention drop),
the rebuild says so and trains nothing on other data. Then the recorded spec (chosen hyper-parameters in
place) is trained with the recorded seed, on the CPU with the recorded number of threads when the version was
trained on a CPU: the weights must then be equal bit for bit (their digest). A version trained on a GPU is
rebuilt on a GPU when there is one, else on the CPU, and its test metrics must agree within
:data:`GPU_TOLERANCE` (GPU kernels and mixed precision do not repeat bit for bit).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from driftloop.infra.errors import DriftloopError
from driftloop.infra.settings import Settings
from driftloop.infra.spec import ModelSpec
from driftloop.models.artifacts import weights_digest
from driftloop.models.preprocess import Preprocessor
from driftloop.models.registry import ModelRegistry
from driftloop.retrain.build import BuildRecord, software_versions
from driftloop.retrain.dataset import fetch_labeled
from driftloop.retrain.evaluation import evaluate, with_decision_threshold
from driftloop.retrain.splits import Splits, fingerprint
from driftloop.retrain.training import train

#: How far a GPU rebuild's test metrics may lie from the record's: absolute for scores in [0, 1], relative
#: for errors (mae, rmse).
GPU_TOLERANCE = 0.01

RebuildStatus = Literal["match", "differs", "data_changed"]


class RebuildError(DriftloopError):
    """A version cannot be rebuilt at all (it does not exist, or has no build record)."""


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild found: ``match``, ``differs`` (trained, not the same) or ``data_changed`` (not trained)."""

    model: str
    version: int
    status: RebuildStatus
    detail: str
    device: str = ""
    recorded_device: str = ""
    compared: str = ""  # "weights" (bit for bit) or "metrics" (within the tolerance)
    recorded_weights: str = ""
    rebuilt_weights: str = ""
    recorded_metrics: dict[str, float] = field(default_factory=dict)
    rebuilt_metrics: dict[str, float] = field(default_factory=dict)
    recorded_versions: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=software_versions)

    @property
    def matches(self) -> bool:
        return self.status == "match"

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {"matches": self.matches}


def rebuild(
    settings: Settings,
    model: str,
    version: int,
    *,
    registry: ModelRegistry | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> RebuildResult:
    """Rebuild version ``version`` of ``model`` (see the module docstring)."""
    registry = registry or ModelRegistry(settings)
    record = registry.get(model, version)
    if not record.build:
        raise RebuildError(
            f"{model} v{version} has no build record (trained before driftloop recorded them, or registered by "
            "hand): there is nothing to rebuild it from"
        )
    build = BuildRecord.from_json(record.build)
    data = fetch_labeled(
        settings, model, build.since, build.max_rows, until_ms=build.until_ms, joined_until=build.joined_until
    )
    found = fingerprint(data.event_ids)
    base = {"model": model, "version": version, "recorded_device": build.device, "recorded_versions": build.versions}
    if found != build.fingerprint:
        return RebuildResult(
            status="data_changed",
            detail=f"the window now holds {len(data):,} rows (fingerprint {found[:12]}…), the version was trained on "
            f"{build.rows:,} (fingerprint {build.fingerprint[:12]}…): its rows changed or are gone, so it was not "
            "trained again",
            **base,
        )
    spec = ModelSpec.model_validate(build.spec)
    data = data.with_numeric(spec.numeric_features)
    splits = Splits.by_time(data, spec.training.holdout_fraction, spec.training.validation_fraction)
    if splits.records() != build.splits:
        detail = "the same rows split differently from the record (its spec's fractions changed?)"
        return RebuildResult(status="data_changed", detail=detail, **base)
    fit_rows = splits.train
    targets = fit_rows.label_num if build.target_standardised else None
    pre = Preprocessor.fit(fit_rows.numeric, fit_rows.categorical, fit_rows.labels, build.task, targets=targets)
    on_gpu = build.device.startswith("cuda") and torch.cuda.is_available()
    device = torch.device(build.device if on_gpu else "cpu")
    with _threads(build.threads if device.type == "cpu" else None):
        result = train(spec, pre, splits.train, splits.validation, device=device, progress=progress)
    network = result.network.cpu()
    digest = weights_digest(network.state_dict())
    positive = spec.training.positive_class
    if spec.tunes_threshold(build.task):
        pre = with_decision_threshold(network, pre, splits.validation, positive=positive)
    rebuilt = evaluate(network, pre, splits.test, positive=positive)
    recorded = build.metrics.get("test", {})
    base |= {
        "device": str(device),
        "recorded_weights": build.weights_sha256,
        "rebuilt_weights": digest,
        "recorded_metrics": recorded,
        "rebuilt_metrics": rebuilt,
    }
    status, compared, detail = judge(build, digest, rebuilt)
    return RebuildResult(status=status, detail=detail, compared=compared, **base)


def judge(build: BuildRecord, digest: str, rebuilt: dict[str, float]) -> tuple[RebuildStatus, str, str]:
    """(status, what was compared, why) for a rebuild with weights ``digest`` and test metrics ``rebuilt``: a
    CPU version by its weights, bit for bit; a GPU version by its test metrics, within :data:`GPU_TOLERANCE`."""
    if build.device == "cpu":
        if digest == build.weights_sha256:
            return "match", "weights", "the weights are equal, bit for bit"
        detail = f"the weights differ (sha256 {digest[:12]}… against the record's {build.weights_sha256[:12]}…)"
        return "differs", "weights", detail + _version_note(build.versions)
    recorded = build.metrics.get("test", {})
    apart = {name: _distance(name, value, rebuilt.get(name, math.nan)) for name, value in recorded.items()}
    if not apart:
        return "differs", "metrics", f"trained on {build.device}, and its record has no test metrics to compare"
    worst = max(apart, key=lambda name: math.inf if math.isnan(apart[name]) else apart[name])  # NaN: the worst
    where = (
        f"trained on {build.device}: test {worst} {rebuilt.get(worst, math.nan):.4f}, recorded {recorded[worst]:.4f}"
    )
    if apart[worst] <= GPU_TOLERANCE:
        return "match", "metrics", f"{where}: every test metric within {GPU_TOLERANCE}"
    return "differs", "metrics", f"{where}: beyond {GPU_TOLERANCE}"


def _distance(name: str, recorded: float, rebuilt: float) -> float:
    if math.isnan(recorded) and math.isnan(rebuilt):
        return 0.0
    if name in ("mae", "rmse"):
        return abs(rebuilt - recorded) / max(abs(recorded), 1e-12)
    return abs(rebuilt - recorded)


def _version_note(recorded: dict[str, str]) -> str:
    now = software_versions()
    changed = [f"{k} {recorded.get(k, '?')} → {v}" for k, v in now.items() if recorded.get(k) != v and k != "driftloop"]
    return f"; software changed since: {', '.join(changed)}" if changed else ""


@contextmanager
def _threads(count: int | None):  # type: ignore[no-untyped-def]
    """Run with ``count`` CPU threads (a CPU's float sums depend on how they are split), then restore."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
