"""``driftloop demo``: the whole loop on the local stack, live in the terminal, then a summary and a report.

1. The embedded stack comes up (broker + ClickHouse), the demo model's spec is written and a first
   champion, trained offline on the old world, is registered.
2. The streams worker and the retrain worker start as child processes (logs in ``HOME/logs``).
3. :class:`~demo.server.DemoServer` serves the drifting scenario through the serving client; outcomes
   follow after a delay. The live view reads what the workers record in ClickHouse.
4. When the stream ends (or on Ctrl-C) the workers catch up and stop, the summary is read back from
   ClickHouse and the HTML report is written. The stack keeps running for SQL (``driftloop stack down``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live

from driftloop.infra.clickhouse.client import SharedClient
from driftloop.infra.errors import DriftloopError
from driftloop.infra.settings import Settings
from driftloop.infra.stack import stack as local_stack
from driftloop.streams.drift.observer import DetectorStateStore
from driftloop.streams.sink import ClickHouseSink

from .bootstrap import MODEL, OFFLINE_SEED_SHIFT, register_champion, write_spec
from .live import render
from .observe import AlertView, LoopObserver, LoopState
from .scenario import DriftScenario
from .server import DemoServer, ServingStats

# A consumer group join on the embedded broker waits about the session timeout: keep the demo brisk.
_CHILD_DEFAULTS = {"DRIFTLOOP_KAFKA_SESSION_TIMEOUT_S": "10", "DRIFTLOOP_KAFKA_REBALANCE_TIMEOUT_S": "10"}


class DemoError(DriftloopError):
    """The demo could not run (a worker died, or the stack did not come up)."""


@dataclass(frozen=True)
class DemoOptions:
    """How long and how fast the demo runs; every field is a ``driftloop demo`` option."""

    events: int = 30_000
    rate: float = 250.0
    seed: int = 42
    drift_at: float = 0.35
    label_delay_s: float = 2.0
    report: bool = True
    after_swap: int = 0  # serve past ``events`` (up to twice as many) until a new version served this many


@dataclass(frozen=True)
class DemoSummary:
    """What happened, read back from ClickHouse after the run."""

    model: str
    served: int
    drift_index: int
    drift_ts: float
    interrupted: bool
    first_alerts: dict[str, AlertView]  # kind → the first alert of that kind after the drift
    detection_events: int | None  # events served from the drift to the performance alert's event (None: no alert)
    detection_s: float  # wall clock from the first drifted event to the performance alert's second (stamped to it)
    alert_to_champion_s: float
    old_version: int
    new_version: int
    accuracy_before: float  # old champion, before the drift
    accuracy_drifted: float  # old champion, after the drift
    accuracy_after: float  # new champion
    stage_times: dict[str, float] = dataclasses.field(default_factory=dict)  # the new version: stage → entered at
    report: Path | None = None

    @property
    def recovered(self) -> bool:
        return self.new_version > self.old_version and self.accuracy_after > self.accuracy_drifted


class _Child:
    """A worker in a child process, its output in a log file."""

    def __init__(self, verb: str, env: Mapping[str, str], log_path: Path) -> None:
        self.verb = verb
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "driftloop.cli.main", verb],
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the demo only: it stops the workers in order
        )

    def check(self) -> None:
        if self.process.poll() is not None:
            status = self.process.returncode
            raise DemoError(f"`driftloop {self.verb}` exited with status {status}: see {self.log_path}")

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def run_demo(
    settings: Settings,
    options: DemoOptions = DemoOptions(),
    *,
    console: Console | None = None,
    env: Mapping[str, str] | None = None,
) -> DemoSummary:
    """Run the closed loop once (see the module docstring); Ctrl-C ends it early, cleanly."""
    console = console or Console()
    began = time.time()
    scenario = DriftScenario(options.events, options.drift_at, options.seed)
    with console.status("starting the local stack ..."):
        local_stack.up(settings)
    spec = write_spec(settings)
    _forget_detector_state(settings)
    with console.status("training the first champion on the old world ..."):
        # offline data of its own: trained on the stream's first rows, it served its own training data first
        # (0.4 % errors, then 2.5 % on rows it never saw: a real performance drop that the detectors flag)
        champion = register_champion(settings, spec, seed=options.seed + OFFLINE_SEED_SHIFT)
    console.print(f"[green]✓[/] {MODEL} v{champion.version} is the champion: {champion.reason}")

    child_env = {**_CHILD_DEFAULTS, **(env if env is not None else os.environ)}
    logs = settings.home / "logs"
    workers = [
        _Child("worker", child_env, logs / "demo-worker.log"),
        _Child("retrain-worker", child_env, logs / "demo-retrain-worker.log"),
    ]
    console.print(f"[green]✓[/] streams worker and retrain worker started (logs in {logs})")
    started = time.time()
    observer = LoopObserver(settings, MODEL, since=began)
    server = DemoServer(
        settings,
        MODEL,
        scenario,
        rate=options.rate,
        label_delay_s=options.label_delay_s,
        run_id=uuid.uuid4().hex[:8],
        after_swap=options.after_swap,
    )
    stop = threading.Event()
    serving = threading.Thread(target=server.run, args=(stop,), name="demo-server", daemon=True)
    interrupted = False
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)  # `kill` ends the demo like Ctrl-C
    try:
        serving.start()
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            try:
                deadline: float | None = None
                while True:
                    for worker in workers:
                        worker.check()
                    if server.error is not None:
                        raise DemoError(f"the demo's model server failed: {server.error}") from server.error
                    state = observer.look()
                    live.update(render(server.stats, state, scenario, MODEL, time.time() - started))
                    if not serving.is_alive():
                        deadline = deadline or time.time() + 30
                        if _caught_up(state, server.stats.outcomes_sent) or time.time() > deadline:
                            break
                    time.sleep(0.5)
            except KeyboardInterrupt:
                interrupted = True
                stop.set()
                console.print("[yellow]interrupted: stopping the server and the workers ...[/]")
        stop.set()
        serving.join(30)
    finally:
        for worker in workers:
            worker.stop()
        observer.close()
        signal.signal(signal.SIGTERM, previous_handler)
    summary = summarize(settings, scenario, champion.version, server.stats, since=began, interrupted=interrupted)
    if options.report:
        from driftloop.analytics.report import write_report

        with console.status("writing the report ..."):
            path = write_report(settings, MODEL, since=began)
        summary = dataclasses.replace(summary, report=path)
    return summary


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _caught_up(state: LoopState, outcomes_sent: int) -> bool:
    """Every outcome sent is labeled, and no retraining run is still going."""
    return state.labeled >= outcomes_sent and not any(run.status in {"queued", "running"} for run in state.runs)


def _forget_detector_state(settings: Settings) -> None:
    """A demo starts monitoring afresh, even on a stack that ran one before."""
    sink = ClickHouseSink(settings.clickhouse)
    store = DetectorStateStore(settings.clickhouse, sink)
    try:
        store.forget(MODEL)
    finally:
        store.close()
        sink.close()


def summarize(
    settings: Settings,
    scenario: DriftScenario,
    old: int,
    stats: ServingStats,
    *,
    since: float,
    interrupted: bool,
) -> DemoSummary:
    """The run's facts from ClickHouse: alerts, detection delay, time to the new champion, accuracy."""
    drift_ts = stats.drift_ts
    observer = LoopObserver(settings, MODEL, since=since)
    client = SharedClient(settings.clickhouse)
    try:
        state = observer.look()
        first: dict[str, AlertView] = {}
        for alert in state.alerts:  # raised after the drift began (wall clock: labels make event times late)
            if not math.isnan(drift_ts) and alert.detected_at >= int(drift_ts):
                first.setdefault(alert.kind, alert)
        champions = [c.version for c in state.stages if c.to_stage == "champion" and c.version != old]
        new = champions[-1] if champions else old
        performance = first.get("performance")
        promoted_at = state.entered(new, "champion") if new != old else math.nan
        stage_times = {
            stage: state.entered(new, stage)
            for stage in ("candidate", "shadow", "canary", "champion")
            if new != old and not math.isnan(state.entered(new, stage))
        }

        def accuracy(version: int, after_drift: bool | None) -> float:
            if math.isnan(drift_ts) and after_drift is not None:
                return math.nan
            where = "" if after_drift is None else ("AND ts_ms >= %(d)s" if after_drift else "AND ts_ms < %(d)s")
            rows = client.execute(
                f"SELECT avg(correct), count() FROM labeled FINAL WHERE model = %(m)s AND model_version = %(v)s "
                f"AND served = 1 AND ts >= toDateTime(%(since)s) {where}",
                {
                    "m": MODEL,
                    "v": version,
                    "since": int(since),
                    "d": 0 if math.isnan(drift_ts) else int(drift_ts * 1000),
                },
            )
            return float(rows[0][0]) if rows and rows[0][1] else math.nan

        detection_events = None
        if performance is not None:
            detection_events = client.execute(
                "SELECT uniqExact(event_id) FROM predictions WHERE model = %(m)s AND served = 1 AND ts_ms >= %(d)s "
                "AND ts <= toDateTime(%(e)s)",
                {"m": MODEL, "d": int(drift_ts * 1000), "e": int(max(performance.event_ts, drift_ts))},
            )[0][0]
        return DemoSummary(
            model=MODEL,
            served=stats.sent,
            drift_index=scenario.drift_index,
            drift_ts=drift_ts,
            interrupted=interrupted,
            first_alerts=first,
            detection_events=None if detection_events is None else int(detection_events),
            detection_s=(performance.detected_at - drift_ts) if performance else math.nan,
            alert_to_champion_s=(promoted_at - performance.detected_at) if performance else math.nan,
            old_version=old,
            new_version=new,
            accuracy_before=accuracy(old, after_drift=False),
            accuracy_drifted=accuracy(old, after_drift=True),
            accuracy_after=accuracy(new, after_drift=None) if new != old else math.nan,
            stage_times=stage_times,
        )
    finally:
        client.close()
        observer.close()
