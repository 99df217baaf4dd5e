"""The webhook forwarder is at-least-once: an alert a webhook has not taken is held back, never committed."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from driftloop.infra.contract import Alert
from driftloop.infra.stack import stack as local_stack
from driftloop.streams.drift.subscribers import WebhookForwarder, forward_alerts
from tests.stack_fixtures import PrivateStack, wait_for

pytestmark = pytest.mark.integration


class FlakyReceiver(BaseHTTPRequestHandler):
    """Answers 503 until ``healthy`` is set, then takes alerts (204)."""

    healthy = threading.Event()
    refusals = 0
    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if not FlakyReceiver.healthy.is_set():
            FlakyReceiver.refusals += 1
            self.send_response(503)
        else:
            FlakyReceiver.received.append(json.loads(body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_an_alert_a_webhook_has_not_taken_is_held_back_then_delivered(stack: PrivateStack) -> None:
    private = stack.with_env(DRIFTLOOP_TOPIC_PREFIX=f"webhooks-{uuid.uuid4().hex[:8]}.")
    settings = private.settings
    local_stack.up(settings)  # the stack runs: this only provisions the test's own topics
    alert = replace(Alert.example(), alert_id="held-" + uuid.uuid4().hex)
    producer = KafkaProducer(**settings.kafka_python_config())
    sent = producer.send(settings.topics.alerts, json.dumps(alert.to_json()).encode(), key=b"m").get(10)
    producer.close()
    tp = TopicPartition(settings.topics.alerts, sent.partition)

    server = HTTPServer(("127.0.0.1", 0), FlakyReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    forwarder = WebhookForwarder([f"http://127.0.0.1:{server.server_port}/hook"], attempts=2, backoff_s=0.05,
                                 max_pause_s=0.3)  # fmt: skip
    handled: list[int] = []
    forwarding = threading.Thread(
        target=lambda: handled.append(forward_alerts(settings, forwarder, from_beginning=True, idle_timeout_s=3))
    )
    forwarding.start()
    group = KafkaConsumer(**settings.kafka_python_config(), group_id=settings.groups.webhooks(None))
    try:
        # more failed rounds than one delivery's attempts: the old forwarder gave up and committed here
        wait_for(lambda: FlakyReceiver.refusals >= 3 * forwarder.attempts, timeout_s=60, what="failed rounds")
        assert (group.committed(tp) or 0) <= sent.offset  # not committed while the webhook is down
        FlakyReceiver.healthy.set()
        forwarding.join(90)
        assert not forwarding.is_alive() and handled == [1]
        assert [a["alert_id"] for a in FlakyReceiver.received] == [alert.alert_id]
        (payload,) = FlakyReceiver.received  # who answers for the model and their runbook travel with it
        assert (payload["owner"], payload["runbook"]) == (alert.owner, alert.runbook) and alert.owner
        assert group.committed(tp) == sent.offset + 1
    finally:
        FlakyReceiver.healthy.set()
        group.close()
        server.shutdown()
