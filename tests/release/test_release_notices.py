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
