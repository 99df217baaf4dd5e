"""Alert subscribers: a live tail for people, and webhook delivery for chat, paging and other services.

``driftloop alerts tail`` prints alerts as they arrive; ``driftloop alerts webhook --name N --url-env VAR``
POSTs each alert the subscriber's filter takes, in its payload format (``streams.drift.routing``: generic JSON,
Slack, PagerDuty Events v2), to every URL, retrying with jittered backoff (a ``Retry-After`` answer sets the
pause), and commits its consumer offset only after delivery (at-least-once: receivers dedupe by ``alert_id``,
the ``Idempotency-Key`` header, or PagerDuty's ``dedup_key``). Each named subscriber has its own consumer group,
so each gets every alert. A webhook that is unreachable holds the alert (and the ones after it) back: it is sent
again, to the URLs that have not taken it yet, until they do, or until ``park_after_s`` has passed: then it is
**parked** (``streams.drift.parking``: ClickHouse ``parked_alerts``, with the reason) for that URL and the
subscriber moves on. A URL that refuses the alert outright (a 4xx other than 408 and 429: retrying would not
change the answer) gets it parked at once. ``driftloop alerts resend`` sends parked alerts again
(:func:`resend_parked`). A PagerDuty subscriber resolves the incidents it opened (``streams.drift.incidents``).
A subscriber whose filter names the kind ``release`` also gets the release controller's changes of stage as
notices (``streams.drift.release_notices``: a rollback, a rejection, ...), read from ``model-versions`` in the
same group; to PagerDuty, a rollback or a rejection is an incident of the model's ``release`` signal, resolved
as a drift's is once the model's cooldown passes without another, and a promotion or a step to shadow or canary
a change event (no incident, no page). Logs name a URL by its scheme and host only: the rest is a secret."""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kafka import KafkaConsumer
from kafka.errors import CommitFailedError, KafkaError

from driftloop.infra.contract import Alert, VersionAnnouncement
from driftloop.infra.errors import DriftloopError
from driftloop.infra.kafka.groups import take_over_offsets
from driftloop.infra.kafka.waiting import kafka_listens, when_kafka_answers
from driftloop.infra.service_errors import unreachable_kafka
from driftloop.infra.settings import Settings
from driftloop.infra.spec import ModelSpec, MonitoringSpec, SpecCatalog
from driftloop.streams.drift.incidents import Incidents
from driftloop.streams.drift.parking import AlertParking, ParkedAlert
from driftloop.streams.drift.release_notices import release_notice
from driftloop.streams.drift.routing import (
    AlertFilter,
    change_url,
    destination,
    is_change,
    payload,
    redacted,
    resolve_payload,
)

log = logging.getLogger("driftloop.alerts")


def alert_stream(
    settings: Settings, *, group: str | None = None, from_beginning: bool = False, idle_timeout_s: float | None = None
) -> Iterator[tuple[Alert, KafkaConsumer]]:
    """Alerts from the alerts topic as they arrive (unreadable records are logged and skipped).

    Without ``group`` every partition is read and nothing is committed (a tail); with one, the consumer
    joins that group and the caller commits. Where nothing listens at the bootstrap servers it says so at once
    (:class:`~infra.errors.UnreachableError`), not after the client's bootstrap timeout.
    """
    if not kafka_listens(settings):
        raise unreachable_kafka(settings, "nothing listens there")
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
    """POSTs alerts to webhooks in ``format`` (``json``, ``slack``, ``pagerduty`` with its ``routing_key``),
    retrying with exponential backoff and jitter, or after the pause a ``Retry-After`` answer asks for.

    ``max_pause_s`` caps every pause, and the pause between rounds of :func:`forward_alerts` while a URL
    stays unreachable.
    """

    urls: Sequence[str]
    attempts: int = 5
    backoff_s: float = 0.5
    timeout_s: float = 10.0
    max_pause_s: float = 60.0
    format: str = "json"
    routing_key: str | None = None

    def deliver(self, alert: Alert, urls: Sequence[str] | None = None) -> dict[str, Outcome]:
        """Send ``alert`` to every URL (or to ``urls``); what became of it at each, within ``attempts`` tries."""
        return {url: outcome for url, (outcome, _) in self.attempt(alert, urls).items()}

    def attempt(self, alert: Alert, urls: Sequence[str] | None = None) -> dict[str, tuple[Outcome, str]]:
        """:meth:`deliver`, with what the last try at each URL got (``HTTP 503``, ``unreachable: ...``). A
        PagerDuty change event goes to the Change Events endpoint beside each URL (:func:`change_url`)."""
        body = json.dumps(payload(alert, self.format, routing_key=self.routing_key)).encode()
        to = change_url if self.format == "pagerduty" and is_change(alert) else str
        return {url: self._post(to(url), body, alert.alert_id) for url in (self.urls if urls is None else urls)}

    def resolve(self, key: str, why: str) -> None:
        """PagerDuty: resolve incident ``key`` at every URL (retried like a trigger; logged, never parked)."""
        body = json.dumps(resolve_payload(key, self.routing_key)).encode()
        outcomes = {redacted(url): self._post(url, body, f"resolve:{key}")[0] for url in self.urls}
        log.info("incident resolved", extra={"fields": {"dedup_key": key, "why": why, "outcomes": outcomes}})

    def pause_s(self, rounds: int) -> float:
        """The pause before round ``rounds`` + 1 of sending an alert that some URL has not taken yet."""
        return float(min(self.max_pause_s, self.backoff_s * 2 ** (self.attempts + rounds)))

    def _post(self, url: str, body: bytes, alert_id: str) -> tuple[Outcome, str]:
        detail = ""
        for attempt in range(self.attempts):
            asked: float | None = None  # the pause a Retry-After header asked for
            target, authorization = _credentials(url)
            request = urllib.request.Request(
                target,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Idempotency-Key": alert_id, **authorization},
            )
            try:
                with _OPENER.open(request, timeout=self.timeout_s) as response:
                    if 200 <= response.status < 300:
                        return "delivered", f"HTTP {response.status}"
                    detail = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                detail = f"HTTP {exc.code}"
                if 300 <= exc.code < 400:  # a redirect not followed (see _KeepPost): a URL to set again
                    location = exc.headers.get("Location") if exc.headers else None
                    moved = redacted(urllib.parse.urljoin(url, location)) if location else "(no Location)"
                    detail = f"HTTP {exc.code}: moved to {moved}; set that URL"
                    log.error(
                        "webhook redirects a POST elsewhere; the alert is not sent there again",
                        extra={"fields": {"url": redacted(url), "status": exc.code, "location": moved}},
                    )
                    return "refused", detail
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    log.error(
                        "webhook refused the alert; it is not sent there again",
                        extra={"fields": {"url": redacted(url), "status": exc.code, "alert_id": alert_id}},
                    )
                    return "refused", detail
                asked = retry_after_s(exc.headers.get("Retry-After") if exc.headers else None)
                log.warning(
                    "webhook answered an error",
                    extra={"fields": {"url": redacted(url), "status": exc.code, "retry_after_s": asked}},
                )
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                detail = f"unreachable: {type(reason).__name__}"
                log.warning(
                    "webhook unreachable", extra={"fields": {"url": redacted(url), "error": type(exc).__name__}}
                )
            if attempt + 1 < self.attempts:
                jittered = self.backoff_s * 2**attempt * random.uniform(0.5, 1.5)
                time.sleep(min(asked if asked is not None else jittered, self.max_pause_s))
        return "failed", detail


def _credentials(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without the user and password it may carry (``https://user:pass@host/hook``, RFC 3986), and
    the HTTP Basic ``Authorization`` header they make: urllib sends neither (it took ``user:pass@host`` for
    a host with a port that is no number: every alert "unreachable", then parked).

    >>> _credentials("https://bot:s%40cret@hooks.example.com/a?b=1")
    ('https://hooks.example.com/a?b=1', {'Authorization': 'Basic Ym90OnNAY3JldA=='})
    >>> _credentials("https://hooks.example.com/a")
    ('https://hooks.example.com/a', {})
    """
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, {}
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
    target = urllib.parse.urlunsplit(parts._replace(netloc=host))
    return target, {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


class _KeepPost(urllib.request.HTTPRedirectHandler):
    """Follows 307 and 308, which keep the method and body, to the same scheme or https; refuses 301, 302 and
    303, after which urllib would send a GET without the alert (a receiver's 200 to it, "delivered", and the
    alert lost), and https to http (the URL's token in the clear). The credentials of a URL go to its own
    host only: a redirect to another host is followed without them."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if code not in (307, 308) or (req.type == "https" and not newurl.lower().startswith("https:")):
            return None  # urllib raises the answer as an HTTPError
        kept = dict(req.header_items())
        if urllib.parse.urlsplit(newurl).netloc.lower() != urllib.parse.urlsplit(req.full_url).netloc.lower():
            kept = {k: v for k, v in kept.items() if k.lower() != "authorization"}
        return urllib.request.Request(newurl, data=req.data, method=req.get_method(), headers=kept)


_OPENER = urllib.request.build_opener(_KeepPost)


def retry_after_s(header: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (it is a number of seconds, or an HTTP date); None without one.

    >>> retry_after_s("2"), retry_after_s(None), retry_after_s("soon")
    (2.0, None, None)
    """
    if not header:
        return None
    try:
        return max(float(header), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def forward_alerts(
    settings: Settings,
    forwarder: WebhookForwarder,
    *,
    name: str | None = None,
    alert_filter: AlertFilter | None = None,
    from_beginning: bool = False,
    idle_timeout_s: float | None = None,
    parking: AlertParking | None = None,
    park_after_s: float | None = None,
    specs: SpecCatalog | None = None,
) -> int:
    """Deliver every alert ``alert_filter`` takes to the webhooks, committing each only once every URL took it,
    or it was parked for the URLs that did not (with ``parking``: at once for a URL that refused it, after
    ``park_after_s`` of trying for one that stayed unreachable; without, an unreachable URL holds it back for
    as long as it takes); returns how many were handled, once ``idle_timeout_s`` (None: never) passed without
    an alert after the consumer joined its group, or waiting for a broker to answer (:func:`when_kafka_answers`).
    ``name``: the subscriber, whose consumer group is its own. A PagerDuty subscriber also resolves its
    incidents (``streams.drift.incidents``): it reads ``model-versions`` too, and ``specs`` give each model's
    cooldown. A filter that names the kind ``release`` reads ``model-versions`` for the release notices it
    takes (``specs`` give their owner and runbook); they are delivered as alerts, not counted among them."""
    incidents: Incidents | None = None
    topics = [settings.topics.alerts]
    catalog = specs or SpecCatalog.of(settings)
    if forwarder.format == "pagerduty":
        incidents = Incidents(lambda model: _cooldown_s(catalog, model))
    releases = alert_filter is not None and alert_filter.releases
    if incidents is not None or releases:
        topics.append(settings.topics.model_versions)
    begun = time.monotonic()
    group = settings.groups.webhooks(name)

    def subscribe() -> KafkaConsumer:
        take_over_offsets(settings, group, topics)
        return KafkaConsumer(
            *topics,
            **settings.kafka_python_config(),
            group_id=group,
            session_timeout_ms=int(settings.kafka_session_timeout_s * 1000),
            heartbeat_interval_ms=int(settings.kafka_session_timeout_s * 1000 / 3),
            auto_offset_reset="earliest" if from_beginning else "latest",
            enable_auto_commit=False,
        )

    consumer = when_kafka_answers(  # a subscriber started before its broker waits for it
        subscribe,
        settings,
        who=f"alert subscriber {group}",
        stop=lambda: idle_timeout_s is not None and time.monotonic() - begun > idle_timeout_s,
    )
    if consumer is None:  # idle for idle_timeout_s: no broker answered
        return 0
    handled, idle_since = 0, time.monotonic()
    try:
        while True:
            records = [r for batch in consumer.poll(timeout_ms=1000, max_records=1).values() for r in batch]
            if incidents is not None:
                for key in incidents.quiet(time.time()):
                    forwarder.resolve(key, "its model's cooldown passed without a new alert")
            if not records:
                if not consumer.assignment():  # still joining its group: not idle yet
                    idle_since = time.monotonic()
                elif idle_timeout_s is not None and time.monotonic() - idle_since > idle_timeout_s:
                    return handled
                continue
            idle_since = time.monotonic()
            for record in records:
                if record.topic != settings.topics.alerts:
                    change = _announcement(record.value)
                    if change is not None and incidents is not None:
                        _on_version_change(change, incidents, forwarder)
                    notice = release_notice(change, _spec(catalog, change.model)) if change and releases else None
                    if notice is not None and alert_filter is not None and alert_filter.matches(notice):
                        _deliver(forwarder, notice, name, parking, park_after_s)
                        if incidents is not None and not is_change(notice):
                            incidents.opened(notice, time.time())
                    _commit(consumer)
                    continue
                try:
                    alert = Alert.from_json(json.loads(record.value))
                except (ValueError, TypeError, KeyError) as exc:
                    log.warning(
                        "skipped an unreadable alert record",
                        extra={"fields": {"offset": record.offset, "error": str(exc)}},
                    )
                    _commit(consumer)
                    continue
                if alert_filter is None or alert_filter.matches(alert):
                    _deliver(forwarder, alert, name, parking, park_after_s)
                    if incidents is not None:
                        incidents.opened(alert, time.time())
                _commit(consumer)
                handled += 1
    finally:
        consumer.close()


def _deliver(
    forwarder: WebhookForwarder,
    alert: Alert,
    name: str | None,
    parking: AlertParking | None,
    park_after_s: float | None,
) -> None:
    """Send ``alert`` until every URL took it, or it is parked for those that did not (see forward_alerts)."""
    waiting: Sequence[str] = forwarder.urls
    rounds, started = 0, time.monotonic()
    while True:
        results = forwarder.attempt(alert, waiting)
        for url, (outcome, detail) in results.items():
            if outcome == "refused" and parking is not None:
                _park(parking, name, alert, url, f"refused: {detail}")
        waiting = [url for url, (outcome, _) in results.items() if outcome == "failed"]
        if not waiting:
            return
        held = time.monotonic() - started
        if parking is not None and park_after_s is not None and held >= park_after_s:
            for url in waiting:
                _park(parking, name, alert, url, f"undeliverable for {held:.0f} s: {results[url][1]}")
            return
        pause = forwarder.pause_s(rounds)
        log.error(
            "webhook delivery failed; the alert is held back (not committed) and sent again",
            extra={"fields": {"alert_id": alert.alert_id, "urls": len(waiting), "again_in_s": pause}},
        )
        time.sleep(pause)
        rounds += 1


def _announcement(value: bytes) -> VersionAnnouncement | None:
    """The ``model-versions`` message in ``value``; None when it is not one."""
    try:
        return VersionAnnouncement.from_json(json.loads(value))
    except ValueError:  # EventError included: not an announcement
        return None


def _spec(specs: SpecCatalog, model: str) -> ModelSpec | None:
    """``model``'s spec (a release notice's owner and runbook, an incident's cooldown); None without one, or with a
    broken one."""
    try:
        return specs.get(model)
    except DriftloopError:
        return None


def _on_version_change(change: VersionAnnouncement, incidents: Incidents, forwarder: WebhookForwarder) -> None:
    """A new champion resolves the incidents of the versions it replaced."""
    if change.stage == "champion":
        for key in incidents.replaced(change.model, change.version):
            forwarder.resolve(key, f"v{change.version} replaced the version that drifted")


def _cooldown_s(specs: SpecCatalog, model: str) -> float:
    spec = _spec(specs, model)
    return (spec.monitoring if spec is not None else MonitoringSpec()).cooldown_s  # a broken spec: the default


def resend_parked(forwarder: WebhookForwarder, parking: AlertParking, name: str | None) -> dict[str, int]:
    """Send subscriber ``name``'s parked alerts again to the forwarder's URLs they were parked for (matched by
    :func:`~streams.drift.routing.destination`); each delivered one is marked re-sent. Counts: ``resent``,
    ``failed`` (still parked), and ``elsewhere`` (parked for a destination none of the URLs is)."""
    counts = {"resent": 0, "failed": 0, "elsewhere": 0}
    for parked in parking.parked(name or ""):
        urls = [url for url in forwarder.urls if destination(url) == parked.destination]
        if not urls:
            counts["elsewhere"] += 1
            continue
        outcomes = forwarder.deliver(parked.alert, urls)
        if all(outcome == "delivered" for outcome in outcomes.values()):
            parking.mark_resent(parked)
            counts["resent"] += 1
        else:
            counts["failed"] += 1
    return counts


def _park(parking: AlertParking, name: str | None, alert: Alert, url: str, reason: str) -> None:
    parking.park(ParkedAlert(name or "", alert, destination(url), reason, time.time()))
    log.error(
        "alert parked: `driftloop alerts resend` sends it again",
        extra={"fields": {"alert_id": alert.alert_id, "url": redacted(url), "reason": reason}},
    )


def _commit(consumer: KafkaConsumer) -> None:
    try:
        consumer.commit()
    except CommitFailedError:  # the group moved on during a long outage: the alert comes again (deduped)
        log.warning("could not commit a handled alert; it may be delivered again", exc_info=True)
    except KafkaError as exc:  # the broker away: committed with the next alert, or the alert comes again (deduped)
        log.warning(
            "could not commit a handled alert; it may be delivered again", extra={"fields": {"error": repr(exc)}}
        )
