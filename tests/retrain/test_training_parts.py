"""The parts of a training job, without the stack: cron schedules, splits by time, gate metrics, the data gate,
the budgeted search and its pruner, and the scheduler."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from driftloop.demo.labeled_history import agrawal_rows
from driftloop.infra.cron import Cron, CronError
from driftloop.infra.spec import ModelSpec, SpecCatalog, SpecError, TrainingSpec, load_spec
from driftloop.models import architectures
from driftloop.models.architectures import ArchitectureError, register_architecture
from driftloop.models.artifacts import weights_digest
from driftloop.models.preprocess import Preprocessor
from driftloop.retrain.build import BuildRecord, software_versions
from driftloop.retrain.data_gate import check_window
from driftloop.retrain.dataset import LabeledData
from driftloop.retrain.evaluation import MetricError, better, f1_score, metric, roc_auc
from driftloop.retrain.job import warn_if_accuracy_on_imbalance, warn_if_f1_scores_the_majority
from driftloop.retrain.rebuild import judge
from driftloop.retrain.schedules import Scheduler, next_run
from driftloop.retrain.splits import Splits, fingerprint
from driftloop.retrain.training import train
from driftloop.retrain.tuning import check_spec_architecture, search, with_steps


def agrawal(n: int, seed: int = 3, function: int = 2) -> LabeledData:
    batch = agrawal_rows("m", function, 0, n, seed=seed)
    names = batch["num.name"][0]
    return LabeledData(
        {name: np.asarray([row[j] for row in batch["num.value"]]) for j, name in enumerate(names)},
        {name: [row[j] for row in batch["cat.value"]] for j, name in enumerate(batch["cat.name"][0])},
        list(batch["label"]),
        np.asarray(batch["label_num"], dtype=float),
        np.asarray(batch["ts"], dtype=float),
        tuple(batch["event_id"]),
    )


# --- cron --------------------------------------------------------------------------------------------------------


def brute_force_next(cron: Cron, t: float) -> float:
    minute = dt.datetime.fromtimestamp(t, dt.UTC).replace(second=0, microsecond=0)
    while True:
        minute += dt.timedelta(minutes=1)
        if cron.matches_day(minute.date()) and minute.hour in cron.hours and minute.minute in cron.minutes:
            return minute.timestamp()


@pytest.mark.parametrize(
    "expression",
    [
        "0 3 * * *",
        "*/20 9-17 * * MON-FRI",
        "15 0 1,15 * *",
        "0 12 13 * 5",
        "5 4 * JAN,JUL 0",
        "@weekly",
        "59 23 31 * *",
    ],
)
def test_cron_gives_the_first_matching_minute_after_any_time(expression: str) -> None:
    cron = Cron.parse(expression)
    rng = random.Random(expression)
    for _ in range(10):
        t = rng.uniform(1.7e9, 1.8e9)
        assert cron.next_after(t) == brute_force_next(cron, t)


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("0 3 * *", "five fields"),
        ("60 * * * *", "outside 0-59"),
        ("0 3 * * MONDAY", "cannot read"),
        ("0 0 31 2 *", "names no time"),
    ],
)
def test_a_bad_cron_expression_says_what_is_wrong(expression: str, says: str) -> None:
    with pytest.raises(CronError, match=says):
        Cron.parse(expression).next_after(0.0)


# --- splits and metrics ---------------------------------------------------------------------------------------


def test_splits_are_by_time_with_the_test_split_most_recent_and_fingerprinted() -> None:
    data = agrawal(1000)
    splits = Splits.by_time(data, test_fraction=0.2, validation_fraction=0.1)
    train_split, validation, test = splits.records()
    assert (train_split.rows, validation.rows, test.rows) == (720, 80, 200)
    assert train_split.ts_to < validation.ts_from and validation.ts_to < test.ts_from
    assert test.fingerprint == fingerprint(data.event_ids[800:])
    assert Splits.by_time(data, 0.2, 0.1).records() == splits.records()  # the same rows, the same records
    shorter = Splits.by_time(data.slice(1, 1000), 0.2, 0.1).records()
    assert shorter[2] == test and shorter[0].rows == 719 and shorter[0].fingerprint != train_split.fingerprint


def test_roc_auc_and_f1_agree_with_their_definitions() -> None:
    rng = np.random.default_rng(5)
    scores = np.round(rng.uniform(size=300), 1)  # many ties
    positive = rng.uniform(size=300) < scores  # informative scores
    pairs = [(p, n) for p, n in itertools.product(scores[positive], scores[~positive])]
    expected = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])
    assert roc_auc(scores, positive) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(roc_auc(scores, np.zeros(300, dtype=bool)))
    predicted = np.where(scores > 0.5, "yes", "no").astype(object)
    actual = np.where(positive, "yes", "no").astype(object)
    tp = np.sum((predicted == "yes") & (actual == "yes"))
    precision, recall = tp / np.sum(predicted == "yes"), tp / np.sum(actual == "yes")
    assert f1_score(predicted, actual, "yes") == pytest.approx(2 * precision * recall / (precision + recall))


def test_gate_metrics_of_a_trained_network_and_which_way_is_better() -> None:
    data = agrawal(3000)
    splits = Splits.by_time(data, 0.2, 0.1)
    pre = Preprocessor.fit(splits.train.numeric, splits.train.categorical, splits.train.labels, "binary")
    spec = ModelSpec(name="m", task="binary", training=TrainingSpec(epochs=8))
    network = train(spec, pre, splits.train, splits.validation).network
    accuracy, auc = metric("accuracy", network, pre, splits.test), metric("roc_auc", network, pre, splits.test)
    assert 0.85 < accuracy <= 1 and accuracy <= auc <= 1  # the ranking is at least as good as the threshold's
    assert metric("f1", network, pre, splits.test, positive="1") != metric(
        "f1", network, pre, splits.test, positive="0"
    )
    with pytest.raises(MetricError, match="not among the labels"):
        metric("f1", network, pre, splits.test, positive="yes")
    with pytest.raises(MetricError, match="does not apply"):
        metric("rmse", network, pre, splits.test)
    assert better("roc_auc", 0.9, 0.8) and not better("rmse", 0.9, 0.8) and better("mae", 0.8, 0.9, margin=0.05)


def test_a_spec_refuses_a_gate_metric_its_task_cannot_have(tmp_path: Path) -> None:
    for body, says in [
        ('task = "regression"\n[training]\nmetric = "f1"', "does not apply to a regression task"),
        ('task = "multiclass"\n[training]\nmetric = "roc_auc"', "needs a binary task"),
        ('[retraining]\nschedule = "0 25 * * *"', "outside 0-23 in the hour field"),
        ("[tuning]\nspace = { dropout = { low = 0.5 } }", "give either low and high, or choices"),
        # a training-loop parameter's range the trials would have trained with (past the field's own check)
        ("[tuning]\nspace = { batch_size = { low = 0, high = 256 } }", "tuning.space.batch_size: 0: Input should be"),
        ("[tuning]\nspace = { epochs = { choices = [0, 20] } }", "tuning.space.epochs: 0: Input should be"),
        ("[tuning]\nspace = { learning_rate = { low = -1e-3, high = 1e-2 } }", "tuning.space.learning_rate: -0.001"),
        ('task = "binary"\n[release]\nfloor = 60', r"release.floor 60.0 is an accuracy .* \(0.6, not 60\)"),
        ('task = "multiclass"\n[retraining]\nthreshold = 85', r"retraining.threshold 85.0 is an accuracy .* between 0"),
    ]:
        path = tmp_path / "m.toml"
        path.write_text(f'name = "m"\n{body}\n')
        with pytest.raises(SpecError, match=says):
            load_spec(path)


# --- the data gate ----------------------------------------------------------------------------------------------


def test_the_data_gate_names_each_reason_with_its_numbers() -> None:
    rules = TrainingSpec(min_labels=500, max_class_share=0.9, max_null_share=0.3)
    good = agrawal(1000)
    assert check_window(good, Splits.by_time(good, 0.2, 0.1), "binary", rules).passed

    small = good.slice(0, 400)
    assert (
        "400 labeled rows in the window, training.min_labels is 500"
        in check_window(small, Splits.by_time(small, 0.2, 0.1), "binary", rules).reason
    )
    one = LabeledData(good.numeric, good.categorical, ["1"] * 1000, np.ones(1000), good.ts, good.event_ids)
    verdict = check_window(one, Splits.by_time(one, 0.2, 0.1), "binary", rules)
    assert not verdict.passed and "one class only" in verdict.reason and verdict.numbers["classes"] == 1
    lopsided = LabeledData(
        good.numeric, good.categorical, ["0"] * 950 + ["1"] * 50, np.zeros(1000), good.ts, good.event_ids
    )
    verdict = check_window(lopsided, Splits.by_time(lopsided, 0.2, 0.1), "binary", rules)
    assert "95.00% of the labels are '0'" in verdict.reason and verdict.numbers["majority_share"] == 0.95
    holes = {**good.numeric, "salary": np.where(np.arange(1000) % 2 == 0, np.nan, 1.0)}
    nulls = LabeledData(holes, good.categorical, good.labels, good.label_num, good.ts, good.event_ids)
    verdict = check_window(nulls, Splits.by_time(nulls, 0.2, 0.1), "binary", rules)
    assert "salary" in verdict.reason and verdict.numbers["worst_null_share"] == 0.5
    flat = LabeledData(good.numeric, good.categorical, good.labels, np.full(1000, 2.5), good.ts, good.event_ids)
    assert "every label is 2.5" in check_window(flat, Splits.by_time(flat, 0.2, 0.1), "regression", rules).reason
    bare = LabeledData({}, {}, good.labels, good.label_num, good.ts, good.event_ids)  # a model that sends no features
    verdict = check_window(bare, Splits.by_time(bare, 0.2, 0.1), "binary", rules)
    assert verdict.reasons == (
        "the rows carry no features (their predictions sent `features: {}`): nothing to learn from",
    )


def test_a_job_judged_on_accuracy_with_a_rare_class_says_to_judge_it_on_f1_or_roc_auc(caplog) -> None:
    good = agrawal(1000)
    fraud = LabeledData(
        good.numeric, good.categorical, ["0"] * 970 + ["1"] * 30, np.zeros(1000), good.ts, good.event_ids
    )
    rules = TrainingSpec(min_labels=500)
    numbers = check_window(fraud, Splits.by_time(fraud, 0.2, 0.1), "binary", rules).numbers
    for metric_name, balanced in (("f1", fraud), ("roc_auc", fraud), ("accuracy", good), ("accuracy", fraud)):
        seen = check_window(balanced, Splits.by_time(balanced, 0.2, 0.1), "binary", rules).numbers
        with caplog.at_level("WARNING", logger="driftloop.retrain"):
            warn_if_accuracy_on_imbalance("fraud", metric_name, seen)
    (warning,) = caplog.records  # the last: accuracy on 97 % one class
    assert 'set training.metric = "f1" or "roc_auc"' in warning.getMessage()
    assert warning.fields == {"model": "fraud", "majority_class": "0", "majority_share": numbers["majority_share"]}


def test_a_job_judged_on_the_f1_of_its_majority_class_says_to_name_the_rare_one(caplog) -> None:
    good = agrawal(1000)
    labels = ["legit"] * 960 + ["fraud"] * 40  # the last in sorted order, "legit", is the common one
    window = LabeledData(good.numeric, good.categorical, labels, np.zeros(1000), good.ts, good.event_ids)
    numbers = check_window(window, Splits.by_time(window, 0.2, 0.1), "binary", TrainingSpec(min_labels=500)).numbers
    classes = ["fraud", "legit"]
    with caplog.at_level("WARNING", logger="driftloop.retrain"):
        warn_if_f1_scores_the_majority("fraud", "f1", numbers, classes, configured="fraud")  # named: no warning
        warn_if_f1_scores_the_majority("fraud", "roc_auc", numbers, classes, configured=None)  # either class's
        warn_if_f1_scores_the_majority("fraud", "f1", numbers, ["0", "1"], configured=None)  # "1" is the rare one
        warn_if_f1_scores_the_majority("fraud", "f1", numbers, classes, configured=None)
    (warning,) = caplog.records
    assert "training.positive_class" in warning.getMessage()
    assert warning.fields == {"model": "fraud", "scored_class": "legit", "other_class": "fraud"}


# --- the search --------------------------------------------------------------------------------------------------


def tuned(trials: int, **tuning: object) -> tuple[ModelSpec, Preprocessor, Splits]:
    data = agrawal(2000)
    splits = Splits.by_time(data, 0.2, 0.1)
    pre = Preprocessor.fit(splits.train.numeric, splits.train.categorical, splits.train.labels, "binary")
    spec = ModelSpec.model_validate(
        {
            "name": "m",
            "task": "binary",
            "training": {"epochs": 10, "learning_rate": 0.01},
            "tuning": {
                "trials": trials,
                "startup_trials": 2,
                "min_epochs": 2,
                # a range from hopeless (1e-5: barely moves in ten epochs) to good: the pruner has weak trials to stop
                "space": {
                    "learning_rate": {"low": 1e-5, "high": 3e-2, "log": True},
                    "hidden": {"choices": [[16], [32]]},
                },
            }
            | tuning,
        }
    )
    return spec, pre, splits


def test_the_search_starts_from_the_specs_own_configuration_and_prunes_weak_trials() -> None:
    spec, pre, splits = tuned(10)
    found = search(spec, pre, splits, metric_name="accuracy", budget_s=600)
    assert [t.trial for t in found.trials] == list(range(10))
    assert found.trials[0].params == {"learning_rate": 0.01} | {"hidden": found.trials[0].params["hidden"]}
    pruned = [t for t in found.trials if t.state == "pruned"]
    assert pruned and all(2 <= t.epochs < 10 for t in pruned) and all(np.isnan(t.validation_metric) for t in pruned)
    (chosen,) = [t for t in found.trials if t.chosen]
    complete = [t for t in found.trials if t.state == "complete"]
    assert chosen.validation_loss == min(t.validation_loss for t in complete)
    assert found.params == chosen.params and found.spec.training.learning_rate == chosen.params["learning_rate"]
    assert found.spec.architecture.params["hidden"] == chosen.params["hidden"]
    again = search(spec, pre, splits, metric_name="accuracy", budget_s=600)  # seeded: the same search
    assert [(t.params, t.state, t.epochs) for t in again.trials] == [
        (t.params, t.state, t.epochs) for t in found.trials
    ]


def test_training_stops_where_its_seconds_run_out_and_its_steps_train_the_same_weights_again() -> None:
    """What is left of a compute budget bounds a training (it ran its epochs whatever was left); it keeps its best
    epoch so far, and the steps it took, as ``training.max_steps``, train the same weights bit for bit."""
    data = agrawal(1200)
    pre = Preprocessor.fit(data.numeric, data.categorical, data.labels, "binary")
    fit, check = data.slice(0, 1000), data.slice(1000, 1200)
    spec = ModelSpec.model_validate({"name": "m", "training": {"epochs": 5, "batch_size": 100, "patience": 5}})
    whole = train(spec, pre, fit, check)
    assert (whole.steps, whole.epochs, whole.out_of_time) == (50, 5, False)
    cut = train(spec, pre, fit, check, max_seconds=0.0)  # spent before it started: one step at least
    assert (cut.steps, cut.epochs, cut.out_of_time, len(cut.history)) == (1, 1, True, 1)
    again = train(with_steps(spec, cut), pre, fit, check)
    assert again.steps == 1 and weights_digest(again.network.state_dict()) == weights_digest(cut.network.state_dict())
    assert with_steps(spec, whole) is spec  # a training that ran out of nothing records nothing
    partway = train(
        spec.model_copy(update={"training": spec.training.model_copy(update={"max_steps": 17})}), pre, fit, check
    )
    assert (partway.steps, partway.epochs, len(partway.history), partway.out_of_time) == (17, 2, 2, False)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"architecture": {"params": {"hiden": [128]}}}, "architecture.params.hiden: tabular_mlp takes no parameter"),
        ({"architecture": {"params": {"dropout": 1.5}}}, "architecture.params: tabular_mlp(dropout=1.5) cannot be"),
        ({"architecture": {"params": {"hidden": [64, 0]}}}, "hidden sizes must be 1 or more, got [64, 0]"),
        (
            {"tuning": {"trials": 4, "space": {"dropuot": {"low": 0.0, "high": 0.5}}}},
            "tuning.space.dropuot: tabular_mlp takes no parameter 'dropuot' (it takes dropout, embedding_dim, hidden)",
        ),
        (
            {"tuning": {"trials": 4, "space": {"embedding_dim": {"choices": [4, 0]}}}},
            "tuning.space.embedding_dim: tabular_mlp(embedding_dim=0) cannot be built",
        ),
        ({"architecture": {"name": "transformer"}}, "architecture 'transformer' is not registered"),
    ],
)
def test_an_architecture_refuses_parameters_it_would_ignore_or_fail_on(given: dict, says: str) -> None:
    """A misspelt name was ignored (the default width trained, a search searched nothing); a value the network
    refuses failed every attempt, once the window was fetched."""
    with pytest.raises(ArchitectureError) as refused:
        check_spec_architecture(ModelSpec.model_validate({"name": "m", **given}))
    assert says in str(refused.value)


def test_a_registered_architecture_is_checked_by_the_parameters_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(architectures, "_REGISTRY", dict(architectures._REGISTRY))  # registered for this test only
    register_architecture(
        "linear_probe", lambda inputs, params: torch.nn.Linear(int(params.get("width", 1)), 1), params=["width"]
    )
    register_architecture("anything_goes", lambda inputs, params: torch.nn.Identity())
    check_spec_architecture(
        ModelSpec.model_validate({"name": "m", "architecture": {"name": "linear_probe", "params": {"width": 4}}})
    )
    with pytest.raises(ArchitectureError, match=r"linear_probe takes no parameter 'depth' \(it takes width\)"):
        check_spec_architecture(
            ModelSpec.model_validate({"name": "m", "architecture": {"name": "linear_probe", "params": {"depth": 2}}})
        )
    with pytest.raises(ArchitectureError, match=r"linear_probe\(width=-1\) cannot be built"):
        check_spec_architecture(
            ModelSpec.model_validate({"name": "m", "architecture": {"name": "linear_probe", "params": {"width": -1}}})
        )
    # an architecture registered without its names takes any: only what it refuses to build is refused
    check_spec_architecture(
        ModelSpec.model_validate({"name": "m", "architecture": {"name": "anything_goes", "params": {"x": 1}}})
    )
    # a search space that is not searched (no trials) is not checked
    check_spec_architecture(
        ModelSpec.model_validate({"name": "m", "tuning": {"space": {"dropuot": {"choices": [0.1]}}}})
    )


def test_a_search_s_last_training_on_every_row_stops_where_the_compute_budget_runs_out() -> None:
    """The trials learn from the most recent rows, then the chosen configuration from all of them: that training
    had no bound but its epochs. Out of budget, it stops, and the spec it returns records its steps."""
    spec, pre, splits = tuned(2, max_rows=500, pruner="none")
    found = search(spec, pre, splits, metric_name="accuracy", budget_s=600, max_seconds=0.0)
    assert found.rows == 500 < len(splits.train) and found.result.steps == 1 and found.result.out_of_time
    assert found.spec.training.max_steps == 1
    unbounded = search(spec, pre, splits, metric_name="accuracy", budget_s=600)
    assert unbounded.spec.training.max_steps is None and unbounded.result.steps > 1


def test_the_search_stops_at_its_seconds_budget_with_a_completed_trial() -> None:
    spec, pre, splits = tuned(50, pruner="none")
    found = search(spec, pre, splits, metric_name="accuracy", budget_s=1.0)
    assert 1 <= len(found.trials) < 50 and any(t.state == "complete" for t in found.trials)
    # every trial but the first completed one may have been cut at the deadline; none started well after it
    assert found.seconds < 1.0 + 2 * max(t.seconds for t in found.trials)


# --- the scheduler -----------------------------------------------------------------------------------------------


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_schedules_start_at_first_sight_continue_from_the_last_run_and_catch_up_once(tmp_path: Path) -> None:
    (tmp_path / "daily.toml").write_text('name = "daily"\n[retraining]\nschedule = "0 3 * * *"\n')
    (tmp_path / "often.toml").write_text('name = "often"\n[retraining]\ninterval_s = 600\n')
    (tmp_path / "other.toml").write_text('name = "other"\n[retraining]\ninterval_s = 600\n')
    (tmp_path / "never.toml").write_text('name = "never"\n')
    clock = Clock()
    scheduler = Scheduler(SpecCatalog(tmp_path), clock)
    owns = lambda model: model != "other"  # noqa: E731
    assert scheduler.due(owns) == []  # first sight: the schedules start now
    clock.now += 601
    assert scheduler.due(owns) == ["often"]
    scheduler.started("often")
    clock.now += 86400 * 3  # three 03:00s missed while down
    assert scheduler.due(owns) == ["daily", "often"]
    scheduler.started("daily")
    assert scheduler.due(owns) == ["often"]  # the missed runs are one run

    restored = Scheduler(SpecCatalog(tmp_path), clock)
    restored.restore({"daily": clock.now - 86400 * 2})  # its last run two days ago: one is due now
    assert "daily" in restored.due(owns)
    rules = SpecCatalog(tmp_path).get("daily").retraining
    assert next_run(rules, 0.0) == 3 * 3600 and next_run(SpecCatalog(tmp_path).get("never").retraining, 0) == np.inf


def test_a_schedule_written_into_a_spec_while_the_worker_runs_starts_then(tmp_path: Path) -> None:
    """The retrain worker read a model's spec once: a schedule added later never ran until it restarted."""
    path, clock = tmp_path / "m.toml", Clock()
    path.write_text('name = "m"\n')
    scheduler = Scheduler(SpecCatalog(tmp_path, recheck_s=0.0), clock)
    assert scheduler.due(lambda model: True) == []
    path.write_text('name = "m"\n[retraining]\ninterval_s = 600\n')
    assert scheduler.due(lambda model: True) == []  # it starts now
    clock.now += 600
    assert scheduler.due(lambda model: True) == ["m"]


# --- rebuild verdicts -------------------------------------------------------------------------------------------


def test_a_rebuild_is_judged_by_its_weights_on_a_cpu_and_by_its_test_metrics_on_a_gpu() -> None:
    cpu = BuildRecord(
        since=0.0, until_ms=1, joined_until=1, max_rows=10, rows=10, fingerprint="f", splits=(), task="binary", spec={},
        hyperparameters={}, seed=0, device="cpu", threads=2, weights_sha256="a" * 64,
        metrics={"test": {"accuracy": 0.9, "roc_auc": 0.95}},
        versions=software_versions() | {"torch": "2.0.0"},
    )  # fmt: skip
    assert judge(cpu, "a" * 64, {}) == ("match", "weights", "the weights are equal, bit for bit")
    status, compared, detail = judge(cpu, "b" * 64, {"accuracy": 0.9})  # equal metrics do not make equal weights
    assert (status, compared) == ("differs", "weights") and f"torch 2.0.0 → {torch.__version__}" in detail

    gpu = replace(cpu, device="cuda:0")  # a GPU's version, rebuilt on whatever is at hand (here: the CPU)
    assert judge(gpu, "b" * 64, {"accuracy": 0.905, "roc_auc": 0.949})[:2] == ("match", "metrics")
    status, _, detail = judge(gpu, "a" * 64, {"accuracy": 0.9, "roc_auc": 0.93})
    assert status == "differs" and "roc_auc 0.9300, recorded 0.9500: beyond 0.01" in detail
    assert judge(gpu, "a" * 64, {"accuracy": 0.9, "roc_auc": float("nan")})[0] == "differs"
    errors = replace(gpu, metrics={"test": {"mae": 10.0}})  # errors compare relative to their size
    assert judge(errors, "", {"mae": 10.09})[0] == "match" and judge(errors, "", {"mae": 10.2})[0] == "differs"


def test_a_regression_version_from_before_the_target_was_standardised_serves_and_rebuilds_as_it_was_trained() -> None:
    """Its ``preprocess.json`` has no target's mean and spread, its build record no ``target_standardised``: its
    network's outputs are the values themselves, and a rebuild trains on the values as they were."""
    now = Preprocessor.fit({"x": [1.0, 2.0, 3.0]}, {}, ["100", "200", "300"], "regression", targets=[100, 200, 300])
    assert now.encode_labels([200.0]).tolist() == [0.0] and now.values(np.array([1.0]))[0] == pytest.approx(
        281.65, 1e-4
    )
    before = Preprocessor.from_json({k: v for k, v in now.to_json().items() if not k.startswith("target_")})
    assert before.encode_labels([200.0]).tolist() == [200.0] and before.values(np.array([1.5])).tolist() == [1.5]
    record = BuildRecord(
        since=0.0, until_ms=1, joined_until=1, max_rows=10, rows=10, fingerprint="f", splits=(), task="regression",
        spec={}, hyperparameters={}, seed=0, device="cpu", threads=2, weights_sha256="a" * 64, metrics={},
        target_standardised=True,
    )  # fmt: skip
    recorded = record.to_json()
    assert BuildRecord.from_json(recorded).target_standardised
    assert not BuildRecord.from_json(
        {k: v for k, v in recorded.items() if k != "target_standardised"}
    ).target_standardised


def test_a_serving_client_s_booleans_are_the_categories_its_model_learnt() -> None:
    """Events store a boolean feature as "true" / "false", so a model learns those; a client that serves it
    Python's or numpy's booleans (``str(True)`` is "True") must reach the same categories, not "unknown"."""
    pre = Preprocessor.fit({}, {"foreign": ["true", "false", "true"]}, ["1", "0", "1"], "binary")
    learnt = pre.transform({}, {"foreign": ["true", "false"]})[1].tolist()
    assert learnt == [[2], [1]]
    for served in ([True, False], [np.True_, np.False_], np.array([True, False])):
        assert pre.transform({}, {"foreign": served})[1].tolist() == learnt


def test_served_rows_meet_the_columns_their_model_was_trained_on() -> None:
    """Training reads the events as they landed: a feature's numbers in one column, its texts in another, ""
    and NaN where a row lacks one (``retrain.dataset``). Served rows must reach the same inputs: a missing
    category (``None``, ``NaN``, left out) is "", and an age that is a number in most rows and "unknown" in
    some is a number on one side and a category on the other, as the network learnt it."""
    from driftloop.models.serving import served_columns

    nan = float("nan")
    trained_numeric = {"age": [41.5, nan, nan, 30.0], "zip": [nan, 12345.0, nan, nan]}
    trained_categorical = {"age": ["", "unknown", "", ""], "zip": ["02134", "", "x", "x"], "c": ["a", "", "", "b"]}
    pre = Preprocessor.fit(trained_numeric, trained_categorical, ["1", "0", "1", "0"], "binary")
    served = pd.DataFrame(
        [{"age": 41.5, "zip": "02134", "c": "a"}, {"age": "unknown", "zip": 12345, "c": None}, {"zip": "x", "c": nan},
         {"age": 30, "zip": "x", "c": "b"}]
    )  # fmt: skip
    numbers, ids = pre.transform(*served_columns(pre, served))
    expected_numbers, expected_ids = pre.transform(trained_numeric, trained_categorical)
    assert numbers.tolist() == expected_numbers.tolist() and ids.tolist() == expected_ids.tolist()
    assert 0 not in ids.tolist()[1]  # the missing category is the one training knew, not "unknown" (id 0)
    alone = Preprocessor.fit({"salary": [1.0, 3.0]}, {}, ["1", "0"], "binary")
    (salary,) = served_columns(alone, pd.DataFrame({"salary": [2.0, "12.5", "unknown", None]}))[0].values()
    assert salary[:2].tolist() == [2.0, 12.5] and np.isnan(salary[2:]).all()
    without_c = pre.transform(*served_columns(pre, served.drop(columns="c").iloc[1:3]))[1]
    assert without_c.tolist() == pre.transform(*served_columns(pre, served.iloc[1:3]))[1].tolist()  # c missing


ARTIFACT_WITH_ACCENTS = """
import sys, tempfile
from pathlib import Path
import numpy as np
from driftloop.infra.spec import ModelSpec
from driftloop.models.architectures import ArchitectureInput, build_architecture
from driftloop.models.artifacts import load_artifact, write_artifact
from driftloop.models.preprocess import Preprocessor
countries = {"pa\\u00eds": ["Espa\\u00f1a", "Per\\u00fa"] * 5}
pre = Preprocessor.fit({"x": np.arange(10.0)}, countries, ["s\\u00ed", "no"] * 5, "binary")
spec = ModelSpec.model_validate({"name": "m", "owner": "Jos\\u00e9 N\\u00fa\\u00f1ez", "task": "binary"})
inputs = ArchitectureInput(1, (3,), 2)
network = build_architecture("tabular_mlp", inputs, {})
path, digest = write_artifact(Path(tempfile.mkdtemp()), spec, 1, network, pre, inputs, {})
print(ascii(load_artifact(path, digest).spec.owner), sys.flags.utf8_mode)
"""


def test_a_version_is_written_and_read_as_utf8_whatever_the_locale() -> None:
    """An owner named José: under a locale that is not UTF-8 (a container's ``LC_ALL=C`` without Python's UTF-8
    mode) writing the version's ``spec.json`` raised a UnicodeEncodeError, and no version was published."""
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}
    done = subprocess.run([sys.executable, "-c", ARTIFACT_WITH_ACCENTS], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["'Jos\\xe9", "N\\xfa\\xf1ez'", "0"]  # read back whole, UTF-8 mode off


def rare_fraud(n: int, seed: int) -> LabeledData:
    """Agrawal's function 0 as a fraud model's labels: ``fraud`` for one in three of the rows it marks 1, ``legit``
    for the rest: the fraud's probability stays below one half wherever it can be, so the most probable class is
    always ``legit``."""
    data = agrawal(n, seed=seed, function=0)
    rng = np.random.default_rng(seed)
    labels = ["fraud" if y == "1" and rng.random() < 1 / 3 else "legit" for y in data.labels]
    return replace(data, labels=labels, label_num=np.full(n, np.nan))


def test_a_rare_class_is_predicted_above_the_threshold_that_gives_it_the_best_f1_on_validation() -> None:
    """On imbalanced classes a binary network's most probable class is nearly always the majority: F1 of the rare
    class at one half is near 0. With ``training.tune_threshold`` (on by default where the gate metric is f1), the
    class is predicted where its probability reaches the threshold that gave the best F1 on the validation split
    (the test split stays unseen), and serving predicts as evaluation does."""
    from driftloop.models.inference import predict_columns
    from driftloop.retrain.evaluation import evaluate, with_decision_threshold

    splits = Splits.by_time(rare_fraud(6000, seed=4), 0.25, 0.25)
    pre = Preprocessor.fit(splits.train.numeric, splits.train.categorical, splits.train.labels, "binary")
    spec = ModelSpec.model_validate(
        {"name": "m", "task": "binary", "training": {"epochs": 10, "metric": "f1", "positive_class": "fraud"}}
    )
    assert spec.tunes_threshold() and not ModelSpec(name="m").tunes_threshold()
    network = train(spec, pre, splits.train, splits.validation).network
    at_half = evaluate(network, pre, splits.test, positive="fraud")
    tuned = with_decision_threshold(network, pre, splits.validation, positive="fraud")
    assert tuned.positive == "fraud" and 0.02 < tuned.threshold < 0.5
    on_test = evaluate(network, tuned, splits.test, positive="fraud")
    # 0.5 at best (one in three where fraud can be; the rest legit)
    assert at_half["f1"] < 0.05 and on_test["f1"] > 0.15, (at_half, on_test)
    assert on_test["roc_auc"] == at_half["roc_auc"]  # the ranking is the network's, whatever the threshold
    assert Preprocessor.from_json(tuned.to_json()) == tuned
    assert (
        Preprocessor.from_json({k: v for k, v in tuned.to_json().items() if k not in ("threshold", "positive")}) == pre
    )
    predicted, scores = predict_columns(network, tuned, splits.test.numeric, splits.test.categorical)
    frauds = predicted == "fraud"
    assert frauds.any() and (scores[frauds] < 0.5).any()  # predicted below one half, its probability the score
    assert np.all(scores[frauds] >= tuned.threshold - 1e-6)
    assert (
        with_decision_threshold(
            network, pre, replace(splits.validation, labels=["legit"] * len(splits.validation)), positive="fraud"
        )
        is pre
    )
