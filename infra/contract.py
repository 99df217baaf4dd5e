"""The public contract's types that every layer reads (streams, retrain, models, release, the CLI), kept on
the ground floor so that none of them imports another's internals: the drift alert (the record on the
``alerts`` topic and in ``drift_alerts``, with its evidence), the version announcement (the message on
``model-versions``), and :class:`EventError` (an event that breaks the contract of docs/events.md; the events'
own types are ``streams.event_types``, the rules ``streams.event_rules``).

>>> alert = Alert.example()
>>> Alert.from_json(alert.to_json()) == alert
True
>>> alert.to_json()["kind"], alert.to_json()["event_ts"]
('data', '2026-11-23T08:00:00Z')
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from driftloop.infra.errors import DriftloopError

Kind = Literal["data", "prediction", "performance"]
#: What an alert is about: a drift of one of the kinds above, or a ``release`` (a change of stage, as a notice for
#: the subscribers that ask for it: ``streams.drift.release_notices``).
AlertKind = Literal["data", "prediction", "performance", "release"]
Severity = Literal["info", "warning", "critical"]
KINDS: tuple[str, ...] = get_args(Kind)
ALERT_KINDS: tuple[str, ...] = get_args(AlertKind)
RELEASE: Literal["release"] = "release"
SEVERITIES: tuple[str, ...] = get_args(Severity)  # mildest first

ALERT_COLUMNS = (
    "alert_id",
    "model",
    "model_version",
    "kind",
    "signal",
    "detector",
    "severity",
    "event_ts",
    "event_ts_ms",
    "request_id",
    "detected_at",
    "statistic",
    "threshold",
    "reference_size",
    "window_size",
    "change_point_ts",
    "change_point_request_id",
    "evidence",
    "message",
    "owner",
    "runbook",
    "silenced",
)


class EventError(DriftloopError, ValueError):
    """An event breaks the contract; the message says which field and how."""


def finite_json(value: Any) -> Any:
    """``value`` with every float that is not finite (in its dicts and lists) made null, as JSON can carry it.

    >>> finite_json({"mean": float("inf"), "laws": [1.5, float("nan")], "n": 3})
    {'mean': None, 'laws': [1.5, None], 'n': 3}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def column_json(value: Any, default: Callable[[Any], Any] = str) -> str:
    """``value`` as JSON for a ClickHouse ``String`` column that SQL reads with ``visitParamExtract*``: compact
    (those functions read ``"key":value``, with no space after the colon: on 18.16 and on current ClickHouse) and
    finite (:func:`finite_json`: current ClickHouse's parser gives 0 for every key of a document with one ``NaN``).

    >>> column_json({"p": float("nan"), "rows": 3, "test": "sign"})
    '{"p":null,"rows":3,"test":"sign"}'
    """
    return json.dumps(finite_json(value), default=default, separators=(",", ":"))


def _rfc3339(epoch: float) -> str:
    text = dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds")
    return text.replace(".000+00:00", "Z").replace("+00:00", "Z")


def _epoch(text: str | float) -> float:
    if isinstance(text, int | float):
        return float(text)
    return dt.datetime.fromisoformat(text).timestamp()


@dataclass(frozen=True)
class Alert:
    """One drift alert. Times are epoch seconds here and RFC 3339 text on the wire."""

    alert_id: str
    model: str
    model_version: int
    kind: AlertKind
    signal: str
    detector: str
    severity: Severity
    event_ts: float
    request_id: str
    detected_at: float
    statistic: float
    threshold: float
    reference_size: int
    window_size: int
    change_point_ts: float
    change_point_request_id: str
    evidence: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    owner: str = ""  # who answers for the model (its spec's `owner`)
    runbook: str = ""  # the model's response plan (its spec's `runbook`, a URL)
    silenced: bool = False  # held back by a silence: recorded, not published (``streams.drift.silences``)

    @staticmethod
    def make_id(model: str, signal: str, detector: str, event_ts_ms: int, request_id: str) -> str:
        """Deterministic: the same detection on re-delivered data gives the same id (and one row)."""
        key = f"{model}\x1f{signal}\x1f{detector}\x1f{event_ts_ms}\x1f{request_id}"
        return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """The alert as JSON's types: RFC 3339 times, and null for a number that is not finite (JSON has no NaN
        or infinity: a strict parser refuses the ``NaN`` and ``Infinity`` Python would write)."""
        data = asdict(self)
        for name in ("event_ts", "detected_at", "change_point_ts"):
            data[name] = _rfc3339(data[name])
        for name in ("statistic", "threshold"):
            data[name] = data[name] if math.isfinite(data[name]) else None
        data["evidence"] = finite_json(data["evidence"])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        values = dict(data)
        for name in ("event_ts", "detected_at", "change_point_ts"):
            values[name] = _epoch(values[name])
        for name in ("statistic", "threshold"):
            values[name] = math.nan if values.get(name) is None else float(values[name])
        return cls(**values)

    def to_row(self) -> tuple[Any, ...]:
        """The ``drift_alerts`` row, in ``ALERT_COLUMNS`` order."""
        return (
            self.alert_id,
            self.model,
            self.model_version,
            self.kind,
            self.signal,
            self.detector,
            self.severity,
            int(self.event_ts),
            round(self.event_ts * 1000),
            self.request_id,
            int(self.detected_at),
            self.statistic,
            self.threshold,
            self.reference_size,
            self.window_size,
            int(self.change_point_ts),
            self.change_point_request_id,
            column_json(self.evidence),
            self.message,
            self.owner,
            self.runbook,
            int(self.silenced),
        )

    @classmethod
    def example(cls) -> Alert:
        return cls(
            alert_id="0" * 32,
            model="fraud",
            model_version=3,
            kind="data",
            signal="amount",
            detector="ADWIN",
            severity="critical",
            event_ts=1_795_420_800.0,
            request_id="r-9",
            detected_at=1_795_420_801.0,
            statistic=1.02,
            threshold=0.31,
            reference_size=5000,
            window_size=64,
            change_point_ts=1_795_420_790.0,
            change_point_request_id="r-1",
            evidence={"reference_mean": 0.01, "window_mean": 1.03},
            message="amount drifted",
            owner="risk-ml@example.com",
            runbook="https://wiki.example.com/fraud-drift",
        )


@dataclass(frozen=True)
class VersionAnnouncement:
    """A message on ``model-versions``: a model version changed stage (``docs/release.md``). ``event``: promoted
    (it became champion), rolled_back, rejected, or stage (any other step); ``stage`` is where it is now (sent as
    ``status`` too). Serving clients reload on one; alert subscribers resolve incidents when a champion replaces
    the version that drifted.

    >>> sent = VersionAnnouncement("promoted", "fraud", 3, "champion", "canary", 1.0, "canary", "ab12", "file:///m",
    ...                            2, "gate passed", 1790000000.0)
    >>> VersionAnnouncement.from_json(json.loads(json.dumps(sent.to_json()))) == sent
    True
    """

    event: str
    model: str
    version: int
    stage: str
    from_stage: str
    traffic_share: float
    path: str
    sha256: str
    artifact_uri: str
    previous_version: int | None
    reason: str
    at: float  # epoch seconds

    def to_json(self) -> dict[str, Any]:
        return {"status": self.stage, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any) -> VersionAnnouncement:
        """The announcement in ``data`` (a parsed message); ``EventError`` when it is not one."""
        try:
            previous = data.get("previous_version")
            return cls(
                event=str(data["event"]),
                model=str(data["model"]),
                version=int(data["version"]),
                stage=str(data.get("stage", data.get("status", ""))),
                from_stage=str(data.get("from_stage", "")),
                traffic_share=float(data.get("traffic_share", 0.0)),
                path=str(data.get("path", "")),
                sha256=str(data.get("sha256", "")),
                artifact_uri=str(data.get("artifact_uri", "")),
                previous_version=None if previous is None else int(previous),
                reason=str(data.get("reason", "")),
                at=float(data.get("at", 0.0)),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise EventError(f"not a model-versions announcement: {exc!r}") from None
