"""The worker's watch on its Kafka cluster: gone, back, or back as a new instance that lost its data.

The embedded broker keeps messages in memory only and starts with a new cluster id each time (``stack
up``), so a broker that comes back under another cluster id has lost every message it held. The Kafka
clients reconnect by themselves; what they cannot do is say what was lost. The watch does:

- while the broker does not answer, one warning, and a reminder every minute (the clients' own
  connection errors are rate-limited in the logs);
- when it answers again, how long it was away;
- when it answers with a new cluster id: the topics are provisioned again (with the configured
  partitions; one that a reconnecting client had the broker auto-create first is reported as
  mismatched), and the **loss window** is reported: for each partition this worker had written from,
  the first offset of the old instance it never wrote. Messages from there on that the old instance had
  accepted are gone; the report goes to the log (an error) and to ClickHouse (``broker_incidents``).
  The worker then starts again from a clean slate (``streams.worker``): its consumer's positions and
  acknowledged offsets belong to the lost instance.

The worker's consumer asks :meth:`BrokerWatch.check` before every offset commit and commits only when
the broker answers with the cluster id it had: acknowledged offsets of a lost instance never reach the
new one (there they would skip the new instance's messages).

Apache Kafka keeps its cluster id and its data across restarts: there the watch only reports the outage.

>>> offsets = WrittenOffsets()
>>> offsets.update([("t", 0, 4), ("t", 0, 7), ("t", 1, 2)])
>>> offsets.take()
{('t', 0): 7, ('t', 1): 2}
>>> offsets.take()
{}
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

from driftloop.infra.errors import DriftloopError
from driftloop.infra.kafka.cluster import CANNOT_ASK, ClusterIdProbe
from driftloop.infra.kafka.topics import TopicReport, provision_topics
from driftloop.infra.settings import Settings
from driftloop.streams.batch import ColumnBatch

log = logging.getLogger("driftloop.broker")

REMIND_EVERY_S = 60.0


class WrittenOffsets:
    """The highest offset written to ClickHouse per (topic, partition), since the last :meth:`take`."""

    def __init__(self) -> None:
        self._highest: dict[tuple[str, int], int] = {}

    def update(self, coordinates: Iterable[tuple[str, int, int]]) -> None:
        """Record written messages given as (topic, partition, offset)."""
        highest = self._highest
        for topic, partition, offset in coordinates:
            key = (topic, partition)
            if offset > highest.get(key, -1):
                highest[key] = offset

    def take(self) -> dict[tuple[str, int], int]:
        """The offsets recorded so far; the record starts again empty (a new broker instance's offsets)."""
        taken, self._highest = self._highest, {}
        return taken


@dataclass(frozen=True)
class BrokerIncident:
    """The cluster came back as a new instance: what this worker knows about what was lost.

    ``lost_from`` maps (topic, partition) to the first offset of the old instance this worker never
    wrote; every message the old instance held from there on is lost.
    """

    detected_at: float
    old_cluster_id: str
    new_cluster_id: str
    last_contact: float
    lost_from: dict[tuple[str, int], int]
    topics: TopicReport | None = None

    def rows(self, worker: str, bootstrap: str) -> ColumnBatch:
        """The incident as ``broker_incidents`` rows, one per partition (one with no partition if none)."""
        lost = sorted(self.lost_from.items()) or [(("", 0), 0)]
        n = len(lost)
        return ColumnBatch(
            "broker_incidents",
            {
                "detected_at": [int(self.detected_at)] * n,
                "worker": [worker] * n,
                "bootstrap": [bootstrap] * n,
                "old_cluster_id": [self.old_cluster_id] * n,
                "new_cluster_id": [self.new_cluster_id] * n,
                "last_contact": [int(self.last_contact)] * n,
                "topic": [topic for (topic, _), _ in lost],
                "partition": [partition for (_, partition), _ in lost],
                "lost_from_offset": [offset for _, offset in lost],
            },
        )


@dataclass
class BrokerWatchMetrics:
    """What the watch has seen: outages, new instances, and whether the broker answers now."""

    reachable: bool = True
    outages: int = 0
    incidents: int = 0
    last_incident: BrokerIncident | None = None


class BrokerWatch:
    """Asks the cluster for its id on every :meth:`check` and reports outages and new instances.

    ``written`` holds the offsets the worker has written; ``on_incident`` stores an incident (the
    worker writes it to ClickHouse and starts again). ``probe`` returns the cluster id or raises (default:
    :class:`infra.kafka.cluster.ClusterIdProbe`).
    """

    def __init__(
        self,
        settings: Settings,
        written: WrittenOffsets,
        on_incident: Callable[[BrokerIncident], Awaitable[None]],
        *,
        probe: Callable[[], str] | None = None,
        provision: Callable[[], TopicReport] | None = None,
    ) -> None:
        self.settings = settings
        self.written = written
        self.on_incident = on_incident
        self._default_probe = ClusterIdProbe(settings) if probe is None else None
        self.probe = probe or self._default_probe
        self.provision = provision or (lambda: provision_topics(settings))
        self.metrics = BrokerWatchMetrics()
        self.cluster_id: str | None = None
        self.last_contact = 0.0
        self.unreachable_since: float | None = None
        self.blind = False  # the cluster will not say its id (ACLs, an old broker): checks always pass
        self._reminded_at = 0.0
        self._lock = asyncio.Lock()

    async def check(self) -> bool:
        """Probe once: True when the broker answers as the instance seen before (or as the first one).

        A new instance is reported and handed to ``on_incident`` before this returns False.
        """
        async with self._lock:  # the timer, a rebalance and a commit may all ask
            if self.blind:
                return True
            try:
                cluster_id = await asyncio.to_thread(self.probe)
            except CANNOT_ASK as exc:
                self.blind = True
                log.warning(
                    "Kafka does not tell this worker its cluster id; a broker that comes back without its "
                    "data will not be noticed (grant DESCRIBE on the CLUSTER resource to fix this)",
                    extra={"fields": {"error": _short(exc)}},
                )
                return True
            except Exception as exc:
                self._unreachable(exc)
                return False
            now = time.time()
            if self.unreachable_since is not None:
                log.warning(
                    "Kafka answers again",
                    extra={"fields": {"bootstrap": self.settings.kafka_bootstrap,
                                      "away_s": round(now - self.unreachable_since, 1)}},
                )  # fmt: skip
                self.unreachable_since = None
                self.metrics.reachable = True
            previous, self.cluster_id = self.cluster_id, cluster_id
            last_contact, self.last_contact = self.last_contact, now
            if previous is None or previous == cluster_id:
                return True
            lost_from = {tp: offset + 1 for tp, offset in self.written.take().items()}
            incident = BrokerIncident(now, previous, cluster_id, last_contact, lost_from)
            self.metrics.incidents += 1
            await self._report(incident)
            return False

    def close(self) -> None:
        if self._default_probe is not None:
            self._default_probe.close()

    # --- internals ---------------------------------------------------------------------------------------

    async def _report(self, incident: BrokerIncident) -> None:
        try:
            topics = await asyncio.to_thread(self.provision)
        except DriftloopError as exc:
            topics = None
            log.error("could not provision the topics on the new broker instance", extra={"fields": {"error": exc}})
        incident = replace(incident, topics=topics)
        lost = ",".join(f"{t}:{p}@{o}" for (t, p), o in sorted(incident.lost_from.items())) or "none written"
        log.error(
            "Kafka came back as a new instance and lost the messages it held; messages the old instance "
            "accepted from these offsets on (topic:partition@offset) were never read and are lost",
            extra={
                "fields": {
                    "old_cluster_id": incident.old_cluster_id,
                    "new_cluster_id": incident.new_cluster_id,
                    "last_contact": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(incident.last_contact)),
                    "lost_from": lost,
                    "topics_created": ",".join(topics.created) if topics else "?",
                    "topics_mismatched": ",".join(f"{n}:{h}!={w}" for n, (h, w) in topics.mismatched.items())
                    if topics
                    else "?",
                }
            },
        )
        self.metrics.last_incident = incident
        await self.on_incident(incident)

    def _unreachable(self, exc: Exception) -> None:
        now = time.time()
        if self.unreachable_since is None:
            self.unreachable_since = self._reminded_at = now
            self.metrics.reachable = False
            self.metrics.outages += 1
            log.warning(
                "Kafka does not answer; the worker keeps its place and reconnects when it is back",
                extra={"fields": {"bootstrap": self.settings.kafka_bootstrap, "error": _short(exc)}},
            )
        elif now - self._reminded_at >= REMIND_EVERY_S:
            self._reminded_at = now
            log.warning(
                "Kafka still does not answer",
                extra={"fields": {"bootstrap": self.settings.kafka_bootstrap,
                                  "away_s": round(now - self.unreachable_since)}},
            )  # fmt: skip


def worker_name() -> str:
    """This worker's name in incident reports: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
