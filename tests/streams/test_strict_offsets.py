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
