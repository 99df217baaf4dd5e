"""A canary that answers slower than the champion is rejected on its answer times (``latency_ms``), before any
outcome is in, or, when its outcomes pass first, held while its answer times lean slower; one as fast is not,
and passes on its outcomes with its answer times in the reason; a spec that judges no answer times
(``latency_margin = inf``) lets a slow one be. Answer times are read over a recent window, in spans of the
version with fewer rows. With an objective (``latency_slo_ms``), a canary that breaks it where the champion
keeps it is rejected, and a champion that breaks it at full traffic is rolled back. And the statistics behind
it, by simulation."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.settings import Settings
from driftloop.infra.spec import ModelSpec, SpecError, load_spec
from driftloop.models.registry import ModelRegistry
from driftloop.release.controller import ReleaseController
from driftloop.release.evidence import latencies, rows_a_span
from driftloop.release.stats import slower_spans
from driftloop.streams.batch import ColumnBatch
from driftloop.streams.event_rules import PREDICTION_COLUMNS
from driftloop.streams.sink import ClickHouseSink
from tests.infra.test_sql_engines import migrated_chdb
from tests.release.test_canary_steps import served as labeled

# --- the sign test over spans, simulated: both sides' quantiles of as many rows, as ClickHouse gives them --------


def _fail_rate(
    slower_by: float, spans: int, *, runs: int = 400, quantile: float = 0.99, seed: int = 0, verdict: str = "fail"
) -> float:
    """How often a canary whose answer times are ``slower_by`` times the champion's (lognormal, both) fails (or
    gets ``verdict``)."""
    rng = np.random.default_rng(seed)
    rows = rows_a_span(quantile)
    fails = 0
    for _ in range(runs):
        new = {s: float(np.quantile(slower_by * rng.lognormal(1.0, 0.6, rows), quantile)) for s in range(spans)}
        old = {s: float(np.quantile(rng.lognormal(1.0, 0.6, rows), quantile)) for s in range(spans)}
        fails += slower_spans(new, old, quantile=quantile, margin=0.5, confidence=0.95).verdict == verdict
    return fails / runs


def test_a_canary_exactly_at_the_latency_margin_fails_at_most_as_often_as_the_confidence_allows() -> None:
    at_margin = _fail_rate(1.5, spans=30)
    assert 0.02 <= at_margin <= 0.10  # the sign test's 4.9 % at 30 spans (a factor of two either side)
    assert _fail_rate(1.0, spans=30, seed=1) <= 0.005  # as fast: never, or nearly


def test_a_canary_twice_as_slow_fails_within_a_few_spans() -> None:
    assert _fail_rate(2.0, spans=8, seed=2) >= 0.75
    assert _fail_rate(2.0, spans=20, seed=3) >= 0.95


def test_a_canary_as_fast_shows_it_within_a_few_spans_and_one_at_the_margin_rarely() -> None:
    """Answer times pass when the canary is slower in significantly few spans."""
    assert _fail_rate(1.0, spans=8, seed=4, verdict="pass") >= 0.95  # 99 %
    assert _fail_rate(1.0, spans=5, seed=5, verdict="pass") >= 0.75  # 89 %: five spans may decide
    assert 0.02 <= _fail_rate(1.5, spans=30, seed=6, verdict="pass") <= 0.10  # 5.75 %, the sign test's 4.9 %
    assert _fail_rate(2.0, spans=30, seed=7, verdict="pass") <= 0.005
    assert _fail_rate(1.0, spans=4, seed=8, verdict="pass") == 0  # four spans decide nothing


def test_looked_at_as_spans_come_a_canary_at_the_margin_is_decided_either_way_about_as_often() -> None:
    """The controller judges a step again at every tick, over 5 to 30 spans: a canary exactly at the margin passes
    at some look in 12.75 % of canaries and is rejected in 11 %; one as fast is never rejected."""
    rng = np.random.default_rng(9)
    rows, looks = rows_a_span(0.99), range(5, 31)
    ever: dict[tuple[float, str], int] = {}
    for slower_by in (1.0, 1.5):
        for _ in range(400):
            new = [float(np.quantile(slower_by * rng.lognormal(1.0, 0.6, rows), 0.99)) for _ in range(30)]
            old = [float(np.quantile(rng.lognormal(1.0, 0.6, rows), 0.99)) for _ in range(30)]
            said = {
                slower_spans(
                    dict(enumerate(new[:n])), dict(enumerate(old[:n])), quantile=0.99, margin=0.5, confidence=0.95
                ).verdict
                for n in looks
            }
            for verdict in said:
                ever[(slower_by, verdict)] = ever.get((slower_by, verdict), 0) + 1
    assert 0.06 <= ever.get((1.5, "pass"), 0) / 400 <= 0.24
    assert 0.075 <= ever.get((1.5, "fail"), 0) / 400 <= 0.30
    assert ever.get((1.0, "fail"), 0) / 400 <= 0.005


def test_answer_times_lean_slower_before_they_decide_for_a_slow_canary_and_seldom_for_one_as_fast() -> None:
    """Before five spans, a canary that passed on its outcomes waits while its answer times lean slower: more than
    half of its spans slower, or with none yet (fewer than 200 canary requests), its quantile over all of them."""

    def leaning(slower_by: float, spans: int, seed: int) -> float:
        rng, rows, leans = np.random.default_rng(seed), rows_a_span(0.99), 0
        for _ in range(400):
            if spans:
                new = {s: float(np.quantile(slower_by * rng.lognormal(1.0, 0.6, rows), 0.99)) for s in range(spans)}
                old = {s: float(np.quantile(rng.lognormal(1.0, 0.6, rows), 0.99)) for s in range(spans)}
                said = slower_spans(new, old, quantile=0.99, margin=0.5, confidence=0.95)
            else:  # 100 canary requests, 900 the champion's
                overall = (
                    float(np.quantile(slower_by * rng.lognormal(1.0, 0.6, 100), 0.99)),
                    float(np.quantile(rng.lognormal(1.0, 0.6, 900), 0.99)),
                )
                said = slower_spans(
                    {}, {}, quantile=0.99, margin=0.5, confidence=0.95, rows=(100, 900), overall=overall
                )
            leans += said.leans_slower
        return leans / 400

    for spans in range(5):
        assert leaning(2.0, spans, seed=spans) >= 0.8, spans  # 86 to 98 %
        assert leaning(1.0, spans, seed=10 + spans) <= 0.04, spans  # 0 to 1.75 %


def test_spans_of_one_side_only_decide_nothing() -> None:
    comparison = slower_spans({1: 90.0, 2: 90.0}, {3: 10.0}, quantile=0.99, margin=0.5, confidence=0.95)
    assert comparison.verdict == "wait" and comparison.spans == 0 and comparison.p_value == 1.0


def test_a_spec_judges_answer_times_unless_told_not_to(tmp_path: Path) -> None:
    rules = ModelSpec(name="m").release
    assert (rules.latency_margin, rules.latency_quantile, rules.latency_span_s) == (0.5, 0.99, 2.0)
    path = tmp_path / "m.toml"
    path.write_text('name = "m"\n[release]\nlatency_margin = inf\n')
    assert math.isinf(load_spec(path).release.latency_margin)
    for body in ("latency_margin = -0.1", "latency_margin = nan", "latency_quantile = 1.0", "latency_span_s = 0"):
        path.write_text(f'name = "m"\n[release]\n{body}\n')
        with pytest.raises(SpecError, match=body.split(" ")[0]):
            load_spec(path)


# --- the controller on a private stack ----------------------------------------------------------------------


@pytest.fixture()
def write_served(release_settings: Settings) -> Callable[..., None]:
    """``n`` predictions a version served, spread evenly over ``seconds`` from ``start``, their answer times
    (``latency_ms``) lognormal around ``median_ms`` (its log's deviation ``spread``)."""

    def write(
        model: str,
        version: int,
        n: int,
        *,
        start: float,
        seconds: float,
        median_ms: float,
        seed: int,
        spread: float = 0.5,
    ) -> None:
        rng = np.random.default_rng(seed)
        ts_ms = [round((start + seconds * i / n) * 1000) for i in range(n)]
        ids = [f"{model}-v{version}-{seed}-{i}" for i in range(n)]
        columns = {
            "event_id": ids,
            "model": [model] * n,
            "model_version": [version] * n,
            "request_id": ids,
            "ts": [t // 1000 for t in ts_ms],
            "ts_ms": ts_ms,
            "num.name": [[] for _ in range(n)],
            "num.value": [[] for _ in range(n)],
            "cat.name": [[] for _ in range(n)],
            "cat.value": [[] for _ in range(n)],
            "missing": [[] for _ in range(n)],
            "prediction": ["1"] * n,
            "prediction_num": [1.0] * n,
            "score": [0.8] * n,
            "scores.label": [[] for _ in range(n)],
            "scores.probability": [[] for _ in range(n)],
            "served": [1] * n,
            "latency_ms": (median_ms * rng.lognormal(0.0, spread, n)).tolist(),
        }
        assert set(columns) == set(PREDICTION_COLUMNS)
        sink = ClickHouseSink(release_settings.clickhouse)
        try:
            assert sink.write_blocking(ColumnBatch("predictions", columns)) == []
        finally:
            sink.close()

    return write


def _canary_of(
    release_settings: Settings, new_model, release: str = "", share: float = 0.05
) -> tuple[str, list[float], ReleaseController]:
    """A model whose candidate the controller (on a clock of the test's) has just made a canary of ``share``."""
    model = new_model(("champion", "candidate"), release=f"shadow = false\ncanary_share = {share}\n{release}")
    now = [time.time() - 3000]
    controller = ReleaseController(release_settings, clock=lambda: now[0])
    assert [d.to_stage for d in controller.step(model)] == ["canary"]
    return model, now, controller


def _traffic(
    write_served,
    model: str,
    start: float,
    canary_ms: float,
    seed: int,
    *,
    champion_ms: float = 4.0,
    rows: tuple[int, int] = (1_500, 28_500),
    spread: float = 0.5,
) -> None:
    """Ten minutes of a canary's traffic: by default a 5 % canary's, 1,500 requests the canary (v2) answered and
    28,500 the champion (v1, 4 ms)."""
    write_served(model, 2, rows[0], start=start, seconds=600, median_ms=canary_ms, seed=seed, spread=spread)
    write_served(model, 1, rows[1], start=start, seconds=600, median_ms=champion_ms, seed=seed + 1, spread=spread)


@pytest.mark.integration
def test_a_canary_that_answers_slower_is_rejected_before_any_outcome(
    release_settings: Settings, new_model, write_served
) -> None:
    model, now, controller = _canary_of(release_settings, new_model)
    _traffic(write_served, model, now[0] + 10, canary_ms=12.0, seed=1)
    now[0] += 700
    (rejected,) = controller.step(model)
    assert rejected.to_stage == "rejected"
    assert "canary lost: answers slower: p99 latency" in rejected.reason and "vs v1" in rejected.reason
    registry = ModelRegistry(release_settings)
    (change,) = [c for c in registry.changes(model, 2) if c.to_stage == "rejected"]
    details = change.evidence.details
    assert details["latency_verdict"] == "fail" and details["latency_p_value"] < 0.05
    assert details["latency_ms"] > 2 * details["baseline_latency_ms"]
    assert (details["latency_rows"], details["baseline_latency_rows"]) == (1_500, 28_500)
    assert details["latency_span_s"] == pytest.approx(80, abs=1)  # the time the canary takes to serve 200 rows
    assert details["latency_slower_spans"] == details["latency_spans"] >= 5
    assert (change.evidence.test, change.evidence.rows) == ("sign", 1_500)
    assert change.evidence.statistic == details["latency_slower_spans"]
    assert details["verdict"] == "wait"  # the outcomes: none came, none was needed
    routing = registry.routing(model)
    assert routing.canary is None and routing.champion is not None and routing.champion.version == 1
    registry.close()
    with connect(release_settings.clickhouse) as client:
        ((stored, on_18),) = client.execute(
            "SELECT evidence, visitParamExtractFloat(evidence, 'latency_ms') FROM version_changes "
            "WHERE model = %(m)s AND to_stage = 'rejected'",
            {"m": model},
        )
    assert on_18 == pytest.approx(details["latency_ms"])  # as docs/sql.md reads it, on 18.16
    assert json.loads(stored, parse_constant=_refuse)["kpi"] is None  # strict JSON: null where there is no number
    from chdb import session  # current ClickHouse reads it (a NaN anywhere in it made every field 0 there)

    db = session.Session()
    try:
        sql = f"SELECT visitParamExtractFloat('{stored}', 'latency_ms'), JSONExtractFloat('{stored}', 'latency_ms')"
        read = [float(v) for v in db.query(sql, "CSV").bytes().decode().strip().split(",")]
    finally:
        db.close()
    assert read == [pytest.approx(details["latency_ms"])] * 2


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is no JSON")


@pytest.mark.integration
def test_a_canary_as_fast_waits_for_its_outcomes_and_passes_with_its_answer_times_said(
    release_settings: Settings, new_model, write_served, write_labeled
) -> None:
    model, now, controller = _canary_of(release_settings, new_model)
    _traffic(write_served, model, now[0] + 10, canary_ms=4.0, seed=3)
    now[0] += 700
    assert controller.step(model) == []  # as fast: nothing to reject, and no outcome yet to promote it on
    labeled(write_labeled, model, "o", canary=0.95, at=now[0] - 300, seed=50)
    (promoted,) = controller.step(model)
    assert promoted.to_stage == "champion" and "p99 latency" in promoted.reason and "not slower" in promoted.reason
    (change,) = [c for c in ModelRegistry(release_settings).changes(model, 2) if c.to_stage == "champion"]
    assert change.evidence.details["latency_verdict"] == "pass" and change.evidence.details["latency_p_within"] < 0.05


@pytest.mark.integration
def test_a_canary_that_passes_on_its_outcomes_waits_while_its_answer_times_lean_slower(
    release_settings: Settings, new_model, write_served, write_labeled
) -> None:
    """Outcomes can come before answer times can decide (five spans of 200 canary requests): a canary three times
    as slow was promoted on its outcomes. Its first spans lean slower, and it waits for them to decide: rejected
    once they do, or at its deadline. One as fast (here a little faster) is promoted on its outcomes at once."""

    def passed_early(canary_ms: float, seed: int) -> tuple[str, list[float], ReleaseController]:
        model, now, controller = _canary_of(release_settings, new_model, "canary_deadline_s = 900")
        write_served(model, 2, 400, start=now[0] + 10, seconds=40, median_ms=canary_ms, seed=seed)  # two spans
        write_served(model, 1, 7_600, start=now[0] + 10, seconds=40, median_ms=4.0, seed=seed + 1)
        labeled(write_labeled, model, "o", canary=0.95, at=now[0] + 20, seed=seed + 2)  # the outcomes pass
        now[0] += 100
        return model, now, controller

    model, now, controller = passed_early(12.0, seed=31)
    assert controller.step(model) == []  # held: its two spans slower
    # eight spans more: among ten, one a sampled champion's quantile or a span's alignment leaves out or makes
    # no slower still leaves the sign test sure (six, once, were not: 4 of 5, or 5 of 6 spans)
    write_served(model, 2, 1_600, start=now[0] - 50, seconds=140, median_ms=12.0, seed=34)
    write_served(model, 1, 30_400, start=now[0] - 50, seconds=140, median_ms=4.0, seed=35)
    now[0] += 100
    (rejected,) = controller.step(model)
    assert rejected.to_stage == "rejected" and "canary lost: answers slower" in rejected.reason

    model, now, controller = passed_early(12.0, seed=41)
    assert controller.step(model) == []
    now[0] += 810  # the step's deadline: undecided, it ends as on_deadline says (reject)
    (ended,) = controller.step(model)
    assert ended.to_stage == "rejected" and "deadline passed without a decision" in ended.reason
    # its spans (numbered from the epoch, each with 100 rows of both sides at least: one to three), all slower
    found = re.search(r"beyond 1\.5 times v1's in (\d) of (\d) spans", ended.reason)
    assert found is not None and found[1] == found[2] != "0", ended.reason

    model, now, controller = passed_early(3.0, seed=51)  # a little faster: its two spans cannot lean slower
    (promoted,) = controller.step(model)
    assert promoted.to_stage == "champion" and "p99 latency" in promoted.reason


@pytest.mark.integration
def test_a_spec_that_judges_no_answer_times_lets_a_slow_canary_be(
    release_settings: Settings, new_model, write_served
) -> None:
    model, now, controller = _canary_of(release_settings, new_model, release="latency_margin = inf")
    _traffic(write_served, model, now[0] + 10, canary_ms=40.0, seed=5)
    now[0] += 700
    assert controller.step(model) == []
    assert ModelRegistry(release_settings).routing(model).canary is not None


def test_the_answer_times_queries_run_on_current_clickhouse(tmp_path: Path) -> None:
    """:func:`latencies` on current ClickHouse (chdb); the tests above run it on the 18.16 server."""
    with migrated_chdb(tmp_path) as (db, runner):
        start_ms = 1_790_000_000_000
        for version, median in ((2, 30.0), (1, 4.0)):
            db.query(
                "INSERT INTO predictions (event_id, model, model_version, request_id, ts, ts_ms, prediction, served, "
                f"latency_ms) SELECT concat('v{version}-', toString(number)), 'm', {version}, toString(number), "
                f"intDiv({start_ms} + number * 100, 1000), {start_ms} + number * 100, '1', 1, {median} "
                "FROM numbers(3000)"
            )
        canary, champion = latencies(
            runner, "m", (2, 1), start_ms, until_ms=start_ms + 300_000, quantile=0.99, span_s=10.0
        )
    assert (canary.rows, champion.rows) == (3000, 3000)
    assert float(canary.overall) == pytest.approx(30.0) and float(champion.overall) == pytest.approx(4.0)
    assert len(canary.by_span) == len(champion.by_span) >= 10  # 300 s in spans of at least 20 s (200 rows)
    assert set(canary.by_span.values()) == {30.0}


@pytest.mark.integration
def test_answer_times_are_read_over_a_recent_window_long_enough_for_thirty_spans(
    release_settings: Settings, write_served
) -> None:
    """A busy model's step reads its most recent rows only (they are read again at every tick); a quiet one's
    window reaches back as far as thirty spans of the canary's rows need, to the step's start."""
    start, busy, quiet = time.time() - 7300, f"busy-{uuid.uuid4().hex[:6]}", f"quiet-{uuid.uuid4().hex[:6]}"
    for model, canary_rows in ((busy, 36_000), (quiet, 1_440)):  # 5 and 0.2 canary requests a second
        write_served(model, 2, canary_rows, start=start, seconds=7200, median_ms=4.0, seed=7)
        write_served(model, 1, 4 * canary_rows, start=start, seconds=7200, median_ms=4.0, seed=8)
    end_ms = round((start + 7200) * 1000)
    with connect(release_settings.clickhouse) as client:
        read = {
            model: latencies(client, model, (2, 1), round(start * 1000), until_ms=end_ms, quantile=0.99, span_s=2.0)
            for model in (busy, quiet)
        }
    canary, champion = read[busy]  # 3,000 canary rows in ten minutes: 30 spans of 200 take twenty
    assert canary.rows == pytest.approx(6_000, abs=2) and champion.rows == pytest.approx(24_000, abs=5)
    assert 25 <= len(canary.by_span) <= 31
    canary, champion = read[quiet]  # 120 in ten minutes: thirty spans would take longer than the step
    assert (canary.rows, champion.rows) == (1_440, 5_760)


@pytest.mark.integration
def test_a_canary_widened_past_half_of_the_requests_is_compared_on_spans_of_the_champion_s_rows(
    release_settings: Settings, write_served
) -> None:
    """Spans hold 200 rows of the version with fewer (the champion, once the canary answers 75 %), and the
    canary's rows are sampled to as many: as fast, it is slower in few spans (it passes); twice as slow, in most."""
    start, verdicts = time.time() - 700, {}
    for canary_ms in (4.0, 8.0):
        model = f"wide-{uuid.uuid4().hex[:6]}"
        write_served(model, 2, 30_000, start=start, seconds=600, median_ms=canary_ms, seed=11)
        write_served(model, 1, 10_000, start=start, seconds=600, median_ms=4.0, seed=12)
        with connect(release_settings.clickhouse) as client:
            new, old = latencies(
                client,
                model,
                (2, 1),
                round(start * 1000),
                until_ms=round((start + 600) * 1000),
                quantile=0.99,
                span_s=2.0,
            )
        assert (new.rows, old.rows) == (30_000, 10_000)
        assert new.span_s == pytest.approx(12, abs=0.5) and len(new.by_span) >= 45  # 200 champion rows a span
        verdicts[canary_ms] = slower_spans(new.by_span, old.by_span, quantile=0.99, margin=0.5, confidence=0.95)
    assert verdicts[4.0].verdict == "pass" and verdicts[4.0].slower <= verdicts[4.0].spans // 4
    assert verdicts[8.0].verdict == "fail"


# --- an objective (latency_slo_ms): the canary held to it where the champion keeps it, the new champion in its watch


@pytest.mark.integration
def test_a_canary_that_breaks_the_objective_where_the_champion_keeps_it_is_rejected(
    release_settings: Settings, new_model, write_served
) -> None:
    """p99 about 32 ms against the champion's 24 (1.33 times: within the margin), the objective 28 ms. Answer
    times of a narrower spread than the other tests' (each span's p99 is of 200 rows): with the spread of 0.5
    and p99s of 35 and 26 ms, a span's quantiles fell on either side of the margin and of the objective often
    enough that one run in a few dozen ended undecided (the spans and the champion's sample follow the test's
    clock and model name)."""
    model, now, controller = _canary_of(release_settings, new_model, "latency_slo_ms = 28", share=0.1)
    _traffic(
        write_served, model, now[0] + 10, canary_ms=17.9, seed=21, champion_ms=13.4, rows=(6_000, 54_000),
        spread=0.25,
    )  # fmt: skip
    now[0] += 700
    (rejected,) = controller.step(model)
    assert (
        rejected.to_stage == "rejected"
        and "canary lost: breaks the answer-time objective: p99 latency" in rejected.reason
    )
    assert "above the 28 ms objective" in rejected.reason and "where v1 kept to it in" in rejected.reason
    (change,) = [c for c in ModelRegistry(release_settings).changes(model, 2) if c.to_stage == "rejected"]
    details = change.evidence.details
    assert details["latency_verdict"] == "pass" and details["latency_slo_ms"] == 28  # within the margin
    assert details["slo_broken_spans"] >= 20 and details["baseline_slo_broken_spans"] <= details["slo_spans"] // 2


@pytest.mark.integration
def test_a_canary_is_not_rejected_on_an_objective_the_champion_breaks_too(
    release_settings: Settings, new_model, write_served
) -> None:
    model, now, controller = _canary_of(release_settings, new_model, "latency_slo_ms = 28", share=0.1)
    # as slow as the canary: the servers, not v2
    _traffic(write_served, model, now[0] + 10, canary_ms=11.0, seed=23, champion_ms=11.0, rows=(6_000, 54_000))
    now[0] += 700
    assert controller.step(model) == []
    assert ModelRegistry(release_settings).routing(model).canary is not None


@pytest.mark.integration
def test_a_champion_that_breaks_the_objective_once_it_takes_all_traffic_is_rolled_back(
    release_settings: Settings, new_model, write_served, write_labeled
) -> None:
    """As fast as the champion at a tenth of the traffic; at all of it, p99 about 64 ms against the 28 ms objective
    that its predecessor kept (13 ms as the canary's baseline)."""
    model = new_model(("champion", "candidate"), release="shadow = false\ncanary_share = 0.1\nlatency_slo_ms = 28")
    now = [time.time() - 6000]
    controller = ReleaseController(release_settings, clock=lambda: now[0])
    controller.step(model)
    _traffic(write_served, model, now[0] + 10, canary_ms=4.0, seed=25)
    labeled(write_labeled, model, "o", canary=0.95, at=now[0] + 300, seed=60)
    now[0] += 700
    (promoted,) = controller.step(model)
    assert promoted.to_stage == "champion"
    assert controller.step(model) == []  # watched: nothing since the promotion yet
    write_served(model, 2, 30_000, start=now[0] + 10, seconds=600, median_ms=20.0, seed=26)
    now[0] += 700
    (rolled_back,) = controller.step(model)
    assert rolled_back.to_stage == "rolled_back"
    assert "breaks the answer-time objective since its promotion" in rolled_back.reason
    assert "where v1 kept to it as the canary's baseline" in rolled_back.reason
    routing = ModelRegistry(release_settings).routing(model)
    assert routing.champion is not None and routing.champion.version == 1
