"""Consumer-group lag: how far each group's committed offsets are behind the end of its topics."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from driftloop.infra.settings import Settings


@dataclass(frozen=True)
class TopicLag:
    """One group on one topic: messages not yet committed, summed over partitions."""

    group: str
    topic: str
    end: int  # messages ever written (sum of end offsets)
    committed: int  # sum of committed offsets (0 where the group never committed)
    started: bool  # whether the group has committed on this topic at all

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


def group_lag(settings: Settings, groups: dict[str, Iterable[str]]) -> list[TopicLag]:
    """Lag per ``{group: topics}`` (OffsetFetch only: nothing joins the group)."""
    result = []
    for group, topics in groups.items():
        consumer = KafkaConsumer(**settings.kafka_python_config(), group_id=group, enable_auto_commit=False)
        try:
            for topic in topics:
                partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
                if not partitions:
                    continue
                ends = consumer.end_offsets(partitions)
                committed = [consumer.committed(tp) for tp in partitions]
                result.append(
                    TopicLag(
                        group,
                        topic,
                        sum(ends.values()),
                        sum(c or 0 for c in committed),
                        any(c is not None for c in committed),
                    )
                )
        finally:
            consumer.close()
    return result
