"""ClickHouse outage: the worker keeps running, holds back (consumption paused, memory bounded), then catches up."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.scenarios import clickhouse_outage

pytestmark = pytest.mark.integration


def test_a_clickhouse_outage_holds_the_worker_back_and_loses_nothing(tmp_path: Path) -> None:
    result = clickhouse_outage(tmp_path / "stack", tmp_path, events=10_000, outage_s=12)
    assert result.predictions_landed == 10_000 and result.labeled_landed == 10_000, result
    assert result.duplicates == 0, result
    assert result.committed_during_outage == 0, result  # nothing acknowledged unwritten
    assert result.max_rss_mb < 1024, result
