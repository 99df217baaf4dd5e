"""Versions with real (small) artifacts, and labeled rows written as the outcome join writes them, so that the
release controller's decisions can be set up exactly."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from river.datasets import synth

from benchmarks.serving import trained as trained_network
from driftloop.infra.settings import Settings
from driftloop.infra.spec import ModelSpec
from driftloop.models.architectures import ArchitectureInput
from driftloop.models.artifacts import write_artifact
from driftloop.models.preprocess import Preprocessor
from driftloop.models.registry import ModelRegistry, VersionRecord
from driftloop.streams.batch import ColumnBatch
from driftloop.streams.join import LABELED_COLUMNS
from driftloop.streams.sink import ClickHouseSink
from tests.stack_fixtures import PrivateStack

CANARY_SHARE = 0.5  # of the canaries that tests set up by hand


@dataclass(frozen=True)
class Trained:
    """A small network trained on one Agrawal concept: what an artifact is written from."""

    network: object
    pre: Preprocessor
    inputs: ArchitectureInput


def agrawal(function: int, n: int, seed: int) -> tuple[list[dict], list[int]]:
    pairs = list(synth.Agrawal(classification_function=function, seed=seed).take(n))
    return [x for x, _ in pairs], [int(y) for _, y in pairs]


def _train(function: int) -> Trained:
    result, pre, _ = trained_network(function, epochs=8)
    return Trained(result.network, pre, result.inputs)


@pytest.fixture(scope="session")
def trained() -> dict[int, Trained]:
    """Networks for Agrawal concepts 0 and 2 (which disagree on about half of the rows)."""
    return {0: _train(0), 2: _train(2)}


@pytest.fixture()
def release_settings(stack: PrivateStack, tmp_path: Path) -> Settings:
    return stack.with_env(
        DRIFTLOOP_SPECS_DIR=str(tmp_path / "specs"), DRIFTLOOP_ARTIFACTS=str(tmp_path / "models")
    ).settings


@pytest.fixture()
def new_model(release_settings: Settings, trained: dict[int, Trained]) -> Callable[..., str]:
    """A model with a spec (``release`` section from keyword ``release``, more TOML in ``extra``) and versions:
    ``stages`` is one stage per version, v1 first (concept 0; later versions concept 2)."""

    def make(stages: Sequence[str] = ("champion", "candidate"), release: str = "", extra: str = "") -> str:
        model = "rel-" + uuid.uuid4().hex[:8]
        directory = release_settings.spec_directory
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{model}.toml").write_text(f'name = "{model}"\ntask = "binary"\n{extra}\n[release]\n{release}\n')
        spec = ModelSpec(name=model, task="binary")
        registry = ModelRegistry(release_settings)
        try:
            for version, stage in enumerate(stages, start=1):
                net = trained[0 if version == 1 else 2]
                path, sha = write_artifact(registry.root, spec, version, net.network, net.pre, net.inputs, {})
                first = version == 1
                record = VersionRecord(model, version, "champion" if first else "candidate", str(path), sha)
                registry.add(record, path="first" if first else "release")
                if not first and stage != "candidate":
                    share = CANARY_SHARE if stage == "canary" else 0.0
                    registry.transition(model, version, stage, reason="set up", traffic_share=share)  # type: ignore[arg-type]
        finally:
            registry.close()
        return model

    return make


@pytest.fixture()
def write_labeled(release_settings: Settings) -> Callable[..., None]:
    """Labeled rows of one version: ``correct`` per request (1/0), ``served``, ``value`` per row (or NaN), at
    prediction time ``ts`` (default: now); ``errors`` (a regression's absolute errors; default 1 - correct), each
    labeled ``label_delay_s`` after its prediction. Labels are "1" and predictions "1" where right, unless
    ``labels`` and ``predictions`` are given (with ``scores``, the predicted class's probability; default 0.8)."""

    def write(
        model: str,
        version: int,
        request_ids: Sequence[str],
        correct: Sequence[int],
        *,
        served: bool = True,
        values: Sequence[float] | None = None,
        ts: float | None = None,
        errors: Sequence[float] | None = None,
        label_delay_s: float = 2.0,
        labels: Sequence[str] | None = None,
        predictions: Sequence[str] | None = None,
        scores: Sequence[float] | None = None,
    ) -> None:
        now = ts if ts is not None else time.time()
        n = len(request_ids)
        suffix = "" if served else f"@v{version}"
        columns = {
            "event_id": [f"{model}-o-{r}{suffix}" for r in request_ids],
            "prediction_event_id": [f"{model}-p-{r}-{version}" for r in request_ids],
            "model": [model] * n,
            "model_version": [version] * n,
            "request_id": list(request_ids),
            "ts": [int(now)] * n,
            "ts_ms": [round(now * 1000) + i for i in range(n)],
            "outcome_ts": [int(now) + 2] * n,
            "outcome_ts_ms": [round(now * 1000) + 2000 + i for i in range(n)],
            "num.name": [[] for _ in range(n)],
            "num.value": [[] for _ in range(n)],
            "cat.name": [[] for _ in range(n)],
            "cat.value": [[] for _ in range(n)],
            "missing": [[] for _ in range(n)],
            "prediction": list(predictions) if predictions is not None else ["1" if c else "0" for c in correct],
            "prediction_num": [float(p) for p in (predictions if predictions is not None else correct)],
            "score": list(scores) if scores is not None else [0.8] * n,
            "label": list(labels) if labels is not None else ["1"] * n,
            "label_num": [float(v) for v in labels] if labels is not None else [1.0] * n,
            "correct": [int(c) for c in correct],
            "error": list(errors) if errors is not None else [1.0 - c for c in correct],
            "label_delay_s": [label_delay_s] * n,
            "served": [int(served)] * n,
            "value": list(values) if values is not None else [math.nan] * n,
        }
        assert set(columns) == set(LABELED_COLUMNS)
        sink = ClickHouseSink(release_settings.clickhouse)
        try:
            assert sink.write_blocking(ColumnBatch("labeled", columns)) == []
        finally:
            sink.close()

    return write


def outcomes(n: int, accuracy: float, seed: int) -> list[int]:
    """``n`` right (1) or wrong (0) answers, exactly ``accuracy`` of them right, in a seeded order."""
    right = round(n * accuracy)
    answers = np.array([1] * right + [0] * (n - right))
    np.random.default_rng(seed).shuffle(answers)
    return answers.tolist()
