"""The outcome join: labeled rows made a column at a time, completed by ClickHouse with their predictions' features."""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from driftloop.infra.clickhouse.client import connect
from driftloop.streams.batch import ColumnBatch
from driftloop.streams.event_rules import number_in
from driftloop.streams.join import (
    _LOOKUP,
    _MADE,
    _WITH_FEATURES,
    FEATURE_COLUMNS,
    LABELED_COLUMNS,
    LABELED_ROWS,
    Found,
    OutcomeJoin,
    RegressionSpecs,
    _label,
)
from driftloop.streams.sink import ClickHouseSink
from tests.infra.test_sql_engines import migrated_chdb
from tests.stack_fixtures import PrivateStack


def predictions(rng: random.Random, requests: int) -> tuple[list[str], list[str], dict[str, list[Any]]]:
    """Predictions of a few models' requests as the lookup reads them: served ones, versions in shadow, re-sent
    ones (the same request again, later), class labels and numbers."""
    models, request_ids = [], []
    columns: dict[str, list[Any]] = {
        name: [] for name in ("event_id", "model_version", "ts", "ts_ms", "prediction", "prediction_num", "score")
    }
    columns |= {"served": [], "features": []}
    for r in range(requests):
        model, request = rng.choice(["a", "b"]), f"r{r}"
        kinds = rng.choice([[(1, 1)], [(1, 1), (2, 0)], [(2, 0)], [(1, 1), (1, 1)], [(1, 1), (2, 0), (3, 0), (2, 0)]])
        for version, served in kinds:
            number = rng.choice([0.0, 1.0, 2.5, math.nan])
            ts_ms = 1_790_000_000_000 + rng.randrange(10_000)
            models.append(model)
            request_ids.append(request)
            columns["event_id"].append(uuid.UUID(int=rng.getrandbits(128)).hex)
            columns["model_version"].append(version)
            columns["ts"].append(ts_ms // 1000)
            columns["ts_ms"].append(ts_ms)
            columns["prediction"].append("cat" if math.isnan(number) else f"{number:g}")
            columns["prediction_num"].append(number)
            columns["score"].append(rng.random())
            columns["served"].append(served)
            columns["features"].append(rng.randrange(5))
    return models, request_ids, columns


def outcomes(rng: random.Random, requests: int, n: int) -> ColumnBatch:
    rows = []
    for i in range(n):
        label = rng.choice([0.0, 1.0, 2.5, 3.0, math.nan])
        rows.append(
            (
                f"o{i}",
                rng.choice(["a", "b"]),
                f"r{rng.randrange(requests + 5)}",  # a few requests no prediction has
                1_790_000_100 + i,
                1_790_000_100_000 + i * 1000,
                "cat" if math.isnan(label) else f"{label:g}",
                label,
                rng.random() * 10,
            )
        )
    names = ("event_id", "model", "request_id", "ts", "ts_ms", "label", "label_num", "value")
    columns = zip(names, zip(*rows, strict=True), strict=True)
    return ColumnBatch("outcomes", {name: list(column) for name, column in columns})


def one_by_one(batch: ColumnBatch, models: list[str], request_ids: list[str], p: dict[str, list[Any]]) -> list[dict]:
    """The labeled rows as the join made them an outcome at a time, before it made them a column at a time."""
    latest: dict[tuple[str, str, int], int] = {}
    for row, key in enumerate(zip(models, request_ids, strict=True)):
        kind = -1 if p["served"][row] else p["model_version"][row]
        seen = latest.get((*key, kind))
        if seen is None or p["ts_ms"][row] >= p["ts_ms"][seen]:
            latest[(*key, kind)] = row
    rows = []
    o = batch.columns
    for i, key in enumerate(zip(o["model"], o["request_id"], strict=True)):
        kinds = sorted((kind, row) for (m, r, kind), row in latest.items() if (m, r) == key)
        if not kinds or kinds[0][0] != -1:
            continue
        for _, row in kinds:
            predicted, truth = p["prediction_num"][row], o["label_num"][i]
            if math.isnan(predicted) or math.isnan(truth) or (predicted.is_integer() and truth.is_integer()):
                correct = int(p["prediction"][row] == o["label"][i])
                error = 1.0 - correct
            else:
                error = abs(predicted - truth)
                correct = int(error == 0.0)
            served = p["served"][row]
            rows.append(
                {
                    "event_id": o["event_id"][i] if served else f"{o['event_id'][i]}@v{p['model_version'][row]}",
                    "prediction_event_id": p["event_id"][row],
                    "model": key[0],
                    "model_version": p["model_version"][row],
                    "request_id": key[1],
                    "ts": p["ts"][row],
                    "ts_ms": p["ts_ms"][row],
                    "outcome_ts": o["ts"][i],
                    "outcome_ts_ms": o["ts_ms"][i],
                    "prediction": p["prediction"][row],
                    "prediction_num": predicted,
                    "score": p["score"][row],
                    "label": o["label"][i],
                    "label_num": truth,
                    "correct": correct,
                    "error": error,
                    "label_delay_s": (o["ts_ms"][i] - p["ts_ms"][row]) / 1000.0,
                    "served": served,
                    "value": o["value"][i] if served else math.nan,
                    "features": p["features"][row],
                }
            )
    return rows


def same(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("seed", range(5))
def test_labeled_rows_are_each_outcome_joined_to_its_predictions_as_one_by_one(seed: int) -> None:
    rng = random.Random(seed)
    models, request_ids, columns = predictions(rng, 300)
    # distinct times a request and kind, so that "the latest" is one row whichever way ties would break
    columns["ts_ms"] = [t * 1000 + row for row, t in enumerate(columns["ts_ms"])]
    batch = outcomes(rng, 300, 500)
    labeled, unmatched, origins = _label(batch, Found.of(models, request_ids, columns))
    expected = one_by_one(batch, models, request_ids, columns)
    assert tuple(labeled.columns) == LABELED_ROWS
    made = [dict(zip(LABELED_ROWS, row, strict=True)) for row in zip(*labeled.columns.values(), strict=True)]
    assert len(made) == len(expected) > 300
    for got, want in zip(made, expected, strict=True):
        assert all(same(got[name], want[name]) for name in LABELED_ROWS), (got, want)
    assert [batch["event_id"][i] for i in origins] == [row["event_id"].partition("@")[0] for row in expected]
    labeled_outcomes = set(origins)
    assert unmatched == [i for i in range(len(batch)) if i not in labeled_outcomes]


def joined_pairs(
    pairs: list[tuple[str, str, float, str, float]], regression: Callable[[str], bool] = lambda model: False
) -> ColumnBatch:
    """The labeled rows of one prediction and one outcome a request, given as (model, prediction text, prediction
    number, label text, label number), as the decoder reads them."""
    n = len(pairs)
    columns = {"event_id": [f"p{k}" for k in range(n)], "model_version": [1] * n, "ts": [1_790_000_000] * n}
    columns |= {"ts_ms": [1_790_000_000_000] * n, "served": [1] * n, "score": [math.nan] * n, "features": [1] * n}
    columns |= {"prediction": [p[1] for p in pairs], "prediction_num": [p[2] for p in pairs]}
    outcome_rows = {"event_id": [f"o{k}" for k in range(n)], "model": [p[0] for p in pairs]}
    outcome_rows |= {"request_id": [f"r{k}" for k in range(n)], "ts": [1_790_000_001] * n}
    outcome_rows |= {"ts_ms": [1_790_000_001_000] * n, "value": [math.nan] * n}
    outcome_rows |= {"label": [p[3] for p in pairs], "label_num": [p[4] for p in pairs]}
    found = Found.of([p[0] for p in pairs], [f"r{k}" for k in range(n)], columns)
    labeled, unmatched, _ = _label(ColumnBatch("outcomes", outcome_rows), found, regression)
    assert unmatched == []
    return labeled


def as_number(text: str) -> float:
    """A text's number as the decoder reads a JSON number (NaN for a boolean or a class)."""
    number = number_in(text)
    return math.nan if number is None else number


def test_a_regression_value_sent_as_text_on_one_side_is_a_number() -> None:
    """A regression's label (or prediction) sent as text beside a number is its value: the error is the
    distance, not a class that differs. Classes stay classes: whole numbers and texts that are no number
    compare as text."""
    pairs = [  # (prediction text, prediction number, label text, label number) -> (correct, error)
        (("12.3", 12.3, "12.5", math.nan), (0, 0.2)),
        (("12.5", math.nan, "12", 12.0), (0, 0.5)),
        (("7.25", 7.25, "7.25", math.nan), (1, 0.0)),
        (("1", 1.0, "1", math.nan), (1, 0.0)),  # a class sent as text by the outcome's producer
        (("1", 1.0, "1.0", math.nan), (0, 1.0)),  # whole on both sides: classes, as text
        (("2.5", 2.5, "cat", math.nan), (0, 1.0)),
    ]
    labeled = joined_pairs([("m", *given) for given, _ in pairs])
    got = list(zip(labeled["correct"], labeled["error"], strict=True))
    assert [(c, pytest.approx(e)) for c, e in got] == [want for _, want in pairs]


def test_a_boolean_outcome_is_the_class_of_its_number() -> None:
    """A classifier that answers 1 / 0 and an outcome system that sends ``true`` / ``false`` (``is_fraud``), or
    the other way round: one class, as scikit-learn and pandas compare them. Before, every such row was wrong
    (accuracy 0 for a model that was always right, and a performance alert on it)."""
    pairs = [("1", "true", 1), ("0", "false", 1), ("1", "false", 0), ("true", "1", 1), ("False", "0", 1)]
    pairs += [("0", "true", 0), ("cat", "true", 0), ("2", "true", 0), ("1.5", "true", 0)]
    labeled = joined_pairs([("m", p, as_number(p), label, as_number(label)) for p, label, _ in pairs])
    assert list(labeled["correct"]) == [want for _, _, want in pairs]
    assert list(labeled["label"]) == [label for _, label, _ in pairs]  # as sent: training learns what came


def test_a_regression_by_its_spec_counts_whole_numbers_as_values(tmp_path: Path) -> None:
    """A regression of counts (units sold: 3 predicted, 5 sold): whole numbers on both sides read as classes,
    an error of 1 for any miss and 0 for a hit, so its MAE was the share of misses. A model whose spec says
    regression has their distance; a model without a spec (or with a broken one) is judged row by row."""
    (tmp_path / "units.toml").write_text('name = "units"\ntask = "regression"\n')
    (tmp_path / "broken.toml").write_text('name = "broken"\ntask = "regresion"\n')
    rows = [("units", 3.0, 5.0), ("units", 4.0, 4.0), ("other", 3.0, 5.0), ("broken", 3.0, 5.0)]
    pairs = [(model, f"{p:g}", p, f"{label:g}", label) for model, p, label in rows]
    specs = RegressionSpecs(tmp_path, recheck_s=0.0)
    labeled = joined_pairs(pairs, specs)
    assert list(labeled["error"]) == [2.0, 0.0, 1.0, 1.0]
    assert list(labeled["correct"]) == [0, 1, 0, 0]
    # a spec written, or fixed, while the ingestion process runs is taken (it kept its first answer for good)
    (tmp_path / "other.toml").write_text('name = "other"\ntask = "regression"\n')
    (tmp_path / "broken.toml").write_text('name = "broken"\ntask = "regression"\n')
    assert list(joined_pairs(pairs, specs)["error"]) == [2.0, 0.0, 2.0, 2.0]
    (tmp_path / "units.toml").write_text('name = "units"\ntask = "regression\n')  # an edit that breaks it
    assert list(joined_pairs(pairs, specs)["error"]) == [2.0, 0.0, 2.0, 2.0]  # the last good spec stands


def test_a_labeled_row_is_the_table_s_columns_the_join_makes_and_the_features_clickhouse_copies() -> None:
    assert sorted((*_MADE, *FEATURE_COLUMNS)) == sorted(LABELED_COLUMNS)


@pytest.mark.integration
def test_labeled_rows_carry_their_own_prediction_s_features(stack: PrivateStack) -> None:
    """ClickHouse completes each labeled row with the features of the prediction it was joined to: the one
    with its ``event_id`` and time, not another day's prediction a producer gave the same ``event_id``."""
    model = "join-" + uuid.uuid4().hex[:8]
    day = 86_400
    sent = [  # (event_id, request, ts, num, cat, missing)
        ("given", "r1", 1_790_000_000, {"x": 1.5, "y": -2.0}, {"k": "red"}, ["gone"]),
        ("given", "r2", 1_790_000_000 + day, {"x": 7.0}, {}, []),  # the same event_id, a day later
        ("p3", "r3", 1_790_000_000, {}, {"k": "blue", "j": "x"}, []),
    ]
    columns: dict[str, list[Any]] = {
        "event_id": [s[0] for s in sent],
        "model": [model] * 3,
        "request_id": [s[1] for s in sent],
        "ts": [s[2] for s in sent],
        "ts_ms": [s[2] * 1000 for s in sent],
        "num.name": [list(s[3]) for s in sent],
        "num.value": [list(s[3].values()) for s in sent],
        "cat.name": [list(s[4]) for s in sent],
        "cat.value": [list(s[4].values()) for s in sent],
        "missing": [s[5] for s in sent],
        "prediction": ["1", "0", "1"],
        "prediction_num": [1.0, 0.0, 1.0],
        "score": [0.9, 0.1, 0.7],
    }
    sink = ClickHouseSink(stack.settings.clickhouse)
    assert sink.write_blocking(ColumnBatch("predictions", columns)) == []
    join = OutcomeJoin(stack.settings.clickhouse, sink, window_s=60)
    batch = ColumnBatch(
        "outcomes",
        {
            "event_id": ["o1", "o2", "o3", "o4"],
            "model": [model] * 4,
            "request_id": ["r1", "r2", "r3", "nobody"],
            "ts": [1_790_000_000 + 2 * day] * 4,
            "ts_ms": [(1_790_000_000 + 2 * day) * 1000] * 4,
            "label": ["1"] * 4,
            "label_num": [1.0] * 4,
            "value": [math.nan] * 4,
        },
    )
    try:
        result = asyncio.run(join.join(batch, [0] * 4))
    finally:
        join.close()
        sink.close()
    assert (len(result.labeled), result.waiting) == (3, 1)
    assert result.labeled["features"] == [4, 1, 2]
    stored = connect(stack.settings.clickhouse).execute(
        "SELECT request_id, prediction_event_id, num.name, num.value, cat.name, cat.value, missing, correct "
        "FROM labeled FINAL WHERE model = %(m)s ORDER BY request_id",
        {"m": model},
    )
    assert stored == [
        ("r1", "given", ["x", "y"], [1.5, -2.0], ["k"], ["red"], ["gone"], 1),
        ("r2", "given", ["x"], [7.0], [], [], [], 0),
        ("r3", "p3", [], [], ["k", "j"], ["blue", "x"], [], 1),
    ]


def test_the_join_s_queries_run_on_current_clickhouse(tmp_path: Path) -> None:
    """The lookup and the ``INSERT ... SELECT`` that completes labeled rows, on current ClickHouse (chdb), with
    tables in place of the external tables the worker sends (the 18.16 server runs them in the tests above)."""
    with migrated_chdb(tmp_path) as (db, runner):
        db.query("CREATE TABLE _keys (model String, request_id String) ENGINE = Memory")
        db.query(f"CREATE TABLE _labeled ({', '.join(f'`{n}` {t}' for n, t in _MADE.items())}) ENGINE = Memory")
        db.query(
            "INSERT INTO predictions (event_id, model, request_id, ts, ts_ms, num.name, num.value, cat.name, "
            "cat.value, missing, prediction, prediction_num) VALUES "
            "('e1', 'm', 'r1', 1790000000, 1790000000000, ['x', 'y'], [1.5, 2], ['k'], ['red'], ['gone'], '1', 1), "
            "('e2', 'm', 'r2', 1790000000, 1790000000000, [], [], [], [], [], '0', 0)"
        )
        db.query("INSERT INTO _keys VALUES ('m', 'r1'), ('m', 'r3')")
        found = runner.execute(_LOOKUP)
        assert [(row[0], row[1], row[2], row[-1]) for row in found] == [("m", "r1", "e1", 4)]
        made = {"event_id": "'o1'", "prediction_event_id": "'e1'", "model": "'m'", "ts": "1790000000"}
        made |= {"ts_ms": "1790000000000", "request_id": "'r1'", "prediction": "'1'", "label": "'1'", "correct": "1"}
        db.query(f"INSERT INTO _labeled ({', '.join(made)}) VALUES ({', '.join(made.values())})")
        names = ", ".join(f"`{name}`" for name in (*_MADE, *FEATURE_COLUMNS))
        db.query(f"INSERT INTO labeled ({names}) {_WITH_FEATURES}")
        stored = db.query("SELECT event_id, num.name, num.value, cat.value, missing, correct FROM labeled", "CSV")
        assert stored.bytes().decode().strip() == '"o1","[\'x\',\'y\']","[1.5,2]","[\'red\']","[\'gone\']",1'
