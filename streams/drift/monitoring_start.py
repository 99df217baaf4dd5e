"""When a model's monitoring last started over, read from ``detector_state``; light enough for the Faust
process, whose alert gate reads it (no detector is imported here).

``detector_state`` holds a row per (model, partition). Detection saves its state per Kafka partition; the
row of :data:`WHOLE_MODEL` is what it saved before it did (migration 0013), which seeds each partition's
detectors, and is since written only by ``DetectorStateStore.forget``: a ``null`` state, the newest
revision, at the time the model's monitoring started over. The per-partition ``null`` rows written with it
are replaced by the next save; this one stays.
"""

from __future__ import annotations

from typing import Any

#: The partition of state saved before detection was per partition, and of a start over's mark.
WHOLE_MODEL = -1


def monitoring_began(client: Any, model: str) -> int:
    """When ``model``'s monitoring last started over (epoch seconds, wall clock), or 0 when it never did
    (``client``: a clickhouse-driver client)."""
    rows = client.execute(
        "SELECT argMax(state, revision), toUInt32(argMax(saved_at, revision)) FROM detector_state "
        "WHERE model = %(m)s AND partition = %(whole)s",
        {"m": model, "whole": WHOLE_MODEL},
    )
    return int(rows[0][1]) if rows and rows[0][0] == "null" else 0
