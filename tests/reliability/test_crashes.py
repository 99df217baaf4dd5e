"""Worker crashes: `kill -9` at random points while events stream in loses nothing and doubles nothing.

The fast version runs in `make test`; `make soak` runs the long one (1,000,000 events, 10 kills).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.scenarios import crash_loop
from tests.stack_fixtures import PrivateStack

pytestmark = pytest.mark.integration


def test_kill_9_mid_stream_loses_and_doubles_nothing_and_restores_detector_state(
    stack: PrivateStack, tmp_path: Path
) -> None:
    result = crash_loop(stack, tmp_path, events=20_000, kills=3)
    assert result.faults == 3 and result.worker_restarts == 3
    assert result.predictions_landed == 20_000, result
    assert result.labeled_landed == 20_000, result  # every outcome joined, none lost in a crash
    assert result.duplicates == 0, result  # query results count each event_id once
    assert result.alerts == 0, result  # stationary data: a restored worker does not re-alert on old data
    # restored, not restarted from scratch: the detectors' count covers every event (re-deliveries included)
    assert result.detector_events >= 20_000, result
    assert "restored by 0 of" not in result.notes[0], result.notes
