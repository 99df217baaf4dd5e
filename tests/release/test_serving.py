"""The serving client under release: a shadow scores every request unserved, a canary serves its share of
requests (the same ones every time), and a version the live gate rejects never serves a request."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow
import pytest

from driftloop.infra.errors import UnreachableError
from driftloop.infra.kafka.topics import provision_topics
from driftloop.infra.network import free_port
from driftloop.infra.settings import Settings
from driftloop.infra.stack import stack as local_stack
from driftloop.models.registry import SAVED_ROUTING, ModelRegistry
from driftloop.models.serving import ModelClient, ServingDeviceError, ServingInputError, canary_bucket
from driftloop.release.controller import ReleaseController
from tests.release.conftest import CANARY_SHARE, agrawal
from tests.stack_fixtures import PrivateStack, TcpProxy, model_records, wait_for

pytestmark = pytest.mark.integration


def emitted(settings: Settings, model: str, *, partitions: set[int] | None = None) -> list[dict]:  # type: ignore[type-arg]
    """The prediction events published for ``model`` (keyed by its name, or by its name and a number when
    spread); ``partitions`` collects where they went."""
    ours = model_records(settings, settings.topics.predictions, model)
    if partitions is not None:
        partitions.update(m.partition for m in ours)
    return [e for m in ours for e in json.loads(m.value)["events"]]


def test_a_challenger_stopped_in_shadow_never_serves_a_request(
    release_settings: Settings, new_model, write_labeled
) -> None:
    model = new_model(("champion", "candidate"))
    controller = ReleaseController(release_settings)
    rows, _ = agrawal(0, 400, seed=21)
    ids = [f"q{i}" for i in range(len(rows))]
    with ModelClient(model, release_settings, emit=True) as client:
        controller.step(model)  # candidate → shadow, announced
        wait_for(lambda: client.routing["shadow"] == 2, timeout_s=30, what="the client to load the shadow")
        result = client.predict(rows, request_ids=ids)
        assert set(result.versions) == {1} and result.version == 1  # the champion answers every request
        client.flush()
        events = emitted(release_settings, model)
        shadow = [e for e in events if e.get("served") is False]
        served = [e for e in events if e.get("served", True)]
        assert [e["request_id"] for e in served] == ids and {e["model_version"] for e in served} == {1}
        assert [e["request_id"] for e in shadow] == ids and {e["model_version"] for e in shadow} == {2}
        assert all(e["latency_ms"] > 0 for e in events)
        # label the requests with the champion's answers: the shadow (another concept) is far worse live
        labels = result.values
        shadow_right = [int(e["prediction"] == label) for e, label in zip(shadow, labels, strict=True)]
        write_labeled(model, 1, ids, [1] * len(ids))
        write_labeled(model, 2, ids, shadow_right, served=False)
        (decision,) = controller.step(model)
        assert decision.to_stage == "rejected"
        wait_for(lambda: client.routing["shadow"] is None, timeout_s=30, what="the client to drop the shadow")
        after = client.predict(rows, request_ids=[f"z{i}" for i in range(len(rows))])
        assert set(after.versions) == {1}
        client.flush()
    served_by_2 = [e for e in emitted(release_settings, model) if e.get("served", True) and e["model_version"] == 2]
    assert served_by_2 == []


def test_a_canary_serves_its_share_of_requests_the_same_ones_every_time_and_keeps_them_as_it_widens(
    release_settings: Settings, new_model
) -> None:
    model = new_model(("champion", "shadow"))
    rows, _ = agrawal(0, 4000, seed=22)
    ids = [f"c{i}" for i in range(len(rows))]
    registry = ModelRegistry(release_settings)
    with ModelClient(model, release_settings) as client:
        assert client.routing == {"champion": 1, "shadow": 2, "canary": None, "canary_share": 0.0}
        registry.transition(model, 2, "canary", reason="test", traffic_share=0.25)
        wait_for(lambda: client.routing["canary"] == 2, timeout_s=30, what="the client to route to the canary")
        first = client.predict(rows, request_ids=ids)
        again = client.predict(rows[::-1], request_ids=ids[::-1])
        registry.transition(model, 2, "canary", reason="the next step", traffic_share=0.6)  # as canary_steps widen
        wait_for(lambda: client.routing["canary_share"] == 0.6, timeout_s=30, what="the client to widen the canary")
        wider = client.predict(rows, request_ids=ids)
    registry.close()
    share = first.versions.count(2) / len(ids)
    assert abs(share - 0.25) < 0.035  # 5 standard deviations of a binomial share over 4,000 requests
    assert first.versions == again.versions[::-1]  # sticky per request id, whatever the batch
    assert first.versions == [2 if canary_bucket(model, r) < 0.25 else 1 for r in ids]
    assert abs(wider.versions.count(2) / len(ids) - 0.6) < 0.04  # 5 standard deviations
    assert all(w == 2 for f, w in zip(first.versions, wider.versions, strict=True) if f == 2)  # its requests kept


def test_a_client_started_while_kafka_is_away_serves_its_champion_and_follows_versions_once_it_answers(
    stack: PrivateStack, release_settings: Settings, new_model, tmp_path: Path
) -> None:
    model = new_model(("champion", "shadow"))
    away = stack.with_env(  # the same registry and ClickHouse; a broker of its own, started below
        DRIFTLOOP_HOME=str(tmp_path / "home"),
        DRIFTLOOP_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
        DRIFTLOOP_SPECS_DIR=str(release_settings.spec_directory),
        DRIFTLOOP_ARTIFACTS=str(release_settings.artifacts),
    ).settings
    rows, _ = agrawal(0, 200, seed=23)
    with ModelClient(model, away) as client:
        assert set(client.predict(rows).versions) == {1}  # served while no broker answers
        local_stack.start_service(away, "broker")
        registry = ModelRegistry(away)
        try:
            provision_topics(away)
            registry.transition(model, 2, "canary", reason="test", traffic_share=0.25)
            wait_for(lambda: client.routing["canary"] == 2, timeout_s=90, what="the client to follow the canary")
            assert set(client.predict(rows).versions) == {1, 2}
        finally:
            registry.close()
            local_stack.stop_service(away, "broker")


def test_rows_it_cannot_score_or_send_are_refused_before_anything_is_served_or_sent(
    release_settings: Settings, new_model
) -> None:
    """A batch the client would score on defaults alone (rows that are not keyed by feature name), ids that do
    not match the rows, or a column no event can carry: a clear error, and nothing published. Before, the first
    two were scored silently (a list of lists as columns 0, 1, 2; one dict as a row per key), the third raised
    out of ``zip`` after the batch was scored, and the fourth after some of the batch's events were sent."""
    model = new_model(("champion",))
    rows, _ = agrawal(0, 20, seed=24)
    with_time = pd.DataFrame(rows).assign(seen=pd.Timestamp("2026-11-30 08:00"))
    with ModelClient(model, release_settings, emit=True) as client:
        refused = {
            "lists": lambda: client.predict([list(r.values()) for r in rows]),
            "other columns": lambda: client.predict(pd.DataFrame({"x": [1.0, 2.0]})),
            "ids": lambda: client.predict(rows, request_ids=["only", "two"]),
            "fractional ids": lambda: client.predict(rows[:1], request_ids=[1.5]),
            "a time column": lambda: client.predict(with_time, request_ids=[f"t{i}" for i in range(20)]),
        }
        messages = {}
        for name, call in refused.items():
            with pytest.raises(ServingInputError) as caught:
                call()
            messages[name] = str(caught.value)
        client.flush()
        assert "none of the model's features" in messages["other columns"] and "(x)" in messages["other columns"]
        assert "2 request ids for 20 rows" in messages["ids"]
        assert "column 'seen'" in messages["a time column"] and "Timestamp" in messages["a time column"]
        assert "got items of list" in messages["lists"]
        assert emitted(release_settings, model) == []
        one = client.predict(rows[0], request_ids=["one"])  # a dict is one row
        assert len(one.values) == 1 and one.values == client.predict(rows[:1]).values


def test_pandas_nullable_columns_and_integer_ids_are_published_as_the_contract_reads_them(
    release_settings: Settings, new_model
) -> None:
    """pandas' nullable dtypes give ``pd.NA`` for a missing value (which no JSON encoder takes), a string array
    ``np.str_``: missing values go as null, texts as texts, and integer request ids (a database's) as their
    digits, in the result as on the wire."""
    model = new_model(("champion",))
    rows, _ = agrawal(0, 30, seed=25)
    frame = pd.DataFrame(rows)
    frame["age"] = frame["age"].astype("Int64")
    frame.loc[[3, 7], "age"] = pd.NA
    frame["car"] = frame["car"].astype(str).astype("string")
    frame.loc[[4], "car"] = pd.NA
    frame["region"] = np.array([f"r{i % 3}" for i in range(30)])  # numpy's str_ values
    with ModelClient(model, release_settings, emit=True) as client:
        result = client.predict(frame, request_ids=np.arange(1000, 1030))
        client.flush()
    assert result.request_ids == [str(i) for i in range(1000, 1030)]
    events = {e["request_id"]: e for e in emitted(release_settings, model)}
    assert sorted(events) == result.request_ids
    assert events["1003"]["features"]["age"] is None and events["1007"]["features"]["age"] is None
    assert events["1004"]["features"]["car"] is None
    assert events["1000"]["features"]["age"] == int(frame.loc[0, "age"])
    assert [events[str(1000 + i)]["features"]["region"] for i in range(30)] == [f"r{i % 3}" for i in range(30)]


def test_a_pyarrow_table_is_served_as_the_dataframe_it_holds(release_settings: Settings, new_model) -> None:
    """Servers that read Arrow (polars, a Flight or Parquet reader) passed a table, which the client iterated
    as if it were dicts and refused."""
    model = new_model(("champion",))
    rows, _ = agrawal(0, 40, seed=37)
    rows[5]["salary"] = None
    with ModelClient(model, release_settings, watch=False) as client:
        from_arrow = client.predict(pyarrow.Table.from_pylist(rows), request_ids=[f"a{i}" for i in range(40)])
        from_pandas = client.predict(pd.DataFrame(rows), request_ids=[f"a{i}" for i in range(40)])
    assert from_arrow.values == from_pandas.values and from_arrow.scores == from_pandas.scores


def test_a_shadow_is_scored_only_where_its_answers_are_published(release_settings: Settings, new_model) -> None:
    """A shadow's answers are never returned: without ``emit`` they went nowhere, and scoring them took a
    one-row request from 0.59 to 0.98 ms. With ``emit`` both versions score every batch."""
    model = new_model(("champion", "shadow"))
    rows, _ = agrawal(0, 20, seed=26)
    for emit, scored in ((False, [1]), (True, [1, 2])):
        with ModelClient(model, release_settings, emit=emit) as client:
            versions: list[int] = []

            def counted(loaded, frame, score=client._score, versions=versions):  # type: ignore[no-untyped-def]
                versions.append(loaded.version)
                return score(loaded, frame)

            client._score = counted  # type: ignore[method-assign]
            client.predict(rows)
            client.flush()
            assert versions == scored


def test_a_shadow_that_cannot_keep_up_never_holds_a_request_back(
    release_settings: Settings, new_model, caplog: pytest.LogCaptureFixture
) -> None:
    """The shadow was scored on the caller's thread: a shadow slower than the champion made every request wait
    for it. ``predict`` now returns while the shadow still scores; once ``shadow_max_waiting`` requests wait for
    it, a batch goes without its answers (counted, a WARNING); what it was handed is published by ``flush``."""
    model = new_model(("champion", "shadow"))
    rows, _ = agrawal(0, 10, seed=27)
    scoring, go_on = threading.Event(), threading.Event()
    with ModelClient(model, release_settings, emit=True, shadow_max_waiting=25) as client:
        score = client._score

        def slow_shadow(loaded, frame):  # type: ignore[no-untyped-def]
            if loaded.version == 2:
                scoring.set()
                assert go_on.wait(120)
            return score(loaded, frame)

        client._score = slow_shadow  # type: ignore[method-assign]
        answers: list = []

        def serve() -> None:
            answers.append(client.predict(rows, request_ids=[f"s0-{j}" for j in range(10)]))
            assert scoring.wait(30)  # the shadow holds the first batch ...
            for i in range(1, 6):  # ... two more wait for it (20 requests); the next three would pass 25
                answers.append(client.predict(rows, request_ids=[f"s{i}-{j}" for j in range(10)]))

        caller = threading.Thread(target=serve)
        with caplog.at_level("WARNING", logger="driftloop.serving"):
            caller.start()
            caller.join(timeout=60)
            assert not caller.is_alive(), "predict waited for the shadow"
            assert len(answers) == 6 and all(set(a.versions) == {1} for a in answers)
            assert client.shadow_dropped == 30
            go_on.set()
            client.flush()
    events = emitted(release_settings, model)
    served = sorted(e["request_id"] for e in events if e.get("served", True))
    shadow = sorted(e["request_id"] for e in events if e.get("served") is False)
    assert served == sorted(f"s{i}-{j}" for i in range(6) for j in range(10))
    assert shadow == sorted(f"s{i}-{j}" for i in range(3) for j in range(10))
    dropped = [r for r in caplog.records if r.msg.startswith("the shadow version cannot keep up")]
    assert len(dropped) == 1 and dropped[0].fields["dropped"] == 10  # once a minute at most: at the first drop


def test_a_frame_the_caller_changes_after_predict_is_scored_by_the_shadow_as_it_was(
    release_settings: Settings, new_model
) -> None:
    """The shadow scores later, on its own thread: it scores the rows as they were when ``predict`` was called,
    not as a caller that reuses its frame has made them since."""
    model = new_model(("champion", "shadow"))
    rows, _ = agrawal(0, 200, seed=28)
    frame = pd.DataFrame(rows)
    go_on = threading.Event()
    with ModelClient(model, release_settings, emit=True) as client:
        score = client._score
        alone = score(client._serving.shadow, frame.copy())[0].tolist()  # type: ignore[arg-type]

        def held(loaded, frame):  # type: ignore[no-untyped-def]
            if loaded.version == 2:
                assert go_on.wait(60)
            return score(loaded, frame)

        client._score = held  # type: ignore[method-assign]
        client.predict(frame, request_ids=[f"f{i}" for i in range(200)])
        frame[:] = frame.iloc[::-1].to_numpy()  # the caller's buffer, filled with other rows
        go_on.set()
        client.flush()
    shadow = {e["request_id"]: e["prediction"] for e in emitted(release_settings, model) if e.get("served") is False}
    assert [shadow[f"f{i}"] for i in range(200)] == alone


def test_a_device_this_machine_cannot_run_is_refused_before_anything_loads_and_auto_serves(
    release_settings: Settings, new_model
) -> None:
    """``device="cuda"`` on a machine without a GPU raised torch's ``AssertionError`` ("Torch not compiled with
    CUDA enabled") out of the first version's load, and a misspelt device torch's list of every backend. Both
    are a ``ServingDeviceError`` saying what to use; ``"auto"`` takes a GPU where torch sees one, else the CPU."""
    model = new_model(("champion",))
    for device, says in (("cuda:99", "cannot run here"), ("gpu", "Expected one of cpu"), ("meta", "no values")):
        with pytest.raises(ServingDeviceError, match=says) as refused:
            ModelClient(model, release_settings, device=device, watch=False)
        assert "use 'cpu', or 'auto'" in str(refused.value)
    rows, _ = agrawal(0, 5, seed=29)
    with ModelClient(model, release_settings, device="auto", watch=False) as client:
        assert client.device in ("cpu", "cuda:0") and len(client.predict(rows).values) == 5


def _serve_in_child(client: ModelClient, rows: list, k: int, promoted, results) -> None:  # type: ignore[no-untyped-def,type-arg]
    """A pre-fork server's worker: serve a batch, then requests until the promotion made after the fork serves."""
    first = client.predict(rows, request_ids=[f"child{k}-{i}" for i in range(len(rows))])
    promoted.wait(60)
    deadline, answered = time.monotonic() + 60, set(first.versions)
    while 2 not in answered and time.monotonic() < deadline:
        time.sleep(0.2)
        answered |= set(client.predict(rows[:1], request_ids=[f"child{k}-after-{time.monotonic()}"]).versions)
    client.flush()
    results.put((k, len(first.values), 2 in answered))


def test_a_client_made_before_a_fork_serves_publishes_and_follows_promotions_in_every_child(
    release_settings: Settings, new_model
) -> None:
    """gunicorn ``--preload`` and uWSGI load the application, a warm-up prediction included, and fork the
    workers: every worker hung on its first request (torch's thread pool stayed in the parent), and would
    neither have published a prediction nor heard of a promotion (the threads that do stayed there too)."""
    model = new_model(("champion", "candidate"))
    rows, _ = agrawal(0, 40, seed=31)
    context = multiprocessing.get_context("fork")
    promoted, results = context.Event(), context.Queue()
    with ModelClient(model, release_settings, emit=True) as client:
        assert set(client.predict(rows[:5], request_ids=[f"parent-{i}" for i in range(5)]).versions) == {1}
        workers = [
            context.Process(target=_serve_in_child, args=(client, rows, k, promoted, results), daemon=True)
            for k in (0, 1)
        ]
        for worker in workers:
            worker.start()
        registry = ModelRegistry(release_settings)
        registry.promote(model, 2, "test")
        registry.close()
        promoted.set()
        try:
            for worker in workers:
                worker.join(90)
            assert [w.exitcode for w in workers] == [0, 0]  # None: still hanging
        finally:
            for worker in workers:
                worker.kill()
        # each served its batch (v1, or v2 where it had read the promotion already), then v2
        assert sorted(results.get(timeout=5) for _ in workers) == [(0, len(rows), True), (1, len(rows), True)]
        wait_for(lambda: client.version == 2, timeout_s=30, what="the parent to follow the promotion too")
    served = [e for e in emitted(release_settings, model) if e["request_id"].startswith("child")]
    first_batches = sorted(e["request_id"] for e in served if "after" not in e["request_id"])
    assert first_batches == sorted(f"child{k}-{i}" for k in (0, 1) for i in range(len(rows)))
    assert {e["model_version"] for e in served if "after" in e["request_id"]} >= {2}


def _predict_in_child(client: ModelClient, rows: list, results) -> None:  # type: ignore[no-untyped-def,type-arg]
    try:
        client.predict(rows)
        results.put("served")
    except ServingDeviceError as exc:
        results.put(str(exc))


def test_a_client_made_on_a_gpu_before_a_fork_says_in_the_child_what_to_do(
    release_settings: Settings, new_model
) -> None:
    """CUDA cannot start again in a forked process: a client made on a GPU (its device set so here, on a machine
    without one) refuses to serve in a forked worker with a ServingDeviceError that says how to make it there,
    rather than fail in torch."""
    model = new_model(("champion",))
    rows, _ = agrawal(0, 5, seed=38)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    with ModelClient(model, release_settings, watch=False) as client:
        client.device = "cuda:0"  # as serving_device("auto") gives where torch sees a GPU
        worker = context.Process(target=_predict_in_child, args=(client, rows, results), daemon=True)
        worker.start()
        worker.join(60)
        client.device = "cpu"
    said = results.get(timeout=5)
    assert "CUDA cannot be used again in a forked process" in said and "without --preload" in said


def test_a_server_that_exits_without_closing_its_client_publishes_every_answer_its_shadow_included(
    stack: PrivateStack, release_settings: Settings, new_model
) -> None:
    """Servers seldom close a client made at start-up: at the exit its open envelopes and the answers its
    shadow still had to score were lost, though every request had been served."""
    model = new_model(("champion", "shadow"))
    env = stack.with_env(
        DRIFTLOOP_SPECS_DIR=str(release_settings.spec_directory), DRIFTLOOP_ARTIFACTS=str(release_settings.artifacts)
    ).process_env()
    run = subprocess.run(
        [sys.executable, "-m", "tests.release.exiting_client", model, "400"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    events = emitted(release_settings, model)
    ids = sorted(f"x{i}" for i in range(400))
    assert sorted(e["request_id"] for e in events if e.get("served", True)) == ids
    assert sorted(e["request_id"] for e in events if e.get("served") is False) == ids


def test_a_client_started_while_clickhouse_is_away_serves_the_routing_saved_at_the_last_change(
    stack: PrivateStack, release_settings: Settings, new_model
) -> None:
    """The routing lives in ClickHouse: a model server (re)started during a ClickHouse outage, a pod rolled or
    scaled out, failed to start at all. It now serves the routing the registry saved beside the artifacts at
    the model's last change, canary share included, and follows ClickHouse once it answers."""
    model = new_model(("champion", "canary"))
    port = release_settings.clickhouse.port
    proxy = TcpProxy(port)  # not started: nothing answers on its port
    away = stack.with_env(
        DRIFTLOOP_CLICKHOUSE_URL=stack.env["DRIFTLOOP_CLICKHOUSE_URL"].replace(f":{port}/", f":{proxy.port}/"),
        DRIFTLOOP_SPECS_DIR=str(release_settings.spec_directory),
        DRIFTLOOP_ARTIFACTS=str(release_settings.artifacts),
    ).settings
    rows, _ = agrawal(0, 400, seed=34)
    with ModelClient(model, away) as client:
        assert client.routing == {"champion": 1, "shadow": None, "canary": 2, "canary_share": CANARY_SHARE}
        assert client.routing_stale
        assert set(client.predict(rows).versions) == {1, 2}
        proxy.start()
        try:
            wait_for(lambda: not client.routing_stale, timeout_s=30, what="the client to read ClickHouse again")
        finally:
            proxy.stop()
    saved = Path(release_settings.artifact_location) / model / SAVED_ROUTING
    saved.unlink()  # as for a model last changed before routings were saved
    with pytest.raises(UnreachableError, match=f"No routing of {model} is saved"):
        ModelClient(model, away, watch=False)


def test_a_client_started_while_kafka_and_clickhouse_are_away_reads_clickhouse_once_it_answers(
    stack: PrivateStack, release_settings: Settings, new_model
) -> None:
    """A model server started during an outage of both: it serves the saved routing, and reads ClickHouse
    again once that answers, Kafka still away (before, its thread waited for Kafka first: the routing stayed
    stale, a promotion made meanwhile unserved, until Kafka answered)."""
    model = new_model(("champion", "canary"))
    port = release_settings.clickhouse.port
    proxy = TcpProxy(port)  # not started: nothing answers on its port
    away = stack.with_env(
        DRIFTLOOP_CLICKHOUSE_URL=stack.env["DRIFTLOOP_CLICKHOUSE_URL"].replace(f":{port}/", f":{proxy.port}/"),
        DRIFTLOOP_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",  # nothing listens there
        DRIFTLOOP_SPECS_DIR=str(release_settings.spec_directory),
        DRIFTLOOP_ARTIFACTS=str(release_settings.artifacts),
    ).settings
    with ModelClient(model, away) as client:
        assert client.routing_stale and client.routing["canary"] == 2
        proxy.start()
        try:
            wait_for(lambda: not client.routing_stale, timeout_s=30, what="the client to read ClickHouse again")
        finally:
            proxy.stop()


def test_a_busy_models_client_spreads_its_predictions_over_partitions(release_settings: Settings, new_model) -> None:
    """A model too busy for one streams worker is spread over partitions (``docs/scaling.md``); a model served
    through the client could not be: it sent every prediction under the model's own key, on one partition."""
    model = new_model(("champion",))
    rows, _ = agrawal(0, 400, seed=35)
    with ModelClient(model, release_settings, emit=True, watch=False, spread=4, compression="zstd") as client:
        for start in range(0, 400, 20):
            client.predict(rows[start : start + 20], request_ids=[f"s{i}" for i in range(start, start + 20)])
            client.flush()  # an envelope a batch: the keys take turns
    partitions: set[int] = set()
    events = emitted(release_settings, model, partitions=partitions)
    assert sorted(e["request_id"] for e in events) == sorted(f"s{i}" for i in range(400))
    assert len(partitions) == release_settings.topic_partitions  # the keys land on every partition (3 here)


def _serve_in_spawned_process(client: ModelClient, rows: list) -> None:  # type: ignore[type-arg]
    with client:
        client.predict(rows, request_ids=[f"spawned-{i}" for i in range(len(rows))])


def test_a_client_handed_to_a_spawned_process_is_made_there_anew_and_serves(
    release_settings: Settings, new_model
) -> None:
    """multiprocessing's spawn and forkserver starts (macOS's default, and Linux's from Python 3.14) pickle a
    process's arguments: a client could not be handed to a worker process at all."""
    model = new_model(("champion",))
    rows, _ = agrawal(0, 30, seed=36)
    with ModelClient(model, release_settings, emit=True, watch=False) as client:
        worker = multiprocessing.get_context("spawn").Process(target=_serve_in_spawned_process, args=(client, rows))
        worker.start()
        worker.join(120)
        assert worker.exitcode == 0
    served = emitted(release_settings, model)
    assert sorted(e["request_id"] for e in served) == sorted(f"spawned-{i}" for i in range(30))
    assert {e["model_version"] for e in served} == {1}
