"""What spreading one model over partitions costs in detection delay (docs/scaling.md).

A model spread over ``k`` partitions is watched by ``k`` sets of detectors, each on its share of the events
(``streams.drift.observer``); the first to detect raises the alert (``streams.drift.gate``). Each detector
keeps the model's run length in events, so the model's false alarms per event stay what they were; the
price is delay: each detector sees only ``1/k`` of the events after the change.

This runs the detectors in-process (no broker): a stream of 10 N(0,1) features whose first feature shifts
by ``--shift`` standard deviations half-way, dealt to ``k`` monitors the way a key per request deals them
(at random), for several seeds; it prints the median number of the model's events from the change to the
first detection, and its ratio to ``k = 1`` measured in the same run. Then the false alarms on a stationary
stream with a short expected run length (so that there are some to count), which should not change with ``k``.

    .venv/bin/python -m benchmarks.hot_model [--seeds 5] [--shift 1.0] [--false-alarm-events 200000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table

from driftloop.infra.spec import SpecCatalog
from driftloop.streams.decode import Incoming, decode_predictions
from driftloop.streams.drift.monitor import DriftMonitor

WARMUP = 2000  # the default spec's
BATCH = 500


def stream(
    partitions: int,
    shift: float,
    seed: int,
    *,
    before: int,
    total: int,
    run_length: float | None = None,
    warmup: int = WARMUP,
) -> Iterator[tuple[DriftMonitor, list]]:
    """The model's events (10 N(0,1) features, the first shifted by ``shift`` from event ``before`` on), dealt
    at random to ``partitions`` monitors, batch by batch: each monitor with the alerts its batch raised."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="driftloop-hot-model-") as spec_dir:  # the model's spec, if any
        home = Path(spec_dir)
        if run_length is not None or warmup != WARMUP:
            monitoring = f"warmup = {warmup}\n" + (f"expected_run_length = {run_length}\n" if run_length else "")
            (home / "hot.toml").write_text(f'name = "hot"\n[monitoring]\n{monitoring}')
        specs = SpecCatalog(home)
        monitors = [DriftMonitor(specs, clock=lambda: 1.0) for _ in range(partitions)]
        for start in range(0, total, BATCH):
            shares: list[list[dict]] = [[] for _ in range(partitions)]
            for i in range(start, start + BATCH):
                features = {f"f{j}": rng.gauss(shift if j == 0 and i >= before else 0.0, 1) for j in range(10)}
                event = {"model": "hot", "request_id": f"r{i}", "ts": 1_790_000_000 + i, "features": features,
                         "prediction": 0}  # fmt: skip
                shares[rng.randrange(partitions)].append(event)
            for monitor, events in zip(monitors, shares, strict=True):
                if events:
                    rows = decode_predictions([Incoming(json.dumps({"events": events}).encode(), "p", 0, 0)]).rows
                    yield monitor, monitor.process_predictions(rows)


def delay(partitions: int, shift: float, seed: int, *, before: int, after: int) -> int | None:
    """Events of the model from the change to the first detection on any partition (None: none)."""
    for _, alerts in stream(partitions, shift, seed, before=before, total=before + after):
        for alert in alerts:
            fired = int(alert.request_id[1:])
            if fired >= before:
                return fired - before
    return None


def false_alarms(partitions: int, seed: int, *, events: int, run_length: float, warmup: int = WARMUP) -> int:
    """Detections (before the alert policy) on a stationary stream of the model, over all its partitions."""
    monitors: set[DriftMonitor] = set()
    for monitor, _ in stream(partitions, 0.0, seed, before=events, total=events, run_length=run_length, warmup=warmup):
        monitors.add(monitor)
    return sum(signal.drifts for monitor in monitors for _, signal in monitor.signal_states())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="streams per setting (the median is printed)")
    parser.add_argument("--shift", type=float, default=1.0, help="the change, in standard deviations")
    parser.add_argument("--partitions", default="1,2,4,8", help="the spreads to compare (1 is the baseline)")
    parser.add_argument("--false-alarm-events", type=int, default=200_000,
                        help="stationary events to count false alarms on (0: skip)")  # fmt: skip
    args = parser.parse_args()
    spreads = [int(k) for k in args.partitions.split(",")]
    table = Table(title=f"detection delay, a {args.shift:g} sd shift of one of 10 features (median of {args.seeds})")
    for column in ("partitions", "events from the change to the alert", "× one partition", "missed"):
        table.add_column(column, justify="right")
    baseline = None
    for k in spreads:
        before = WARMUP * k + 2000 * k  # every partition's detectors past the warm-up, with room to spare
        found = [delay(k, args.shift, seed, before=before, after=20_000 * k) for seed in range(args.seeds)]
        hits = [d for d in found if d is not None]
        median = statistics.median(hits) if hits else float("nan")
        baseline = median if baseline is None else baseline
        table.add_row(str(k), f"{median:,.0f}", f"{median / baseline:.2f}", str(len(found) - len(hits)))
    Console().print(table)
    if args.false_alarm_events:
        run_length = args.false_alarm_events / 20  # about 20 false alarms expected in each setting
        alarms = Table(title=f"false alarms on {args.false_alarm_events:,} stationary events, expected run length "
                             f"{run_length:,.0f} events ({args.seeds} streams each)")  # fmt: skip
        for column in ("partitions", "detections", "expected", "× one partition"):
            alarms.add_column(column, justify="right")
        first = None
        for k in spreads:
            total = sum(false_alarms(k, seed, events=args.false_alarm_events, run_length=run_length)
                        for seed in range(args.seeds))  # fmt: skip
            first = total if first is None else first
            expected = args.seeds * (args.false_alarm_events - WARMUP * k) / run_length
            alarms.add_row(str(k), f"{total:,}", f"{expected:,.0f}", f"{total / max(first, 1):.2f}")
        Console().print(alarms)


if __name__ == "__main__":
    main()
