"""Training as a repeatable discipline, against the real stack: splits with fingerprints, a budgeted search whose
every trial is a row in ``tuning_trials``, versions that rebuild (``driftloop models rebuild``), the data gate,
the compute budget, and a schedule that starts a job through the real worker."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from driftloop.cli.main import cli
from driftloop.demo.labeled_history import TS0, agrawal_rows
from driftloop.infra.clickhouse.client import connect
from driftloop.infra.settings import Settings
from driftloop.release.controller import ReleaseController
from driftloop.retrain.job import JobRequest, RetrainJob
from driftloop.retrain.metrics import retrain_metrics
from driftloop.retrain.thresholds import ThresholdWatch
from driftloop.retrain.worker import RetrainWorker
from driftloop.streams.sink import ClickHouseSink
from tests.stack_fixtures import PrivateStack, strict_json, wait_for

pytestmark = pytest.mark.integration

TUNED = """epochs = 12
metric = "roc_auc"
[tuning]
trials = 5
startup_trials = 2
min_epochs = 2
space = { learning_rate = { low = 1e-3, high = 3e-2, log = true }, hidden = { choices = [[16], [32, 32]] } }
"""


def rebuild_cli(stack: PrivateStack, model: str, version: int, *, fresh_process: bool = False) -> tuple[int, dict]:
    """``driftloop models rebuild M N --json``: in a process of its own (nothing shared with the one that trained
    the version), or in this one (faster)."""
    args = ("models", "rebuild", model, str(version), "--json")
    if fresh_process:
        done = stack.run_cli(*args, timeout_s=240)
        return done.returncode, strict_json(done.stdout or "{}")
    result = CliRunner().invoke(cli, list(args), env=stack.env)
    return result.exit_code, strict_json(result.stdout or "{}")


def test_a_tuned_version_records_its_splits_and_trials_and_rebuilds_bit_for_bit(
    retrain_stack: PrivateStack, retrain_settings: Settings, labeled_model
) -> None:
    model = labeled_model(before=3000, spec=TUNED)
    report = RetrainJob(retrain_settings).run(JobRequest(model, since=0, trigger="manual"))
    assert report.status == "promoted" and report.metric_name == "roc_auc" and report.challenger_metric > 0.9
    assert (report.train_rows, report.validation_rows, report.holdout_rows) == (2160, 240, 600)
    client = connect(retrain_settings.clickhouse)
    trials = client.execute(
        "SELECT trial, toString(state), pruned, epochs, validation_loss, chosen, params FROM tuning_trials FINAL "
        "WHERE run_id = %(r)s ORDER BY trial",
        {"r": report.request.run_id},
    )
    assert [t[0] for t in trials] == list(range(5)) and report.trials == 5
    assert sum(t[5] for t in trials) == 1  # exactly one chosen: the completed trial with the lowest loss
    chosen = next(t for t in trials if t[5])
    assert chosen[1] == "complete" and chosen[4] == min(t[4] for t in trials if t[1] == "complete")
    assert all(t[1] in ("complete", "pruned") and 1 <= t[3] <= 12 for t in trials)
    assert all(t[3] < 12 for t in trials if t[2])  # a pruned trial stopped before the epoch limit
    ((trigger, validation_rows, counted, pruned),) = client.execute(
        "SELECT trigger, validation_rows, trials, trials_pruned FROM retrain_runs FINAL WHERE run_id = %(r)s",
        {"r": report.request.run_id},
    )
    assert (trigger, validation_rows, counted, pruned) == ("manual", 240, 5, sum(t[2] for t in trials))

    (build_json,) = client.execute(
        "SELECT build FROM model_versions FINAL WHERE model = %(m)s AND version = 1", {"m": model}
    )[0]
    build = json.loads(build_json)
    assert [(s["name"], s["rows"]) for s in build["splits"]] == [("train", 2160), ("validation", 240), ("test", 600)]
    train_split, validation_split, test_split = build["splits"]
    assert train_split["ts_to"] < validation_split["ts_from"] <= validation_split["ts_to"] < test_split["ts_from"]
    assert build["hyperparameters"] == json.loads(chosen[6])  # the chosen configuration is what was trained
    assert build["spec"]["architecture"]["params"]["hidden"] == build["hyperparameters"]["hidden"]
    assert set(build["versions"]) >= {"driftloop", "torch", "python"} and build["device"] == "cpu"
    assert build["metrics"]["test"]["roc_auc"] == report.challenger_metric

    code, result = rebuild_cli(retrain_stack, model, 1, fresh_process=True)
    assert (code, result["status"], result["compared"]) == (0, "match", "weights"), result
    assert result["rebuilt_weights"] == build["weights_sha256"]

    late = agrawal_rows(model, 0, 1500, 1, seed=9)  # a label that arrives after the training, inside its window
    late.columns["event_id"] = [f"{model}-late"]
    late.columns["request_id"] = ["r-late"]  # another request's: r1500's would replace its label once merged
    sink = ClickHouseSink(retrain_settings.clickhouse)
    try:
        sink.write_blocking(late)
    finally:
        sink.close()
    code, result = rebuild_cli(retrain_stack, model, 1)  # it came later: the version's rows are still its rows
    assert (code, result["status"]) == (0, "match"), result

    client.execute(  # a backfill: a row inside the window, joined (it says) before the version was trained
        "INSERT INTO labeled (event_id, model, ts, ts_ms, label, label_num, joined_at) VALUES",
        [(f"{model}-backfill", model, TS0 + 1400, (TS0 + 1400) * 1000, "1", 1.0, TS0)],
    )
    code, result = rebuild_cli(retrain_stack, model, 1)
    assert (code, result["status"], result["rebuilt_weights"]) == (4, "data_changed", ""), result


def test_the_data_gate_and_the_compute_budget_skip_jobs_with_their_numbers(
    retrain_stack: PrivateStack, retrain_settings: Settings, labeled_model
) -> None:
    job = RetrainJob(retrain_settings)
    lopsided = labeled_model(before=3000, spec="max_class_share = 0.55\n")  # Agrawal's concept 0: ~2/3 one class
    report = job.run(JobRequest(lopsided, since=0))
    assert report.status == "skipped" and "training.max_class_share" in report.error
    assert 0.55 < report.details["data"]["majority_share"] < 0.8
    ((status, details),) = connect(retrain_settings.clickhouse).execute(
        "SELECT toString(status), details FROM retrain_runs FINAL WHERE model = %(m)s", {"m": lopsided}
    )
    assert status == "skipped" and json.loads(details)["data"]["rows"] == 3000
    assert job.registry.versions(lopsided) == []

    budgeted = labeled_model(before=3000, spec="budget_s_per_day = 0.01\n")
    first = job.run(JobRequest(budgeted, since=0))
    assert first.status == "promoted" and first.phases["train"] > 0.01  # nothing used yet: it runs
    # ... until its 0.01 s are spent (it trained its 15 epochs of 5 steps, or until its patience ran out), and
    # the version records the steps it took: a rebuild trains the same weights
    steps = first.details["budget"]["steps"]
    assert 1 <= steps < 20 and first.details["budget"]["budget_s_per_day"] == 0.01
    (build_json,) = connect(retrain_settings.clickhouse).execute(
        "SELECT build FROM model_versions FINAL WHERE model = %(m)s AND version = 1", {"m": budgeted}
    )[0]
    assert json.loads(build_json)["spec"]["training"]["max_steps"] == steps
    code, rebuilt = rebuild_cli(retrain_stack, budgeted, 1)
    assert (code, rebuilt["status"], rebuilt["compared"]) == (0, "match", "weights"), rebuilt
    second = job.run(JobRequest(budgeted, since=0))
    assert second.status == "skipped" and second.error.startswith("compute budget")
    assert second.details["budget_used_s"] == pytest.approx(first.phases["train"], rel=1e-6)
    assert [v.version for v in job.registry.versions(budgeted)] == [1]
    worker = RetrainWorker(retrain_settings, job=job)
    gauges = {m.name: {s.labels.get("model"): s.value for s in m.samples} for m in retrain_metrics(worker)}
    assert gauges["driftloop_retrain_budget_seconds"][budgeted] == 0.01
    assert gauges["driftloop_retrain_budget_used_seconds"][budgeted] == pytest.approx(first.phases["train"])


def finished_runs(settings: Settings, model: str) -> list[tuple[str, str]]:
    return connect(settings.clickhouse).execute(
        "SELECT toString(status), trigger FROM retrain_runs FINAL WHERE model = %(m)s AND status != 'running' "
        "AND trigger != 'manual' ORDER BY started_at",
        {"m": model},
    )


def test_a_schedule_and_a_threshold_start_jobs_through_the_worker(retrain_settings: Settings, labeled_model) -> None:
    """One model retrains every second (``interval_s = 1``); another's champion has a live accuracy of 0.33 over
    the 200 most recent rows it served, under its ``threshold = 0.9`` (no drift alert needed): the worker starts
    a job for each, by its trigger, on the spec's whole window. (No cooldown for the second: the job that trained
    its champion just now would hold it back otherwise.)"""
    scheduled = labeled_model(before=3000, spec="epochs = 3\nwindow_days = 3650\n[retraining]\ninterval_s = 1\n")
    spec = "epochs = 3\nwindow_days = 3650\n[retraining]\nthreshold = 0.9\ncooldown_s = 0\n"
    failing = labeled_model(before=1000, spec=spec)
    assert RetrainJob(retrain_settings).run(JobRequest(failing, since=0, trigger="manual")).status == "promoted"
    worker = RetrainWorker(retrain_settings, release_check_s=0.2)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        for model in (scheduled, failing):
            wait_for(lambda m=model: finished_runs(retrain_settings, m), timeout_s=120, what=f"a run of {model}")
    finally:
        worker.stop()
        thread.join(30)
    first, *again = finished_runs(retrain_settings, scheduled)  # every second: again while the other one trained
    assert first == ("promoted", "schedule") and all(trigger == "schedule" for _, trigger in again)
    assert [trigger for _, trigger in finished_runs(retrain_settings, failing)] == ["threshold"]
    assert {r.request.model: r.request.trigger for r in worker.reports} == {scheduled: "schedule", failing: "threshold"}
    assert all(r.request.since <= TS0 for r in worker.reports)  # the spec's whole training window


def test_a_threshold_job_is_not_started_again_on_the_evidence_that_started_the_last(
    retrain_settings: Settings, labeled_model
) -> None:
    """A threshold the data cannot meet would retrain at every cooldown, each challenger losing on the same rows:
    after a job it started, the champion is judged again only on rows predicted since, after a restart too."""
    model = labeled_model(before=3000, spec="epochs = 3\n[retraining]\nthreshold = 0.9\n")
    job = RetrainJob(retrain_settings)
    assert job.run(JobRequest(model, since=0, trigger="manual")).status == "promoted"
    now = [float(TS0 + 3000)]  # the watch's clock: just after the rows written so far
    watch = ThresholdWatch(job.specs, ReleaseController(retrain_settings), clock=lambda: now[0], check_s=0)

    def due() -> list[str]:
        return [found.model for found in watch.due(lambda name: name == model, lambda name: False)]

    (found,) = watch.due(lambda name: name == model, lambda name: False)
    assert found.version == 1 and found.comparison.rows == 200
    watch.started(found)
    assert due() == []  # the same rows: not again
    sink = ClickHouseSink(retrain_settings.clickhouse)
    try:
        sink.write_blocking(agrawal_rows(model, 0, 3000, 199, seed=3))  # predicted since, served by v1
        assert due() == []  # 199 rows: not yet the 200 the threshold judges
        sink.write_blocking(agrawal_rows(model, 0, 3199, 1, seed=4))
    finally:
        sink.close()
    assert due() == [model]

    # a worker restarted after such a job: the run in retrain_runs says where the champion is judged from
    report = job.run(JobRequest(model, since=0, trigger="threshold"))
    if report.status == "candidate":  # on its way: no threshold job while it is; here it lost
        job.registry.transition(model, report.challenger_version, "rejected", reason="lost its canary")
    restarted = ThresholdWatch(job.specs, ReleaseController(retrain_settings), check_s=0)
    assert len(restarted.due(lambda name: name == model, lambda name: False)) == 1  # without what it ran before
    restarted.restore(job.last_threshold_runs())
    assert restarted.due(lambda name: name == model, lambda name: False) == []
