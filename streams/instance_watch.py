"""The producer's watch on its broker's identity: when the cluster id changes (the embedded broker keeps nothing
across a restart), the topics are provisioned on the new instance and what the old one acknowledged lately, and
what failed, is sent again (``streams.replay``). A check runs every ``interval_s`` in a thread of its own, and on
every ``flush`` (an acknowledgement alone does not say the broker kept the message)."""

from __future__ import annotations

import logging
import threading

from driftloop.infra.errors import DriftloopError
from driftloop.infra.kafka.cluster import CANNOT_ASK, ClusterIdProbe
from driftloop.infra.kafka.topics import provision_topics
from driftloop.infra.settings import Settings
from driftloop.streams.delivery import KafkaSender

log = logging.getLogger("driftloop.producer")


class InstanceWatch:
    """Asks the cluster for its id; sends recent and failed messages again when it changed."""

    def __init__(self, settings: Settings, sender: KafkaSender, interval_s: float | None) -> None:
        self.settings = settings
        self.sender = sender
        self.replays = 0  # times the broker came back as a new instance and recent messages were sent again
        self._probe = ClusterIdProbe(settings)
        self._cluster_id: str | None = None
        self._blind = False
        self._closed = threading.Event()
        self.watching = interval_s is not None
        if interval_s is not None:
            threading.Thread(
                target=self._loop, args=(interval_s,), name="driftloop-producer-watch", daemon=True
            ).start()

    def check(self) -> bool:
        """Ask the cluster for its id; when it changed, send recent and failed messages again (True)."""
        if self._blind:
            return False
        try:
            cluster_id = self._probe()
        except CANNOT_ASK as exc:
            self._blind = True
            log.warning("Kafka does not say its cluster id; broker restarts will not be noticed",
                        extra={"fields": {"error": repr(exc)}})  # fmt: skip
            return False
        except Exception:
            return False  # away: kafka-python retries what is pending; the next check asks again
        previous, self._cluster_id = self._cluster_id, cluster_id
        if previous is None or previous == cluster_id:
            return False
        try:
            provision_topics(self.settings, [self.settings.topics.predictions, self.settings.topics.outcomes])
        except DriftloopError as exc:
            log.error("could not provision the topics on the new broker instance", extra={"fields": {"error": exc}})
        again = self.sender.replay.take() + self.sender.take_failed()
        for sent in again:
            self.sender.send(sent.topic, sent.key, sent.value, sent.event_ids)
        self.replays += 1
        log.error(
            "Kafka came back as a new instance without its data; sending recent events again",
            extra={"fields": {"old_cluster_id": previous, "new_cluster_id": cluster_id, "messages": len(again),
                              "events": sum(len(s.event_ids) for s in again)}},
        )  # fmt: skip
        return True

    def close(self) -> None:
        self._closed.set()
        self._probe.close()

    def _loop(self, interval_s: float) -> None:
        while not self._closed.wait(interval_s):
            self.sender.send_again()
            self.check()
