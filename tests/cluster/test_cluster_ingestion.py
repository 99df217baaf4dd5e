"""The worker on a ClickHouse cluster of two replicas: `driftloop stack up` makes the schema on both, events land
through the Distributed tables, the server the worker writes to is killed mid-stream and ingestion goes on
through the other (``alt_hosts``); the killed replica catches up when it returns, and every event is there once."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from driftloop.infra.clickhouse.cluster import LOCAL
from driftloop.infra.kafka.lag import group_lag
from driftloop.infra.stack import stack as local_stack
from tests.cluster.local_cluster import LocalCluster
from tests.reliability.scenarios import WORKER_ENV, SoakResult, ledger, produce, wait_until_landed
from tests.stack_fixtures import PrivateStack, WorkerProcess, private_stack_env, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]  # waits add up to more than the suite's 300 s

DATABASE = "driftloop"
EVENTS = 20_000


def test_a_replica_killed_mid_stream_stops_nothing_and_catches_up(two_replicas: LocalCluster, tmp_path: Path) -> None:
    stack = PrivateStack(
        private_stack_env(tmp_path / "stack")
        | {"DRIFTLOOP_CLICKHOUSE_URL": two_replicas.url(DATABASE), "DRIFTLOOP_CLICKHOUSE_CLUSTER": two_replicas.name}
    )
    first, second = two_replicas.nodes
    local_stack.start_service(stack.settings, "broker")  # ClickHouse is the cluster's, not the embedded one
    worker = None
    try:
        up = stack.with_env(DRIFTLOOP_EMBEDDED="false").run_cli("stack", "up", timeout_s=300)
        assert up.returncode == 0, up.stdout + up.stderr
        worker = WorkerProcess(stack, tmp_path / "worker.log", **WORKER_ENV)
        model = "cluster-" + uuid.uuid4().hex[:6]
        producer = threading.Thread(target=produce, args=(stack, model, EVENTS, EVENTS / 40), daemon=True)
        producer.start()

        def landed_on(node: object, table: str) -> int:
            query = f"SELECT uniqExact(event_id) FROM {DATABASE}.{table}{LOCAL} WHERE model = %(m)s"
            return int(node.client().execute(query, {"m": model})[0][0])  # type: ignore[attr-defined]

        wait_for(lambda: landed_on(first, "predictions") >= EVENTS // 4, timeout_s=120, what="a quarter landed")
        killed_at = landed_on(first, "predictions")
        first.kill()  # the server in DRIFTLOOP_CLICKHOUSE_URL, mid-stream
        assert killed_at < EVENTS // 2, killed_at  # the stream was still coming

        # Ingestion goes on through the other replica: everything sent is written there and committed (the
        # worker commits a batch once it is written), while the first server is still down.
        producer.join(120)
        settings = stack.settings
        topics = [settings.topics.predictions, settings.topics.outcomes]

        def consumed() -> bool:
            assert worker.alive, worker.output()
            lags = group_lag(settings, {settings.worker_group: topics})
            return len(lags) == 2 and all(lag.started and lag.lag == 0 for lag in lags)

        wait_for(consumed, timeout_s=240, interval_s=1, what="every event written and committed, one server down")
        assert landed_on(second, "predictions") > killed_at + EVENTS // 2
        # (rows acknowledged by the first server alone just before it died wait there: with two replicas an
        # insert is acknowledged by one; see docs/clickhouse-cluster.md)

        first.start()  # back with its data: it fetches what the other replica took meanwhile, and vice versa

        def alive() -> None:
            assert worker.alive, worker.output()

        wait_until_landed(stack, model, EVENTS, alive, timeout_s=240)
        result = ledger(stack, model, SoakResult("replica killed", EVENTS))
        assert (result.predictions_landed, result.labeled_landed, result.duplicates) == (EVENTS, EVENTS, 0), result
        assert result.detector_events >= EVENTS, result  # detector state saved through the cluster as well
        for node in (first, second):
            for table in ("predictions", "outcomes", "labeled"):
                wait_for(lambda n=node, t=table: landed_on(n, t) == EVENTS, timeout_s=120, what=f"{table} on both")
    finally:
        if worker is not None:
            worker.stop()
        local_stack.down(stack.settings)
