"""Silences: a model's alerts held back for a while (a planned migration, a known incident being worked on).

``driftloop alerts silence --model M --for 2h [--kind performance] [--reason ...]`` writes a row to
``alert_silences``. While it lasts, the model's alerts (of that kind, or of every kind) are still detected
and recorded in ``drift_alerts`` with ``silenced = 1``, but not published on the alerts topic: no subscriber
is told, no retraining starts. Silences are judged by wall-clock time when the alert is raised, and read
from ClickHouse whenever alerts are raised, so a new one takes effect at the next alert.

>>> parse_duration("2h"), parse_duration("90m"), parse_duration("1d12h"), parse_duration("45s"), parse_duration("2w")
(7200.0, 5400.0, 129600.0, 45.0, 1209600.0)
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from driftloop.infra.contract import KINDS, Alert
from driftloop.infra.errors import DriftloopError
from driftloop.streams.event_types import MODEL_NAME, valid_model_name

_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_UNIT_S = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
#: ``alert_silences.ends_at`` is a ClickHouse ``DateTime``: seconds since 1970 that fit 32 bits (2106-02-07).
_LAST_END = 2**32 - 1


class SilenceError(DriftloopError):
    """A silence is asked for wrongly: its duration or its kind."""


def parse_duration(text: str) -> float:
    """``2h``, ``90m``, ``1d12h``, ``45s``, ``2w`` in seconds."""
    compact = text.strip().lower().replace(" ", "")
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise SilenceError(f"cannot read the duration {text!r}: write it like 2h, 90m, 1d12h, 45s or 2w")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


@dataclass(frozen=True)
class Silence:
    """One ``alert_silences`` row: ``model``'s alerts of ``kind`` ('' : every kind) held back in [starts, ends)."""

    silence_id: str
    model: str
    kind: str
    starts_at: float
    ends_at: float
    reason: str = ""
    created_by: str = ""

    def covers(self, alert: Alert, at: float) -> bool:
        return alert.model == self.model and self.kind in ("", alert.kind) and self.starts_at <= at < self.ends_at

    def to_json(self) -> dict[str, Any]:
        return {
            "silence_id": self.silence_id,
            "model": self.model,
            "kind": self.kind or "all",
            "starts_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.starts_at)),
            "ends_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.ends_at)),
            "reason": self.reason,
            "created_by": self.created_by,
        }


def new_silence(model: str, duration_s: float, *, kind: str = "", reason: str = "", created_by: str = "") -> Silence:
    if kind not in ("", *KINDS):
        raise SilenceError(f"unknown alert kind {kind!r}; use one of {', '.join(KINDS)} (or none: every kind)")
    if not valid_model_name(model):
        raise SilenceError(f"{model!r} is no model name: it must match {MODEL_NAME} (letters, digits, . _ -)")
    if not duration_s > 0:
        raise SilenceError("a silence needs a positive duration (--for 2h)")
    now = time.time()
    if now + duration_s > _LAST_END:
        days = int((_LAST_END - now) // 86400)
        raise SilenceError(
            f"a silence ends by 2106-02-07 (ClickHouse's DateTime): ask for at most {days} days (--for {days}d)"
        )
    return Silence(uuid.uuid4().hex, model, kind, now, now + duration_s, reason, created_by)


def save_silence(client: Any, silence: Silence) -> None:
    """Write ``silence`` to ``alert_silences`` (``client``: a clickhouse-driver client)."""
    client.execute(
        "INSERT INTO alert_silences (silence_id, model, kind, starts_at, ends_at, reason, created_by, created_at) "
        "VALUES",
        [
            (
                silence.silence_id,
                silence.model,
                silence.kind,
                int(silence.starts_at),
                int(silence.ends_at) + (silence.ends_at % 1 > 0),  # whole seconds, never shorter than asked
                silence.reason,
                silence.created_by,
                int(time.time()),
            )
        ],
    )


def active_silences(client: Any, models: Sequence[str] | None = None, at: float | None = None) -> list[Silence]:
    """The silences in force at ``at`` (now), for ``models`` (every model)."""
    at = time.time() if at is None else at
    rows = client.execute(
        "SELECT silence_id, model, kind, toUInt32(starts_at), toUInt32(ends_at), reason, created_by "
        "FROM alert_silences FINAL WHERE starts_at <= toDateTime(%(at)s) AND ends_at > toDateTime(%(at)s)"
        + (" AND model IN %(models)s" if models else "")
        + " ORDER BY model, ends_at",
        {"at": int(at), "models": tuple(models or ())},
    )
    return [Silence(r[0], r[1], r[2], float(r[3]), float(r[4]), r[5], r[6]) for r in rows]


def mark_silenced(alerts: Sequence[Alert], silences: Sequence[Silence], at: float) -> list[Alert]:
    """``alerts``, with ``silenced`` set on those a silence covers at ``at``."""
    return [replace(a, silenced=True) if any(s.covers(a, at) for s in silences) else a for a in alerts]
