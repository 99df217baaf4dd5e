"""Which Kafka cluster answers: its cluster id, asked through one long-lived admin connection.

A cluster keeps its id for life; the embedded broker gets a new one on every start (it keeps nothing
across a restart), so a changed id means the messages the previous instance held are gone.
"""

from __future__ import annotations

import contextlib
import threading

from kafka.admin import KafkaAdminClient
from kafka.errors import ClusterAuthorizationFailedError, IncompatibleBrokerVersion, UnsupportedVersionError

from driftloop.infra.kafka.topics import admin_client
from driftloop.infra.settings import Settings

# The cluster answers but will not say its id (ACLs without DESCRIBE on CLUSTER, an old broker):
# asking again will not help.
CANNOT_ASK = (ClusterAuthorizationFailedError, UnsupportedVersionError, IncompatibleBrokerVersion)


class ClusterIdProbe:
    """Calling it returns the cluster id of the configured Kafka cluster; raises when none answers.

    After a failure the connection is dropped and the next call connects afresh.
    """

    def __init__(self, settings: Settings, *, timeout_s: float = 3.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._admin: KafkaAdminClient | None = None
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            try:
                if self._admin is None:
                    self._admin = admin_client(self.settings, timeout_s=self.timeout_s)
                return str(self._admin.describe_cluster()["cluster_id"])
            except Exception:
                self._close()
                raise

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._admin is not None:
            admin, self._admin = self._admin, None
            with contextlib.suppress(Exception):  # a broken connection may fail to close; dropped either way
                admin.close()
