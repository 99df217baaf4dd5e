"""Alert subscribers: a live tail for people, and webhook delivery for chat and other services.

``driftloop alerts tail`` prints alerts as they arrive; ``driftloop alerts webhook URL...`` POSTs each one
as JSON (the alert's fields plus a chat-friendly ``text``) to every URL, retrying with backoff, and
commits its consumer offset only after delivery (at-least-once: receivers dedupe by ``alert_id``).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from kafka import KafkaConsumer

from infra.settings import Settings
from streams.drift.alerts import Alert

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


@dataclass(frozen=True)
class WebhookForwarder:
    """POSTs alerts to webhooks: JSON body, ``text`` for chat, retries with exponential backoff."""

    urls: Sequence[str]
    attempts: int = 5
    backoff_s: float = 0.5
    timeout_s: float = 10.0

    def deliver(self, alert: Alert) -> dict[str, bool]:
        """Send ``alert`` to every URL; which ones took it (2xx) within ``attempts`` tries."""
        body = json.dumps(alert.to_json() | {"text": alert.message}).encode()
        return {url: self._post(url, body, alert.alert_id) for url in self.urls}

    def _post(self, url: str, body: bytes, alert_id: str) -> bool:
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
                        return True
            except urllib.error.HTTPError as exc:
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    log.error("webhook refused the alert", extra={"fields": {"url": url, "status": exc.code}})
                    return False
            except (urllib.error.URLError, OSError) as exc:
                log.warning("webhook unreachable", extra={"fields": {"url": url, "error": str(exc)}})
            time.sleep(self.backoff_s * 2**attempt)
        log.error("webhook delivery gave up", extra={"fields": {"url": url, "attempts": self.attempts}})
        return False


def forward_alerts(
    settings: Settings,
    forwarder: WebhookForwarder,
    *,
    from_beginning: bool = False,
    idle_timeout_s: float | None = None,
) -> int:
    """Deliver every alert to the webhooks, committing after each; returns how many were handled."""
    handled = 0
    for alert, consumer in alert_stream(
        settings, group="driftloop-webhooks", from_beginning=from_beginning, idle_timeout_s=idle_timeout_s
    ):
        forwarder.deliver(alert)
        consumer.commit()
        handled += 1
    return handled
