"""The demo model: its spec, and a first champion trained offline on the world before the drift."""

from __future__ import annotations

import numpy as np

from driftloop.infra.settings import Settings
from driftloop.infra.spec import ModelSpec, load_spec
from driftloop.models.artifacts import write_artifact
from driftloop.models.preprocess import Preprocessor
from driftloop.models.registry import ModelRegistry, VersionRecord
from driftloop.retrain.dataset import LabeledData
from driftloop.retrain.evaluation import metric
from driftloop.retrain.training import train

from .scenario import BEFORE_CONCEPT, CATEGORICAL, NUMERIC, agrawal_frame

MODEL = "loan-approval"

SPEC = f"""\
# The demo's model: approve a loan application or not (River's Agrawal generator).
name = "{MODEL}"
owner = "lending-ml@example.com"
runbook = "https://github.com/driftloop/driftloop/blob/main/docs/release.md"
task = "binary"

[features]
{chr(10).join(f'{name} = "numeric"' for name in NUMERIC)}
{chr(10).join(f'{name} = "categorical"' for name in CATEGORICAL)}

[monitoring]
warmup = 1000

[training]
min_labels = 2500        # labels after the change point before a challenger is trained
epochs = 40
batch_size = 256
patience = 6

[tuning]                 # each retraining job searches: 12 trials or 20 s, weak trials pruned (tuning_trials)
trials = 12
timeout_s = 20

[retraining]
kinds = ["performance"]  # concept drift retrains; data drift only alerts
debounce_s = 2
cooldown_s = 120
recheck_s = 2

[release]                # a new version: shadow, then a canary, then champion, judged on live outcomes
shadow_min_pairs = 300   # labeled requests both versions scored
canary_share = 0.2
canary_min_rows = 150    # labeled rows of each side during the canary
watch_s = 600            # after promotion, rolled back if it falls below its predecessor

[kpi]                    # outcomes carry the lender's profit per decision (thousands)
name = "profit (k$)"
higher_is_better = true
"""


def write_spec(settings: Settings) -> ModelSpec:
    """Write the demo model's spec where the workers read specs; return it parsed."""
    directory = settings.spec_directory
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{MODEL}.toml"
    path.write_text(SPEC)
    return load_spec(path)


#: The offline data's seed is the stream's plus this: the two never share rows (nor the drifted world's,
#: whose seed is the stream's plus one).
OFFLINE_SEED_SHIFT = 100_003


def register_champion(settings: Settings, spec: ModelSpec, rows: int = 4000, seed: int = 1) -> VersionRecord:
    """Train version 1 on ``rows`` applications of the old concept and make it the champion.

    This stands for the model a team trained offline before going live: it never saw the new concept.
    """
    frame, labels = agrawal_frame(BEFORE_CONCEPT, rows, seed)
    data = LabeledData(
        {name: frame[name].to_numpy() for name in NUMERIC},
        {name: frame[name].tolist() for name in CATEGORICAL},
        labels.tolist(),
        labels.astype(float).to_numpy(),
        np.arange(rows, dtype=np.float64),
    )
    history, holdout = data.split(spec.training.holdout_fraction)
    fit, validation = history.split(spec.training.validation_fraction)
    pre = Preprocessor.fit(fit.numeric, fit.categorical, fit.labels, "binary")
    result = train(spec, pre, fit, validation)
    accuracy = metric("accuracy", result.network, pre, holdout, result.device)
    registry = ModelRegistry(settings)
    try:
        version = registry.next_version(MODEL)
        metrics = {"accuracy": accuracy, "epochs": result.epochs, "device": result.device}
        path, sha256 = write_artifact(registry.root, spec, version, result.network.cpu(), pre, result.inputs, metrics)
        reason = f"trained offline on {len(fit):,} applications; accuracy {accuracy:.3f} on {len(holdout):,} held out"
        for stale in registry.versions(MODEL):  # a demo interrupted mid-release left a version on its way
            if stale.status in ("candidate", "shadow", "canary"):
                registry.transition(MODEL, stale.version, "rejected", reason="a new demo run began", path="manual")
        current = registry.champion(MODEL)
        record = VersionRecord(
            model=MODEL,
            version=version,
            status="candidate" if current else "champion",
            artifact_uri=str(path),
            sha256=sha256,
            train_rows=len(fit),
            metric_name="accuracy",
            metric_value=accuracy,
            metrics=metrics,
            reason=reason,
            traffic_share=0.0 if current else 1.0,
        )
        if current is None:
            return registry.add(record, path="first")
        registry.add(record, path="manual")  # a stack that ran a demo before: the offline model, deployed by hand
        return registry.promote(MODEL, version, reason)
    finally:
        registry.close()
