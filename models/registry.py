"""The model registry: immutable numbered versions per model, their artifacts, and which one serves.

Each version is an artifact (``models.artifacts``) and a row in ClickHouse ``model_versions`` (parent,
trigger alert, training window, metrics, status: candidate / champion / rejected / retired). A status change
is a new row with a higher revision; promotion writes the new champion and the retired one in a single
INSERT (atomic), then announces it on the ``model-versions`` topic, where serving clients hear it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.errors import DriftloopError
from driftloop.infra.settings import Settings
from driftloop.models.artifacts import LoadedModel, artifact_root, load_artifact

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
)


class RegistryError(DriftloopError):
    """A version does not exist, or the requested change of status is not possible."""


@dataclass(frozen=True)
class VersionRecord:
    """One model version as the registry knows it (times in epoch seconds)."""

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

    def row(self) -> tuple[Any, ...]:
        data = asdict(self)
        data["metrics"] = json.dumps(self.metrics)
        for name in ("train_from", "train_to", "created_at", "updated_at"):
            data[name] = int(data[name])
        return tuple(data[c] for c in COLUMNS)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> VersionRecord:
        data = dict(zip(COLUMNS, row, strict=True))
        data["metrics"] = json.loads(data["metrics"] or "{}")
        for name in ("train_from", "train_to", "created_at", "updated_at"):
            value = data[name]
            data[name] = value.timestamp() if isinstance(value, dt.datetime) else float(value)
        return cls(**data)

    def announcement(self, event: str, previous: int | None) -> dict[str, Any]:
        return {
            "event": event,
            "model": self.model,
            "version": self.version,
            "status": self.status,
            "sha256": self.sha256,
            "artifact_uri": self.artifact_uri,
            "previous_version": previous,
            "reason": self.reason,
            "at": self.updated_at,
        }


class ModelRegistry:
    """Versions of every model; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = artifact_root(settings.artifact_location)
        self._producer: KafkaProducer | None = None

    # --- reading ---------------------------------------------------------------------------------------

    def versions(self, model: str) -> list[VersionRecord]:
        client = connect(self.settings.clickhouse)
        try:
            rows = client.execute(
                f"SELECT {', '.join(COLUMNS)} FROM model_versions FINAL WHERE model = %(m)s ORDER BY version",
                {"m": model},
            )
        finally:
            client.disconnect()
        return [VersionRecord.from_row(r) for r in rows]

    def models(self) -> list[str]:
        client = connect(self.settings.clickhouse)
        try:
            return [m for (m,) in client.execute("SELECT DISTINCT model FROM model_versions ORDER BY model")]
        finally:
            client.disconnect()

    def get(self, model: str, version: int) -> VersionRecord:
        for record in self.versions(model):
            if record.version == version:
                return record
        raise RegistryError(f"{model} has no version {version} (`driftloop models list --model {model}`)")

    def champion(self, model: str) -> VersionRecord | None:
        champions = [r for r in self.versions(model) if r.status == "champion"]
        return champions[-1] if champions else None

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

    def add(self, record: VersionRecord) -> VersionRecord:
        """Record a new version (candidate or rejected); its artifact must already be written."""
        now = time.time()
        record = replace(record, created_at=record.created_at or now, updated_at=now, revision=_revision())
        self._insert([record])
        if record.status == "rejected":
            self._announce(record.announcement("rejected", None))
        return record

    def promote(self, model: str, version: int, reason: str) -> VersionRecord:
        """Make ``version`` the champion (the current one retires) in one atomic write, then announce it."""
        target = self.get(model, version)
        if target.status == "champion":
            return target
        self.load(target)  # never promote an artifact that does not verify
        current = self.champion(model)
        now, revision = time.time(), _revision()
        promoted = replace(target, status="champion", reason=reason, updated_at=now, revision=revision)
        rows = [promoted]
        if current is not None:
            rows.append(
                replace(current, status="retired", reason=f"replaced by v{version}", updated_at=now, revision=revision)
            )
        self._insert(rows)
        self._announce(promoted.announcement("promoted", current.version if current else None))
        return promoted

    def rollback(self, model: str, reason: str = "rolled back") -> VersionRecord:
        """Bring back the most recently retired version whose artifact still verifies."""
        versions = self.versions(model)
        current = next((r for r in versions if r.status == "champion"), None)
        retired = sorted((r for r in versions if r.status == "retired"), key=lambda r: r.revision, reverse=True)
        for candidate in retired:
            try:
                self.load(candidate)
            except DriftloopError:
                continue
            now, revision = time.time(), _revision()
            restored = replace(candidate, status="champion", reason=reason, updated_at=now, revision=revision)
            rows = [restored]
            if current is not None:
                rows.append(replace(current, status="retired", reason=reason, updated_at=now, revision=revision))
            self._insert(rows)
            self._announce(restored.announcement("rolled_back", current.version if current else None))
            return restored
        raise RegistryError(f"{model} has no retired version with a valid artifact to roll back to")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()

    def _insert(self, records: list[VersionRecord]) -> None:
        client = connect(self.settings.clickhouse)
        try:
            client.execute(f"INSERT INTO model_versions ({', '.join(COLUMNS)}) VALUES", [r.row() for r in records])
        finally:
            client.disconnect()

    def _announce(self, message: dict[str, Any]) -> None:
        if self._producer is None:
            self._producer = KafkaProducer(**self.settings.kafka_python_config(), acks="all")
        self._producer.send(
            self.settings.topics.model_versions, json.dumps(message).encode(), key=message["model"].encode()
        )
        self._producer.flush(timeout=30)


def _revision() -> int:
    return time.time_ns() // 1000
