"""Retraining against the real stack: jobs, the champion gate, artifacts, the registry, the serving client."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from river.datasets import synth

from driftloop.demo.labeled_history import TS0, agrawal_rows
from driftloop.infra.clickhouse.client import connect
from driftloop.infra.network import free_port
from driftloop.infra.settings import Settings
from driftloop.infra.spec import SpecError
from driftloop.models import serving
from driftloop.models.artifacts import ArtifactError
from driftloop.models.registry import ModelRegistry
from driftloop.models.serving import ModelClient
from driftloop.retrain import job as job_module
from driftloop.retrain.dataset import fetch_labeled
from driftloop.retrain.evaluation import metric
from driftloop.retrain.job import JobRequest, NotEnoughLabels, RetrainJob
from driftloop.retrain.rebuild import rebuild
from driftloop.streams.batch import ColumnBatch
from driftloop.streams.sink import ClickHouseSink
from tests.stack_fixtures import PrivateStack, TcpProxy, topic_records, wait_for

pytestmark = pytest.mark.integration


def runs(settings: Settings, model: str) -> list[tuple]:
    return connect(settings.clickhouse).execute(
        "SELECT status, fetch_s, train_s, evaluate_s, publish_s, challenger_version, error "
        "FROM retrain_runs FINAL WHERE model = %(m)s ORDER BY started_at",
        {"m": model},
    )


def champions(settings: Settings, model: str) -> list[int]:
    return [
        v
        for (v,) in connect(settings.clickhouse).execute(
            "SELECT version FROM model_versions FINAL WHERE model = %(m)s AND status = 'champion'", {"m": model}
        )
    ]


def write_labeled_rows(settings: Settings, rows: ColumnBatch) -> None:
    """Labeled rows written to ClickHouse as the outcome join writes them."""
    sink = ClickHouseSink(settings.clickhouse)
    try:
        assert sink.write_blocking(rows) == []
    finally:
        sink.close()


def test_a_first_version_is_trained_promoted_and_timed(retrain_settings: Settings, labeled_model) -> None:
    model = labeled_model(before=3000)
    report = RetrainJob(retrain_settings).run(JobRequest(model, since=0))
    assert report.status == "promoted" and report.challenger_version == 1
    assert report.challenger_metric > 0.9  # Agrawal function 0 is learnable
    ((status, *phases, version, error),) = runs(retrain_settings, model)
    assert status == "promoted" and version == 1 and error == "" and all(p > 0 for p in phases)
    assert champions(retrain_settings, model) == [1]
    files = {p.name for p in (Path(retrain_settings.artifact_location) / model / "v1").iterdir()}
    assert files == {"weights.pt", "preprocess.json", "spec.json", "build.json", "manifest.json"}


def test_after_a_concept_drift_the_challenger_wins_on_recent_data(retrain_settings: Settings, labeled_model) -> None:
    model = labeled_model(before=3000, after=3000)
    job = RetrainJob(retrain_settings)
    first = job.run(JobRequest(model, since=0, trigger_alert_id="bootstrap"))
    second = job.run(JobRequest(model, since=TS0 + 3000, trigger_alert_id="alert-1"))  # after the change point
    assert (first.status, second.status) == ("promoted", "candidate")  # the first serves; then release decides
    assert second.challenger_metric > second.champion_metric + 0.1  # the old champion fails the new concept
    registry = ModelRegistry(retrain_settings)
    versions = {r.version: r for r in registry.versions(model)}
    assert (versions[1].status, versions[2].status) == ("champion", "candidate")
    assert versions[2].parent_version == 1 and versions[2].trigger_alert_id == "alert-1"
    changes = [(c.version, c.from_stage, c.to_stage, c.path) for c in registry.changes(model)]
    assert changes == [(1, "none", "champion", "first"), (2, "none", "candidate", "release")]


def test_a_champion_is_judged_only_on_test_rows_it_never_saw(
    retrain_settings: Settings, labeled_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An alert's job trains v1 on the rows since the change (the last 1,000); the next job, a schedule's on the
    whole window, tests on its most recent 400 rows, of which v1 trained or stopped early on the first 200. v1 was
    judged on them, its own training rows, and looked better than it is. Now both versions are judged on the
    200 it never saw; with too few of those, not offline at all (the candidate goes to the live gates)."""
    model = labeled_model(before=2000)
    job = RetrainJob(retrain_settings)
    assert job.run(JobRequest(model, since=TS0 + 1000)).status == "promoted"  # v1: its validation ends at row 1799
    report = job.run(JobRequest(model, since=0))
    registry = ModelRegistry(retrain_settings)
    v1, v2 = registry.versions(model)
    assert "on the 200 most recent rows (of 400: the champion trained or stopped early on the 200 before)" in v2.reason
    unseen = fetch_labeled(retrain_settings, model, 0, 10_000).slice(1800, 2000)
    for version, recorded in ((v1, report.champion_metric), (v2, report.challenger_metric)):
        loaded = registry.load(version)
        assert recorded == metric("accuracy", loaded.network, loaded.preprocessor, unseen), version.version

    monkeypatch.setattr(job_module, "FAIR_ROWS", 201)  # 200 unseen rows are too few now
    third = job.run(JobRequest(model, since=0))
    assert third.status == "candidate" and math.isnan(third.champion_metric)
    assert "fewer than 201 of which the champion (v1) never saw: no fair comparison offline" in (
        registry.get(model, 3).reason
    )


def test_a_worse_challenger_is_rejected_and_the_champion_stays(retrain_settings: Settings, labeled_model) -> None:
    model = labeled_model(before=4000)
    job = RetrainJob(retrain_settings)
    assert job.run(JobRequest(model, since=0)).status == "promoted"
    spec = retrain_settings.spec_directory / f"{model}.toml"
    spec.write_text(spec.read_text().replace("epochs = 15", "epochs = 1\nlearning_rate = 0.000001"))
    assert "learning_rate = 0.000001" in spec.read_text()
    worse = RetrainJob(retrain_settings).run(JobRequest(model, since=0))
    assert worse.status == "rejected" and worse.challenger_metric < worse.champion_metric
    versions = {r.version: r for r in ModelRegistry(retrain_settings).versions(model)}
    assert versions[2].status == "rejected" and versions[2].reason.startswith("worse:")
    assert champions(retrain_settings, model) == [1]


def test_diverging_training_is_rejected_with_the_reason(retrain_settings: Settings, labeled_model) -> None:
    model = labeled_model(before=2000, spec="learning_rate = 1e30\n")
    report = RetrainJob(retrain_settings).run(JobRequest(model, since=0))
    assert report.status == "rejected" and "TrainingError" in report.error and "diverged" in report.error
    assert champions(retrain_settings, model) == [] and ModelRegistry(retrain_settings).versions(model) == []


def test_an_architecture_parameter_the_network_does_not_read_fails_the_job_and_names_it(
    retrain_settings: Settings, labeled_model
) -> None:
    """A misspelt parameter (``hiden``) was ignored: the version was trained, and promoted, with the default
    width. The job fails before it fetches anything, recorded with the file and the field, and the next attempt
    reads the fixed file."""
    model = labeled_model(before=2000, spec="[architecture]\nparams = { hiden = [16] }\n")
    job = RetrainJob(retrain_settings)
    with pytest.raises(SpecError) as failure:
        job.run(JobRequest(model, since=0))
    spec_file = retrain_settings.spec_directory / f"{model}.toml"
    says = f"{spec_file}: architecture.params.hiden: tabular_mlp takes no parameter 'hiden'"
    assert str(failure.value).startswith(says)
    assert [
        (status, error.startswith(f"SpecError: {says}")) for status, *_, error in runs(retrain_settings, model)
    ] == [("failed", True)]
    assert ModelRegistry(retrain_settings).versions(model) == []
    spec_file.write_text(spec_file.read_text().replace("hiden", "hidden"))
    assert job.run(JobRequest(model, since=0)).status == "promoted"
    registry = ModelRegistry(retrain_settings)
    champion = registry.champion(model)
    assert champion is not None and registry.load(champion).spec.architecture.params == {"hidden": [16]}


def test_a_feature_the_spec_declares_numeric_and_sent_as_text_is_learnt_as_the_numbers_it_spells(
    retrain_settings: Settings, labeled_model
) -> None:
    """A service that formats its numbers sends ``"salary": "52000.50"``: the events land it among the texts, and
    training took it for a categorical feature (thousands of categories, each seen once) though the spec says
    numeric and serving reads the text as its number. Now training reads it as serving does."""
    model = labeled_model(before=0, spec='[features]\nsalary = "numeric"\n')
    rows = agrawal_rows(model, 2, 0, 2000, seed=1)
    for i, names in enumerate(rows["num.name"]):
        j = names.index("salary")
        salary = rows["num.value"][i][j]
        rows["num.name"][i] = [n for n in names if n != "salary"]
        rows["num.value"][i] = [v for k, v in enumerate(rows["num.value"][i]) if k != j]
        rows["cat.name"][i] = [*rows["cat.name"][i], "salary"]
        rows["cat.value"][i] = [*rows["cat.value"][i], f"{salary:.2f}" if i % 10 else "unknown"]
    write_labeled_rows(retrain_settings, rows)
    assert RetrainJob(retrain_settings).run(JobRequest(model, since=0)).status == "promoted"
    registry = ModelRegistry(retrain_settings)
    champion = registry.champion(model)
    assert champion is not None
    pre = registry.load(champion).preprocessor
    assert "salary" in pre.numeric and "salary" not in pre.categorical
    row = {"age": 45, "commission": 0.0, "hvalue": 150000.0, "hyears": 10, "loan": 100000.0, "elevel": "1",
           "car": "3", "zipcode": "2", "salary": 52000.5}  # fmt: skip
    with ModelClient(model, retrain_settings, watch=False) as client:
        as_number, as_text = client.predict([row, row | {"salary": "52000.50"}]).scores
    assert as_number == as_text


def test_a_regression_whose_target_is_in_the_hundreds_of_thousands_is_learnt_served_and_rebuilt(
    retrain_settings: Settings, labeled_model
) -> None:
    """A credit line in dollars, from a customer's salary and house: the network learnt the target as it came, and
    from outputs that start near 0 it never reached hundreds of thousands (test MAE 3.5 times the error of
    predicting the training mean). Standardised, it learns as well as on any scale; serving answers in dollars,
    and the version rebuilds bit for bit."""
    model = labeled_model(before=0, task="regression")
    rows = agrawal_rows(model, 0, 0, 2500, seed=1)
    for i, (names, values) in enumerate(zip(rows["num.name"], rows["num.value"], strict=True)):
        x = dict(zip(names, values, strict=True))
        line = 0.25 * x["hvalue"] + 1.5 * x["salary"] + 2000.0 * x["hyears"]
        rows["label"][i], rows["label_num"][i] = repr(line), line
    write_labeled_rows(retrain_settings, rows)
    report = RetrainJob(retrain_settings).run(JobRequest(model, since=0))
    assert report.status == "promoted" and report.metric_name == "mae", report
    lines = np.asarray(rows["label_num"])
    train, test = lines[:1750], lines[-500:]  # the job's splits: the first 70 % train, the last 20 % test
    by_the_mean = float(np.mean(np.abs(test - train.mean())))
    assert report.challenger_metric < 0.2 * by_the_mean, (report.challenger_metric, by_the_mean)

    first = {n: v for n, v in zip(rows["num.name"][-1], rows["num.value"][-1], strict=True)}
    first |= dict(zip(rows["cat.name"][-1], rows["cat.value"][-1], strict=True))
    with ModelClient(model, retrain_settings, watch=False) as client:
        (served,) = client.predict(first).values
    assert abs(served - lines[-1]) < 3 * report.challenger_metric + 0.1 * by_the_mean, (served, lines[-1])

    result = rebuild(retrain_settings, model, 1)
    assert (result.status, result.compared) == ("match", "weights"), result.detail


def test_a_fraud_model_judged_on_f1_predicts_its_rare_class_above_a_threshold_chosen_on_validation(
    retrain_settings: Settings, labeled_model
) -> None:
    """One fraud in three of the applications Agrawal's function 0 marks: the fraud's probability stays below one
    half, so a version predicting the most probable class never says ``fraud`` (test F1 0). Judged on F1, the job
    chooses the threshold of the validation split's best F1: the version records it, serves with it, and rebuilds
    with it."""
    model = labeled_model(before=0, spec='metric = "f1"\npositive_class = "fraud"\n')
    rows = agrawal_rows(model, 0, 0, 5000, seed=6)
    rng = np.random.default_rng(6)
    rows.columns["label"] = ["fraud" if y == "1" and rng.random() < 1 / 3 else "legit" for y in rows["label"]]
    rows.columns["label_num"] = [math.nan] * len(rows)
    write_labeled_rows(retrain_settings, rows)
    report = RetrainJob(retrain_settings).run(JobRequest(model, since=0))
    assert report.status == "promoted" and report.metric_name == "f1" and report.challenger_metric > 0.15, report
    registry = ModelRegistry(retrain_settings)
    champion = registry.champion(model)
    assert champion is not None
    threshold = champion.metrics["decision_threshold"]
    assert 0.02 < threshold < 0.5
    loaded = registry.load(champion).preprocessor
    assert (loaded.threshold, loaded.positive) == (threshold, "fraud")
    features = [
        dict(zip(names, values, strict=True)) | dict(zip(cat_names, cats, strict=True))
        for names, values, cat_names, cats in zip(
            rows["num.name"], rows["num.value"], rows["cat.name"], rows["cat.value"], strict=True
        )
    ][-1000:]
    with ModelClient(model, retrain_settings, watch=False) as client:
        served = client.predict(features)
    frauds = [score for label, score in zip(served.values, served.scores, strict=True) if label == "fraud"]
    assert frauds and min(frauds) >= threshold - 1e-6 and min(frauds) < 0.5  # its probability, below one half
    result = rebuild(retrain_settings, model, 1)
    assert (result.status, result.compared) == ("match", "weights"), result.detail
    assert result.rebuilt_metrics["f1"] == pytest.approx(report.challenger_metric)


def test_clickhouse_failing_during_the_training_fetch_leaves_no_version_and_the_job_can_run_again(
    stack: PrivateStack, retrain_settings: Settings, labeled_model
) -> None:
    model = labeled_model(before=3000)
    assert RetrainJob(retrain_settings).run(JobRequest(model, since=0)).status == "promoted"
    endpoint = retrain_settings.clickhouse
    # every connection is cut once the server has sent 64 KB: the 3,000-row fetch, not the small queries
    proxy = TcpProxy(endpoint.port, cut_after_bytes=64 * 1024)
    proxy.start()
    try:
        cut = Settings.from_env(
            {**stack.env, "DRIFTLOOP_CLICKHOUSE_URL": f"clickhouse://default:@127.0.0.1:{proxy.port}/{endpoint.database}",
             "DRIFTLOOP_SPECS_DIR": str(retrain_settings.spec_directory),
             "DRIFTLOOP_ARTIFACTS": retrain_settings.artifact_location}
        )  # fmt: skip
        with pytest.raises(Exception) as failure:
            RetrainJob(cut).run(JobRequest(model, since=0))
    finally:
        proxy.stop()
    assert proxy.cuts >= 1, "the fetch was not cut: the test proves nothing"
    assert not isinstance(failure.value, AssertionError)
    # no version half-written, the champion untouched, the run recorded as failed with the reason
    assert [r.version for r in ModelRegistry(retrain_settings).versions(model)] == [1]
    assert champions(retrain_settings, model) == [1]
    assert not list(Path(retrain_settings.artifact_location).glob(f"{model}/.v*"))  # no staging left
    # (two runs may start in the same second: compare them as a set)
    recorded = sorted((status, bool(error)) for status, *_, error in runs(retrain_settings, model))
    assert recorded == [("failed", True), ("promoted", False)], runs(retrain_settings, model)
    # the same job runs again (the retrain worker retries failed jobs) and finishes
    again = RetrainJob(retrain_settings).run(JobRequest(model, since=0))
    assert again.status in {"candidate", "rejected"} and again.challenger_version == 2


def test_too_few_labels_means_wait(retrain_settings: Settings, labeled_model) -> None:
    model = labeled_model(before=3000)
    with pytest.raises(NotEnoughLabels, match="labels since the change point, 500 needed"):
        RetrainJob(retrain_settings).run(JobRequest(model, since=TS0 + 2800))
    assert runs(retrain_settings, model) == []


def test_a_tampered_artifact_is_refused(retrain_settings: Settings, labeled_model) -> None:
    model = labeled_model(before=2000)
    RetrainJob(retrain_settings).run(JobRequest(model, since=0))
    registry = ModelRegistry(retrain_settings)
    champion = registry.champion(model)
    assert registry.load(champion).version == 1
    weights = Path(champion.artifact_uri) / "weights.pt"
    original = weights.read_bytes()
    weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(ArtifactError, match=r"weights\.pt: missing or altered"):
        registry.load(champion)
    with pytest.raises(ArtifactError, match="altered"):
        ModelClient(model, retrain_settings, watch=False)
    weights.write_bytes(original)
    from dataclasses import replace

    with pytest.raises(ArtifactError, match="does not match the registry"):
        registry.load(replace(champion, sha256="0" * 64))


def test_a_champion_whose_artifact_is_lost_does_not_stop_retraining(retrain_settings: Settings, labeled_model) -> None:
    """The champion's weights were lost or altered (a volume restored from an old backup): serving refuses it, and
    every job failed on loading it to compare, so that nothing could replace it. Now the challenger is a candidate
    not judged offline, with the reason, and a person can promote it."""
    model = labeled_model(before=1000)
    job = RetrainJob(retrain_settings)
    job.run(JobRequest(model, since=0))
    registry = ModelRegistry(retrain_settings)
    (Path(registry.champion(model).artifact_uri) / "weights.pt").unlink()  # type: ignore[union-attr]
    report = job.run(JobRequest(model, since=0))
    assert report.status == "candidate" and math.isnan(report.champion_metric) and report.champion_version == 1
    reason = registry.get(model, 2).reason
    assert "the champion (v1) does not load" in reason and "weights.pt: missing or altered" in reason, reason
    registry.promote(model, 2, "the champion's artifact was lost")
    with ModelClient(model, retrain_settings, watch=False) as client:
        assert client.version == 2


def test_promote_and_rollback_keep_exactly_one_champion(retrain_settings: Settings, labeled_model) -> None:
    model = labeled_model(before=2000)
    job = RetrainJob(retrain_settings)
    job.run(JobRequest(model, since=0))
    job.run(JobRequest(model, since=0))  # the same data again: at least as good, so a candidate
    registry = ModelRegistry(retrain_settings)
    assert registry.promote(model, 2, "by hand").version == 2
    assert champions(retrain_settings, model) == [2]
    assert registry.rollback(model).version == 1
    assert champions(retrain_settings, model) == [1]
    assert {r.version: r.status for r in registry.versions(model)} == {1: "champion", 2: "rolled_back"}
    assert registry.promote(model, 2, "by hand").version == 2
    assert champions(retrain_settings, model) == [2]
    assert {r.version: r.status for r in registry.versions(model)} == {1: "retired", 2: "champion"}
    stages = [(c.version, c.to_stage, c.path) for c in registry.changes(model)][2:]
    assert stages == [(2, "champion", "manual"), (1, "retired", "manual"), (1, "champion", "manual"),
                      (2, "rolled_back", "manual"), (2, "champion", "manual"), (1, "retired", "manual")]  # fmt: skip


def test_the_serving_client_swaps_under_concurrent_predictions(retrain_settings: Settings, labeled_model) -> None:
    model = labeled_model(before=2000)
    job = RetrainJob(retrain_settings)
    job.run(JobRequest(model, since=0))
    rows = [x for x, _ in synth.Agrawal(classification_function=0, seed=9).take(64)]
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    with ModelClient(model, retrain_settings) as client:
        assert client.version == 1 and len(client.predict(rows).values) == 64

        def serve() -> None:
            while not stop.is_set():
                try:
                    result = client.predict(rows)
                    assert len(result.values) == 64
                    seen.append(result.version)
                except BaseException as exc:
                    errors.append(exc)

        server = threading.Thread(target=serve)
        server.start()
        try:
            job.run(JobRequest(model, since=0))  # v2, a candidate
            ModelRegistry(retrain_settings).promote(model, 2, "by hand")  # announced
            deadline = time.monotonic() + 30
            while client.version != 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.3)
        finally:
            stop.set()
            server.join()
    assert errors == [] and client.swaps == 1
    assert seen[0] == 1 and seen[-1] == 2 and seen == sorted(seen)  # one swap, between batches, no going back


def test_a_serving_client_serves_the_changes_it_could_not_read_or_never_heard_of(
    stack: PrivateStack, retrain_settings: Settings, labeled_model, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """v2's promotion is announced while the client cannot reach ClickHouse: it logged "could not read the
    routing" and served v1 until the next announcement, however long (a canary's share never taken, a rollback
    never done); now it reads again every few seconds until it can. Then a rollback is made with no broker
    answering: `driftloop models promote` / `rollback` failed ("Kafka does not answer") after recording the
    change, and no client heard of it; now the change stands with a WARNING, and the client, which reads the
    routing every ``RECHECK_S`` besides (here 1 s, after the first part), serves it."""
    model = labeled_model(before=1000)
    job = RetrainJob(retrain_settings)
    job.run(JobRequest(model, since=0))
    job.run(JobRequest(model, since=0))  # v2, a candidate
    endpoint = retrain_settings.clickhouse
    proxy = TcpProxy(endpoint.port)
    proxy.start()
    env = {**stack.env, "DRIFTLOOP_SPECS_DIR": str(retrain_settings.spec_directory),
           "DRIFTLOOP_ARTIFACTS": retrain_settings.artifact_location}  # fmt: skip
    away = Settings.from_env(
        env | {"DRIFTLOOP_CLICKHOUSE_URL": f"clickhouse://default:@127.0.0.1:{proxy.port}/{endpoint.database}"}
    )
    try:
        with ModelClient(model, away) as client:
            assert client.version == 1
            proxy.stop()
            ModelRegistry(retrain_settings).promote(model, 2, "by hand")  # announced; the client cannot read it
            wait_for(lambda: client.routing_stale, timeout_s=30, what="the client to find the routing unreadable")
            assert client.version == 1  # it serves what it has
            proxy.start()
            wait_for(lambda: client.version == 2, timeout_s=30, what="the client to read the promotion")
            assert not client.routing_stale and client.swaps == 1

            monkeypatch.setattr(serving, "RECHECK_S", 1.0)
            no_broker = ModelRegistry(
                Settings.from_env(env | {"DRIFTLOOP_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}),
                announce_timeout_s=1.0,
            )
            with caplog.at_level("WARNING", logger="driftloop.registry"):
                assert no_broker.rollback(model, "by hand").version == 1
            assert any("announcement could not be sent" in r.getMessage() for r in caplog.records)
            assert ModelRegistry(retrain_settings).champion(model).version == 1  # type: ignore[union-attr]
            wait_for(lambda: client.version == 1, timeout_s=30, what="the client to serve the unannounced rollback")
    finally:
        proxy.stop()


def test_the_serving_client_emits_its_predictions_for_monitoring(retrain_settings: Settings, labeled_model) -> None:
    import json

    model = labeled_model(before=2000)
    RetrainJob(retrain_settings).run(JobRequest(model, since=0))
    rows = [x for x, _ in synth.Agrawal(classification_function=0, seed=3).take(5)]
    # what services send for a number they do not have, or have as text: none of it may fail a prediction
    rows[1]["salary"], rows[2]["salary"], rows[3]["salary"] = float("nan"), "unknown", "52000.5"
    with ModelClient(model, retrain_settings, emit=True, watch=False) as client:
        result = client.predict(rows, request_ids=[f"q{i}" for i in range(5)])
    records = topic_records(retrain_settings, retrain_settings.topics.predictions)
    events = [e for m in records if m.key == model.encode() for e in json.loads(m.value)["events"]]
    assert [e["request_id"] for e in events] == ["q0", "q1", "q2", "q3", "q4"]
    assert {e["model_version"] for e in events} == {1}
    assert [e["prediction"] for e in events] == result.values
    assert set(events[0]["features"]) == set(rows[0])
    assert [e["features"]["salary"] for e in events[1:4]] == [None, "unknown", "52000.5"]  # NaN sent as null


def test_cooldowns_of_earlier_runs_end_when_a_person_deploys_a_champion(
    retrain_settings: Settings, labeled_model
) -> None:
    model = labeled_model(before=2000)
    job = RetrainJob(retrain_settings)
    job.run(JobRequest(model, since=0))  # v1, the first champion
    job.run(JobRequest(model, since=0))  # v2, a candidate
    assert sorted(r.status for r in job.finished_runs() if r.model == model) == ["candidate", "promoted"]
    time.sleep(1.1)  # run times are whole seconds
    ModelRegistry(retrain_settings).promote(model, 2, "deployed by hand")
    assert [r for r in job.finished_runs() if r.model == model] == []
