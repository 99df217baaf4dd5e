"""Rows that ClickHouse refuses although they keep the event contract: each is dead-lettered as its own event.

The refusal is real: a private database whose ``predictions.model_version`` is a ``UInt8``, so a version over
255 keeps the contract and is still refused by the server's column type.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from driftloop.infra.clickhouse.client import connect, provision_schema
from driftloop.infra.settings import Settings
from driftloop.streams.decode import Incoming
from driftloop.streams.ingestion import Ingestion
from tests.stack_fixtures import PrivateStack
from tests.streams.test_ingestion_pipeline import DeadLetters

pytestmark = pytest.mark.integration


def test_refused_rows_of_one_envelope_are_dead_lettered_one_by_one(stack: PrivateStack) -> None:
    database = "refused_" + uuid.uuid4().hex[:8]
    url = stack.env["DRIFTLOOP_CLICKHOUSE_URL"].rsplit("/", 1)[0] + "/" + database
    settings = Settings.from_env({**stack.env, "DRIFTLOOP_CLICKHOUSE_URL": url})
    provision_schema(settings.clickhouse)
    client = connect(settings.clickhouse)
    client.execute("ALTER TABLE predictions MODIFY COLUMN model_version UInt8")
    versions = [1, 300, 2, 400, 3]  # 300 and 400 keep the contract; the table refuses them
    events = [
        {"model": "m", "request_id": f"r{i}", "ts": 1_790_000_000 + i, "features": {"x": i}, "prediction": 1,
         "model_version": v}
        for i, v in enumerate(versions)
    ]  # fmt: skip
    events.insert(2, {"model": "m", "request_id": "bad"})  # a contract violation at index 2
    message = Incoming(json.dumps({"events": events}).encode(), "driftloop.predictions", 1, 77)
    dead = DeadLetters()
    handler = Ingestion(settings, dead)
    try:
        asyncio.run(handler.on_prediction_messages([message]))
    finally:
        handler.close()
    by_index = {d.index: d for d in dead.published}
    assert sorted(by_index) == [1, 2, 4]  # refused: events 1 and 4 of the envelope; index 2 broke the contract
    assert json.loads(by_index[1].original)["request_id"] == "r1"
    assert json.loads(by_index[4].original)["request_id"] == "r3"
    assert "ClickHouse refused" in by_index[4].reason
    stored = client.execute(
        "SELECT event_index, reason FROM dead_letters FINAL WHERE source_offset = 77 ORDER BY event_index"
    )
    assert [index for index, _ in stored] == [1, 2, 4]  # three rows, not collapsed into one
    assert sorted(r for (r,) in client.execute("SELECT request_id FROM predictions FINAL")) == ["r0", "r2", "r4"]
    client.execute(f"DROP DATABASE {database}")
    client.disconnect()
