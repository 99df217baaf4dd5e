"""The release controller against the real stack: each stage's decision from labeled rows set up exactly, the
record it leaves in ``version_changes``, and what it does after a restart or a deadline."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import numpy as np
import pytest

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.settings import Settings
from driftloop.infra.spec import ModelSpec
from driftloop.models.artifacts import write_artifact
from driftloop.models.preprocess import Preprocessor
from driftloop.models.registry import ModelRegistry, VersionRecord
from driftloop.release.controller import ReleaseController
from driftloop.release.evidence import paired
from driftloop.release.stats import paired_classes
from driftloop.retrain.dataset import LabeledData
from driftloop.retrain.training import train
from driftloop.streams.batch import ColumnBatch
from driftloop.streams.sink import ClickHouseSink
from tests.release.conftest import outcomes
from tests.stack_fixtures import strict_json

pytestmark = pytest.mark.integration


def stages(settings: Settings, model: str) -> dict[int, str]:
    return {r.version: r.status for r in ModelRegistry(settings).versions(model)}


def history(settings: Settings, model: str) -> list[tuple[int, str, str, str]]:
    return [(c.version, c.from_stage, c.to_stage, c.path) for c in ModelRegistry(settings).changes(model)]


def shadow_pairs(write_labeled, model: str, n: int, champion: float, shadow: float, start: int = 0) -> list[str]:
    """``n`` requests the champion (v1) served and the shadow (v2) scored, with these accuracies."""
    ids = [f"r{start + i}" for i in range(n)]
    write_labeled(model, 1, ids, outcomes(n, champion, seed=start + 1))
    write_labeled(model, 2, ids, outcomes(n, shadow, seed=start + 2), served=False)
    return ids


def test_a_challenger_worse_on_live_traffic_is_stopped_in_shadow(
    release_settings: Settings, new_model, write_labeled
) -> None:
    model = new_model(("champion", "candidate"))
    controller = ReleaseController(release_settings)
    assert [d.to_stage for d in controller.step(model)] == ["shadow"]
    shadow_pairs(write_labeled, model, 400, champion=0.9, shadow=0.7)
    (decision,) = controller.step(model)
    assert decision.to_stage == "rejected" and "worse in shadow" in decision.reason
    assert stages(release_settings, model) == {1: "champion", 2: "rejected"}
    assert history(release_settings, model)[-2:] == [
        (2, "candidate", "shadow", "release"),
        (2, "shadow", "rejected", "release"),
    ]
    last = ModelRegistry(release_settings).changes(model)[-1].evidence
    assert (last.test, last.result, last.rows, last.baseline_version) == ("mcnemar", "fail", 400, 1)
    assert last.metric == pytest.approx(0.7, abs=0.01) and last.baseline_metric == pytest.approx(0.9, abs=0.01)
    assert last.p_value < 0.001
    served_by_v2 = connect(release_settings.clickhouse).execute(
        "SELECT count() FROM labeled FINAL WHERE model = %(m)s AND model_version = 2 AND served = 1", {"m": model}
    )
    assert served_by_v2 == [(0,)]


def test_a_good_shadow_goes_to_canary_then_champion_with_the_evidence_recorded(
    release_settings: Settings, new_model, write_labeled
) -> None:
    model = new_model(("champion", "candidate"), release="canary_share = 0.2\ncanary_min_rows = 200")
    controller = ReleaseController(release_settings)
    controller.step(model)
    shadow_pairs(write_labeled, model, 299, champion=0.6, shadow=0.95)
    assert controller.step(model) == []  # one pair short of shadow_min_pairs (300)
    shadow_pairs(write_labeled, model, 1, champion=1.0, shadow=1.0, start=299)
    (to_canary,) = controller.step(model)
    assert to_canary.to_stage == "canary"
    assert ModelRegistry(release_settings).routing(model).canary_share == 0.2
    canary_ids = [f"c{i}" for i in range(250)]
    write_labeled(model, 2, canary_ids, outcomes(250, 0.95, seed=3))
    write_labeled(model, 1, [f"k{i}" for i in range(1000)], outcomes(1000, 0.6, seed=4))
    (to_champion,) = controller.step(model)
    assert to_champion.to_stage == "champion"
    assert stages(release_settings, model) == {1: "retired", 2: "champion"}
    assert [h[1:3] for h in history(release_settings, model)] == [
        ("none", "champion"),
        ("none", "candidate"),
        ("candidate", "shadow"),
        ("shadow", "canary"),
        ("canary", "champion"),
        ("champion", "retired"),
    ]
    promotion = [c for c in ModelRegistry(release_settings).changes(model) if c.to_stage == "champion"][-1]
    assert promotion.evidence.test == "two-sample-z" and promotion.evidence.result == "pass"
    assert promotion.evidence.metric == pytest.approx(0.95, abs=0.01)
    assert promotion.evidence.baseline_metric == pytest.approx(0.6, abs=0.01)


def test_a_canary_that_loses_on_the_business_kpi_is_rejected(
    release_settings: Settings, new_model, write_labeled
) -> None:
    model = new_model(("champion", "canary"), extra='[kpi]\nname = "revenue"\nhigher_is_better = true')
    same = outcomes(600, 0.9, seed=5)
    write_labeled(model, 2, [f"c{i}" for i in range(600)], same, values=[1.0 + (i % 3) for i in range(600)])
    write_labeled(model, 1, [f"k{i}" for i in range(600)], same, values=[3.0 + (i % 3) for i in range(600)])
    (decision,) = ReleaseController(release_settings).step(model)
    assert decision.to_stage == "rejected" and "revenue" in decision.reason
    routing = ModelRegistry(release_settings).routing(model)
    assert routing.canary is None and routing.champion is not None and routing.champion.version == 1
    evidence = ModelRegistry(release_settings).changes(model)[-1].evidence
    assert evidence.kpi == pytest.approx(2.0) and evidence.baseline_kpi == pytest.approx(4.0)
    assert evidence.details["verdict"] != "fail" and evidence.details["kpi_verdict"] == "fail"  # the metric held


def test_a_canary_whose_outcomes_carry_no_kpi_value_says_so_and_its_deadline_says_why(
    release_settings: Settings, new_model, write_labeled, caplog: pytest.LogCaptureFixture
) -> None:
    """The spec names a KPI but the outcome producer sends no ``value`` (not yet, or never): the canary can never
    be judged on it. It waited out its deadline and was rejected "without a decision" beside ``revenue nan vs nan
    (wait)``; now the reason and a WARNING (once) say that no outcome carries the value."""
    model = new_model(
        ("champion", "canary"),
        release="canary_deadline_s = 30",
        extra='[kpi]\nname = "revenue"\nhigher_is_better = true',
    )
    same = outcomes(300, 0.9, seed=6)
    write_labeled(model, 2, [f"c{i}" for i in range(300)], same)
    write_labeled(model, 1, [f"k{i}" for i in range(300)], same)
    now = [time.time()]
    controller = ReleaseController(release_settings, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="driftloop.release"):
        assert controller.step(model) == [] and controller.step(model) == []
    (warning,) = [r for r in caplog.records if "value" in r.getMessage()]
    assert warning.fields == {"model": model, "version": 2, "kpi": "revenue"}  # type: ignore[attr-defined]
    now[0] += 31
    (rejected,) = controller.step(model)
    assert rejected.to_stage == "rejected", rejected.reason
    assert "revenue: 0 rows each with a `value` of the 200 needed" in rejected.reason, rejected.reason


def test_a_champion_that_degrades_after_promotion_is_rolled_back(
    release_settings: Settings, new_model, write_labeled
) -> None:
    model = new_model(("champion", "canary"), release="watch_rows = 300")
    before = time.time() - 60
    write_labeled(model, 2, [f"c{i}" for i in range(400)], outcomes(400, 0.96, seed=6), ts=before)
    write_labeled(model, 1, [f"k{i}" for i in range(400)], outcomes(400, 0.9, seed=7), ts=before)
    controller = ReleaseController(release_settings, clock=lambda: time.time())
    # the canary began "now": rows from a minute ago do not count for it
    assert controller.step(model) == []
    write_labeled(model, 2, [f"c{i}" for i in range(400, 800)], outcomes(400, 0.96, seed=8))
    write_labeled(model, 1, [f"k{i}" for i in range(400, 800)], outcomes(400, 0.9, seed=9))
    assert [d.to_stage for d in controller.step(model)] == ["champion"]
    time.sleep(0.01)
    write_labeled(model, 2, [f"w{i}" for i in range(300)], outcomes(300, 0.96, seed=10))
    assert controller.step(model) == []  # still as good as its predecessor
    write_labeled(model, 2, [f"x{i}" for i in range(300)], outcomes(300, 0.6, seed=11), ts=time.time() + 1)
    (decision,) = controller.step(model)
    assert decision.to_stage == "rolled_back" and "degraded" in decision.reason
    assert stages(release_settings, model) == {1: "champion", 2: "rolled_back"}
    back = ModelRegistry(release_settings).changes(model, 2)[-1]
    assert (back.to_stage, back.path, back.evidence.test, back.evidence.result) == (
        "rolled_back",
        "release",
        "one-sample-z",
        "fail",
    )
    assert back.evidence.metric == pytest.approx(0.6, abs=0.01)


def fraud_rows(n: int, seed: int, version: int, *, flags: bool) -> dict[str, list]:
    """A fraud scorer's labeled rows of ``n`` requests (1 % fraud; the requests and their risk drawn from
    ``seed``). ``flags``: a working version (the fraud's probability ranks it well, each version with noise of its
    own; fraud predicted above one half: three in four caught, 0.4 % of the rest flagged); else one broken at
    serving that never flags (its scores near the prior whatever the request): at 1 % fraud its accuracy, 0.99,
    is within the release margin of the working one's."""
    requests, own = np.random.default_rng(seed), np.random.default_rng([seed, version])
    fraud = requests.random(n) < 0.01
    risk = np.where(fraud, requests.normal(1.0, 1.5, n), requests.normal(-4.0, 1.5, n))
    p_fraud = 1 / (1 + np.exp(-(risk + own.normal(0, 0.5, n) if flags else own.normal(-4.6, 0.3, n))))
    predicted = p_fraud > 0.5
    return {
        "labels": np.where(fraud, "1", "0").tolist(),
        "predictions": np.where(predicted, "1", "0").tolist(),
        "scores": np.where(predicted, p_fraud, 1 - p_fraud).tolist(),  # the predicted class's probability
        "correct": (predicted == fraud).astype(int).tolist(),
    }


def write_fraud(write_labeled, model: str, version: int, ids: list[str], seed: int, *, flags: bool, **options) -> None:
    """Labeled rows of ``version`` for requests ``ids`` (see :func:`fraud_rows`)."""
    rows = fraud_rows(len(ids), seed, version, flags=flags)
    write_labeled(model, version, ids, rows.pop("correct"), **rows, **options)


def test_a_fraud_shadow_that_never_flags_is_rejected_on_the_specs_roc_auc_which_accuracy_would_pass(
    release_settings: Settings, new_model, write_labeled
) -> None:
    broken, working = (new_model(("champion", "candidate"), extra='[training]\nmetric = "roc_auc"') for _ in "ab")
    controller = ReleaseController(release_settings)
    ids = [f"r{i}" for i in range(3000)]
    for model, flags in ((broken, False), (working, True)):
        assert [d.to_stage for d in controller.step(model)] == ["shadow"]
        write_fraud(write_labeled, model, 1, ids, seed=1, flags=True)
        write_fraud(write_labeled, model, 2, ids, seed=1, flags=flags, served=False)  # the same requests, scored
    (rejected,) = controller.step(broken)
    assert rejected.to_stage == "rejected" and "worse in shadow: roc_auc" in rejected.reason
    evidence = ModelRegistry(release_settings).changes(broken, 2)[-1].evidence
    assert (evidence.metric_name, evidence.test, evidence.result, evidence.rows) == (
        "roc_auc",
        "paired-delong",
        "fail",
        3000,
    )
    assert evidence.metric == pytest.approx(0.5, abs=0.15) and evidence.baseline_metric > 0.95
    # accuracy, what the shadow was judged on before (whatever the spec's metric), passes it
    pairs = paired(connect(release_settings.clickhouse), broken, 1, 2, 0)
    on_accuracy = paired_classes(
        baseline_only=pairs.baseline_only, new_only=pairs.new_only, pairs=pairs.pairs,
        baseline_accuracy=pairs.baseline_accuracy, min_pairs=300,
    )  # fmt: skip
    assert on_accuracy.verdict == "pass" and on_accuracy.new > 0.985
    (to_canary,) = controller.step(working)  # a shadow as good as its champion passes on the same metric
    assert to_canary.to_stage == "canary" and "shadow passed: roc_auc" in to_canary.reason


def test_a_shadow_judged_on_roc_auc_whose_predictions_carry_no_score_says_why_it_waits(
    release_settings: Settings, new_model, write_labeled, caplog
) -> None:
    model = new_model(("champion", "candidate"), extra='[training]\nmetric = "roc_auc"')
    controller = ReleaseController(release_settings)
    controller.step(model)
    ids = [f"r{i}" for i in range(400)]
    for version, served in ((1, True), (2, False)):
        rows = fraud_rows(len(ids), 4, version, flags=True)
        rows["scores"] = [float("nan")] * len(ids)  # a server that sends no `score`
        write_labeled(model, version, ids, rows.pop("correct"), served=served, **rows)
    with caplog.at_level("WARNING", logger="driftloop.release"):
        assert controller.step(model) == [] and controller.step(model) == []
    (warning,) = [r for r in caplog.records if "cannot be judged" in r.getMessage()]  # said once
    assert "send each prediction's `score`" in warning.getMessage() and warning.fields["rows"] == 400


def test_a_fraud_canary_that_never_flags_is_rejected_on_the_specs_f1(
    release_settings: Settings, new_model, write_labeled
) -> None:
    model = new_model(("champion", "canary"), extra='[training]\nmetric = "f1"')
    controller = ReleaseController(release_settings)
    write_fraud(write_labeled, model, 2, [f"c{i}" for i in range(1500)], seed=2, flags=False)
    write_fraud(write_labeled, model, 1, [f"k{i}" for i in range(3000)], seed=3, flags=True)
    (decision,) = controller.step(model)
    assert decision.to_stage == "rejected" and "canary lost: f1 0.0000" in decision.reason
    evidence = ModelRegistry(release_settings).changes(model, 2)[-1].evidence
    assert (evidence.metric_name, evidence.test, evidence.result) == ("f1", "two-sample-z", "fail")
    assert 0.4 < evidence.baseline_metric < 0.8
    assert stages(release_settings, model) == {1: "champion", 2: "rejected"}


def test_a_controller_restarted_mid_stage_resumes_where_it_was(
    release_settings: Settings, new_model, write_labeled
) -> None:
    model = new_model(("champion", "candidate"))
    ReleaseController(release_settings).step(model)
    shadow_pairs(write_labeled, model, 200, champion=0.6, shadow=0.9)
    assert ReleaseController(release_settings).step(model) == []  # 200 pairs of 300: wait
    # a new controller (a restarted worker) counts the pairs gathered before it started
    shadow_pairs(write_labeled, model, 150, champion=0.6, shadow=0.9, start=200)
    (decision,) = ReleaseController(release_settings).step(model)
    assert decision.to_stage == "canary"
    change = ModelRegistry(release_settings).changes(model)[-1]
    assert change.evidence.rows == 350
    assert [h[2] for h in history(release_settings, model)].count("shadow") == 1  # the stage was not restarted


def test_a_stage_without_enough_labels_by_its_deadline_is_extended_then_rejected(
    release_settings: Settings, new_model, write_labeled
) -> None:
    model = new_model(("champion", "shadow"), release='shadow_deadline_s = 30\non_deadline = "extend"')
    now = [time.time()]
    controller = ReleaseController(release_settings, clock=lambda: now[0])
    assert controller.step(model) == []
    now[0] += 31
    (extended,) = controller.step(model)
    assert extended.to_stage == "shadow" and "extended" in extended.reason
    assert controller.step(model) == []  # a new deadline
    spec = release_settings.spec_directory / f"{model}.toml"
    spec.write_text(spec.read_text().replace('on_deadline = "extend"', 'on_deadline = "reject"'))
    now[0] += 31
    (rejected,) = ReleaseController(release_settings, clock=lambda: now[0]).step(model)
    assert rejected.to_stage == "rejected" and "deadline" in rejected.reason
    assert ModelRegistry(release_settings).changes(model)[-1].evidence.result == "deadline"


def test_a_stage_whose_labels_come_after_its_deadline_is_rejected_with_the_label_delay_named(
    release_settings: Settings, new_model, write_labeled
) -> None:
    """Chargebacks come hours after the purchase: a shadow with the default one-hour deadline can never gather its
    pairs, and it was rejected "without a decision" on "accuracy nan vs v1 nan on 0 pairs". The reason now says
    how many rows it had of those it needed, and that the model's labels come later than its deadline allows."""
    model = new_model(("champion", "shadow"), release="shadow_deadline_s = 3600")
    earlier = time.time() - 4 * 3600  # the champion's requests of four hours ago, labeled two hours after
    write_labeled(model, 1, [f"k{i}" for i in range(200)], outcomes(200, 0.9, seed=7), ts=earlier, label_delay_s=7200)
    now = [time.time() + 3601]
    (rejected,) = ReleaseController(release_settings, clock=lambda: now[0]).step(model)
    assert rejected.to_stage == "rejected" and "0 of the 300 labeled rows needed" in rejected.reason, rejected.reason
    assert "labels come 7,200 s after their predictions (median)" in rejected.reason, rejected.reason
    assert "raise the spec's shadow_deadline_s" in rejected.reason


def write_predictions(settings: Settings, model: str, version: int, n: int, *, served: bool) -> None:
    """``n`` predictions of ``version`` as the worker lands them, a second from now (after the stage began)."""
    ts_ms = round((time.time() + 1) * 1000)
    suffix = "" if served else f"@v{version}"
    columns = {
        "event_id": [f"{model}-p-{i}-{version}{suffix}" for i in range(n)],
        "model": [model] * n,
        "model_version": [version] * n,
        "request_id": [f"r{i}" for i in range(n)],
        "ts": [ts_ms // 1000] * n,
        "ts_ms": [ts_ms + i for i in range(n)],
        "prediction": ["1"] * n,
        "prediction_num": [1.0] * n,
        "score": [0.8] * n,
        "served": [int(served)] * n,
    }
    sink = ClickHouseSink(settings.clickhouse)
    try:
        assert sink.write_blocking(ColumnBatch("predictions", columns)) == []
    finally:
        sink.close()


def test_a_shadow_the_serving_code_never_scores_says_so_and_its_deadline_says_what_to_do(
    release_settings: Settings, new_model, caplog
) -> None:
    model = new_model(("champion", "shadow"), release="shadow_deadline_s = 3600")
    write_predictions(release_settings, model, 1, 50, served=True)  # the champion serves; no answer of v2 lands
    now = [time.time()]
    controller = ReleaseController(release_settings, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="driftloop.release"):
        assert controller.step(model) == []  # too early to say
        now[0] += 301
        assert controller.step(model) == [] and controller.step(model) == []
    (warning,) = [r for r in caplog.records if "no prediction of the shadow has landed" in r.getMessage()]
    assert "set release.shadow = false" in warning.getMessage()
    now[0] += 3600
    (rejected,) = controller.step(model)
    assert rejected.to_stage == "rejected" and "none of v2's predictions has landed" in rejected.reason
    assert "ModelClient(emit=True)" in rejected.reason

    # a canary whose predictions land, and whose labels have not come yet, is short of rows only
    served = new_model(("champion", "canary"), release="canary_deadline_s = 60")
    write_predictions(release_settings, served, 2, 50, served=True)
    (short,) = controller.step(served)  # its deadline passed (the clock is an hour on)
    assert short.to_stage == "rejected" and "0 of the 200 labeled rows needed" in short.reason
    assert "predictions has landed" not in short.reason


def test_a_champion_below_its_floor_takes_the_urgent_path(release_settings: Settings, new_model, write_labeled) -> None:
    model = new_model(("champion",), release="floor = 0.8\nurgent_canary_share = 0.5\nfloor_rows = 200")
    answers = outcomes(300, 0.5, seed=12)
    write_labeled(model, 1, [f"k{i}" for i in range(300)], answers)
    registry = ModelRegistry(release_settings)
    champion = registry.champion(model)
    assert champion is not None
    registry.add(replace(champion, version=2, status="candidate", reason="retrained"))
    (decision,) = ReleaseController(release_settings).step(model)
    assert decision.to_stage == "canary" and "floor" in decision.reason
    change = registry.changes(model)[-1]
    assert (change.path, change.traffic_share) == ("urgent", 0.5)
    assert change.evidence.metric == pytest.approx(sum(answers[100:]) / 200)  # the floor judges the last 200 rows


def test_a_fraud_champion_that_stopped_flagging_is_below_its_f1_floor_on_its_most_recent_rows(
    release_settings: Settings, new_model, write_labeled
) -> None:
    model = new_model(("champion",), extra='[training]\nmetric = "f1"', release="floor = 0.3\nfloor_rows = 3000")
    working, broken = [f"w{i}" for i in range(3000)], [f"b{i}" for i in range(3000)]
    write_fraud(write_labeled, model, 1, working, seed=5, flags=True, ts=time.time() - 60)
    write_fraud(write_labeled, model, 1, broken, seed=6, flags=False)  # since it broke: the most recent rows
    registry = ModelRegistry(release_settings)
    champion = registry.champion(model)
    assert champion is not None
    controller = ReleaseController(release_settings)
    below = controller.worse_than(controller.specs.get(model), champion, 0.3, 3000)
    assert below is not None and below.new == 0.0  # judged on the 3,000 most recent rows, not on all 6,000
    registry.add(replace(champion, version=2, status="candidate", reason="retrained"))
    (decision,) = controller.step(model)
    assert decision.to_stage == "canary" and "live f1 0.0000 is worse than the floor 0.3" in decision.reason


def test_a_newer_candidate_supersedes_a_version_still_in_shadow(release_settings: Settings, new_model) -> None:
    model = new_model(("champion", "shadow", "candidate"))
    decisions = ReleaseController(release_settings).step(model)
    assert [(d.version, d.to_stage) for d in decisions] == [(2, "rejected"), (3, "shadow")]
    assert "superseded by v3" in decisions[0].reason


def test_the_cli_shows_stages_with_their_history_and_runs_the_controller(
    release_settings: Settings, new_model, write_labeled, stack
) -> None:
    model = new_model(("champion", "candidate"))
    cli = stack.with_env(
        DRIFTLOOP_SPECS_DIR=str(release_settings.spec_directory),
        DRIFTLOOP_ARTIFACTS=str(release_settings.artifact_location),
    )
    ran = cli.run_cli("release", "--once")
    assert ran.returncode == 0 and f"{model}: v2 → shadow" in ran.stdout, ran.stdout + ran.stderr
    shown = cli.run_cli("models", "show", model, "--version", "2", "--json")
    assert shown.returncode == 0, shown.stderr
    record = strict_json(shown.stdout)
    assert isinstance(record, dict) and record["status"] == "shadow"
    assert [(h["from_stage"], h["to_stage"], h["path"]) for h in record["history"]] == [
        ("none", "candidate", "release"),
        ("candidate", "shadow", "release"),
    ]
    listed = cli.run_cli("models", "list", "--model", model, "--json")
    assert listed.returncode == 0, listed.stderr
    listed_rows = [strict_json(line) for line in listed.stdout.splitlines()]
    assert [(v["version"], v["status"]) for v in listed_rows] == [(1, "champion"), (2, "shadow")]  # type: ignore[index]
    assert listed_rows[0]["champion_metric"] is None  # type: ignore[index]  # a first version's: none, not NaN
    table = cli.run_cli("models", "list", "--model", model)  # 80 columns in a pipe: the stages stay whole
    assert table.returncode == 0 and " shadow " in table.stdout and " champion " in table.stdout, table.stdout


def test_a_regression_without_a_task_in_its_spec_is_released_on_its_errors(
    release_settings: Settings, write_labeled
) -> None:
    """A spec that names no task (the task inferred from the data, as training does): releases compared
    accuracy, 0 on every regression row for both versions, and a challenger three times as far off passed
    shadow ("no difference"). The versions' artifacts say regression: it is judged on absolute error."""
    model = "reg-" + uuid.uuid4().hex[:8]
    directory = release_settings.spec_directory
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{model}.toml").write_text(f'name = "{model}"\n[release]\n')  # no task, no metric
    rng = np.random.default_rng(4)
    x = rng.normal(size=(600, 2))
    data = LabeledData({"a": x[:, 0], "b": x[:, 1]}, {}, [""] * 600, x[:, 0] * 3 + x[:, 1], np.arange(600.0))
    spec = ModelSpec.model_validate({"name": model, "task": "regression", "training": {"epochs": 2}})
    pre = Preprocessor.fit(data.numeric, data.categorical, data.labels, "regression")
    fit, check = data.split(0.2)
    net = train(spec, pre, fit, check)
    registry = ModelRegistry(release_settings)
    try:
        for version, stage in ((1, "champion"), (2, "candidate")):
            path, sha = write_artifact(registry.root, spec, version, net.network, pre, net.inputs, {})
            record = VersionRecord(model, version, stage, str(path), sha)
            registry.add(record, path="first" if version == 1 else "release")
    finally:
        registry.close()
    controller = ReleaseController(release_settings)
    assert [d.to_stage for d in controller.step(model)] == ["shadow"]
    ids = [f"r{i}" for i in range(400)]
    wrong = [0] * 400  # a regression's rows are never "correct"
    write_labeled(model, 1, ids, wrong, errors=np.abs(rng.normal(size=400)).tolist())
    write_labeled(model, 2, ids, wrong, errors=(3 * np.abs(rng.normal(size=400))).tolist(), served=False)
    (decision,) = controller.step(model)
    assert decision.to_stage == "rejected" and "worse in shadow" in decision.reason
    last = ModelRegistry(release_settings).changes(model)[-1].evidence
    assert (last.test, last.result) == ("paired-abs-error", "fail")
