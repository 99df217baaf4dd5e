"""Which key a producer's message takes: a model's name, or one of several keys that spread a busy model over
partitions (``docs/scaling.md``).

>>> keys = spread_keys("fraud", 4, 6)
>>> len(keys), len({default_partition(k, 6) for k in keys})
(4, 4)
>>> rotation = KeyRotation(2, partitions_for=lambda topic: {0, 1, 2, 3})
>>> [rotation("predictions", "fraud") for _ in range(3)] == [*spread_keys("fraud", 2, 4), spread_keys("fraud", 2, 4)[0]]
True
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from driftloop.infra.kafka.partitioner import default_partition


def spread_keys(model: str, spread: int, partitions: int) -> list[bytes]:
    """Keys ``model#j`` that Kafka's default partitioner (murmur2, as kafka-python and the Java client use it)
    puts on ``min(spread, partitions)`` different partitions of a topic of ``partitions``. ``#`` is never
    part of a model name: no other model's key."""
    wanted, keys, number = min(spread, partitions), {}, 0
    while len(keys) < wanted:
        key = f"{model}#{number}".encode()
        keys.setdefault(default_partition(key, partitions), key)
        number += 1
    return list(keys.values())


class KeyRotation:
    """The key of a model's next message on a topic: its name when ``spread`` is 1, else its :func:`spread_keys`
    in turn (``partitions_for`` tells a topic's partitions, asked once a topic and model)."""

    def __init__(self, spread: int, partitions_for: Callable[[str], Collection[int] | None]) -> None:
        if spread < 1:
            raise ValueError(f"spread must be 1 or more (the keys a model's messages take turns on), not {spread}")
        self.spread = spread
        self._partitions_for = partitions_for
        self._keys: dict[tuple[str, str], list[bytes]] = {}
        self._turns: dict[tuple[str, str], int] = {}

    def __call__(self, topic: str, model: str) -> bytes:
        if self.spread == 1:
            return model.encode()
        keys = self._keys.get((topic, model))
        if keys is None:
            count = len(self._partitions_for(topic) or ()) or 1
            keys = self._keys[(topic, model)] = spread_keys(model, self.spread, count)
        turn = self._turns[(topic, model)] = (self._turns.get((topic, model), -1) + 1) % len(keys)
        return keys[turn]
