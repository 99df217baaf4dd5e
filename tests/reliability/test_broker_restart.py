"""Broker restart: the in-memory broker goes away mid-stream and comes back empty.

The SDK producer and the worker reconnect by themselves; the worker reports the new instance, provisions
the topics again, names the loss window (the old instance's offsets it never wrote) and starts clean.
Every event the SDK sent lands once (it sends its recent messages again); every event of a plain producer
that is lost lies inside the reported window; the logs say what happened (scenario in ``scenarios.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.scenarios import broker_restart

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


def test_a_broker_restart_is_survived_and_its_loss_window_reported(tmp_path: Path) -> None:
    result = broker_restart(tmp_path / "stack", tmp_path, events=12_000, down_s=4)
    failures = [note for note in result.notes if note.startswith("failed")]
    assert not failures, (failures, result)
    assert result.predictions_landed == result.events_sent, result  # the SDK's events: every one
    assert result.duplicates == 0, result
    # the plain producer's events sent while the worker was paused are lost with the broker's memory,
    # and each of them lies in the reported window (checked above): the report is not vacuous
    assert result.lost, result
