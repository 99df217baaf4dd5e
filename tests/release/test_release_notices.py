"""Release notices: a subscriber that names the kind ``release`` gets the registry's changes of stage (a rejection,
a rollback, ...) through its webhook, as alerts of that kind, with the model's owner and runbook; one that does
not name it gets none of them. The registry, the broker and the HTTP receiver are real."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from http.server import HTTPServer

import pytest

from driftloop.infra.settings import Settings
from driftloop.models.registry import ModelRegistry
from driftloop.streams.drift.routing import AlertFilter
from driftloop.streams.drift.subscribers import WebhookForwarder, forward_alerts
from tests.stack_fixtures import webhook_receiver

pytestmark = pytest.mark.integration

OWNER = 'owner = "risk-ml@example.com"\nrunbook = "https://wiki.example.com/fraud-release"'


@pytest.fixture()
def receiver() -> Iterator[HTTPServer]:
    with webhook_receiver() as server:
        yield server


def test_a_subscriber_that_names_the_release_kind_gets_rejections_and_rollbacks_and_others_none(
    release_settings: Settings, new_model, receiver: HTTPServer
) -> None:
    model = new_model(("champion", "canary", "shadow"), extra=OWNER)
    registry = ModelRegistry(release_settings)
    registry.transition(model, 3, "rejected", reason="worse in shadow: accuracy 0.61 vs v1 0.90", path="release")
    registry.transition(model, 2, "champion", reason="canary passed", path="release")
    registry.rollback(model, "degraded after promotion: accuracy 0.60 vs v1 0.90", to_version=1, path="release")
    registry.close()

    base = f"http://127.0.0.1:{receiver.server_port}"
    subscribers = {  # name: (format, filter); each reads every change from the beginning, in a group of its own
        "on-call": ("json", AlertFilter(models=(model,), kinds=("release",), min_severity="warning")),
        "chat": ("slack", AlertFilter(models=(model,), kinds=("release",))),
        "pager": ("pagerduty", AlertFilter(models=(model,))),  # reads model-versions too, for its incidents
    }

    def run(name: str) -> None:
        form, chosen = subscribers[name]
        forwarder = WebhookForwarder([f"{base}/{name}"], format=form, routing_key="R0UT1NG")
        forward_alerts(
            release_settings, forwarder, name=name, alert_filter=chosen, from_beginning=True, idle_timeout_s=4
        )

    threads = [threading.Thread(target=run, args=(name,)) for name in subscribers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    received: dict[str, list[dict]] = defaultdict(list)  # by subscriber: each posts to a path of its own
    for path, body in zip(receiver.paths, receiver.received, strict=True):  # type: ignore[attr-defined]
        received[path].append(body)

    rejected, rolled_back = received["/on-call"]  # the warning and the critical one, in the order they happened
    assert (rejected["kind"], rejected["severity"], rejected["model_version"]) == ("release", "warning", 3)
    assert rejected["text"] == f"{model} v3 rejected in shadow: worse in shadow: accuracy 0.61 vs v1 0.90"
    assert (rolled_back["severity"], rolled_back["model_version"], rolled_back["evidence"]["stage"]) == (
        "critical",
        2,
        "rolled_back",
    )
    assert rolled_back["text"].startswith(f"{model} v2 rolled back: degraded after promotion")
    assert (rolled_back["owner"], rolled_back["runbook"]) == (
        "risk-ml@example.com",
        "https://wiki.example.com/fraud-release",
    )
    assert rolled_back["signal"] == "release" and rolled_back["detector"] == "release"

    chat = [m["text"] for m in received["/chat"]]  # every notice, the info ones too
    assert any(f"{model} v2 promoted to champion: canary passed" in text for text in chat)
    assert any(f"{model} v1 champion again: degraded after promotion" in text for text in chat)
    assert not any("retired" in text for text in chat)  # a retirement is the other half of a promotion
    assert "/pager" not in received  # it did not name the kind


def test_a_pagerduty_subscriber_pages_for_a_rejection_or_a_rollback_and_logs_the_rest_as_changes(
    release_settings: Settings, new_model, receiver: HTTPServer
) -> None:
    model = new_model(("champion", "canary", "shadow"), extra=f"{OWNER}\n[monitoring]\ncooldown_s = 2")
    registry = ModelRegistry(release_settings)
    registry.transition(model, 3, "rejected", reason="worse in shadow: accuracy 0.61 vs v1 0.90", path="release")
    registry.transition(model, 2, "champion", reason="canary passed", path="release")
    registry.rollback(model, "degraded after promotion: accuracy 0.60 vs v1 0.90", to_version=1, path="release")
    registry.close()

    base = f"http://127.0.0.1:{receiver.server_port}/pd"
    forwarder = WebhookForwarder([f"{base}/v2/enqueue"], format="pagerduty", routing_key="R0UT1NG")
    chosen = AlertFilter(models=(model,), kinds=("release",))
    forward_alerts(
        release_settings, forwarder, name="pager", alert_filter=chosen, from_beginning=True, idle_timeout_s=6
    )
    sent = list(zip(receiver.paths, receiver.received, strict=True))  # type: ignore[attr-defined]

    events = [body for path, body in sent if path == "/pd/v2/enqueue"]
    assert [(e["event_action"], e["dedup_key"]) for e in events] == [
        ("trigger", f"{model}/release"),  # the rejection
        ("trigger", f"{model}/release"),  # the rollback: the same incident
        ("resolve", f"{model}/release"),  # once the model's cooldown (2 s) passed without another
    ]
    assert [e["payload"]["severity"] for e in events[:2]] == ["warning", "critical"]
    assert events[1]["payload"]["summary"].startswith(f"{model} v2 rolled back: degraded after promotion")
    changes = [body for path, body in sent if path == "/pd/v2/change/enqueue"]  # PagerDuty's Change Events API
    summaries = [c["payload"]["summary"] for c in changes]
    assert f"{model} v2 promoted to champion: canary passed" in summaries
    assert any(s.startswith(f"{model} v1 champion again: degraded after promotion") for s in summaries)
    assert any(s.startswith(f"{model} v2 in canary (50% of requests)") for s in summaries)
    assert all("event_action" not in c and c["routing_key"] == "R0UT1NG" for c in changes)
    assert all(c["payload"]["source"] == model and c["payload"]["timestamp"] for c in changes)
    assert changes[0]["links"] == [{"href": "https://wiki.example.com/fraud-release", "text": "runbook"}]
