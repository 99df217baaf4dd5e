"""Prediction frames: the drift monitor's input, grouped by model, and their trip to the detection process."""

from __future__ import annotations

import math
import multiprocessing

import numpy as np
import pytest

from driftloop.streams.batch import CodedTexts, ColumnBatch, NumberRows, TextRows
from driftloop.streams.child_process import _receive_pickled, _send_pickled
from driftloop.streams.drift.frame import FeatureColumns, FeaturesByEvent, PredictionFrame


def rows(events: list[dict]) -> ColumnBatch:
    """A predictions batch as the decoder makes it; each event: model, features ({name: number | str | None})."""
    columns: dict[str, list] = {name: [] for name in ("model", "model_version", "request_id", "ts_ms")}
    for name in ("num.name", "num.value", "cat.name", "cat.value", "missing", "prediction", "prediction_num", "score"):
        columns[name] = []
    for i, event in enumerate(events):
        features = event["features"]
        columns["model"].append(event["model"])
        columns["model_version"].append(event.get("version", 1))
        columns["request_id"].append(f"r{i}")
        columns["ts_ms"].append(1_700_000_000_000 + i)
        columns["num.name"].append([k for k, v in features.items() if isinstance(v, float)])
        columns["num.value"].append([v for v in features.values() if isinstance(v, float)])
        columns["cat.name"].append([k for k, v in features.items() if isinstance(v, str)])
        columns["cat.value"].append([v for v in features.values() if isinstance(v, str)])
        columns["missing"].append([k for k, v in features.items() if v is None])
        columns["prediction"].append(str(i % 2))
        columns["prediction_num"].append(float(i % 2))
        columns["score"].append(event.get("score", i / 10))
    return ColumnBatch("predictions", columns)


def test_each_model_gets_its_own_events_in_batch_order() -> None:
    batch = rows(
        [{"model": "a" if i % 3 else "b", "features": {"x": float(i), "y": -float(i)}, "version": i} for i in range(9)]
    )
    a, b = PredictionFrame.from_columns(batch).models  # in order of first event: row 0 is b's
    assert (a.model, b.model) == ("b", "a")
    assert a.request_ids == ["r0", "r3", "r6"] and b.request_ids == ["r1", "r2", "r4", "r5", "r7", "r8"]
    assert a.ts_ms.tolist() == [1_700_000_000_000 + i for i in (0, 3, 6)]
    assert isinstance(b.features, FeatureColumns)
    assert b.features.numeric_names == ["x", "y"]
    assert b.features.numeric.tolist() == [[float(i), -float(i)] for i in (1, 2, 4, 5, 7, 8)]
    assert (a.version, b.version) == (6, 8)
    assert b.score.tolist() == [i / 10 for i in (1, 2, 4, 5, 7, 8)] and b.prediction == ["1", "0", "0", "1", "1", "0"]


def test_models_sending_different_features_each_get_a_matrix() -> None:
    batch = rows(
        [{"model": "a", "features": {"x": 1.0, "y": 2.0}}, {"model": "b", "features": {"z": 3.0, "c": "red"}}] * 3
    )
    a, b = PredictionFrame.from_columns(batch).models
    assert isinstance(a.features, FeatureColumns) and isinstance(b.features, FeatureColumns)
    assert (a.features.numeric_names, a.features.numeric.tolist()) == (["x", "y"], [[1.0, 2.0]] * 3)
    assert (b.features.numeric_names, b.features.numeric.tolist()) == (["z"], [[3.0]] * 3)
    assert (b.features.categorical_names, b.features.categorical) == (["c"], [["red"] * 3])


def test_nulls_and_features_left_out_are_gaps_in_a_models_columns() -> None:
    batch = rows(
        [
            {"model": "a", "features": {"x": 1.0, "y": None}},
            {"model": "a", "features": {"x": 2.0}},
            {"model": "b", "features": {"x": 1.0}},
            {"model": "b", "features": {"y": 1.0, "k": "red"}},
            {"model": "c", "features": {"x": 1.0}},
            {"model": "c", "features": {"x": "one"}},  # a number, then a text: each event's own
        ]
    )
    a, b, c = PredictionFrame.from_columns(batch).models
    assert isinstance(a.features, FeatureColumns) and isinstance(b.features, FeatureColumns)
    assert (a.features.numeric_names, a.features.numeric.tolist(), a.features.null_names) == (
        ["x"],
        [[1.0], [2.0]],
        ["y"],
    )
    assert b.features.numeric_names == ["x", "y"] and b.features.categorical_names == ["k"]
    assert repr(b.features.numeric.tolist()) == "[[1.0, nan], [nan, 1.0]]" and b.features.categorical == [[None, "red"]]
    assert isinstance(c.features, FeaturesByEvent) and c.features.num_value == [[1.0], []]


def test_events_each_sending_a_few_of_many_features_keep_each_events_own() -> None:
    """A matrix of a column for each of 200 names, three of them held a row, would be nearly all gaps."""
    batch = rows([{"model": "a", "features": {f"w{(7 * i + j) % 200}": 1.0 for j in range(3)}} for i in range(400)])
    (a,) = PredictionFrame.from_columns(batch).models
    assert isinstance(a.features, FeaturesByEvent) and a.features.num_name[1] == ["w7", "w8", "w9"]
    few = rows([{"model": "a", "features": {f"w{(7 * i + j) % 4}": 1.0 for j in range(3)}} for i in range(400)])
    (a,) = PredictionFrame.from_columns(few).models
    assert isinstance(a.features, FeatureColumns) and a.features.numeric.shape == (400, 4)


def test_a_frame_crosses_the_pipe_whole() -> None:
    """Numbers as arrays, and a categorical feature coded: each distinct text once, a code an event."""
    features = [{"x": float(i), "c": f"v{i % 3}"} for i in range(1000)]
    batch = rows([{"model": f"m{i % 2}", "features": f, "score": math.nan} for i, f in enumerate(features)])
    frame = PredictionFrame.from_columns(batch)
    receiving, sending = multiprocessing.Pipe(duplex=False)
    try:
        _send_pickled(sending, ("lane", "detect", 1, frame))
        lane, kind, request, received = _receive_pickled(receiving)
    finally:
        sending.close()
        receiving.close()
    assert (lane, kind, request) == ("lane", "detect", 1)
    for sent, got in zip(frame.models, received.models, strict=True):
        assert got.model == sent.model and got.request_ids == sent.request_ids
        assert np.array_equal(got.features.numeric, sent.features.numeric)
        assert np.array_equal(got.ts_ms, sent.ts_ms) and np.isnan(got.score).all()
        (coded,) = got.features.categorical
        assert isinstance(coded, CodedTexts) and sorted(coded.texts) == ["v0", "v1", "v2"]
        assert coded == [f["c"] for f in features[int(got.model[1]) :: 2]]


def test_an_empty_batch_is_an_empty_frame() -> None:
    assert len(PredictionFrame.from_columns(rows([]))) == 0


def test_feature_values_kept_as_one_matrix_give_the_same_frame_without_a_copy() -> None:
    events = [{"model": "a" if i % 4 else "b", "features": {"x": float(i), "y": i / 3}} for i in range(12)]
    as_lists = rows(events)
    as_matrix = rows(events)
    as_matrix.columns["num.value"] = NumberRows(np.array(as_lists["num.value"]))
    for listed, matrixed in zip(
        PredictionFrame.from_columns(as_lists).models, PredictionFrame.from_columns(as_matrix).models, strict=True
    ):
        assert isinstance(matrixed.features, FeatureColumns) and matrixed.request_ids == listed.request_ids
        assert np.array_equal(matrixed.features.numeric, listed.features.numeric)
    one_model = rows([{"model": "a", "features": {"x": float(i)}} for i in range(5)])
    one_model.columns["num.value"] = matrix = NumberRows(np.arange(5.0).reshape(5, 1))
    (frame,) = PredictionFrame.from_columns(one_model).models
    assert np.shares_memory(frame.features.numeric, matrix.matrix)


def test_texts_kept_a_list_a_feature_give_the_same_frame() -> None:
    features = [{"x": float(i), "c": f"v{i % 5}", "d": f"w{i % 2}"} for i in range(30)]
    events = [{"model": f"m{i % 3}", "features": f} for i, f in enumerate(features)]
    as_lists = rows(events)
    by_feature = rows(events)
    by_feature.columns["cat.value"] = TextRows([list(column) for column in zip(*as_lists["cat.value"], strict=True)])
    for listed, kept in zip(
        PredictionFrame.from_columns(as_lists).models, PredictionFrame.from_columns(by_feature).models, strict=True
    ):
        assert isinstance(kept.features, FeatureColumns) and kept.request_ids == listed.request_ids
        assert kept.features.categorical_names == listed.features.categorical_names == ["c", "d"]
        for got, want in zip(kept.features.categorical, listed.features.categorical, strict=True):
            assert got.texts == want.texts and got.codes.tolist() == want.codes.tolist()


def _envelopes_with_gaps(seed: int, gap: str) -> list[bytes]:
    """Two models' envelopes whose events null (``gap`` "null") or leave out ("left out") a numeric or a
    categorical feature now and then, and null one feature always; the first envelope of each without gaps."""
    import json

    rng = np.random.default_rng(seed)
    values = []
    for m in range(4):
        events = []
        for i in range(300):
            features: dict[str, object] = {
                "x": round(float(rng.normal()), 6),
                "y": round(float(rng.exponential()), 6),
                "k": f"c{int(rng.integers(5))}",
                "never": None,
            }
            if m > 1 and rng.random() < 0.1:
                name = str(rng.choice(["x", "y", "k"]))
                if gap == "null":
                    features[name] = None
                else:
                    del features[name]
            events.append({"model": f"m{m % 2}", "request_id": f"r{m}-{i}", "ts": 1_790_000_000 + i,
                           "features": features, "prediction": int(i % 3 == 0), "score": 0.5})  # fmt: skip
        values.append(json.dumps({"events": events}).encode())
    return values


@pytest.mark.parametrize("gap", ["null", "left out"])
def test_features_with_gaps_give_the_detectors_what_each_events_own_give_them(gap: str) -> None:
    """A model's events with nulls, or with features left out, reach the detectors as each feature's column,
    its gaps marked: every signal (values, positions, null rates, categories) is what the events one by one
    give (a feature left out is missing from the first batch on, as it is one by one once the feature is
    watched), and the joint signal, which events one by one do not have, scores the events that sent every
    one of its features."""
    import dataclasses

    from driftloop.infra.spec import ModelSpec
    from driftloop.streams.decode import Incoming, decode_predictions
    from driftloop.streams.drift.extract import multivariate_rows, multivariate_signals, prediction_signals
    from driftloop.streams.drift.frame import FEATURE_COLUMNS
    from driftloop.streams.drift.policy import AlertPolicy
    from driftloop.streams.drift.signals import ModelState
    from tests.streams.test_decode_fast_path import field_rules_only

    messages = [Incoming(v, "predictions", 0, k) for k, v in enumerate(_envelopes_with_gaps(3, gap))]
    frame = PredictionFrame.from_columns(decode_predictions(messages).rows)
    rules = field_rules_only(decode_predictions, messages).rows
    for ours in frame.models:
        assert isinstance(ours.features, FeatureColumns)
        mine = [i for i, model in enumerate(rules["model"]) if model == ours.model]
        by_event = FeaturesByEvent(*([rules[name][i] for i in mine] for name in FEATURE_COLUMNS))
        theirs = dataclasses.replace(ours, features=by_event)
        spec = ModelSpec(name=ours.model)
        states = [ModelState(spec, AlertPolicy(spec.monitoring)) for _ in range(2)]
        complete = [i for i, nulls in enumerate(by_event.missing) if not {"x", "y"} & set(nulls)]
        complete = [i for i in complete if {"x", "y"} <= set(by_event.num_name[i])]
        scored = []
        for again in range(5):  # the batch again and again: watched features, then the joint reference complete
            signals = []
            for state, part in zip(states, (ours, theirs), strict=True):
                values, together = prediction_signals(state, part)
                assert together is not None
                values += multivariate_signals(state, *multivariate_rows(state, together))
                signals.append(values)
            got, want = ({s.name: (s.signal_type, list(s.positions), list(s.values)) for s in one} for one in signals)
            joint = got.pop("joint", None)
            if not again:  # the first batch: the features left out are not watched yet one by one
                got, want = ({k: v for k, v in one.items() if not k.endswith(":null_rate")} for one in (got, want))
            assert got == want
            assert states[0].features == states[1].features == {"x", "y", "k", "never"}
            if joint is not None:
                assert joint[1] == complete[len(complete) - len(joint[1]) :]
                scored.append(len(joint[1]))
        assert scored and scored[-1] == len(complete) < len(ours)  # the joint signal runs, on complete events
        assert got["never:null_rate"][2] == [1.0] * len(ours) and 0 < sum(got["x:null_rate"][2]) < len(ours) / 10
