"""The broker watch's decisions, driven by a scripted probe (the real broker restart is in
tests/reliability/test_broker_restart.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from kafka.errors import ClusterAuthorizationFailedError

from driftloop.infra.kafka.topics import TopicReport
from driftloop.infra.settings import Settings
from driftloop.streams.broker_watch import BrokerIncident, BrokerWatch, WrittenOffsets


class Scripted:
    """A broker watch whose probe answers from a script: cluster ids, or exceptions for "away"."""

    def __init__(self, *answers: str | Exception) -> None:
        self.answers = iter(answers)
        self.written = WrittenOffsets()
        self.incidents: list[BrokerIncident] = []
        self.provisioned = 0
        settings = Settings.from_env({"DRIFTLOOP_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
        self.watch = BrokerWatch(settings, self.written, self.on_incident, probe=self.probe, provision=self.provision)

    def probe(self) -> str:
        answer = next(self.answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def on_incident(self, incident: BrokerIncident) -> None:
        self.incidents.append(incident)

    def provision(self) -> TopicReport:
        self.provisioned += 1
        return TopicReport(("p",), (), {})

    def checks(self, n: int) -> list[bool]:
        async def run() -> list[bool]:
            return [await self.watch.check() for _ in range(n)]

        return asyncio.run(run())


def test_an_outage_of_the_same_broker_is_logged_once_and_reported_as_over(caplog: pytest.LogCaptureFixture) -> None:
    s = Scripted("A", OSError("refused"), OSError("refused"), "A")
    s.written.update([("t", 0, 10)])
    with caplog.at_level(logging.WARNING, logger="driftloop.broker"):
        assert s.checks(4) == [True, False, False, True]  # no commit while the broker is away
    assert [r.getMessage() for r in caplog.records] == [
        "Kafka does not answer; the worker keeps its place and reconnects when it is back",
        "Kafka answers again",
    ]
    assert s.watch.metrics.outages == 1 and s.watch.metrics.reachable
    assert s.incidents == [] and s.provisioned == 0
    assert s.written.take() == {("t", 0): 10}  # kept: nothing was lost


def test_a_new_cluster_id_reports_the_loss_window_and_provisions_the_topics() -> None:
    s = Scripted("A", OSError("refused"), "B", "B")
    assert s.checks(1) == [True]
    s.written.update([("t", 0, 10), ("t", 0, 12), ("t", 1, 3)])
    assert s.checks(2) == [False, False]  # away, then a new instance: the old offsets are not committed
    (incident,) = s.incidents
    assert (incident.old_cluster_id, incident.new_cluster_id) == ("A", "B")
    assert incident.lost_from == {("t", 0): 13, ("t", 1): 4}  # the first offsets never written
    assert incident.topics is not None and incident.topics.created == ("p",)
    assert s.provisioned == 1 and s.watch.metrics.incidents == 1
    rows = incident.rows("w", "b:1")
    assert rows.columns["lost_from_offset"] == [13, 4] and rows.columns["partition"] == [0, 1]
    assert s.checks(1) == [True]  # B is the instance now
    assert s.written.take() == {}


def test_a_cluster_that_will_not_say_its_id_does_not_stop_commits(caplog: pytest.LogCaptureFixture) -> None:
    s = Scripted(ClusterAuthorizationFailedError("no DESCRIBE on CLUSTER"))
    with caplog.at_level(logging.WARNING, logger="driftloop.broker"):
        assert s.checks(3) == [True, True, True]  # asked once; commits go on
    assert s.watch.blind and len(caplog.records) == 1 and "DESCRIBE" in caplog.records[0].getMessage()
