"""The demo's live terminal view (rich): events flowing, accuracy per window, alerts, retraining, versions."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .observe import LoopState, clock
from .scenario import DriftScenario
from .server import ServingStats

if TYPE_CHECKING:
    from .runner import DemoSummary

BLOCKS = "▁▂▃▄▅▆▇█"
VERSION_COLOURS = ("cyan", "green", "magenta", "yellow", "blue")


def accuracy_strip(state: LoopState, width: int = 60) -> Text:
    """One block per time bucket, its height the accuracy (0.5 → lowest, 1.0 → highest), coloured by version."""
    by_bucket: dict[float, tuple[int, float, int]] = {}
    for bucket, version, accuracy, rows in state.accuracy:
        if bucket not in by_bucket or rows > by_bucket[bucket][2]:
            by_bucket[bucket] = (version, accuracy, rows)
    text = Text()
    for _, (version, accuracy, _) in sorted(by_bucket.items())[-width:]:
        level = min(len(BLOCKS) - 1, max(0, int((accuracy - 0.5) / 0.5 * (len(BLOCKS) - 1) + 0.5)))
        text.append(BLOCKS[level], style=VERSION_COLOURS[(version - 1) % len(VERSION_COLOURS)])
    return text


def colour(version: int) -> str:
    return VERSION_COLOURS[(version - 1) % len(VERSION_COLOURS)]


def routing_text(routing: dict[str, int | float | None]) -> Text:
    """``v1 champion · v2 canary 20 %`` (and a shadow): who answers requests now, and who only scores them."""
    text = Text()
    champion = routing.get("champion")
    if isinstance(champion, int):
        text.append(f"v{champion}", style=colour(champion)).append(" champion")
    canary, shadow = routing.get("canary"), routing.get("shadow")
    if isinstance(canary, int):
        share = float(routing.get("canary_share") or 0.0)
        text.append(" · ").append(f"v{canary}", style=colour(canary)).append(f" canary {share:.0%}")
    if isinstance(shadow, int):
        text.append(" · ").append(f"v{shadow}", style=colour(shadow)).append(" shadow (scores, never answers)")
    return text


def render(stats: ServingStats, state: LoopState, scenario: DriftScenario, model: str, elapsed_s: float) -> Group:
    flow = Table.grid(padding=(0, 2))
    flow.add_column(justify="right", style="bold")
    flow.add_column()
    served = Table.grid(padding=(0, 1))
    served.add_row(
        ProgressBar(total=scenario.events, completed=stats.sent, width=40),
        f"{stats.sent:,}/{scenario.events:,} served ({stats.sent / max(elapsed_s, 1e-9):,.0f}/s)",
    )
    flow.add_row("served", served)
    drift = "not yet" if stats.sent <= scenario.drift_index else f"since event {scenario.drift_index:,}"
    flow.add_row("drift injected", drift)
    flow.add_row("outcomes sent", f"{stats.outcomes_sent:,}")
    flow.add_row(
        "in ClickHouse",
        f"{state.predictions:,} predictions, {state.labeled:,} labeled, {state.dead_letters:,} dead letters",
    )
    flow.add_row("serving", routing_text(stats.routing or {"champion": stats.version}))
    recent = stats.recent_accuracy
    flow.add_row("accuracy (last 500)", "–" if math.isnan(recent) else f"{recent:.3f}")
    flow.add_row("accuracy per 5 s", accuracy_strip(state))

    alerts = Table("detected", "kind", "signal", "detector", "message", box=None, header_style="bold red")
    for alert in state.alerts[-6:]:
        alerts.add_row(clock(alert.detected_at), alert.kind, alert.signal, alert.detector, alert.message[:90])
    if not state.alerts:
        alerts.add_row("–", "", "", "", "no drift detected yet")

    retrain = Table(
        "started",
        "status",
        "device",
        "rows",
        "fetch",
        "train",
        "evaluate",
        "publish",
        "champion",
        "challenger",
        box=None,
        header_style="bold yellow",
    )
    for run in state.runs[-4:]:
        retrain.add_row(
            clock(run.started_at),
            run.status,
            run.device,
            f"{run.train_rows:,}",
            *(f"{run.phases[p]:.1f}s" for p in ("fetch", "train", "evaluate", "publish")),
            f"v{run.champion_version} {run.champion_metric:.3f}",
            f"v{run.challenger_version} {run.challenger_metric:.3f}",
        )
    if not state.runs:
        retrain.add_row("–", "no retraining yet", *[""] * 8)

    versions = Table("at", "version", "stage", "path", "why", box=None, header_style="bold green")
    for change in state.stages[-6:]:
        share = f" {change.traffic_share:.0%}" if change.to_stage == "canary" else ""
        versions.add_row(
            clock(change.at),
            Text(f"v{change.version}", style=colour(change.version)),
            f"{change.from_stage} → {change.to_stage}{share}",
            change.path,
            change.reason[:100],
        )
    if not state.stages:
        versions.add_row("–", "", "", "", "no version changed stage yet")

    return Group(
        Panel(flow, title=f"[bold]driftloop demo[/] · {model} · {scenario.describe()}", border_style="cyan"),
        Panel(alerts, title="drift alerts", border_style="red"),
        Panel(retrain, title="retraining", border_style="yellow"),
        Panel(versions, title="release: candidate → shadow → canary → champion", border_style="green"),
    )


def summary_table(summary: DemoSummary) -> Table:
    """The end-of-run summary: what drifted when, how fast it was caught and fixed, accuracy before/after."""

    def seconds(value: float) -> str:
        return "–" if math.isnan(value) else f"{value:.1f} s"

    def stamped(value: float) -> str:  # from the drift to an alert's second: it came within the second after
        if math.isnan(value):
            return "–"
        return f"under {value + 1:.1f} s" if value < 0 else f"{value:.1f}–{value + 1:.1f} s"

    def share(value: float) -> str:
        return "–" if math.isnan(value) else f"{value:.3f}"

    table = Table(
        title=f"driftloop demo · {summary.model}" + (" (interrupted)" if summary.interrupted else ""),
        show_header=False,
        title_style="bold",
    )
    table.add_column(style="bold", justify="right")
    table.add_column()
    table.add_row("events served", f"{summary.served:,} (drift injected at event {summary.drift_index:,})")
    for kind, alert in summary.first_alerts.items():
        table.add_row(f"first {kind} alert", f"{clock(alert.detected_at)} · {alert.signal} · {alert.detector}")
    table.add_row(
        "detection delay",
        "– (no performance alert in this run)"
        if summary.detection_events is None
        else f"{summary.detection_events:,} events after the drift · "
        f"{stamped(summary.detection_s)} wall clock (labels arrive late)",
    )
    table.add_row("alert → new champion", seconds(summary.alert_to_champion_s))
    if summary.stage_times:
        path, at = [], None
        for stage, entered in summary.stage_times.items():
            path.append(stage if at is None else f"{stage} (+{entered - at:.1f} s)")
            at = entered
        table.add_row(f"release of v{summary.new_version}", " → ".join(path))
    table.add_row("versions", f"v{summary.old_version} → v{summary.new_version}")
    table.add_row("accuracy before drift", f"{share(summary.accuracy_before)} (v{summary.old_version})")
    table.add_row("accuracy after drift", f"{share(summary.accuracy_drifted)} (v{summary.old_version})")
    table.add_row("accuracy after retraining", f"{share(summary.accuracy_after)} (v{summary.new_version})")
    table.add_row("verdict", "[green]recovered[/]" if summary.recovered else "[yellow]not recovered in this run[/]")
    if summary.report is not None:
        table.add_row("report", str(summary.report))
    return table
