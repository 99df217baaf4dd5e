"""A label corrected later (a chargeback turning "legit" into "fraud", a reviewer's verdict replacing an
automatic one) is a second outcome for the same request: ``labeled`` keeps one row a prediction, the latest
outcome's, and everything that reads it (the views, training's fetch and count, the release gate) counts the
request once, with its corrected label. Real ClickHouse; the ingestion driven without Faust."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import pytest

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.clickhouse.migrations import apply_migrations, discover, table_engine
from driftloop.infra.settings import Settings
from driftloop.release.evidence import live_rows, paired
from driftloop.retrain.dataset import count_labels, fetch_labeled
from driftloop.streams.decode import Incoming
from driftloop.streams.ingestion import Ingestion
from tests.stack_fixtures import PrivateStack
from tests.streams.test_waiting_outcomes import Labeled

pytestmark = pytest.mark.integration

TS = 1_790_000_000
REQUESTS = 60
LATER = range(20)  # corrected days later
AT_ONCE = range(40, 50)  # corrected in the first label's envelope
WAITING = range(50, 55)  # both labels sent before their prediction: joined in one batch
CORRECTED = {*LATER, *AT_ONCE, *WAITING}


def envelope(topic: str, events: list[dict], offset: int) -> list[Incoming]:
    return [Incoming(json.dumps({"events": events}).encode(), topic, 0, offset)]


@pytest.fixture()
def ingestion(stack: PrivateStack) -> Iterator[Ingestion]:
    labeled = Labeled()
    handler = Ingestion(Settings.from_env(stack.env), labeled, [labeled])
    yield handler
    handler.close()


def test_a_corrected_label_replaces_the_first_everywhere_labeled_rows_are_read(
    stack: PrivateStack, ingestion: Ingestion
) -> None:
    model = "corrected-" + uuid.uuid4().hex[:8]
    served = [
        {"model": model, "request_id": f"r{i}", "ts": TS + i, "features": {"x": float(i)}, "prediction": i % 2,
         "model_version": 1}
        for i in range(REQUESTS)
    ]  # fmt: skip
    shadow = [e | {"served": False, "model_version": 2, "prediction": 1} for e in served]
    first = [{"model": model, "request_id": f"r{i}", "ts": TS + 60 + i, "label": i % 2} for i in range(REQUESTS)]
    corrections = [  # the opposite label: every corrected served prediction is now wrong
        {"model": model, "request_id": f"r{i}", "ts": TS + 86_400 * 3 + i, "label": 1 - i % 2} for i in CORRECTED
    ]
    first += [c for c in corrections if int(c["request_id"][1:]) in AT_ONCE]  # after their first in one envelope
    waiting = [c for c in corrections if int(c["request_id"][1:]) in WAITING]
    corrections = [c for c in corrections if int(c["request_id"][1:]) in LATER]
    later = [e for e in served + shadow if int(e["request_id"][1:]) >= WAITING.start]  # after their outcomes

    async def run() -> None:
        await ingestion.on_prediction_messages(
            envelope("predictions", [e for e in served + shadow if e not in later], 0)
        )
        await ingestion.on_outcome_messages(envelope("outcomes", first, 0))
        await ingestion.on_outcome_messages(envelope("outcomes", first[:5], 1))  # delivered twice
        await ingestion.on_outcome_messages(envelope("outcomes", waiting, 2))
        await ingestion.on_prediction_messages(envelope("predictions", later, 1))  # joins what waited, at once
        await ingestion.on_outcome_messages(envelope("outcomes", corrections, 3))
        await ingestion.on_outcome_messages(envelope("outcomes", first[:5], 4))  # the corrected ones, sent again

    asyncio.run(run())
    client = connect(stack.settings.clickhouse)
    try:

        def one(sql: str) -> tuple:
            return client.execute(sql, {"m": model})[0]

        rows, right, shadows, shadow_right = one(
            "SELECT countIf(served = 1), sumIf(correct, served = 1), countIf(served = 0), sumIf(correct, served = 0) "
            "FROM labeled FINAL WHERE model = %(m)s"
        )
        assert (rows, right) == (REQUESTS, REQUESTS - len(CORRECTED))
        # the shadow always said 1: right where the label is 1 (odd requests, and the even ones corrected)
        expected_shadow = sum(1 for i in range(REQUESTS) if (1 - i % 2 if i in CORRECTED else i % 2) == 1)
        assert (shadows, shadow_right) == (REQUESTS, expected_shadow)
        labeled, accuracy = one(
            "SELECT sum(labeled), sum(accuracy * labeled) / sum(labeled) FROM model_accuracy "
            "WHERE model = %(m)s AND model_version = 1"
        )
        assert labeled == REQUESTS and accuracy == pytest.approx((REQUESTS - len(CORRECTED)) / REQUESTS)
        (scorecard_rows,) = one("SELECT sum(labeled_rows) FROM scorecard WHERE model = %(m)s AND version = 1")
        assert scorecard_rows == REQUESTS
        live = live_rows(client, model, 1, 0, metric="accuracy")
        assert live.metric.n == REQUESTS and live.metric.mean == pytest.approx((REQUESTS - len(CORRECTED)) / REQUESTS)
        assert paired(client, model, 1, 2, 0).pairs == REQUESTS
        # training reads without FINAL: before the parts merge, and after
        for merged in (False, True):
            data = fetch_labeled(stack.settings, model, 0, 1_000)
            assert len(data) == REQUESTS == count_labels(stack.settings, model, 0)
            assert data.labels == [str(1 - i % 2 if i in CORRECTED else i % 2) for i in range(REQUESTS)]
            if not merged:
                client.execute("OPTIMIZE TABLE labeled FINAL")
        assert one("SELECT count() FROM labeled WHERE model = %(m)s") == (2 * REQUESTS,)  # one row a prediction
    finally:
        client.disconnect()


def test_a_database_labeled_before_upgrades_in_place_and_keeps_every_row(stack: PrivateStack) -> None:
    """0015 re-keys ``labeled`` by request, versioned by the outcome's time: every row is copied (the correction
    and the label it corrects both, until the parts merge), the weekly partitions stay, and FINAL then keeps each
    request's latest label by its time, not by when it was joined."""
    database = "relabel_" + uuid.uuid4().hex[:8]
    client = connect(stack.settings.clickhouse, database="default")
    try:
        apply_migrations(client, database, [m for m in discover() if m.version <= 14])
        rows = [  # (event_id, request_id, label, served, model_version, outcome time, joined_at)
            ("o1", "r1", "0", 1, 1, TS + 60, TS + 100),
            ("o1@v2", "r1", "0", 0, 2, TS + 60, TS + 100),
            ("c1", "r1", "1", 1, 1, TS + 900, TS + 950),  # r1's correction
            ("c1@v2", "r1", "1", 0, 2, TS + 900, TS + 950),
            ("o1", "r1", "0", 1, 1, TS + 60, TS + 990),  # r1's first label again, joined after its correction
            ("c2", "r2", "0", 1, 1, TS + 900, TS + 100),  # r2's correction, joined before the label it corrects
            ("o2", "r2", "1", 1, 1, TS + 60, TS + 500),
        ]
        client.execute(
            f"INSERT INTO {database}.labeled (event_id, model, request_id, ts, ts_ms, label, served, model_version, "
            "outcome_ts_ms, joined_at) VALUES",
            [(e, "m", r, TS, TS * 1000, label, s, v, at * 1000, joined) for e, r, label, s, v, at, joined in rows],
        )
        upgrade = [m for m in discover() if m.version <= 15]
        assert apply_migrations(client, database, upgrade).applied == ("0015_labeled_a_row_a_prediction",)
        partition_key, engine = table_engine(client, database, "labeled")
        assert partition_key == "toMonday(ts)" and "ReplacingMergeTree(outcome_ts_ms)" in engine
        assert client.execute(f"SELECT count() FROM {database}.labeled")[0][0] == len(rows)
        # each request's latest outcome by its own time, whichever was joined last
        assert sorted(client.execute(f"SELECT event_id, label FROM {database}.labeled FINAL")) == [
            ("c1", "1"),
            ("c1@v2", "1"),
            ("c2", "0"),
        ]
        assert apply_migrations(client, database, upgrade).applied == ()  # once only
    finally:
        client.execute(f"DROP DATABASE IF EXISTS {database}")
        client.disconnect()
