"""The demo's end-of-run summary, as printed: what it says of a run that alerted, and of one that did not."""

from __future__ import annotations

import dataclasses
import math

from rich.console import Console

from driftloop.demo.live import summary_table
from driftloop.demo.runner import DemoSummary

RECOVERED = DemoSummary(
    model="loan-approval",
    served=30_000,
    drift_index=10_500,
    drift_ts=1_790_000_000.0,
    interrupted=False,
    first_alerts={},
    detection_events=239,
    detection_s=0.9,
    alert_to_champion_s=30.4,
    old_version=1,
    new_version=2,
    accuracy_before=0.967,
    accuracy_drifted=0.473,
    accuracy_after=0.972,
)


def printed(summary: DemoSummary) -> str:
    console = Console(width=120, record=True)
    console.print(summary_table(summary))
    return console.export_text()


def test_a_run_that_alerted_says_how_many_events_the_detection_took() -> None:
    out = printed(RECOVERED)
    assert "239 events after the drift · 0.9–1.9 s wall clock" in out
    assert "recovered" in out and "not recovered" not in out


def test_an_alert_stamped_in_the_drift_s_own_second_is_said_to_come_within_the_rest_of_it() -> None:
    # drift_alerts.detected_at holds whole seconds: an alert 0.3 s after a drift at .5 reads 0.2 s before it
    out = printed(dataclasses.replace(RECOVERED, detection_s=-0.2))
    assert "239 events after the drift · under 0.8 s wall clock" in out
    assert "-0.2" not in out


def test_a_run_without_a_performance_alert_says_so_rather_than_a_delay_of_no_events() -> None:
    quiet = dataclasses.replace(
        RECOVERED, detection_events=None, detection_s=math.nan, alert_to_champion_s=math.nan, new_version=1
    )
    out = printed(quiet)
    assert "no performance alert in this run" in out
    assert "events after the drift" not in out
    assert "not recovered in this run" in out
