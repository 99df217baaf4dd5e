"""Consumer groups named after the topic prefix, and what carrying a group's offsets over does when Kafka refuses.

The groups themselves, on the real broker: ``tests/streams/test_ingestion.py`` (the streams worker) and
``tests/streams/test_alert_routing.py`` (a webhook subscriber)."""

from __future__ import annotations

import logging

import pytest
from kafka.errors import GroupAuthorizationFailedError, KafkaConnectionError

from driftloop.infra.kafka import groups
from driftloop.infra.settings import Settings


def test_each_prefix_names_groups_no_other_prefix_names() -> None:
    prefixes = ["driftloop.", "acme.", "acme-", "staging.acme.", "beta."]
    named = {
        prefix: (s.worker_group, s.groups.retrain, s.groups.webhooks("risk"), s.groups.webhooks(None))
        for prefix in prefixes
        for s in [Settings.from_env({"DRIFTLOOP_TOPIC_PREFIX": prefix})]
    }
    every = [group for names in named.values() for group in names]
    assert len(every) == len(set(every))
    assert named["driftloop."] == (
        "driftloop-streams",
        "driftloop-retrain",
        "driftloop-webhooks-risk",
        "driftloop-webhooks",
    )
    own = Settings.from_env({"DRIFTLOOP_TOPIC_PREFIX": "acme.", "DRIFTLOOP_WORKER_GROUP": "acme-ingest"})
    assert own.worker_group == "acme-ingest" and own.groups.former(own.worker_group) is None


def test_a_group_whose_former_offsets_kafka_will_not_show_starts_as_a_new_group(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A cluster whose ACLs let a deployment read its own prefix's groups only refuses the former group's
    offsets: a WARNING, and the worker starts; a broker that does not answer is raised, for the caller to wait
    for it (``infra.kafka.waiting``)."""
    settings = Settings.from_env({"DRIFTLOOP_TOPIC_PREFIX": "acme."})

    def refuse(*args: object) -> dict:  # type: ignore[type-arg]
        raise GroupAuthorizationFailedError("driftloop-streams")

    monkeypatch.setattr(groups, "_take_over", refuse)
    with caplog.at_level(logging.WARNING, logger="driftloop.broker"):
        assert groups.take_over_offsets(settings, settings.worker_group, ["acme.predictions"]) == {}
    (record,) = caplog.records
    assert "starts as a new group" in record.getMessage()
    assert record.fields["former"] == "driftloop-streams" and "GroupAuthorizationFailed" in record.fields["error"]  # type: ignore[attr-defined]

    def away(*args: object) -> dict:  # type: ignore[type-arg]
        raise KafkaConnectionError("no broker")

    monkeypatch.setattr(groups, "_take_over", away)
    with pytest.raises(KafkaConnectionError):
        groups.take_over_offsets(settings, settings.worker_group, ["acme.predictions"])
    # a group that kept its name has nothing to take over, and asks Kafka nothing
    default = Settings.from_env({})
    assert groups.take_over_offsets(default, default.worker_group, ["driftloop.predictions"]) == {}
