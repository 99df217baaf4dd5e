"""Retraining and release: from an alert to a candidate, and from the alert through shadow and canary to the
new champion on live traffic.

    .venv/bin/python -m benchmarks.retrain --rows 50000 --rows 500000 --trials 0 --trials 20 --live

**Training** (each ``--rows`` N, each ``--trials`` T), on a private local stack: a champion is trained on
River's Agrawal concept 0; then N labeled rows of concept 2 (the drift) land in ClickHouse; a performance
alert is published with the change point; the retrain worker (device chosen by itself: CUDA when present)
trains a challenger (with a search of T trials, or none), gates it and announces the candidate. Printed:
seconds from alert to announcement, split by phase, the share of trials pruned, the candidate's accuracy on
its validation and test splits, and the accuracy of the champion before the drift, right after it, and of
the candidate, against an oracle: the same network trained on all N post-drift rows (no test split) and
judged on the same fresh post-drift test set.

**Release** (``--live``): the demo's loop at the demo's traffic (250 requests/s, labels about 2 s late, the
drift a third of the way in): the seconds from the performance alert to the candidate, to shadow, to canary
and to champion, read from ``drift_alerts`` and ``version_changes``, and the requests served by a version
the live gate rejected (the goal: none; alert → champion within 60 s).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer
from rich.console import Console
from rich.table import Table

from benchmarks import scratch_home
from driftloop.demo.labeled_history import TS0, agrawal_rows
from driftloop.demo.runner import DemoOptions, run_demo
from driftloop.infra.clickhouse.client import connect
from driftloop.infra.contract import Alert
from driftloop.infra.settings import Settings
from driftloop.infra.stack import stack as local_stack
from driftloop.infra.stack.private import FAST_GROUP_ENV, private_stack_env
from driftloop.models.preprocess import Preprocessor
from driftloop.models.registry import ModelRegistry
from driftloop.retrain.dataset import LabeledData, fetch_labeled
from driftloop.retrain.evaluation import metric
from driftloop.retrain.job import JobRequest, RetrainJob
from driftloop.retrain.training import train
from driftloop.retrain.worker import RetrainWorker
from driftloop.streams.sink import ClickHouseSink

console = Console(width=200)


def test_set(function: int, seed: int, n: int = 10_000) -> LabeledData:
    batch = agrawal_rows("test", function, 0, n, seed)
    numeric = {name: [row[j] for row in batch["num.value"]] for j, name in enumerate(batch["num.name"][0])}
    categorical = {name: [row[j] for row in batch["cat.value"]] for j, name in enumerate(batch["cat.name"][0])}
    import numpy as np

    return LabeledData(
        {k: np.asarray(v) for k, v in numeric.items()},
        categorical,
        batch["label"],
        np.asarray(batch["label_num"]),
        np.asarray(batch["ts"], dtype=float),
    )


SPEC = """name = "agrawal"
task = "binary"
[training]
min_labels = 1000
max_rows = {rows}
batch_size = 1024
[retraining]
debounce_s = 0
cooldown_s = 0
"""


def run(rows: int, home: Path, searches: list[int], tuning_timeout_s: float) -> list[dict[str, float | str]]:
    """One stack for ``rows``: the champion, the drift, then one alert per entry of ``searches`` (trials; 0: no
    search), each timed from the alert to the candidate's announcement."""
    env = private_stack_env(home / f"n{rows}", prefix="bench-retrain.")
    specs = home / f"n{rows}" / "specs"
    specs.mkdir(parents=True)
    env |= {"DRIFTLOOP_SPECS_DIR": str(specs)}
    settings = Settings.from_env(env)
    with local_stack.running(settings):
        model = "agrawal"
        (specs / f"{model}.toml").write_text(SPEC.format(rows=rows))
        results = []
        sink = ClickHouseSink(settings.clickhouse)
        with console.status(f"N={rows:,}: writing the history"):
            sink.write_blocking(agrawal_rows(model, 0, 0, 20_000, seed=1))
            job = RetrainJob(settings)
            job.run(JobRequest(model, since=0))  # the champion before the drift
            for start in range(20_000, 20_000 + rows, 50_000):
                sink.write_blocking(agrawal_rows(model, 2, start, min(50_000, 20_000 + rows - start), seed=start))
        sink.close()
        registry = ModelRegistry(settings)
        before_drift = test_set(0, 101)
        after_drift = test_set(2, 102)
        old = registry.load(registry.champion(model))
        accuracy_before = metric("accuracy", old.network, old.preprocessor, before_drift)
        accuracy_drifted = metric("accuracy", old.network, old.preprocessor, after_drift)

        with console.status(f"N={rows:,}: training the oracle"):
            post = fetch_labeled(settings, model, TS0 + 20_000, rows)
            spec = job.specs.get(model)
            oracle_spec = spec.model_copy(update={"training": spec.training.model_copy(update={"patience": 8})})
            fit, validation = post.split(0.05)
            pre = Preprocessor.fit(fit.numeric, fit.categorical, fit.labels, "binary")
            oracle = train(oracle_spec, pre, fit, validation)
            accuracy_oracle = metric("accuracy", oracle.network, pre, after_drift, oracle.device)

        for trials in searches:
            tuning = f"[tuning]\ntrials = {trials}\ntimeout_s = {tuning_timeout_s}\n" if trials else ""
            (specs / f"{model}.toml").write_text(SPEC.format(rows=rows) + tuning)
            announcements = KafkaConsumer(
                settings.topics.model_versions, **settings.kafka_python_config(), auto_offset_reset="latest"
            )
            announcements.poll(timeout_ms=200)
            worker = RetrainWorker(settings)  # reads the spec afresh
            thread = threading.Thread(target=worker.run, daemon=True)
            thread.start()
            alert = replace(
                Alert.example(),
                alert_id=f"bench-{trials}",
                model=model,
                kind="performance",
                change_point_ts=float(TS0 + 20_000),
            )
            producer = KafkaProducer(**settings.kafka_python_config())
            with console.status(f"N={rows:,}, {trials} trials: alert published, waiting for the candidate"):
                started = time.perf_counter()
                producer.send(settings.topics.alerts, json.dumps(alert.to_json()).encode(), key=model.encode())
                producer.flush()
                announced = None
                while announced is None and time.perf_counter() - started < 3600:
                    for records in announcements.poll(timeout_ms=200).values():
                        for record in records:
                            event = json.loads(record.value)
                            if event["model"] == model and event["status"] in {"candidate", "champion", "rejected"}:
                                announced = time.perf_counter() - started
            worker.stop()
            thread.join(60)
            announcements.close()
            producer.close()
            report = worker.reports[-1]
            record = registry.get(model, report.challenger_version)
            new = registry.load(record)
            results.append(
                {
                    "rows": rows,
                    "trials": trials,
                    "device": report.device,
                    "alert_to_candidate_s": announced or float("nan"),
                    **{f"{k}_s": v for k, v in report.phases.items()},
                    "status": report.status,
                    "pruned": report.trials_pruned / report.trials if report.trials else float("nan"),
                    "validation": record.build["metrics"]["validation"]["accuracy"],
                    "test": record.build["metrics"]["test"]["accuracy"],
                    "before": accuracy_before,
                    "drifted": accuracy_drifted,
                    "after": metric("accuracy", new.network, new.preprocessor, after_drift),
                    "oracle": accuracy_oracle,
                }
            )
        return results


STAGES = ("candidate", "shadow", "canary", "champion")


def live(home: Path, seed: int) -> dict[str, float]:
    """The demo's loop at its traffic; seconds from the performance alert to each stage of the new version."""
    env = private_stack_env(home / f"live{seed}", prefix="bench-release.")
    settings = Settings.from_env(env)
    options = DemoOptions(events=20_000, rate=250, seed=seed, label_delay_s=2.0, report=False, after_swap=500)
    try:
        run_demo(settings, options, console=Console(quiet=True), env={**os.environ, **env, **FAST_GROUP_ENV})
        client = connect(settings.clickhouse)
        try:
            (alerted,) = client.execute(
                "SELECT min(toUInt32(detected_at)) FROM drift_alerts FINAL WHERE kind = 'performance'"
            )[0]
            changes = client.execute(
                "SELECT version, toString(to_stage), changed_at_ms / 1000 FROM version_changes FINAL "
                "WHERE version > 1 ORDER BY changed_at_ms"
            )
            (rejected_served,) = client.execute(
                "SELECT count() FROM predictions FINAL WHERE served = 1 AND (model, model_version) IN "
                "(SELECT model, version FROM model_versions FINAL WHERE status = 'rejected')"
            )[0]
        finally:
            client.disconnect()
    finally:
        local_stack.down(settings)
    entered: dict[str, float] = {}
    for _, stage, at in changes:
        entered.setdefault(stage, at)
    return {f"to_{stage}_s": entered.get(stage, math.nan) - alerted for stage in STAGES} | {
        "served_by_rejected": rejected_served,
        "rejected": sum(stage == "rejected" for _, stage, _ in changes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="post-drift labeled rows (repeatable)")
    parser.add_argument(
        "--trials",
        type=int,
        action="append",
        help="trials of a search per job, 0 for none (repeatable; default 0 and 20)",
    )
    parser.add_argument("--tuning-timeout", type=float, default=600.0, help="the search's seconds budget per job")
    parser.add_argument("--live", action="store_true", help="also time the release at the demo's traffic")
    parser.add_argument("--live-runs", type=int, default=3, help="seeds of the release run (default 3)")
    args = parser.parse_args()
    with scratch_home("driftloop-retrain-") as home:
        if args.live:
            releases = [live(home, seed) for seed in range(1, args.live_runs + 1)]
            table = Table(title="release at 250 requests/s, labels ~2 s late: seconds from the performance alert")
            for column in ("seed", *STAGES, "rejected versions", "requests served by them"):
                table.add_column(column, justify="right")
            for seed, r in enumerate(releases, start=1):
                table.add_row(
                    str(seed),
                    *(f"{r[f'to_{s}_s']:.1f}" for s in STAGES),
                    str(r["rejected"]),
                    str(r["served_by_rejected"]),
                )
            console.print(table)
        searches = args.trials or [0, 20]
        results = [r for n in (args.rows or [50_000]) for r in run(n, home, searches, args.tuning_timeout)]
        table = Table(title="retraining: alert on Kafka → candidate announced")
        columns = (
            "rows",
            "trials",
            "device",
            "alert→candidate s",
            "fetch s",
            "train s",
            "evaluate s",
            "publish s",
            "pruned",
            "validation acc.",
            "test acc.",
            "acc. before drift",
            "right after",
            "candidate",
            "oracle",
        )
        for column in columns:
            table.add_column(column, justify="right")
        for r in results:
            table.add_row(
                f"{r['rows']:,}",
                str(r["trials"] or "none"),
                str(r["device"]),
                f"{r['alert_to_candidate_s']:.1f}",
                f"{r['fetch_s']:.1f}",
                f"{r['train_s']:.1f}",
                f"{r['evaluate_s']:.1f}",
                f"{r['publish_s']:.1f}",
                "-" if math.isnan(r["pruned"]) else f"{r['pruned']:.0%}",
                f"{r['validation']:.4f}",
                f"{r['test']:.4f}",
                f"{r['before']:.3f}",
                f"{r['drifted']:.3f}",
                f"{r['after']:.4f}",
                f"{r['oracle']:.4f}",
            )
        console.print(table)


if __name__ == "__main__":
    main()
