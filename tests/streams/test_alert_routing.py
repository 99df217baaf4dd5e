"""Alert subscribers: filters, payload formats (generic JSON, Slack, PagerDuty Events v2), Retry-After, secret
URLs; with real HTTP receivers, and two named subscribers on the real broker that each get every alert."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from driftloop.cli.main import cli
from driftloop.infra.contract import Alert
from driftloop.infra.network import free_port
from driftloop.infra.stack import stack as local_stack
from driftloop.streams.drift.parking import AlertParking
from driftloop.streams.drift.routing import (
    AlertFilter,
    SubscriberError,
    destination,
    payload,
    redacted,
    secret_urls,
)
from driftloop.streams.drift.subscribers import WebhookForwarder, forward_alerts, resend_parked
from tests.stack_fixtures import PrivateStack, webhook_receiver

ALERT = Alert.example()  # fraud, data, critical, signal "amount"


@pytest.fixture()
def receiver() -> Iterator[HTTPServer]:
    with webhook_receiver() as server:
        yield server


def url(server: HTTPServer, token: str = "T0KEN") -> str:
    return f"http://127.0.0.1:{server.server_port}/services/{token}"


@pytest.mark.parametrize(
    ("chosen", "taken"),
    [
        (AlertFilter(), True),
        (AlertFilter(models=("fra*",)), True),
        (AlertFilter(models=("risk-*", "credit")), False),
        (AlertFilter(kinds=("performance",)), False),
        (AlertFilter(kinds=("data", "performance")), True),
        (AlertFilter(min_severity="critical"), True),
    ],
)
def test_a_filter_takes_models_by_glob_kinds_and_a_lowest_severity(chosen: AlertFilter, taken: bool) -> None:
    assert chosen.matches(ALERT) is taken


def test_a_lowest_severity_passes_over_milder_alerts() -> None:
    assert not AlertFilter(min_severity="critical").matches(replace(ALERT, severity="warning"))
    assert AlertFilter(min_severity="warning").matches(replace(ALERT, severity="warning"))
    with pytest.raises(SubscriberError, match="unknown severity"):
        AlertFilter(min_severity="loud")


def test_payload_formats() -> None:
    generic = payload(ALERT, "json")
    assert generic["alert_id"] == ALERT.alert_id and generic["text"] == ALERT.message
    slack = payload(ALERT, "slack")
    assert ALERT.message in slack["text"] and slack["blocks"][0]["type"] == "section"
    assert any(ALERT.owner in e["text"] for e in slack["blocks"][1]["elements"])
    paged = payload(ALERT, "pagerduty", routing_key="R0UT1NG")
    assert (paged["routing_key"], paged["event_action"], paged["dedup_key"]) == ("R0UT1NG", "trigger", "fraud/amount")
    assert paged["payload"]["severity"] == "critical" and paged["payload"]["source"] == "fraud"
    assert paged["links"] == [{"href": ALERT.runbook, "text": "runbook"}]
    # one incident per model and signal: a later alert of the same signal folds into it
    later = replace(ALERT, alert_id="1" * 32, event_ts=ALERT.event_ts + 60)
    assert payload(later, "pagerduty", routing_key="R0UT1NG")["dedup_key"] == paged["dedup_key"]
    with pytest.raises(SubscriberError, match="integration key"):
        payload(ALERT, "pagerduty")


def test_a_retry_after_answer_sets_the_pause(receiver: HTTPServer) -> None:
    """429 with Retry-After: 1, with a backoff of 10 ms: the next try waits the second it was asked for."""
    receiver.throttle = 1  # type: ignore[attr-defined]
    forwarder = WebhookForwarder([url(receiver)], attempts=3, backoff_s=0.01)
    assert forwarder.deliver(ALERT) == {url(receiver): "delivered"}
    first, second = receiver.times  # type: ignore[attr-defined]
    assert second - first >= 0.95
    assert [body["alert_id"] for body in receiver.received] == [ALERT.alert_id]  # type: ignore[attr-defined]


def test_urls_come_from_the_environment_or_a_file_and_are_never_logged(
    receiver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TEAM_A_HOOK", url(receiver, "S3CRET-A"))
    (tmp_path / "hooks").write_text(f"# team b\n{url(receiver, 'S3CRET-B')}\n\n")
    urls = secret_urls(["TEAM_A_HOOK"], [tmp_path / "hooks"])
    assert urls == [url(receiver, "S3CRET-A"), url(receiver, "S3CRET-B")]
    receiver.throttle = 2  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="driftloop.alerts"):
        WebhookForwarder(urls, attempts=3, backoff_s=0.01, max_pause_s=0.05).deliver(ALERT)
    assert caplog.records and not any("S3CRET" in str(r.__dict__) for r in caplog.records)
    assert redacted(url(receiver, "S3CRET-A")) == f"http://127.0.0.1:{receiver.server_port}/…"
    with pytest.raises(SubscriberError, match="NOT_SET_HOOK is not set"):
        secret_urls(["NOT_SET_HOOK"])


def test_the_cli_refuses_a_pagerduty_subscriber_without_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK", "https://events.pagerduty.com/v2/enqueue")
    result = CliRunner().invoke(cli, ["alerts", "webhook", "--url-env", "HOOK", "--format", "pagerduty"])
    assert result.exit_code != 0 and "--routing-key-env" in result.output


@pytest.mark.integration
def test_two_named_subscribers_each_get_every_alert_they_filter_for(stack: PrivateStack, receiver: HTTPServer) -> None:
    """Team A (every alert) and team B (performance only) each read the topic in a group of their own: A gets
    both alerts, B the one it asked for; neither takes an alert from the other."""
    private = stack.with_env(DRIFTLOOP_TOPIC_PREFIX=f"routing-{uuid.uuid4().hex[:8]}.")
    settings = private.settings
    local_stack.up(settings)  # the stack runs: this only provisions the test's own topics
    data = replace(ALERT, alert_id="d-" + uuid.uuid4().hex)
    performance = replace(ALERT, alert_id="p-" + uuid.uuid4().hex, kind="performance", signal="error")
    producer = KafkaProducer(**settings.kafka_python_config())
    for alert in (data, performance):
        producer.send(settings.topics.alerts, json.dumps(alert.to_json()).encode(), key=b"fraud").get(10)
    producer.close()
    assert settings.groups.webhooks("team-a") != settings.groups.webhooks("team-b")
    subscribers = {
        "team-a": (WebhookForwarder([url(receiver, "A")]), None),
        "team-b": (WebhookForwarder([url(receiver, "B")], format="slack"), AlertFilter(kinds=("performance",))),
    }
    handled: dict[str, int] = {}

    def run(name: str) -> None:
        forwarder, chosen = subscribers[name]
        # the idle timeout (counted once the group is joined) ends the run
        handled[name] = forward_alerts(
            settings, forwarder, name=name, alert_filter=chosen, from_beginning=True, idle_timeout_s=3
        )

    threads = [threading.Thread(target=run, args=(name,)) for name in subscribers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    team_a, team_b = handled["team-a"], handled["team-b"]
    assert (team_a, team_b) == (2, 2)  # each handled both: delivered, or passed over by its filter
    bodies = receiver.received  # type: ignore[attr-defined]
    assert sorted(b["alert_id"] for b in bodies if "alert_id" in b) == sorted([data.alert_id, performance.alert_id])
    (slack,) = [b for b in bodies if "blocks" in b]
    assert "error" in json.dumps(slack)


@pytest.mark.integration
def test_a_subscriber_of_a_prefixed_deployment_reads_in_its_own_group_from_where_its_former_group_was(
    stack: PrivateStack, receiver: HTTPServer
) -> None:
    """A deployment under a prefix of its own: its subscriber `risk` read in `driftloop-webhooks-risk`, one
    group with every other deployment's `risk` on the cluster; now in `<prefix>driftloop-webhooks-risk`. Started
    in that new group from the end of the topic, as a new subscriber is, it would never send the alert published
    while it was being upgraded: it goes on from its former group's offsets, and sends that alert, not the one
    before it again."""
    prefix = f"upgrade-{uuid.uuid4().hex[:8]}."
    settings = stack.with_env(DRIFTLOOP_TOPIC_PREFIX=prefix).settings
    local_stack.up(settings)  # the stack runs: this only provisions the test's own topics
    handled_before, published_since = (replace(ALERT, alert_id=f"{n}-{uuid.uuid4().hex}") for n in ("old", "new"))
    producer = KafkaProducer(**settings.kafka_python_config())

    def publish(alert: Alert) -> tuple[TopicPartition, int]:
        sent = producer.send(settings.topics.alerts, json.dumps(alert.to_json()).encode(), key=b"fraud").get(10)
        return TopicPartition(sent.topic, sent.partition), sent.offset

    partition, offset = publish(handled_before)
    former = KafkaConsumer(**settings.kafka_python_config(), group_id="driftloop-webhooks-risk")
    former.commit({partition: OffsetAndMetadata(offset + 1, "", -1)})  # where it was: after that alert
    former.close()
    assert publish(published_since) == (partition, offset + 1)  # one model's alerts: one partition, in order
    producer.close()

    handled = forward_alerts(settings, WebhookForwarder([url(receiver, "risk")]), name="risk", idle_timeout_s=3)

    assert handled == 1
    assert [body["alert_id"] for body in receiver.received] == [published_since.alert_id]  # type: ignore[attr-defined]
    own = KafkaConsumer(**settings.kafka_python_config(), group_id=f"{prefix}driftloop-webhooks-risk")
    assert own.committed(partition) == offset + 2
    own.close()


class Refusing(BaseHTTPRequestHandler):
    """Answers 400 (a receiver that will never take the payload) until ``server.accept`` is set."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.server.accept:  # type: ignore[attr-defined]
            self.server.received.append(body)  # type: ignore[attr-defined]
            self.send_response(200)
        else:
            self.send_response(400)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.integration
def test_alerts_a_webhook_refuses_or_cannot_take_are_parked_and_resent(stack: PrivateStack) -> None:
    """One receiver refuses (400), another does not answer at all: the subscriber parks each alert for each of
    them (at once, and after --park-after) instead of holding every later alert back; the refused ones are
    sent again once that receiver takes them, the others stay parked."""
    private = stack.with_env(DRIFTLOOP_TOPIC_PREFIX=f"parking-{uuid.uuid4().hex[:8]}.")
    settings = private.settings
    local_stack.up(settings)
    refusing = HTTPServer(("127.0.0.1", 0), Refusing)
    refusing.accept, refusing.received = False, []  # type: ignore[attr-defined]
    threading.Thread(target=refusing.serve_forever, daemon=True).start()
    silent = f"http://127.0.0.1:{free_port()}/hooks/S3CRET"  # nothing listens there
    alerts = [replace(ALERT, alert_id=f"a{i}-" + uuid.uuid4().hex) for i in range(2)]
    producer = KafkaProducer(**settings.kafka_python_config())
    for alert in alerts:
        producer.send(settings.topics.alerts, json.dumps(alert.to_json()).encode(), key=b"fraud").get(10)
    producer.close()
    name = "team-" + uuid.uuid4().hex[:6]
    forwarder = WebhookForwarder([url(refusing), silent], attempts=2, backoff_s=0.01, max_pause_s=0.05)
    parking = AlertParking(settings)
    try:
        handled = forward_alerts(
            settings, forwarder, name=name, from_beginning=True, idle_timeout_s=5, parking=parking, park_after_s=0.3
        )
        assert handled == 2  # neither alert held the other back
        parked = parking.parked(name)
        reasons = {(p.alert.alert_id, p.destination): p.reason for p in parked}
        assert set(reasons) == {(a.alert_id, destination(u)) for a in alerts for u in (url(refusing), silent)}
        assert all(r == "refused: HTTP 400" for (_, d), r in reasons.items() if d == destination(url(refusing)))
        assert all(
            r.startswith("undeliverable for ") and "unreachable" in r
            for (_, d), r in reasons.items()
            if d == destination(silent)
        )
        assert all("S3CRET" not in p.destination and "T0KEN" not in p.destination for p in parked)

        refusing.accept = True  # type: ignore[attr-defined]
        assert resend_parked(forwarder, parking, name) == {"resent": 2, "failed": 2, "elsewhere": 0}
        assert sorted(b["alert_id"] for b in refusing.received) == sorted(a.alert_id for a in alerts)  # type: ignore[attr-defined]
        assert {p.destination for p in parking.parked(name)} == {destination(silent)}
        listed = CliRunner().invoke(cli, ["alerts", "parked", "--name", name, "--json"], env=private.env)
        assert listed.exit_code == 0 and len(listed.output.splitlines()) == 2, listed.output
    finally:
        refusing.shutdown()


@pytest.mark.integration
def test_a_pagerduty_subscriber_resolves_its_incidents_after_the_cooldown_or_a_new_champion(
    stack: PrivateStack, receiver: HTTPServer, tmp_path: Path
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "pd-quiet.toml").write_text('name = "pd-quiet"\n[monitoring]\ncooldown_s = 1\n')  # pd-swapped: 900 s
    private = stack.with_env(DRIFTLOOP_TOPIC_PREFIX=f"pd-{uuid.uuid4().hex[:8]}.", DRIFTLOOP_SPECS_DIR=str(specs))
    settings = private.settings
    local_stack.up(settings)
    quiet = replace(ALERT, alert_id="q-" + uuid.uuid4().hex, model="pd-quiet", model_version=1)
    swapped = replace(ALERT, alert_id="s-" + uuid.uuid4().hex, model="pd-swapped", model_version=1)
    producer = KafkaProducer(**settings.kafka_python_config())
    for alert in (quiet, swapped):
        producer.send(settings.topics.alerts, json.dumps(alert.to_json()).encode(), key=alert.model.encode()).get(10)
    champion = {"event": "promoted", "model": "pd-swapped", "version": 2, "status": "champion"}
    forwarder = WebhookForwarder([url(receiver)], format="pagerduty", routing_key="R0UT1NG")

    def announce_later() -> None:  # once the subscriber has sent both triggers
        deadline = time.monotonic() + 60
        while len(receiver.received) < 2 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.1)
        producer.send(settings.topics.model_versions, json.dumps(champion).encode(), key=b"pd-swapped").get(10)

    announcer = threading.Thread(target=announce_later)
    announcer.start()
    handled = forward_alerts(settings, forwarder, name="pd", from_beginning=True, idle_timeout_s=6)
    announcer.join(10)
    producer.close()
    assert handled == 2
    events = [(b["event_action"], b["dedup_key"]) for b in receiver.received]  # type: ignore[attr-defined]
    # the two alerts sit on different partitions (keyed by model): their order between them is not defined
    assert sorted(events[:2]) == [("trigger", "pd-quiet/amount"), ("trigger", "pd-swapped/amount")]
    assert sorted(events[2:]) == [("resolve", "pd-quiet/amount"), ("resolve", "pd-swapped/amount")]
    assert all(b["routing_key"] == "R0UT1NG" for b in receiver.received)  # type: ignore[attr-defined]


class Moving(BaseHTTPRequestHandler):
    """``/moved/<code>`` answers a redirect of that code to ``/new``; ``/new`` takes a POST (204) and refuses
    anything else (405), as a webhook receiver does. Every request is recorded, with its method and body."""

    def _record(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, self.path, body))  # type: ignore[attr-defined]
        return body

    def do_POST(self) -> None:
        self._record()
        if self.path.startswith("/moved/"):
            self.send_response(int(self.path.rsplit("/", 1)[1]))
            self.send_header("Location", "/new")
        else:
            self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        self._record()
        self.send_response(200 if self.path == "/new" else 404)  # a page at the new URL: "delivered"
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_webhook_that_moved_gets_the_alert_or_says_where_it_went(caplog: pytest.LogCaptureFixture) -> None:
    """307 and 308 keep the POST and its body: the alert reaches the new URL. After 301, 302 or 303 urllib sent
    a GET without the alert, and the new URL's page answered 200: "delivered", the alert lost. Now those are
    refused, with where the webhook moved, and nothing is sent there."""
    server = HTTPServer(("127.0.0.1", 0), Moving)
    server.requests = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        forwarder = WebhookForwarder([], attempts=2, backoff_s=0.01, max_pause_s=0.05)
        for code in (307, 308):
            server.requests.clear()  # type: ignore[attr-defined]
            assert forwarder.deliver(ALERT, [f"{base}/moved/{code}"]) == {f"{base}/moved/{code}": "delivered"}
            (_, _, first), (method, path, body) = server.requests  # type: ignore[attr-defined]
            assert (method, path) == ("POST", "/new") and body == first
            assert json.loads(body)["alert_id"] == ALERT.alert_id
        for code in (301, 302, 303):
            server.requests.clear()  # type: ignore[attr-defined]
            ((outcome, detail),) = forwarder.attempt(ALERT, [f"{base}/moved/{code}"]).values()
            assert (
                outcome == "refused"
                and detail == f"HTTP {code}: moved to http://127.0.0.1:{server.server_port}/…; set that URL"
            )
            assert [(m, p) for m, p, _ in server.requests] == [("POST", f"/moved/{code}")]  # type: ignore[attr-defined]
    finally:
        server.shutdown()


def test_a_slack_message_shows_the_producers_texts_as_written() -> None:
    """Feature names and request ids come from whoever produces the events: in a Slack message ``<!channel>``
    notified the whole channel and ``<https://x|text>`` was a link. Escaped as Slack asks, they are text."""
    hostile = replace(ALERT, signal="<!channel>", change_point_request_id="<https://evil.example|open me>")
    hostile = replace(hostile, message=f"drift on {hostile.signal} & more")
    slack = payload(hostile, "slack")
    shown = [slack["text"], slack["blocks"][0]["text"]["text"], *(e["text"] for e in slack["blocks"][1]["elements"])]
    assert not any("<!channel>" in text or "<https://evil" in text for text in shown)
    assert "drift on &lt;!channel&gt; &amp; more" in slack["text"]
    assert "*signal* &lt;!channel&gt; (data)" in shown


class Guarded(BaseHTTPRequestHandler):
    """A receiver behind HTTP Basic authentication (``bot`` / ``s@cret``): 401 without them. ``/elsewhere``
    answers 307 to the server's ``forward_to``. Every POST is recorded with its path and Authorization header."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        given = self.headers.get("Authorization")
        self.server.requests.append((self.path, given))  # type: ignore[attr-defined]
        if self.path == "/elsewhere":
            self.send_response(307)
            self.send_header("Location", self.server.forward_to)  # type: ignore[attr-defined]
        elif self.server.guarded and given != "Basic " + base64.b64encode(b"bot:s@cret").decode():  # type: ignore[attr-defined]
            self.send_response(401)
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_webhook_url_with_a_user_and_password_authenticates_and_keeps_them_to_its_host() -> None:
    """``https://user:password@host/hook`` (RFC 3986's user information, as curl and requests read it): urllib
    took ``user:password@host`` for a host and a port that is no number, and every alert was "unreachable",
    then parked. The pair is sent as HTTP Basic authentication (its %-escapes decoded), to that host only: a
    redirect to another host is followed without it."""
    servers = []
    for guarded in (True, False):
        server = HTTPServer(("127.0.0.1", 0), Guarded)
        server.requests, server.guarded = [], guarded  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    guarded, other = servers
    guarded.forward_to = f"http://localhost:{other.server_port}/hook"  # type: ignore[attr-defined]
    try:
        forwarder = WebhookForwarder([], attempts=1)
        hook = f"http://bot:s%40cret@127.0.0.1:{guarded.server_port}/hook"
        assert forwarder.deliver(ALERT, [hook]) == {hook: "delivered"}
        assert guarded.requests == [("/hook", "Basic Ym90OnNAY3JldA==")]  # type: ignore[attr-defined]
        wrong = hook.replace("s%40cret", "guess")
        assert forwarder.deliver(ALERT, [wrong]) == {wrong: "refused"}
        moved = f"http://bot:s%40cret@127.0.0.1:{guarded.server_port}/elsewhere"
        assert forwarder.deliver(ALERT, [moved]) == {moved: "delivered"}
        assert other.requests == [("/hook", None)]  # type: ignore[attr-defined]
    finally:
        for server in servers:
            server.shutdown()
