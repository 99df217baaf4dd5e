"""Labeled rows for retraining tests: River's Agrawal generator, one concept then another
(``driftloop.demo.labeled_history``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from driftloop.demo.labeled_history import agrawal_rows
from driftloop.infra.settings import Settings
from driftloop.streams.sink import ClickHouseSink
from tests.stack_fixtures import PrivateStack


@pytest.fixture()
def retrain_stack(stack: PrivateStack, tmp_path: Path) -> PrivateStack:
    """The private stack with specs and artifacts of this test's own (for the CLI in a subprocess too)."""
    return stack.with_env(DRIFTLOOP_SPECS_DIR=str(tmp_path / "specs"), DRIFTLOOP_ARTIFACTS=str(tmp_path / "models"))


@pytest.fixture()
def retrain_settings(retrain_stack: PrivateStack) -> Settings:
    return retrain_stack.settings


@pytest.fixture()
def labeled_model(retrain_settings: Settings) -> Callable[..., str]:
    """Write a model's spec (``task``) and labeled history: ``before`` rows of concept 0, then ``after`` rows of
    concept 2."""

    def make(before: int = 3000, after: int = 0, spec: str = "", task: str = "binary") -> str:
        model = "agr-" + uuid.uuid4().hex[:8]
        directory = retrain_settings.spec_directory
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{model}.toml").write_text(
            f'name = "{model}"\ntask = "{task}"\n[training]\nmin_labels = 500\n'
            + (spec if "epochs" in spec else "epochs = 15\n" + spec)
        )
        sink = ClickHouseSink(retrain_settings.clickhouse)
        try:
            if before:
                sink.write_blocking(agrawal_rows(model, 0, 0, before, seed=1))
            if after:
                sink.write_blocking(agrawal_rows(model, 2, before, after, seed=2))
        finally:
            sink.close()
        return model

    return make
