"""Broker restart: the in-memory broker goes away mid-stream and comes back empty.

Producers and the worker reconnect by themselves; the worker reports the new instance, provisions the
topics again, and names the loss window (the old instance's offsets it never wrote). Every event lost
lies inside that window, every event sent after the restart lands once, and the logs say what happened.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.scenarios import broker_restart

pytestmark = pytest.mark.timeout(400)


def test_a_broker_restart_is_survived_and_its_loss_window_reported(tmp_path: Path) -> None:
    result = broker_restart(tmp_path / "stack", tmp_path, events=12_000, down_s=4)
    failures = [note for note in result.notes if note.startswith(("failed", "the producer failed")) or "never" in note]
    assert not failures, (failures, result)
    assert result.duplicates == 0, result
    assert result.lost is not None and result.predictions_landed >= result.events_sent - result.lost, result
