"""Which alerts a subscriber takes, and in what shape it gets them.

A subscriber (``driftloop alerts webhook --name team-a``) has a name of its own, hence a consumer group of its
own: two teams' forwarders each get every alert. Its :class:`AlertFilter` picks models (globs), kinds and a
lowest severity; the alerts it does not pick are passed over (committed, not sent). Its payload is one of
:data:`PAYLOADS`: the generic JSON (every field of the alert and a chat-friendly ``text``), Slack's incoming
webhook format, or PagerDuty's Events API v2 (``dedup_key`` = model/signal, so repeated alerts of one signal
are one incident). A release notice that pages nobody (a promotion, a step to shadow or canary: severity
``info``) is a PagerDuty **change event** (:func:`is_change`), sent to the Change Events endpoint beside the
subscriber's (:func:`change_url`): it shows on the service's timeline beside its incidents, and opens none.

>>> from driftloop.infra.contract import Alert
>>> alert = Alert.example()
>>> AlertFilter(models=("fraud-*",)).matches(alert), AlertFilter(min_severity="critical").matches(alert)
(False, True)
>>> body = payload(alert, "pagerduty", routing_key="R0UT1NG")
>>> body["event_action"], body["dedup_key"] == f"{alert.model}/{alert.signal}", body["payload"]["severity"]
('trigger', True, 'critical')
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from driftloop.infra.contract import ALERT_KINDS, KINDS, RELEASE, SEVERITIES, Alert
from driftloop.infra.errors import DriftloopError


class SubscriberError(DriftloopError):
    """A subscriber is set up wrong: a filter, a payload format, or where its URLs and keys come from."""


@dataclass(frozen=True)
class AlertFilter:
    """The alerts a subscriber takes: models matching one of ``models`` (globs; none: every model), of one of
    ``kinds`` (none: every kind of drift; ``release``, the release controller's notices, only when named), at
    ``min_severity`` or worse."""

    models: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    min_severity: str = "info"

    def __post_init__(self) -> None:
        if self.min_severity not in SEVERITIES:
            raise SubscriberError(f"unknown severity {self.min_severity!r}; use one of {', '.join(SEVERITIES)}")
        unknown = set(self.kinds) - set(ALERT_KINDS)
        if unknown:
            raise SubscriberError(f"unknown alert kind {sorted(unknown)}; use one of {', '.join(ALERT_KINDS)}")

    @property
    def releases(self) -> bool:
        """Whether the subscriber takes release notices (it named the kind)."""
        return RELEASE in self.kinds

    def matches(self, alert: Alert) -> bool:
        return (
            (not self.models or any(fnmatch.fnmatchcase(alert.model, glob) for glob in self.models))
            and (alert.kind in self.kinds if self.kinds else alert.kind in KINDS)
            and SEVERITIES.index(alert.severity) >= SEVERITIES.index(self.min_severity)
        )


def _generic(alert: Alert, routing_key: str | None) -> dict[str, Any]:
    return alert.to_json() | {"text": alert.message}


def _slack(alert: Alert, routing_key: str | None) -> dict[str, Any]:
    mark = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}
    facts = [f"*model* {alert.model} v{alert.model_version}"]
    if alert.kind == RELEASE:
        stages = (alert.evidence.get("from_stage"), alert.evidence.get("stage"))
        facts.append(f"*release* {slack_text(' → '.join(str(s) for s in stages if s))}")
    else:
        facts.append(f"*signal* {slack_text(alert.signal)} ({alert.kind})")
    if alert.change_point_request_id:
        facts.append(f"*since* request {slack_text(alert.change_point_request_id)}")
    if alert.owner:
        facts.append(f"*owner* {slack_text(alert.owner)}")
    if alert.runbook:
        facts.append(f"*runbook* <{slack_text(alert.runbook)}>")
    text = f"{mark[alert.severity]} {slack_text(alert.message)}"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": fact} for fact in facts]},
        ],
    }


def slack_text(text: str) -> str:
    """``text`` as Slack shows it as written: ``&``, ``<`` and ``>`` escaped, as Slack asks. Feature names and
    request ids come from the events' producers, and ``<!channel>`` among them notified a whole channel.

    >>> slack_text("<!channel> & a>b")
    '&lt;!channel&gt; &amp; a&gt;b'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _pagerduty(alert: Alert, routing_key: str | None) -> dict[str, Any]:
    if not routing_key:
        raise SubscriberError("a PagerDuty subscriber needs its integration key: --routing-key-env NAME")
    if is_change(alert):
        return _pagerduty_change(alert, routing_key)
    fields = alert.to_json()
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(alert),
        "payload": {
            "summary": alert.message[:1024],
            "source": alert.model,
            "severity": alert.severity,  # PagerDuty's levels include info, warning and critical
            "timestamp": fields["event_ts"],
            "component": alert.signal,
            "group": alert.kind,
            "class": alert.kind if alert.kind == RELEASE else f"{alert.kind} drift",
            "custom_details": fields,
        },
        **({"links": [{"href": alert.runbook, "text": "runbook"}]} if alert.runbook else {}),
    }


def is_change(alert: Alert) -> bool:
    """Whether ``alert`` is news that pages nobody: a release notice of severity ``info`` (a promotion, a step to
    shadow or canary), which PagerDuty takes as a change event rather than an incident."""
    return alert.kind == RELEASE and alert.severity == "info"


def _pagerduty_change(alert: Alert, routing_key: str) -> dict[str, Any]:
    """PagerDuty's Change Events API: a change of the service (a deploy), shown beside its incidents."""
    fields = alert.to_json()
    return {
        "routing_key": routing_key,
        "payload": {
            "summary": alert.message[:1024],
            "source": alert.model,
            "timestamp": fields["event_ts"],
            "custom_details": fields,
        },
        **({"links": [{"href": alert.runbook, "text": "runbook"}]} if alert.runbook else {}),
    }


def change_url(url: str) -> str:
    """Where a subscriber posting to PagerDuty's Events API v2 at ``url`` sends change events: the Change Events
    endpoint beside it (``.../v2/enqueue`` → ``.../v2/change/enqueue``); any other URL (a relay of one's own)
    takes them as it takes the rest.

    >>> change_url("https://events.pagerduty.com/v2/enqueue"), change_url("https://relay.example.com/pd")
    ('https://events.pagerduty.com/v2/change/enqueue', 'https://relay.example.com/pd')
    """
    parts = urlsplit(url)
    if not parts.path.rstrip("/").endswith("/v2/enqueue"):
        return url
    return parts._replace(path=parts.path.rstrip("/").removesuffix("/enqueue") + "/change/enqueue").geturl()


def resolve_payload(key: str, routing_key: str | None) -> dict[str, Any]:
    """PagerDuty Events v2: resolve the incident ``key`` (a :func:`dedup_key`)."""
    if not routing_key:
        raise SubscriberError("a PagerDuty subscriber needs its integration key: --routing-key-env NAME")
    return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}


def dedup_key(alert: Alert) -> str:
    """One incident per model and signal: PagerDuty folds repeated alerts of it into the open one."""
    return f"{alert.model}/{alert.signal}"


#: Payload formats by name.
PAYLOADS: dict[str, Callable[[Alert, str | None], dict[str, Any]]] = {
    "json": _generic,
    "slack": _slack,
    "pagerduty": _pagerduty,
}


def payload(alert: Alert, format: str, *, routing_key: str | None = None) -> dict[str, Any]:
    """``alert`` as a ``format`` body (see :data:`PAYLOADS`)."""
    if format not in PAYLOADS:
        raise SubscriberError(f"unknown payload format {format!r}; use one of {', '.join(PAYLOADS)}")
    return PAYLOADS[format](alert, routing_key)


def secret_urls(env_names: Sequence[str] = (), files: Sequence[Path] = ()) -> list[str]:
    """Webhook URLs from environment variables and files (one a line; ``#`` starts a comment): URLs carry
    their tokens, so they are not taken from the command line, where every user of the machine sees them."""
    urls: list[str] = []
    for name in env_names:
        value = os.environ.get(name, "").strip()
        if not value:
            raise SubscriberError(f"environment variable {name} is not set: export the webhook URL in it")
        urls.append(value)
    for path in files:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise SubscriberError(f"cannot read webhook URLs from {path}: {exc.strerror}") from exc
        urls += [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    for url in urls:
        if urlsplit(url).scheme not in {"http", "https"}:
            raise SubscriberError(f"not an http(s) URL: {redacted(url)} (check the variable or the file)")
    return urls


def destination(url: str) -> str:
    """A webhook as records may name it: :func:`redacted`, and a short digest of the whole URL that tells apart
    two webhooks on one host (Slack's are all on hooks.slack.com) without giving away their tokens.

    >>> destination("https://hooks.example.com/T0/B1/secret")
    'https://hooks.example.com/… #b85a7226'
    """
    return f"{redacted(url)} #{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def redacted(url: str) -> str:
    """What logs may say of a URL: its scheme and host (the path and query carry the token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…" if parts.netloc else "(not a URL)"
