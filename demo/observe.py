"""What the loop has done, as ClickHouse records it: the demo's live view and summary read it from here.

The live view shows the system's own records, not the demo's bookkeeping: rows landed, labeled rows,
alerts, retraining runs and versions all come from the tables the workers write.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from driftloop.infra.clickhouse.client import SharedClient
from driftloop.infra.settings import Settings


@dataclass(frozen=True)
class AlertView:
    kind: str
    signal: str
    detector: str
    event_ts: float
    detected_at: float
    change_point_ts: float
    message: str


@dataclass(frozen=True)
class RunView:
    status: str
    device: str
    started_at: float
    finished_at: float
    train_rows: int
    phases: dict[str, float]
    champion_version: int
    challenger_version: int
    champion_metric: float
    challenger_metric: float
    error: str


@dataclass(frozen=True)
class VersionView:
    version: int
    status: str
    updated_at: float
    reason: str


@dataclass(frozen=True)
class StageView:
    """A change of a version's stage (``version_changes``)."""

    version: int
    from_stage: str
    to_stage: str
    at: float  # epoch seconds, ms precision
    path: str
    traffic_share: float
    reason: str


@dataclass(frozen=True)
class LoopState:
    """One look at the model's records since the run began."""

    predictions: int = 0
    labeled: int = 0
    dead_letters: int = 0
    accuracy: list[tuple[float, int, float, int]] = field(default_factory=list)  # (bucket, version, acc, rows)
    alerts: list[AlertView] = field(default_factory=list)
    runs: list[RunView] = field(default_factory=list)
    versions: list[VersionView] = field(default_factory=list)
    stages: list[StageView] = field(default_factory=list)

    def entered(self, version: int, stage: str) -> float:
        """When ``version`` first entered ``stage`` (NaN if it has not)."""
        return next((c.at for c in self.stages if c.version == version and c.to_stage == stage), float("nan"))


class LoopObserver:
    """Reads :class:`LoopState` for one model from ``since`` (epoch seconds) on."""

    def __init__(self, settings: Settings, model: str, since: float, bucket_s: int = 5) -> None:
        self.model = model
        self.since = int(since)
        self.bucket_s = bucket_s
        self._client = SharedClient(settings.clickhouse)

    def look(self) -> LoopState:
        p = {"m": self.model, "since": self.since, "b": self.bucket_s}
        q = self._client.execute
        recent = "model = %(m)s AND ts >= toDateTime(%(since)s)"
        predictions = q(f"SELECT uniqExact(event_id) FROM predictions WHERE {recent}", p)
        labeled = q(f"SELECT uniqExact(event_id) FROM labeled WHERE {recent} AND served = 1", p)
        dead = q("SELECT count() FROM dead_letters WHERE received_at >= toDateTime(%(since)s)", p)
        accuracy = q(
            "SELECT intDiv(toUInt32(ts), %(b)s) * %(b)s AS bucket, model_version, avg(correct), count() "
            "FROM labeled FINAL WHERE model = %(m)s AND ts >= toDateTime(%(since)s) AND served = 1 "
            "GROUP BY bucket, model_version ORDER BY bucket, model_version",
            p,
        )
        alerts = q(
            "SELECT toString(kind), signal, detector, toUInt32(event_ts), toUInt32(detected_at), "
            "toUInt32(change_point_ts), message FROM drift_alerts FINAL "
            "WHERE model = %(m)s AND detected_at >= toDateTime(%(since)s) ORDER BY detected_at, alert_id",
            p,
        )
        runs = q(
            "SELECT toString(status), device, toUInt32(started_at), toUInt32(finished_at), train_rows, fetch_s, "
            "train_s, evaluate_s, publish_s, champion_version, challenger_version, champion_metric, "
            "challenger_metric, error FROM retrain_runs FINAL "
            "WHERE model = %(m)s AND started_at >= toDateTime(%(since)s) ORDER BY started_at, run_id",
            p,
        )
        versions = q(
            "SELECT version, toString(status), toUInt32(updated_at), reason FROM model_versions FINAL "
            "WHERE model = %(m)s AND updated_at >= toDateTime(%(since)s) ORDER BY version",
            p,
        )
        stages = q(
            "SELECT version, toString(from_stage), toString(to_stage), changed_at_ms / 1000, path, traffic_share, "
            "reason FROM version_changes FINAL WHERE model = %(m)s AND changed_at >= toDateTime(%(since)s) "
            "ORDER BY changed_at_ms, change_id",
            p,
        )
        return LoopState(
            predictions=predictions[0][0],
            labeled=labeled[0][0],
            dead_letters=dead[0][0],
            accuracy=[(float(b), int(v), float(a), int(n)) for b, v, a, n in accuracy],
            alerts=[AlertView(*row) for row in alerts],
            runs=[
                RunView(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    dict(zip(("fetch", "train", "evaluate", "publish"), r[5:9], strict=True)),
                    *r[9:],
                )
                for r in runs
            ],
            versions=[VersionView(*row) for row in versions],
            stages=[StageView(*row) for row in stages],
        )

    def close(self) -> None:
        self._client.close()


def clock(epoch: float) -> str:
    """Wall-clock time of day (UTC) for the live view."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%H:%M:%S")
