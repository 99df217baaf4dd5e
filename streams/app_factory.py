"""Faust apps configured from the one settings object.

:func:`create_app` gives a bare app on the configured cluster; ``streams.worker`` installs the agents.
Tests and tools build their own (a different ``app_id`` is a different consumer group).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust

from driftloop.infra.settings import Settings, get_settings
from driftloop.streams.compat import aiokafka as unreadable_batches
from driftloop.streams.compat.faust import StrictOffsetsApp


def broker_url(settings: Settings) -> str:
    """Faust's broker URL for the configured bootstrap servers (``kafka://h1:p1;h2:p2``)."""
    return "kafka://" + ";".join(settings.kafka_servers)


def broker_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """SASL and/or TLS credentials for Faust's Kafka clients, from the settings' security options."""
    context = settings.kafka_ssl_context()
    if settings.kafka_security_protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None  # Settings checks SASL options are complete
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    return faust.SSLCredentials(context) if context is not None else None


def create_app(settings: Settings | None = None, *, app_id: str = "driftloop-streams", **overrides: Any) -> faust.App:
    """A Faust app on the configured cluster, with driftloop's defaults (keyword arguments override them).

    Its consumer never takes a gap in offsets as acknowledged and delivers messages without a race of
    tasks when it can (``streams.compat.faust``); a record batch it cannot read (corrupt, or compressed
    with a codec it cannot decode) arrives as dead-letter placeholders (``streams.compat.aiokafka``).

    Group timeouts come from ``DRIFTLOOP_KAFKA_SESSION_TIMEOUT_S`` / ``..._REBALANCE_TIMEOUT_S``: a group
    join on the embedded broker waits about one session timeout, so tests set them short.
    """
    unreadable_batches.install()
    settings = settings or get_settings()
    options = app_options(settings, app_id) | overrides
    Path(options["datadir"]).parent.mkdir(parents=True, exist_ok=True)  # Faust creates only the leaf
    app = StrictOffsetsApp(app_id, **options)
    app.fetch_max_wait_s = settings.kafka_fetch_max_wait_s
    return app


def app_options(settings: Settings, app_id: str) -> dict[str, Any]:
    """The options :func:`create_app` gives Faust (the ingest benchmark's bare agent takes them too)."""
    session = settings.kafka_session_timeout_s
    return {
        "broker": broker_url(settings),
        "broker_credentials": broker_credentials(settings),
        "broker_session_timeout": session,
        "broker_heartbeat_interval": min(3.0, session / 3),
        "broker_rebalance_timeout": settings.kafka_rebalance_timeout_s,
        "broker_commit_interval": settings.commit_interval_s,
        "broker_request_timeout": max(90.0, session + 5),
        # a fetch brings up to one decode chunk per partition (Faust's default, 1 MiB, is 8 envelopes of 500)
        "consumer_max_fetch_size": settings.batch_max_bytes,
        "consumer_auto_offset_reset": "earliest",
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication,
        "datadir": str(settings.home / "faust" / app_id),
        "web_enabled": False,
        "autodiscover": False,
        "value_serializer": "raw",
        "key_serializer": "raw",
    }
