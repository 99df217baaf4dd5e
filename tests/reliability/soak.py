"""`make soak`: the long versions of the reliability scenarios, on a private local stack, as one table.

.venv/bin/python -m tests.reliability.soak [--events 1000000] [--kills 10] [--outage-s 60] [--hostile 50000]
                                          [--restart-events 100000] [--restart-down-s 10] [--hot-events 200000]
                                          [--rebalance-events 200000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from driftloop.infra.stack import stack as local_stack
from tests.reliability.scenarios import (
    SoakResult,
    broker_restart,
    clickhouse_outage,
    crash_loop,
    hostile_input,
    hot_model,
    rebalance,
)
from tests.stack_fixtures import PrivateStack, private_stack_env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the kill -9 scenario")
    parser.add_argument("--kills", type=int, default=10, help="worker kills (kill -9) at random points")
    parser.add_argument("--outage-s", type=float, default=60.0, help="seconds ClickHouse is down")
    parser.add_argument("--outage-events", type=int, default=200_000, help="events in the outage scenario")
    parser.add_argument("--hostile", type=int, default=50_000, help="generated messages, about half hostile")
    parser.add_argument("--restart-events", type=int, default=100_000, help="SDK events in the broker restart")
    parser.add_argument("--restart-down-s", type=float, default=10.0, help="seconds the broker is down")
    parser.add_argument("--hot-events", type=int, default=200_000, help="events of the model over four partitions")
    parser.add_argument("--rebalance-events", type=int, default=200_000, help="events while a worker joins, one leaves")
    args = parser.parse_args()
    console = Console(width=200)
    home = Path(tempfile.mkdtemp(prefix="driftloop-soak-"))
    stack = PrivateStack(private_stack_env(home / "stack"))
    local_stack.up(stack.settings)
    results: list[SoakResult] = []
    try:
        for name, run in (
            ("kill -9", lambda: crash_loop(stack, _dir(home, "crash"), events=args.events, kills=args.kills)),
            ("outage", lambda: clickhouse_outage(home / "outage-stack", _dir(home, "outage"),
                                                 events=args.outage_events, outage_s=args.outage_s)),
            ("hostile", lambda: hostile_input(stack, _dir(home, "hostile"), count=args.hostile)),
            ("hot model", lambda: _hot(stack, _dir(home, "hot"), args.hot_events, kill=False)),
            ("hot model, a worker killed", lambda: _hot(stack, _dir(home, "hot-kill"), args.hot_events, kill=True)),
            ("rebalance", lambda: rebalance(stack, _dir(home, "rebalance"), events=args.rebalance_events)),
            ("broker restart", lambda: broker_restart(home / "restart-stack", _dir(home, "restart"),
                                                      events=args.restart_events, down_s=args.restart_down_s)),
        ):  # fmt: skip
            with console.status(f"soak: {name} ..."):
                try:
                    results.append(run())
                except Exception as exc:  # one scenario failing must not hide the others' results
                    results.append(SoakResult(name, 0, notes=[f"failed: {type(exc).__name__}: {exc}"[:300]]))
    finally:
        local_stack.down(stack.settings)
    table = Table(title="driftloop soak")
    for column in ("scenario", "events sent", "rows landed", "labeled", "duplicates", "faults injected",
                   "worker restarts", "max worker RSS (all 3)", "lost (reported)", "seconds", "verdict"):  # fmt: skip
        table.add_column(column, justify="left" if column in {"scenario", "verdict"} else "right")
    failed = False
    for r in results:
        ok = r.predictions_landed == r.events_sent and r.duplicates == 0 and not _problems(r)
        failed |= not ok
        labeled = f"{r.labeled_landed:,}" if r.scenario != "hostile input" else "-"
        table.add_row(r.scenario, f"{r.events_sent:,}", f"{r.predictions_landed:,}", labeled, f"{r.duplicates:,}",
                      f"{r.faults:,}", f"{r.worker_restarts}", f"{r.max_rss_mb:,.0f} MiB" if r.max_rss_mb else "-",
                      "-" if r.lost is None else f"{r.lost:,}", f"{r.seconds:,.0f}",
                      "[green]ok[/]" if ok else "[red]FAILED[/] " + "; ".join(_problems(r)))  # fmt: skip
    console.print(table)
    for r in results:
        for note in r.notes:
            console.print(f"{r.scenario}: {note}")
    return 1 if failed else 0


def _hot(stack: PrivateStack, tmp: Path, events: int, *, kill: bool) -> SoakResult:
    seen = hot_model(stack, tmp, events=events, kill=kill)
    fired = ", ".join(
        f"{kind} on {signal} {at - seen.shift_at:+,} events from the shift" for _, kind, signal, at in seen.alerts
    )
    seen.ledger.notes.append(f"{seen.detections} detections, {len(seen.alerts)} alert(s): {fired or 'none'}")
    return seen.ledger


def _problems(r: SoakResult) -> list[str]:
    markers = ("neither", "dead-lettered:", "without a reason", "failed", "stalled")  # "failed" also marks
    # the broker restart's breaches; its lost events are the plain producer's, each inside the reported window
    problems = [n for n in r.notes if any(k in n for k in markers)]
    if r.scenario != "hostile input" and r.labeled_landed != r.events_sent:
        problems.append(f"{r.events_sent - r.labeled_landed:,} labeled rows missing")
    if r.scenario.startswith("hot model") and r.alerts != 1:
        problems.append(f"{r.alerts} alerts for one drift")
    if r.scenario.startswith("rebalance") and (
        r.alerts or r.detector_events < r.events_sent or any(n.endswith("detector state: False") for n in r.notes)
    ):
        problems.append(f"detector state not carried over: {r.alerts} alerts, {r.detector_events:,} events seen")
    if r.scenario.startswith("worker kill") and r.alerts:
        problems.append(f"detector state not carried over: {r.alerts} alerts on a stationary stream")
    if r.scenario.startswith("worker kill") and r.detector_events < r.events_sent:
        problems.append(f"detector state not carried over: a history of {r.detector_events:,} events")
    if r.committed_during_outage:
        problems.append("offsets committed while ClickHouse was down")
    return problems


def _dir(home: Path, name: str) -> Path:
    path = home / name
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
