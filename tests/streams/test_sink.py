"""The ClickHouse sink against the real server: retries while it is away, isolates rows it refuses."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest
from clickhouse_driver import errors as ch_errors

from driftloop.infra.clickhouse.client import connect
from driftloop.streams.batch import ColumnBatch, NumberRows
from driftloop.streams.join import OutcomeJoin
from driftloop.streams.sink import Backoff, ClickHouseSink, is_transient
from tests.stack_fixtures import PrivateStack, TcpProxy, wait_for

pytestmark = pytest.mark.integration


def outcomes(model: str, n: int, start: int = 0) -> ColumnBatch:
    return ColumnBatch(
        "outcomes",
        {
            "event_id": [f"{model}-{i}" for i in range(start, start + n)],
            "model": [model] * n,
            "request_id": [f"r{i}" for i in range(start, start + n)],
            "ts": [1_790_000_000] * n,
            "ts_ms": [1_790_000_000_000] * n,
            "label": ["1"] * n,
            "label_num": [1.0] * n,
        },
    )


def rows_of(stack: PrivateStack, model: str) -> int:
    return connect(stack.settings.clickhouse).execute(
        "SELECT count() FROM outcomes FINAL WHERE model = %(m)s", {"m": model}
    )[0][0]


def test_a_write_waits_while_clickhouse_is_away_and_lands_once_it_is_back(stack: PrivateStack) -> None:
    model = "sink-" + uuid.uuid4().hex[:8]
    proxy = TcpProxy(stack.settings.clickhouse.port)  # ClickHouse as the sink sees it: not there yet
    endpoint = stack.settings.clickhouse.model_copy(update={"port": proxy.port})
    sink = ClickHouseSink(endpoint, backoff=Backoff(initial_s=0.05, max_s=0.2))
    result: list[object] = []
    writer = threading.Thread(target=lambda: result.append(sink.write_blocking(outcomes(model, 500))))
    writer.start()
    try:
        wait_for(lambda: sink.metrics.retries >= 3, timeout_s=10, what="retries")
        assert writer.is_alive() and sink.metrics.rows_waiting == 500  # held back, not dropped
        proxy.start()
        writer.join(timeout=10)
        assert result == [[]] and rows_of(stack, model) == 500
        assert sink.metrics.rows_written["outcomes"] == 500 and sink.metrics.rows_waiting == 0
        # the connection breaks mid-life: the next write reconnects
        proxy.stop()
        proxy.start()
        assert sink.write_blocking(outcomes(model, 10, start=500)) == []
        assert rows_of(stack, model) == 510
    finally:
        proxy.stop()
        sink.close()


def test_rows_clickhouse_refuses_are_isolated_and_the_rest_written(stack: PrivateStack) -> None:
    model = "sink-" + uuid.uuid4().hex[:8]
    batch = outcomes(model, 9)
    batch.columns["ts"][4] = 2**40  # DateTime cannot hold it: the driver refuses this row
    sink = ClickHouseSink(stack.settings.clickhouse)
    try:
        rejected = sink.write_blocking(batch)
    finally:
        sink.close()
    assert [r.index for r in rejected] == [4] and "ClickHouse refused the row" in rejected[0].reason
    assert rows_of(stack, model) == 8


def test_a_closed_sink_stops_waiting(stack: PrivateStack) -> None:
    proxy = TcpProxy(stack.settings.clickhouse.port)
    sink = ClickHouseSink(
        stack.settings.clickhouse.model_copy(update={"port": proxy.port}), backoff=Backoff(initial_s=0.05, max_s=0.1)
    )
    errors: list[BaseException] = []

    def write() -> None:
        try:
            sink.write_blocking(outcomes("closed", 3))
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.3)
    sink.close()
    writer.join(timeout=5)
    assert not writer.is_alive() and "sink closed while 3 outcomes rows waited" in str(errors[0])


def test_arrays_empty_in_every_row_are_left_to_the_server_unless_they_have_a_default(stack: PrivateStack) -> None:
    table = "sink_arrays_" + uuid.uuid4().hex[:8]
    client = connect(stack.settings.clickhouse)
    client.execute(
        f"CREATE TABLE {table} (k String, plain Array(String), defaulted Array(String) DEFAULT ['d'],"
        " n Nested(name String, value Float64)) ENGINE = MergeTree ORDER BY k"
    )
    sink = ClickHouseSink(stack.settings.clickhouse)
    try:
        empty = ColumnBatch(
            table, {"k": ["a", "b"], "plain": [[], []], "defaulted": [[], []], "n.name": [[], []], "n.value": [[], []]}
        )
        assert list(sink._columns_to_send(empty)) == ["k", "defaulted"]  # the plain arrays are left out
        sink.write_blocking(empty)
        mixed = ColumnBatch(
            table,
            {
                "k": ["c", "d"],
                "plain": [[], ["x"]],
                "defaulted": [[], []],
                "n.name": [["f"], []],
                "n.value": [[1.5], []],
            },
        )
        assert list(sink._columns_to_send(mixed)) == list(mixed.columns)
        sink.write_blocking(mixed)
        values = NumberRows(np.array([[2.5], [3.5]]))
        matrix = ColumnBatch(
            table, {"k": ["e", "f"], "plain": [[], []], "defaulted": [[], []], "n.name": [["g"]] * 2, "n.value": values}
        )
        assert list(sink._columns_to_send(matrix)) == ["k", "defaulted", "n.name", "n.value"]
        sink.write_blocking(matrix)
        no_values = NumberRows(np.empty((1, 0)))
        narrow = ColumnBatch(
            table, {"k": ["g"], "plain": [[]], "defaulted": [[]], "n.name": [[]], "n.value": no_values}
        )
        assert list(sink._columns_to_send(narrow)) == ["k", "defaulted"]
        sink.write_blocking(narrow)
    finally:
        sink.close()
    assert client.execute(f"SELECT k, plain, defaulted, n.name, n.value FROM {table} ORDER BY k") == [
        ("a", [], [], [], []),
        ("b", [], [], [], []),
        ("c", [], [], ["f"], [1.5]),
        ("d", ["x"], [], [], []),
        ("e", [], [], ["g"], [2.5]),
        ("f", [], [], ["g"], [3.5]),
        ("g", [], [], [], []),
    ]
    client.execute(f"DROP TABLE {table}")


def test_the_outcome_join_waits_out_clickhouse_instead_of_failing_the_batch(
    stack: PrivateStack, caplog: pytest.LogCaptureFixture
) -> None:
    """A lookup that meets ClickHouse away (a server restarting, or a cluster's entry server failing over) is
    retried like the sink's writes: a failed lookup would leave its batch unacknowledged until a rebalance."""
    proxy = TcpProxy(stack.settings.clickhouse.port)
    endpoint = stack.settings.clickhouse.model_copy(update={"port": proxy.port})
    join = OutcomeJoin(endpoint, ClickHouseSink(endpoint, backoff=Backoff(initial_s=0.05, max_s=0.2)), window_s=60)
    model = "join-" + uuid.uuid4().hex[:6]
    result: list[object] = []
    batch = outcomes(model, 3)
    looking = threading.Thread(target=lambda: result.append(join._lookup(batch["model"], batch["request_id"]).served))
    looking.start()
    try:
        retries = lambda: sum("outcome join; retrying" in r.getMessage() for r in caplog.records)  # noqa: E731
        wait_for(lambda: retries() >= 3, timeout_s=10, what="the lookup retried")
        assert looking.is_alive() and result == []  # waiting, not failed
        proxy.start()
        looking.join(timeout=10)
        assert result == [{}]  # answered once ClickHouse was there: no prediction of these requests yet
    finally:
        join.close()
        proxy.stop()


def test_events_with_nulls_land_as_the_field_rules_rows(stack: PrivateStack) -> None:
    """Envelopes whose events null some features now and then are kept as matrices with gaps: in ClickHouse
    each row holds what the field rules give its event (the values sent, the nulls in ``missing``)."""
    import json

    from driftloop.streams.batch import GappedNumberRows, GappedTextRows
    from driftloop.streams.decode import Incoming, decode_predictions

    model = "nulls-" + uuid.uuid4().hex[:8]
    rng = np.random.default_rng(5)
    envelopes = []
    for m in range(3):
        events = []
        for i in range(200):
            features: dict[str, object] = {"x": round(float(rng.normal()), 6), "y": 1.5, "k": f"c{i % 7}"}
            features["never"] = None
            if m and rng.random() < 0.2:  # the first envelope has no null but "never": whole rows
                features[str(rng.choice(["x", "y", "k"]))] = None
            events.append({"model": model, "request_id": f"r{m}-{i}", "ts": 1_790_000_000 + i, "features": features,
                           "prediction": 1})  # fmt: skip
        envelopes.append(json.dumps({"events": events}).encode())
    decoded = decode_predictions([Incoming(v, "predictions", 0, k) for k, v in enumerate(envelopes)])
    assert not decoded.dead
    assert type(decoded.rows["num.value"]) is GappedNumberRows and type(decoded.rows["cat.value"]) is GappedTextRows
    assert ClickHouseSink(stack.settings.clickhouse).write_blocking(decoded.rows) == []
    back = connect(stack.settings.clickhouse).execute(
        "SELECT request_id, num.name, num.value, cat.name, cat.value, missing FROM predictions FINAL"
        " WHERE model = %(m)s ORDER BY request_id",
        {"m": model},
    )
    expected = {}
    for envelope in envelopes:
        for event in json.loads(envelope)["events"]:
            f = event["features"]
            numbers = [(k, v) for k, v in f.items() if isinstance(v, float)]
            texts = [(k, v) for k, v in f.items() if isinstance(v, str)]
            expected[event["request_id"]] = (
                [k for k, _ in numbers], [v for _, v in numbers], [k for k, _ in texts], [v for _, v in texts],
                [k for k, v in f.items() if v is None],
            )  # fmt: skip
    assert len(back) == 600
    assert {row[0]: tuple(list(c) for c in row[1:]) for row in back} == expected


def test_a_block_of_too_many_weeks_is_written_in_halves_not_retried_for_ever() -> None:
    """ClickHouse (19.3 on) answers TOO_MANY_PARTS both to inserts that outrun its merges (wait and retry) and to
    one block of rows from more than `max_partitions_per_insert_block` weeks (a backfill of years): retried, that
    one never goes in, and the worker stalled on it. It is a refusal, which the sink answers by writing halves.
    (The 18.16 server here has no such limit: the messages are current ClickHouse's.)"""
    too_many_weeks = ch_errors.ServerException(
        "DB::Exception: Too many partitions for single INSERT block (more than 100). The limit is controlled by "
        "'max_partitions_per_insert_block' setting.",
        code=ch_errors.ErrorCodes.TOO_MANY_PARTS,
    )
    merges_behind = ch_errors.ServerException(
        "DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts.",
        code=ch_errors.ErrorCodes.TOO_MANY_PARTS,
    )
    assert not is_transient(too_many_weeks) and is_transient(merges_behind)
