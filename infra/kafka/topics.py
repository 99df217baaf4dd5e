"""Create the contract's topics explicitly (never rely on broker auto-creation) and describe them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from driftloop.infra.errors import TopicProvisioningError, UnreachableError
from driftloop.infra.settings import Settings


@dataclass(frozen=True)
class TopicReport:
    """What :func:`provision_topics` found and did. ``mismatched`` maps a topic to (has, wanted) partitions."""

    created: tuple[str, ...]
    existing: tuple[str, ...]
    mismatched: dict[str, tuple[int, int]] = field(default_factory=dict)


def admin_client(settings: Settings, *, timeout_s: float = 10.0) -> KafkaAdminClient:
    """A kafka-python admin client for the configured cluster; ``UnreachableError`` when none answers."""
    try:
        return KafkaAdminClient(
            **settings.kafka_python_config(),
            client_id="driftloop-admin",
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),  # kafka-python's default waits 30 s for a dead broker
        )
    except KafkaError as exc:
        raise UnreachableError(
            f"Kafka at {settings.kafka_bootstrap} does not answer ({exc}). Start it with `driftloop stack up`, "
            "or point DRIFTLOOP_KAFKA_BOOTSTRAP at your cluster."
        ) from exc


def describe_topics(settings: Settings, names: Iterable[str]) -> dict[str, int]:
    """Partition count of each of ``names`` that exists."""
    admin = admin_client(settings)
    try:
        return _partition_counts(admin, names)
    finally:
        admin.close()


def provision_topics(settings: Settings, names: Iterable[str] | None = None) -> TopicReport:
    """Create every missing topic of ``names`` (default: the contract's) with the configured partitions.

    Existing topics are left alone; one with a different partition count is reported, not changed
    (Kafka cannot shrink a topic, and growing one reshuffles keys across partitions).
    """
    wanted = list(settings.topics.all() if names is None else names)
    admin = admin_client(settings)
    try:
        existing = _partition_counts(admin, wanted)
        missing = [name for name in wanted if name not in existing]
        created = []
        for name in missing:
            try:
                admin.create_topics(
                    [NewTopic(name, settings.topic_partitions, settings.topic_replication)],
                    timeout_ms=30_000,
                )
                created.append(name)
            except TopicAlreadyExistsError:  # another provisioner was quicker: fine
                existing |= _partition_counts(admin, [name])
            except KafkaError as exc:
                raise TopicProvisioningError(
                    f"cannot create topic {name!r} ({settings.topic_partitions} partitions, replication "
                    f"{settings.topic_replication}): {exc}. Check DRIFTLOOP_TOPIC_PARTITIONS / "
                    "DRIFTLOOP_TOPIC_REPLICATION against the cluster, and the client's ACLs."
                ) from exc
    finally:
        admin.close()
    mismatched = {
        name: (count, settings.topic_partitions)
        for name, count in existing.items()
        if count != settings.topic_partitions
    }
    return TopicReport(tuple(created), tuple(n for n in wanted if n in existing), mismatched)


def _partition_counts(admin: KafkaAdminClient, names: Iterable[str]) -> dict[str, int]:
    present = set(admin.list_topics())
    names = [n for n in names if n in present]
    if not names:
        return {}
    return {d["name"]: len(d["partitions"]) for d in admin.describe_topics(names) if not d["error_code"]}
