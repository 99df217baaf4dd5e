"""A gap in offsets is never committed as if it had been processed (streams.compat.faust)."""

from __future__ import annotations

import asyncio

import faust
from faust.types import TP

from driftloop.streams.app_factory import create_app
from tests.stack_fixtures import private_stack_env


def _commit_offset_after_a_gap(app: faust.App) -> int | None:
    consumer = app.consumer
    tp = TP("driftloop.outcomes", 0)
    consumer._committed_offset[tp] = None
    consumer._acked[tp] = [0, 1, 2]  # processed
    asyncio.run(consumer._add_gap(tp, 3, 5))  # offsets 3..5 were skipped while reading
    consumer._acked[tp].append(6)  # processed
    return consumer._new_offset(tp)


def test_the_worker_app_commits_only_up_to_a_gap(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from driftloop.infra.settings import Settings

    app = create_app(Settings.from_env(private_stack_env(tmp_path)), app_id="strict-test")
    assert _commit_offset_after_a_gap(app) == 3  # 3..5 stay unacknowledged: read again after a restart


def test_plain_faust_would_commit_past_the_gap(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Why the strict consumer exists: Faust folds the gap in as acknowledged.
    app = faust.App("plain-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path), web_enabled=False)
    assert _commit_offset_after_a_gap(app) == 7  # past 3..5, which were never processed


def test_records_acknowledged_in_bulk_commit_as_messages_acknowledged_one_by_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The worker acknowledges a written batch of a record lane at once (streams.record_lanes): offsets are
    committed up to the first one not acknowledged, as Faust does for messages."""
    from types import SimpleNamespace

    from driftloop.infra.settings import Settings

    app = create_app(Settings.from_env(private_stack_env(tmp_path)), app_id="lane-ack-test")
    app.topics._acking_topics.add("driftloop.outcomes")  # what subscribing the worker's agent does
    consumer = app.consumer
    tp = TP("driftloop.outcomes", 0)
    consumer._committed_offset[tp] = None

    def acknowledge(*offsets: int, topic: str = "driftloop.outcomes") -> None:
        consumer.acknowledge([SimpleNamespace(topic=topic, partition=0, offset=o) for o in offsets])

    acknowledge(0, 1, 2, 4, 5)  # 3 is still being written
    assert consumer._new_offset(tp) == 3
    acknowledge(3, 4)  # 4 again: counted once
    assert consumer._new_offset(tp) == 6 and consumer._n_acked == 6
    consumer._committed_offset[tp] = 6
    acknowledge(2, 6)  # 2 is below the committed offset: left alone
    acknowledge(7, topic="driftloop.other")  # a topic without acknowledgements
    assert consumer._new_offset(tp) == 7 and consumer._n_acked == 7


def test_records_put_in_a_lane_past_a_gap_leave_it_unacknowledged_and_logged(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    """A lane's records are checked for skipped offsets as Faust checks messages one by one: a gap is logged
    (never acknowledged), and the records go into the lane all the same."""
    import logging
    from types import SimpleNamespace

    from driftloop.infra.settings import Settings
    from driftloop.streams.record_lanes import RecordLane

    app = create_app(Settings.from_env(private_stack_env(tmp_path)), app_id="lane-gap-test")
    app.topics._acking_topics.add("driftloop.outcomes")
    consumer = app.consumer
    tp = TP("driftloop.outcomes", 0)

    def fetched(*offsets: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(offset=o, serialized_value_size=10) for o in offsets]

    async def put_twice() -> tuple[bool, bool, int]:
        lane = RecordLane(max_records=100, max_bytes=1 << 20, max_wait_s=5.0)
        consumer._read_offset[tp] = 4
        first = await consumer._put_in_lane(lane, tp, fetched(4, 5, 6))  # 4 again (read offset), no gap
        second = await consumer._put_in_lane(lane, tp, fetched(9, 10, 12))  # 7..8 and 11 skipped
        return first, second, len(lane)

    with caplog.at_level(logging.WARNING, logger="driftloop.streams"):
        assert asyncio.run(put_twice()) == (True, True, 6)
    gaps = [(r.fields["from"], r.fields["to"]) for r in caplog.records if "offsets skipped" in r.getMessage()]
    assert gaps == [(7, 8), (11, 11)] and consumer._read_offset[tp] == 12
