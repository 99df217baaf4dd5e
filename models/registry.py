"""The model registry: immutable numbered versions per model, their artifacts, and the stage each is in.

Each version is an artifact (``models.artifacts``) and a row in ClickHouse ``model_versions`` (parent,
trigger alert, training window, metrics, and its stage). A version moves ``candidate → shadow → canary →
champion`` or ends ``rejected``; a champion that is replaced becomes ``retired``, one taken back
``rolled_back``. A change of stage is a new row with a higher revision (the replaced champion's in the same
INSERT: atomic), a row in ``version_changes`` with the evidence it was decided on, and an announcement on
the ``model-versions`` topic, where serving clients hear it (an announcement the broker does not take within
``announce_timeout_s`` is logged, the change stands: clients read the routing once a minute besides).
:meth:`ModelRegistry.routing` says which versions serve a model now; ``release.controller`` decides the changes,
people can too (``path="manual"``).

Every change also writes the model's routing beside its artifacts (``<artifacts>/<model>/routing.json``, a
:class:`SavedRouting`): the serving path does not hang on ClickHouse. A serving client started while ClickHouse
does not answer serves the routing saved at the last change (:meth:`ModelRegistry.serving_routing`), and reads
ClickHouse again until it does.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from clickhouse_driver.errors import NetworkError
from kafka import KafkaProducer
from kafka.errors import KafkaError

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.contract import VersionAnnouncement, column_json
from driftloop.infra.errors import DriftloopError, UnreachableError
from driftloop.infra.service_errors import unreachable_clickhouse
from driftloop.infra.settings import Settings
from driftloop.models.artifacts import LoadedModel, artifact_root, load_artifact

log = logging.getLogger("driftloop.registry")

Stage = Literal["candidate", "shadow", "canary", "champion", "rejected", "retired", "rolled_back"]
#: Stages in which a version scores live requests.
LIVE_STAGES: tuple[Stage, ...] = ("shadow", "canary", "champion")
#: Where each stage may go (a stage to itself: a deadline extended, or a canary's share changed).
TRANSITIONS: dict[str, tuple[Stage, ...]] = {
    "none": ("candidate", "rejected", "champion"),
    "candidate": ("shadow", "canary", "champion", "rejected"),
    "shadow": ("shadow", "canary", "champion", "rejected"),
    "canary": ("canary", "champion", "rejected"),
    "champion": ("retired", "rolled_back"),
    "retired": ("champion",),
    "rolled_back": ("champion",),
    "rejected": (),
}
#: The file beside a model's artifacts that holds its routing as of its last change.
SAVED_ROUTING = "routing.json"
#: Who moved a version: its first registration, the release controller (normal or urgent path), or a person.
ChangePath = Literal["first", "release", "urgent", "manual"]

COLUMNS = (
    "model",
    "version",
    "status",
    "parent_version",
    "trigger_alert_id",
    "artifact_uri",
    "sha256",
    "train_from",
    "train_to",
    "train_rows",
    "metric_name",
    "metric_value",
    "champion_metric",
    "metrics",
    "reason",
    "created_at",
    "updated_at",
    "revision",
    "traffic_share",
    "build",
)
CHANGE_COLUMNS = (
    "change_id",
    "model",
    "version",
    "from_stage",
    "to_stage",
    "changed_at",
    "changed_at_ms",
    "path",
    "reason",
    "traffic_share",
    "baseline_version",
    "metric_name",
    "metric",
    "baseline_metric",
    "kpi",
    "baseline_kpi",
    "rows",
    "test",
    "statistic",
    "p_value",
    "result",
    "evidence",
)


class RegistryError(DriftloopError):
    """A version does not exist, or the requested change of stage is not possible."""


@dataclass(frozen=True)
class VersionRecord:
    """One model version as the registry knows it (times in epoch seconds). ``status`` is its stage."""

    model: str
    version: int
    status: str
    artifact_uri: str
    sha256: str
    parent_version: int = 0
    trigger_alert_id: str = ""
    train_from: float = 0.0
    train_to: float = 0.0
    train_rows: int = 0
    metric_name: str = ""
    metric_value: float = float("nan")
    champion_metric: float = float("nan")
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    revision: int = 0
    traffic_share: float = 0.0
    build: dict[str, Any] = field(default_factory=dict)  # what made it: ``retrain.build.BuildRecord`` as JSON

    @property
    def stage(self) -> str:
        return self.status

    def row(self) -> tuple[Any, ...]:
        data = asdict(self)
        data["metrics"] = column_json(self.metrics)
        data["build"] = column_json(self.build) if self.build else ""
        for name in ("train_from", "train_to", "created_at", "updated_at"):
            data[name] = int(data[name])
        return tuple(data[c] for c in COLUMNS)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> VersionRecord:
        data = dict(zip(COLUMNS, row, strict=True))
        data["metrics"] = json.loads(data["metrics"] or "{}")
        data["build"] = json.loads(data["build"] or "{}")
        for name in ("train_from", "train_to", "created_at", "updated_at"):
            value = data[name]
            data[name] = value.timestamp() if isinstance(value, dt.datetime) else float(value)
        return cls(**data)


@dataclass(frozen=True)
class Evidence:
    """What a change of stage was decided on: this version's live metric against a baseline's, and the test."""

    baseline_version: int = 0
    metric_name: str = ""
    metric: float = math.nan
    baseline_metric: float = math.nan
    kpi: float = math.nan
    baseline_kpi: float = math.nan
    rows: int = 0
    test: str = ""
    statistic: float = math.nan
    p_value: float = math.nan
    result: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageChange:
    """One row of ``version_changes``: a version moved from one stage to another, when, why, on what."""

    model: str
    version: int
    from_stage: str
    to_stage: str
    changed_at: float  # epoch seconds, millisecond precision
    path: str
    reason: str
    traffic_share: float = 0.0
    evidence: Evidence = field(default_factory=Evidence)
    change_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def row(self) -> tuple[Any, ...]:
        e = self.evidence
        details = {k: v for k, v in asdict(e).items() if k != "details"} | e.details
        return (
            self.change_id,
            self.model,
            self.version,
            self.from_stage,
            self.to_stage,
            int(self.changed_at),
            round(self.changed_at * 1000),
            self.path,
            self.reason[:2000],
            self.traffic_share,
            e.baseline_version,
            e.metric_name,
            e.metric,
            e.baseline_metric,
            e.kpi,
            e.baseline_kpi,
            e.rows,
            e.test,
            e.statistic,
            e.p_value,
            e.result,
            column_json(details, default=_plain_json),
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> StageChange:
        data = dict(zip(CHANGE_COLUMNS, row, strict=True))
        details = json.loads(data["evidence"] or "{}")
        evidence = Evidence(
            **{k: data[k] for k in ("baseline_version", "metric_name", "metric", "baseline_metric", "kpi")},
            baseline_kpi=data["baseline_kpi"],
            rows=data["rows"],
            test=data["test"],
            statistic=data["statistic"],
            p_value=data["p_value"],
            result=data["result"],
            details={k: v for k, v in details.items() if k not in Evidence.__dataclass_fields__},
        )
        return cls(
            data["model"],
            data["version"],
            data["from_stage"],
            data["to_stage"],
            data["changed_at_ms"] / 1000.0,
            data["path"],
            data["reason"],
            data["traffic_share"],
            evidence,
            data["change_id"],
        )

    def announcement(self, record: VersionRecord, previous: int | None) -> VersionAnnouncement:
        """The ``model-versions`` message for this change (``event``: promoted, rolled_back, rejected or stage)."""
        event = {"champion": "promoted", "rolled_back": "rolled_back", "rejected": "rejected"}.get(
            self.to_stage, "stage"
        )
        return VersionAnnouncement(
            event=event,
            model=self.model,
            version=self.version,
            stage=self.to_stage,
            from_stage=self.from_stage,
            traffic_share=self.traffic_share,
            path=self.path,
            sha256=record.sha256,
            artifact_uri=record.artifact_uri,
            previous_version=previous,
            reason=self.reason,
            at=self.changed_at,
        )


@dataclass(frozen=True)
class Routing:
    """Which versions serve a model now: the champion, a shadow scored beside it, a canary with its share."""

    champion: VersionRecord | None
    shadow: VersionRecord | None = None
    canary: VersionRecord | None = None

    @property
    def canary_share(self) -> float:
        return self.canary.traffic_share if self.canary is not None else 0.0


@dataclass(frozen=True)
class SavedRouting:
    """A model's routing as written beside its artifacts at a change: ``revision`` is the highest of all its
    versions' rows then (a later change has a higher one), ``saved_at`` when it was written (epoch seconds)."""

    routing: Routing
    revision: int
    saved_at: float

    def to_json(self) -> dict[str, Any]:
        stages = {"champion": self.routing.champion, "shadow": self.routing.shadow, "canary": self.routing.canary}
        return {
            "revision": self.revision,
            "saved_at": self.saved_at,
            **{stage: asdict(record) if record else None for stage, record in stages.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SavedRouting:
        records = {s: VersionRecord(**data[s]) if data[s] else None for s in ("champion", "shadow", "canary")}
        return cls(Routing(**records), int(data["revision"]), float(data["saved_at"]))


class ModelRegistry:
    """Versions of every model; see the module docstring."""

    def __init__(
        self, settings: Settings, *, clock: Callable[[], float] = time.time, announce_timeout_s: float = 30.0
    ) -> None:
        self.settings = settings
        self.clock = clock  # when a change happens (wall clock; the release controller shares its own)
        self.announce_timeout_s = announce_timeout_s
        self.root = artifact_root(settings.artifact_location)
        self._producer: KafkaProducer | None = None

    # --- reading ---------------------------------------------------------------------------------------

    def versions(self, model: str) -> list[VersionRecord]:
        rows = self._query(
            f"SELECT {', '.join(COLUMNS)} FROM model_versions FINAL WHERE model = %(m)s ORDER BY version", {"m": model}
        )
        return [VersionRecord.from_row(r) for r in rows]

    def models(self) -> list[str]:
        return [m for (m,) in self._query("SELECT DISTINCT model FROM model_versions ORDER BY model")]

    def get(self, model: str, version: int) -> VersionRecord:
        for record in self.versions(model):
            if record.version == version:
                return record
        raise RegistryError(f"{model} has no version {version} (`driftloop models list --model {model}`)")

    def champion(self, model: str) -> VersionRecord | None:
        return self.routing(model).champion

    def routing(self, model: str, versions: list[VersionRecord] | None = None) -> Routing:
        """The versions that serve ``model`` now (the latest of each live stage)."""
        latest: dict[str, VersionRecord] = {}
        for record in versions if versions is not None else self.versions(model):
            if record.status in LIVE_STAGES:
                latest[record.status] = record
        return Routing(latest.get("champion"), latest.get("shadow"), latest.get("canary"))

    def serving_routing(self, model: str) -> tuple[Routing, SavedRouting | None]:
        """The routing to serve ``model`` with: ClickHouse's, or where ClickHouse does not answer, the one saved
        at the model's last change (returned beside it; None when ClickHouse answered). Without either, an
        ``UnreachableError`` that says so."""
        try:
            return self.routing(model), None
        except NetworkError as exc:
            saved = self.saved_routing(model)
            if saved is None:
                raise UnreachableError(
                    f"{unreachable_clickhouse(self.settings, exc.message)} No routing of {model} is saved beside "
                    f"its artifacts ({self.root / model / SAVED_ROUTING}) to serve meanwhile: every change of stage "
                    "writes one"
                ) from None
            return saved.routing, saved

    def saved_routing(self, model: str) -> SavedRouting | None:
        """The routing written beside ``model``'s artifacts at its last change; None when there is none (a model
        last changed before this was written) or it cannot be read (logged)."""
        path = self.root / model / SAVED_ROUTING
        try:
            return SavedRouting.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("the saved routing cannot be read", extra={"fields": {"path": str(path), "error": repr(exc)}})
            return None

    def changes(self, model: str, version: int | None = None) -> list[StageChange]:
        """The model's (or one version's) changes of stage, oldest first."""
        where = "model = %(m)s" + ("" if version is None else " AND version = %(v)s")
        rows = self._query(
            f"SELECT {', '.join(CHANGE_COLUMNS)} FROM version_changes FINAL WHERE {where} "
            "ORDER BY changed_at_ms, change_id",
            {"m": model, "v": version},
        )
        return [StageChange.from_row(r) for r in rows]

    def next_version(self, model: str) -> int:
        existing = [r.version for r in self.versions(model)]
        on_disk = [int(p.name[1:]) for p in (self.root / model).glob("v*") if p.name[1:].isdigit()]
        return max([0, *existing, *on_disk]) + 1

    def artifact_path(self, record: VersionRecord) -> Path:
        return artifact_root(record.artifact_uri)

    def load(self, record: VersionRecord, *, device: str = "cpu") -> LoadedModel:
        """The version's network and preprocessing, verified against the registry's sha256."""
        return load_artifact(self.artifact_path(record), record.sha256, device=device)

    # --- writing ---------------------------------------------------------------------------------------

    def add(self, record: VersionRecord, *, path: ChangePath = "release") -> VersionRecord:
        """Record a new version (candidate, rejected, or a first champion); its artifact must already be written."""
        if record.status not in TRANSITIONS["none"]:
            raise RegistryError(f"a new version starts as candidate, rejected or champion, not {record.status}")
        if record.status == "champion":
            self.load(record)  # never serve an artifact that does not verify
        now = self.clock()
        share = 1.0 if record.status == "champion" else 0.0
        record = replace(
            record, created_at=record.created_at or now, updated_at=now, revision=_revision(), traffic_share=share
        )
        change = StageChange(record.model, record.version, "none", record.status, now, path, record.reason, share)
        self._write([record], [change])
        self._save_routing(record.model)
        self._announce(change.announcement(record, None))
        return record

    def transition(
        self,
        model: str,
        version: int,
        to: Stage,
        *,
        reason: str,
        path: ChangePath = "manual",
        evidence: Evidence | None = None,
        traffic_share: float = 0.0,
    ) -> VersionRecord:
        """Move ``version`` to stage ``to``, recorded with ``evidence`` and announced (see the module docstring).

        To ``champion``: the current champion retires in the same write. A version that is to score live
        requests is verified first. A person (``path="manual"``) may promote any version that verifies.
        """
        versions = self.versions(model)
        target = next((r for r in versions if r.version == version), None)
        if target is None:
            raise RegistryError(f"{model} has no version {version} (`driftloop models list --model {model}`)")
        allowed = TRANSITIONS[target.status]
        if to not in allowed and not (path == "manual" and to == "champion" and target.status != "champion"):
            onward = ", ".join(allowed) or "no other stage"
            raise RegistryError(f"{model} v{version} is {target.status}: it can go to {onward}, not {to}")
        routing = self.routing(model, versions)
        canary = routing.canary
        if to == "canary" and canary is not None and canary.version != version:
            raise RegistryError(
                f"{model} v{canary.version} is the canary: a model has one; promote it (`driftloop models promote "
                f"{model} {canary.version}`) or let the release controller decide on it first"
            )
        if to in LIVE_STAGES:
            self.load(target)
        now, revision = self.clock(), _revision()
        share = 1.0 if to == "champion" else traffic_share if to == "canary" else 0.0
        records = [replace(target, status=to, reason=reason, updated_at=now, revision=revision, traffic_share=share)]
        changes = [StageChange(model, version, target.status, to, now, path, reason, share, evidence or Evidence())]
        current = routing.champion
        previous = current.version if current is not None and current.version != version else None
        if to == "champion" and current is not None and current.version != version:
            retire = f"replaced by v{version}"
            records.append(
                replace(current, status="retired", reason=retire, updated_at=now, revision=revision, traffic_share=0.0)
            )
            changes.append(StageChange(model, current.version, "champion", "retired", now, path, retire))
        self._write(records, changes)
        self._save_routing(model)
        for record, change in zip(records, changes, strict=True):
            self._announce(change.announcement(record, previous))
        return records[0]

    def promote(self, model: str, version: int, reason: str, *, path: ChangePath = "manual") -> VersionRecord:
        """Make ``version`` the champion (the current one retires) in one atomic write, then announce it."""
        target = self.get(model, version)
        if target.status == "champion":
            return target
        return self.transition(model, version, "champion", reason=reason, path=path)

    def rollback(
        self,
        model: str,
        reason: str = "rolled back",
        *,
        to_version: int | None = None,
        path: ChangePath = "manual",
        evidence: Evidence | None = None,
    ) -> VersionRecord:
        """Take the champion back (it becomes ``rolled_back``) and bring back ``to_version``, by default the most
        recently retired version whose artifact still verifies."""
        versions = self.versions(model)
        current = self.routing(model, versions).champion
        if to_version is not None:
            targets = [r for r in versions if r.version == to_version]
        else:
            targets = sorted((r for r in versions if r.status == "retired"), key=lambda r: r.revision, reverse=True)
        for candidate in targets:
            try:
                self.load(candidate)
            except DriftloopError:
                continue
            now, revision = self.clock(), _revision()
            back = dict(reason=reason, updated_at=now, revision=revision)
            records = [replace(candidate, status="champion", traffic_share=1.0, **back)]
            changes = [StageChange(model, candidate.version, candidate.status, "champion", now, path, reason, 1.0)]
            if current is not None and current.version != candidate.version:
                records.append(replace(current, status="rolled_back", traffic_share=0.0, **back))
                changes.append(
                    StageChange(
                        model,
                        current.version,
                        "champion",
                        "rolled_back",
                        now,
                        path,
                        reason,
                        0.0,
                        evidence or Evidence(),
                    )
                )
            self._write(records, changes)
            self._save_routing(model)
            previous = current.version if current is not None else None
            for record, change in zip(records, changes, strict=True):
                self._announce(change.announcement(record, previous))
            return records[0]
        wanted = f"v{to_version}" if to_version is not None else "retired version"
        raise RegistryError(f"{model} has no {wanted} with a valid artifact to roll back to")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()

    def _waits(self) -> dict[str, int]:
        """How long the producer may wait for a broker: ``announce_timeout_s`` (kafka-python 3 bootstraps apart)."""
        waits = {"max_block_ms": round(self.announce_timeout_s * 1000)}
        if "bootstrap_timeout_ms" in KafkaProducer.DEFAULT_CONFIG:
            waits["bootstrap_timeout_ms"] = waits["max_block_ms"]
        return waits

    def _query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        client = connect(self.settings.clickhouse)
        try:
            return client.execute(sql, params or {})
        finally:
            client.disconnect()

    def _write(self, records: list[VersionRecord], changes: list[StageChange]) -> None:
        """The versions' new rows in one INSERT (atomic), then the record of the changes (ids that keep their
        order within one write)."""
        first = _revision()
        changes = [replace(c, change_id=f"{first:020d}-{i}") for i, c in enumerate(changes)]
        client = connect(self.settings.clickhouse)
        try:
            client.execute(f"INSERT INTO model_versions ({', '.join(COLUMNS)}) VALUES", [r.row() for r in records])
            client.execute(
                f"INSERT INTO version_changes ({', '.join(CHANGE_COLUMNS)}) VALUES", [c.row() for c in changes]
            )
        finally:
            client.disconnect()

    def _save_routing(self, model: str) -> None:
        """Write the model's routing as it now is beside its artifacts (:class:`SavedRouting`), atomically; one
        written by a later change is not replaced. A routing that cannot be written is logged: the change
        stands, recorded in ClickHouse."""
        path = self.root / model / SAVED_ROUTING
        try:
            versions = self.versions(model)
            saved = SavedRouting(self.routing(model, versions), max(r.revision for r in versions), self.clock())
            current = self.saved_routing(model)
            if current is not None and current.revision > saved.revision:
                return
            scratch = path.with_name(f".{SAVED_ROUTING}.{os.getpid()}.{uuid.uuid4().hex}")
            scratch.write_text(json.dumps(saved.to_json()))
            os.replace(scratch, path)
        except Exception as exc:  # the change is recorded: only the fallback for serving is stale
            log.warning(
                "the routing could not be saved beside the artifacts: a serving client started while ClickHouse "
                "does not answer would serve an older one",
                extra={"fields": {"model": model, "path": str(path), "error": f"{type(exc).__name__}: {exc}"}},
            )

    def _announce(self, announcement: VersionAnnouncement) -> None:
        """Publish ``announcement``; a broker that does not take it is logged: the change is recorded already,
        and serving clients read the routing once a minute whatever they hear."""
        try:
            if self._producer is None:
                self._producer = KafkaProducer(**self.settings.kafka_python_config(), **self._waits(), acks="all")
            self._producer.send(
                self.settings.topics.model_versions,
                json.dumps(announcement.to_json()).encode(),
                key=announcement.model.encode(),
            )
            self._producer.flush(timeout=self.announce_timeout_s)
        except KafkaError as exc:
            log.warning(
                "the change is recorded but its announcement could not be sent: serving clients read it within a "
                "minute, alert subscribers see the next one",
                extra={"fields": {"model": announcement.model, "version": announcement.version,
                                  "stage": announcement.stage, "error": f"{type(exc).__name__}: {exc}"}},
            )  # fmt: skip


def _revision() -> int:
    return time.time_ns() // 1000


def _plain_json(value: object) -> object:
    return value.item() if hasattr(value, "item") else str(value)
