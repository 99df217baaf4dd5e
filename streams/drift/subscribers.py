"""Alert subscribers: a live tail for people, and webhook delivery for chat and other services.

``driftloop alerts tail`` prints alerts as they arrive; ``driftloop alerts webhook URL...`` POSTs each one
as JSON (the alert's fields plus a chat-friendly ``text``) to every URL, retrying with backoff, and
commits its consumer offset only after delivery (at-least-once: receivers dedupe by ``alert_id``). A
webhook that stays unreachable holds the alert (and the ones after it) back: it is sent again, to the
URLs that have not taken it yet, until they do. Only a URL that refuses the alert outright (a 4xx other
than 408 and 429: retrying would not change the answer) is given up on, with an ERROR.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from kafka import KafkaConsumer
from kafka.errors import CommitFailedError

from driftloop.infra.settings import Settings
from driftloop.streams.drift.alerts import Alert

log = logging.getLogger("driftloop.alerts")


def alert_stream(
    settings: Settings, *, group: str | None = None, from_beginning: bool = False, idle_timeout_s: float | None = None
) -> Iterator[tuple[Alert, KafkaConsumer]]:
    """Alerts from the alerts topic as they arrive (unreadable records are logged and skipped).

    Without ``group`` every partition is read and nothing is committed (a tail); with one, the consumer
    joins that group and the caller commits.
    """
    consumer = KafkaConsumer(
        settings.topics.alerts,
        **settings.kafka_python_config(),
        group_id=group,
        session_timeout_ms=int(settings.kafka_session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.kafka_session_timeout_s * 1000 / 3),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(idle_timeout_s * 1000) if idle_timeout_s else float("inf"),
    )
    try:
        for record in consumer:
            try:
                yield Alert.from_json(json.loads(record.value)), consumer
            except (ValueError, TypeError, KeyError) as exc:
                log.warning(
                    "skipped an unreadable alert record", extra={"fields": {"offset": record.offset, "error": str(exc)}}
                )
    finally:
        consumer.close()


#: What became of an alert at one URL: taken (2xx), refused for good (a 4xx but 408/429), or not yet
#: delivered after ``attempts`` tries (unreachable, 5xx, 408, 429).
Outcome = Literal["delivered", "refused", "failed"]


@dataclass(frozen=True)
class WebhookForwarder:
    """POSTs alerts to webhooks: JSON body, ``text`` for chat, retries with exponential backoff.

    ``max_pause_s`` caps the pause between rounds of :func:`forward_alerts` while a URL stays unreachable.
    """

    urls: Sequence[str]
    attempts: int = 5
    backoff_s: float = 0.5
    timeout_s: float = 10.0
    max_pause_s: float = 60.0

    def deliver(self, alert: Alert, urls: Sequence[str] | None = None) -> dict[str, Outcome]:
        """Send ``alert`` to every URL (or to ``urls``); what became of it at each, within ``attempts`` tries."""
        body = json.dumps(alert.to_json() | {"text": alert.message}).encode()
        return {url: self._post(url, body, alert.alert_id) for url in (self.urls if urls is None else urls)}

    def pause_s(self, rounds: int) -> float:
        """The pause before round ``rounds`` + 1 of sending an alert that some URL has not taken yet."""
        return float(min(self.max_pause_s, self.backoff_s * 2 ** (self.attempts + rounds)))

    def _post(self, url: str, body: bytes, alert_id: str) -> Outcome:
        for attempt in range(self.attempts):
            request = urllib.request.Request(
                url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Idempotency-Key": alert_id},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if 200 <= response.status < 300:
                        return "delivered"
            except urllib.error.HTTPError as exc:
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    log.error(
                        "webhook refused the alert; it is not sent there again",
                        extra={"fields": {"url": url, "status": exc.code, "alert_id": alert_id}},
                    )
                    return "refused"
                log.warning("webhook answered an error", extra={"fields": {"url": url, "status": exc.code}})
            except (urllib.error.URLError, OSError) as exc:
                log.warning("webhook unreachable", extra={"fields": {"url": url, "error": str(exc)}})
            if attempt + 1 < self.attempts:
                time.sleep(self.backoff_s * 2**attempt)
        return "failed"


def forward_alerts(
    settings: Settings,
    forwarder: WebhookForwarder,
    *,
    from_beginning: bool = False,
    idle_timeout_s: float | None = None,
) -> int:
    """Deliver every alert to the webhooks, committing each only once every URL took it (or refused it for
    good); returns how many were handled. An unreachable URL holds the alert back and is tried again."""
    handled = 0
    for alert, consumer in alert_stream(
        settings, group="driftloop-webhooks", from_beginning=from_beginning, idle_timeout_s=idle_timeout_s
    ):
        waiting: Sequence[str] = forwarder.urls
        rounds = 0
        while waiting := [url for url, outcome in forwarder.deliver(alert, waiting).items() if outcome == "failed"]:
            pause = forwarder.pause_s(rounds)
            log.error(
                "webhook delivery failed; the alert is held back (not committed) and sent again",
                extra={"fields": {"alert_id": alert.alert_id, "urls": len(waiting), "again_in_s": pause}},
            )
            time.sleep(pause)
            rounds += 1
        try:
            consumer.commit()
        except CommitFailedError:  # the group moved on during a long outage: the alert comes again (deduped)
            log.warning("could not commit a delivered alert; it may be delivered again", exc_info=True)
        handled += 1
    return handled
