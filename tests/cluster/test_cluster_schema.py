"""The schema on a two-shard ClickHouse cluster: replicated tables under Distributed ones, created ON CLUSTER,
idempotent, and exactly-once results by event_id when an event is written twice."""

from __future__ import annotations

import asyncio

import pytest

from driftloop.infra.clickhouse.client import connect, provision_schema
from driftloop.infra.clickhouse.cluster import LOCAL
from driftloop.infra.clickhouse.migrations import discover
from driftloop.infra.settings import ClickHouseEndpoint
from driftloop.streams.batch import ColumnBatch
from driftloop.streams.join import OutcomeJoin
from driftloop.streams.sink import ClickHouseSink
from tests.cluster.local_cluster import LocalCluster

pytestmark = pytest.mark.cluster

DATABASE = "driftloop"


def endpoint(cluster: LocalCluster) -> ClickHouseEndpoint:
    return ClickHouseEndpoint.parse(cluster.url(DATABASE)).model_copy(update={"cluster": cluster.name})


def test_the_schema_on_two_shards_is_replicated_distributed_and_exactly_once(two_shards: LocalCluster) -> None:
    ep = endpoint(two_shards)
    report = provision_schema(ep)
    assert report.applied[-1] == discover()[-1].name

    for node in two_shards.nodes:  # every server has every table, in its cluster form
        tables = dict(node.client().execute(f"SELECT name, engine FROM system.tables WHERE database = '{DATABASE}'"))
        data = sorted(name[: -len(LOCAL)] for name in tables if name.endswith(LOCAL))
        assert "predictions" in data and "detector_state" in data and "schema_migrations" in data, tables
        for table in data:
            assert tables[table + LOCAL].startswith("Replicated"), (node.address, table, tables[table + LOCAL])
            assert tables[table] == "Distributed", (node.address, table, tables[table])
        assert tables["scorecard"] == "View" and tables["prediction_requests_mv"] == "MaterializedView"
        assert not [name for name in tables if "__" in name], tables  # no rebuild left behind

    # idempotent: nothing applied again, and the Distributed tables are not made again
    def created() -> list[tuple]:
        query = "SELECT name, metadata_modification_time FROM system.tables WHERE database = %(d)s ORDER BY name"
        return two_shards.nodes[0].client().execute(query, {"d": DATABASE})

    before = created()
    assert provision_schema(ep).applied == ()
    assert created() == before

    # 1,000 events written, then all of them again (a redelivery): each counted once, over both shards
    rows = [(f"e{i}", "m", 1_790_000_000 + i, (1_790_000_000 + i) * 1000, "1") for i in range(1000)]
    client = connect(ep)
    try:
        insert = "INSERT INTO predictions (event_id, model, ts, ts_ms, prediction) VALUES"
        client.execute(insert, rows)
        client.execute(insert, rows[::-1])
        assert client.execute("SELECT count(), uniqExact(event_id) FROM predictions FINAL") == [(1000, 1000)]
        assert client.execute("SELECT count() FROM prediction_requests FINAL")[0][0] == 1000  # the view's rows too
        for (view,) in client.execute(
            "SELECT name FROM system.tables WHERE database = %(d)s AND engine = 'View'", {"d": DATABASE}
        ):
            client.execute(f"SELECT * FROM {view} LIMIT 1")  # every view answers through the cluster
        # the outcome join through the cluster: each outcome finds its prediction on its shard (the external
        # table of requests goes with the query), and the labeled rows take their prediction's features
        client.execute(
            "INSERT INTO predictions (event_id, model, request_id, ts, ts_ms, num.name, num.value, prediction) VALUES",
            [(f"j{i}", "j", f"r{i}", 1_790_000_000, 1_790_000_000_000, ["x"], [float(i)], "1") for i in range(200)],
        )
        sink = ClickHouseSink(ep)
        join = OutcomeJoin(ep, sink, window_s=60)
        outcomes = {"event_id": [f"o{i}" for i in range(200)], "model": ["j"] * 200}
        outcomes |= {"request_id": [f"r{i}" for i in range(200)], "ts": [1_790_000_100] * 200}
        outcomes |= {"ts_ms": [1_790_000_100_000] * 200, "label": ["1"] * 200, "label_num": [1.0] * 200}
        try:
            result = asyncio.run(join.join(ColumnBatch("outcomes", outcomes | {"value": [0.0] * 200}), [0] * 200))
        finally:
            join.close()
            sink.close()
        assert (len(result.labeled), result.waiting) == (200, 0)
        assert client.execute(
            "SELECT count(), countIf(num.value = [toFloat64(toUInt32(substring(request_id, 2)))]) FROM labeled FINAL"
        ) == [(200, 200)]
        # corrected labels (outcomes of their own event ids) land on their request's shard and replace the first
        corrections = outcomes | {"event_id": [f"c{i}" for i in range(200)], "label": ["0"] * 200}
        corrections |= {"ts_ms": [1_790_000_900_000] * 200, "label_num": [0.0] * 200, "value": [0.0] * 200}
        sink, join = ClickHouseSink(ep), None
        try:
            join = OutcomeJoin(ep, sink, window_s=60)
            asyncio.run(join.join(ColumnBatch("outcomes", corrections), [0] * 200))
        finally:
            if join is not None:
                join.close()
            sink.close()
        assert client.execute("SELECT count(), countIf(label = '0') FROM labeled FINAL") == [(200, 200)]
    finally:
        client.disconnect()
    on_shards = [
        node.client().execute(f"SELECT count() FROM {DATABASE}.predictions{LOCAL} FINAL WHERE model = 'm'")[0][0]
        for node in two_shards.nodes
    ]
    assert sum(on_shards) == 1000 and min(on_shards) > 300, on_shards  # each copy on its event's shard
