"""Where Kafka's default partitioner puts a keyed message (murmur2, as kafka-python and the Java client hash).

>>> default_partition(b"fraud", 4) == default_partition(b"fraud", 4) < 4
True
"""

from __future__ import annotations

from kafka.partitioner.default import murmur2


def default_partition(key: bytes, partitions: int) -> int:
    """The partition of a topic of ``partitions`` that a message keyed ``key`` goes to, no partition given."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)
