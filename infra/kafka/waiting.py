"""Kafka clients for the long-running services, made once a broker answers.

A kafka-python client asks the brokers for their versions when it is made and raises after its bootstrap
timeout (30 s) when none answers. The retrain worker, an alert subscriber and a serving client's watch on
model versions made theirs as they started, so one started before its broker (a compose file's services
start together; a broker restarting) died with a traceback, or, in a serving client, stopped following new
versions for good. Made through :func:`when_kafka_answers` they wait for it, as the streams worker does
(``streams.broker_watch``): one warning that names the brokers and the setting, a reminder every minute,
and a line when a broker answers. Once made, the clients reconnect by themselves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from driftloop.infra.network import port_is_open
from driftloop.infra.service_errors import kafka_unreachable, unreachable_kafka
from driftloop.infra.settings import Settings

log = logging.getLogger("driftloop.broker")

T = TypeVar("T")

RETRY_S = 1.0
REMIND_EVERY_S = 60.0


def when_kafka_answers(
    make: Callable[[], T],
    settings: Settings,
    *,
    who: str,
    stop: Callable[[], bool] = lambda: False,
    on_wait: Callable[[], None] = lambda: None,
    between_tries: Callable[[], None] = lambda: None,
    retry_s: float = RETRY_S,
    remind_every_s: float = REMIND_EVERY_S,
) -> T | None:
    """``make()`` (a kafka-python client), once it can be made: tried while a broker listens, and again every
    ``retry_s`` while none does or none answers; None when ``stop()`` comes first. ``who`` names the waiting
    service in the log; ``on_wait`` runs once, when the waiting starts (a serving client stops blocking its
    caller then: it serves its champion meanwhile); ``between_tries`` after each try that found no broker (the
    client reads its routing from ClickHouse meanwhile). Any other error of ``make`` is raised."""
    started, warned_at = time.monotonic(), None
    while not stop():
        detail = "nothing listens there"
        if kafka_listens(settings):
            try:
                client = make()
            except Exception as exc:
                if not kafka_unreachable(exc):
                    raise
                detail = str(exc)
            else:
                if warned_at is not None:
                    log.warning(
                        "Kafka answers", extra={"fields": {"who": who, "waited_s": round(time.monotonic() - started)}}
                    )
                return client
        if warned_at is None:
            on_wait()
        if warned_at is None or time.monotonic() - warned_at >= remind_every_s:
            warned_at = time.monotonic()
            message = f"{who} waits for Kafka: {unreachable_kafka(settings, detail)}"
            log.warning(message, extra={"fields": {"waiting_s": round(warned_at - started)}})
        between_tries()
        _sleep(retry_s, stop)
    return None


def kafka_listens(settings: Settings) -> bool:
    """Whether anything accepts connections at one of the bootstrap servers at least (a broker, maybe)."""
    return any(_listens(server) for server in settings.kafka_servers)


def _listens(server: str) -> bool:
    host, _, port = server.strip().rpartition(":")
    return port.isdigit() and port_is_open(host.strip("[]") or "localhost", int(port))


def _sleep(seconds: float, stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not stop() and time.monotonic() < deadline:
        time.sleep(min(0.1, max(deadline - time.monotonic(), 0.0)))
