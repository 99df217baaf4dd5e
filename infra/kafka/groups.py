"""A consumer group's committed offsets, carried over from the name it had before groups were named after the
topic prefix (``infra.settings.ConsumerGroups``).

A deployment under a prefix of its own (``acme.``) read its topics in the groups every deployment shared
(``driftloop-streams``, ``driftloop-retrain``, ``driftloop-webhooks-<name>``); now in ``acme.driftloop-...``.
A group new to Kafka starts where its consumer's ``auto_offset_reset`` says: the streams and retrain workers
from the start of their topics (every event detected again, every alert in retention retrained on), a webhook
subscriber from their end (the alerts published while it was being upgraded never sent). So where a group has
committed nothing on its topics and its former name has, the former's offsets are committed under the new
name first, and the deployment picks up where its previous version left off. Stop the previous version's
consumers first: those still running go on in the former group.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from driftloop.infra.service_errors import kafka_unreachable
from driftloop.infra.settings import Settings

log = logging.getLogger("driftloop.broker")


def take_over_offsets(settings: Settings, group: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """Commit under ``group`` the offsets its former name committed on ``topics``, where ``group`` has committed
    none there yet; returns what was carried over (nothing for a group that kept its name, that committed
    before, or whose former name committed nothing). Raises what kafka-python raises when no broker answers;
    any other refusal (a cluster whose ACLs let this deployment read its own prefix's groups only) is a WARNING,
    and the group starts as a new one."""
    former = settings.groups.former(group)
    if former is None:
        return {}
    try:
        return _take_over(settings, group, former, topics)
    except KafkaError as exc:
        if kafka_unreachable(exc):
            raise
        log.warning(
            "could not carry a consumer group's offsets over from the group it had; it starts as a new group",
            extra={"fields": {"group": group, "former": former, "error": repr(exc)}},
        )
        return {}


def _take_over(settings: Settings, group: str, former: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    current = KafkaConsumer(**settings.kafka_python_config(), group_id=group, enable_auto_commit=False)
    previous = KafkaConsumer(**settings.kafka_python_config(), group_id=former, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in sorted(current.partitions_for_topic(topic) or ())
        ]
        if any(current.committed(tp) is not None for tp in partitions):
            return {}
        carried = {tp: offset for tp in partitions if (offset := previous.committed(tp)) is not None}
        if carried:
            current.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in carried.items()})
            log.warning(
                "consumer group now named after the topic prefix: its offsets were carried over from the group"
                " it had; delete that one once no consumer of the previous version runs",
                extra={"fields": {"group": group, "former": former, "partitions": len(carried)}},
            )
        return carried
    finally:
        current.close()
        previous.close()
