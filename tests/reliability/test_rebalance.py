"""Rebalance mid-stream: a worker joins, then the first leaves; nothing lost or doubled, detector state moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.scenarios import rebalance
from tests.stack_fixtures import PrivateStack

pytestmark = pytest.mark.integration


def test_adding_and_removing_a_worker_mid_stream_moves_partitions_and_detector_state(
    stack: PrivateStack, tmp_path: Path
) -> None:
    result = rebalance(stack, tmp_path, events=20_000)
    assert result.predictions_landed == 20_000 and result.labeled_landed == 20_000, result
    assert result.duplicates == 0, result
    assert result.alerts == 0, result
    assert result.detector_events >= 20_000, result  # the state moved with the partitions, not started over
    assert "second worker restored the model's detector state: True" in result.notes, result.notes
