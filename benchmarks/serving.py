"""What a shadow version costs the requests it does not answer: the serving client's ``predict`` time with a
champion and a shadow, against the same client with the champion alone (the baseline), in the same run.

    .venv/bin/python -m benchmarks.serving --requests 1500

On a private local stack, two small networks (River's Agrawal concepts 0 and 2) are registered twice: as the
champion of a model without a shadow, and as the champion and shadow of another. A ``ModelClient`` with
``emit=True`` serves each model in turn, for each load: one row a request with a pause between requests (a
server with room to spare), batches of 200 rows with a pause, and one row a request back to back (a client
thread that never waits: the shadow competes with it for the interpreter). Printed: ``predict``'s p50 and
p99 in milliseconds for each, their ratio (with the shadow / without), and the requests the shadow dropped.
The loads alternate, twice each, so that the machine's drift falls on both sides.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from river.datasets import synth

from benchmarks import scratch_home
from driftloop.infra.settings import Settings
from driftloop.infra.spec import ModelSpec
from driftloop.infra.stack import stack as local_stack
from driftloop.infra.stack.private import private_stack_env
from driftloop.models.artifacts import write_artifact
from driftloop.models.preprocess import Preprocessor
from driftloop.models.registry import ModelRegistry, VersionRecord
from driftloop.models.serving import ModelClient
from driftloop.retrain.dataset import LabeledData
from driftloop.retrain.training import TrainResult, train

console = Console(width=160)
NUMERIC = ("salary", "commission", "age", "hvalue", "hyears", "loan")
CATEGORICAL = ("elevel", "car", "zipcode")
#: (name, rows a request, seconds between requests)
LOADS = (("1 row, 3 ms apart", 1, 0.003), ("200 rows, 10 ms apart", 200, 0.010), ("1 row, back to back", 1, 0.0))


def agrawal(function: int, n: int, seed: int) -> list[dict[str, object]]:
    return [x for x, _ in synth.Agrawal(classification_function=function, seed=seed).take(n)]


def trained(function: int, *, epochs: int = 4) -> tuple[TrainResult, Preprocessor, ModelSpec]:
    """A small network of one Agrawal concept, from 1,500 rows (the release tests' versions too)."""
    pairs = list(synth.Agrawal(classification_function=function, seed=5).take(1500))
    rows, labels = [x for x, _ in pairs], [int(y) for _, y in pairs]
    data = LabeledData(
        {k: np.array([float(r[k]) for r in rows]) for k in NUMERIC},
        {k: [str(r[k]) for r in rows] for k in CATEGORICAL},
        [str(y) for y in labels],
        np.array(labels, dtype=np.float64),
        np.arange(len(rows), dtype=np.float64),
    )
    fit, check = data.split(0.2)
    spec = ModelSpec.model_validate({"name": "bench", "task": "binary", "training": {"epochs": epochs}})
    pre = Preprocessor.fit(fit.numeric, fit.categorical, fit.labels, "binary")
    return train(spec, pre, fit, check), pre, spec


def register(settings: Settings, model: str, with_shadow: bool) -> None:
    """``model`` with v1 (concept 0) the champion and, ``with_shadow``, v2 (concept 2) in shadow."""
    spec_dir = settings.spec_directory
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / f"{model}.toml").write_text(f'name = "{model}"\ntask = "binary"\n')
    registry = ModelRegistry(settings)
    try:
        for version, function in ((1, 0), (2, 2))[: 2 if with_shadow else 1]:
            result, pre, _ = trained(function)
            spec = ModelSpec(name=model, task="binary")
            path, sha = write_artifact(registry.root, spec, version, result.network, pre, result.inputs, {})
            first = version == 1
            registry.add(VersionRecord(model, version, "champion" if first else "candidate", str(path), sha),
                         path="first" if first else "release")  # fmt: skip
            if not first:
                registry.transition(model, version, "shadow", reason="benchmark")
    finally:
        registry.close()


def serve(settings: Settings, model: str, rows: list[dict[str, object]], size: int, gap_s: float, n: int) -> dict:
    """``predict``'s times (ms) over ``n`` requests of ``size`` rows, ``gap_s`` apart, and the shadow's drops."""
    with ModelClient(model, settings, emit=True) as client:
        for i in range(50):  # warm: the networks' first calls, the producer's connection
            client.predict(rows[i : i + size], request_ids=[f"w{i}-{j}" for j in range(size)])
        client.flush()
        times = []
        for i in range(n):
            start = (i * size) % (len(rows) - size)
            ids = [f"q{i}-{j}" for j in range(size)]
            began = time.perf_counter()
            client.predict(rows[start : start + size], request_ids=ids)
            times.append((time.perf_counter() - began) * 1000)
            if gap_s:
                time.sleep(gap_s)
        client.flush()
        return {"times": times, "dropped": client.shadow_dropped}


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[round(q * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1500, help="requests a load, a run (default 1500)")
    args = parser.parse_args()
    rows = agrawal(0, 5000, seed=9)
    with scratch_home("driftloop-serving-") as home:
        settings = Settings.from_env(private_stack_env(Path(home), prefix="bench-serving."))
        with local_stack.running(settings):
            register(settings, "alone", with_shadow=False)
            register(settings, "shadowed", with_shadow=True)
            table = Table(title="predict with a shadow against the champion alone (ms; ratio: with / without)")
            for column in ("load", "p50 alone", "p50 shadowed", "p50 ratio", "p99 alone", "p99 shadowed",
                           "p99 ratio", "shadow dropped"):  # fmt: skip
                table.add_column(column, justify="right")
            for name, size, gap_s in LOADS:
                alone: list[float] = []
                shadowed: list[float] = []
                dropped = 0
                for _ in range(2):
                    alone += serve(settings, "alone", rows, size, gap_s, args.requests)["times"]
                    run = serve(settings, "shadowed", rows, size, gap_s, args.requests)
                    shadowed += run["times"]
                    dropped += run["dropped"]
                p50 = (quantile(alone, 0.5), quantile(shadowed, 0.5))
                p99 = (quantile(alone, 0.99), quantile(shadowed, 0.99))
                table.add_row(name, f"{p50[0]:.3f}", f"{p50[1]:.3f}", f"{p50[1] / p50[0]:.2f}", f"{p99[0]:.3f}",
                              f"{p99[1]:.3f}", f"{p99[1] / p99[0]:.2f}", str(dropped))  # fmt: skip
            console.print(table)


if __name__ == "__main__":
    main()
