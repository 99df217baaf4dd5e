"""One busy model across workers (docs/scaling.md): its events spread over four partitions, two workers share
them and detect on their partitions, one of them is killed with ``kill -9`` mid-stream and started again
(partitions move twice, with their detector state); the drift half-way makes exactly one alert, and every
event lands once. (A clean leave mid-stream, on a model keyed by name: ``rebalance`` in ``make soak``.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.scenarios import hot_model
from tests.stack_fixtures import PrivateStack

pytestmark = pytest.mark.integration


def test_a_model_over_four_partitions_and_two_workers_one_killed_raises_one_alert_per_drift(
    stack: PrivateStack, tmp_path: Path
) -> None:
    seen = hot_model(stack, tmp_path, events=16_000, kill=True)
    ledger = seen.ledger
    assert ledger.faults == 1 and ledger.worker_restarts == 1
    assert ledger.predictions_landed == 16_000 and ledger.labeled_landed == 16_000, ledger
    assert ledger.duplicates == 0, ledger
    assert seen.partitions_with_state == 4  # every partition's detectors kept their own state
    # the restarted worker joined mid-stream: partitions moved back to it with their state (a rebalance), and
    # the detectors' histories cover every event (re-deliveries count twice), none started over
    assert seen.restored_by_restarted and seen.detector_events >= 16_000, seen
    # the shift showed on several partitions (each detects on its share), and the gate let one alert through
    assert seen.detections >= 2, seen
    assert len(seen.alerts) == 1, seen.alerts
    alert_id, kind, signal, fired_at = seen.alerts[0]
    assert (kind, signal) in {("data", "y"), ("data", "joint")}, seen.alerts
    assert seen.shift_at <= fired_at < seen.shift_at + 2000, seen.alerts  # after the shift, not long after
    assert seen.alert_ids_published == {alert_id}  # on the alerts topic too: one alert (re-sent at most)
