"""Parked alerts: what a webhook subscriber could not deliver, with why, until ``driftloop alerts resend``.

A subscriber parks an alert for a webhook that refused it (a 4xx other than 408 and 429) or stayed unreachable
longer than its ``--park-after``, and moves on: one broken receiver no longer holds every later alert back.
Rows live in ClickHouse ``parked_alerts`` (a re-sent alert is a new row, ``status = 'resent'``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from driftloop.infra.clickhouse.client import connect
from driftloop.infra.contract import Alert, column_json
from driftloop.infra.settings import Settings

COLUMNS = (
    "subscriber",
    "alert_id",
    "destination",
    "model",
    "kind",
    "reason",
    "alert",
    "parked_at",
    "status",
    "revision",
)


@dataclass(frozen=True)
class ParkedAlert:
    """An alert one subscriber could not deliver to one destination (a webhook's scheme and host)."""

    subscriber: str
    alert: Alert
    destination: str
    reason: str
    parked_at: float
    status: str = "parked"

    def to_json(self) -> dict[str, object]:
        return {
            "subscriber": self.subscriber,
            "alert_id": self.alert.alert_id,
            "model": self.alert.model,
            "kind": self.alert.kind,
            "destination": self.destination,
            "reason": self.reason,
            "parked_at": self.parked_at,
            "status": self.status,
        }


class AlertParking:
    """``parked_alerts`` in ClickHouse: park, list, mark re-sent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def park(self, parked: ParkedAlert) -> None:
        self._write(parked, "parked")

    def mark_resent(self, parked: ParkedAlert) -> None:
        self._write(parked, "resent")

    def parked(self, subscriber: str | None = None) -> list[ParkedAlert]:
        """Alerts parked and not re-sent yet (of ``subscriber``, or of every one), oldest first."""
        where = "AND subscriber = %(s)s" if subscriber is not None else ""
        client = connect(self.settings.clickhouse)
        try:
            rows = client.execute(
                "SELECT subscriber, alert, destination, reason, toUnixTimestamp(parked_at) FROM parked_alerts FINAL "
                f"WHERE status = 'parked' {where} ORDER BY parked_at, alert_id",
                {"s": subscriber or ""},
            )
        finally:
            client.disconnect()
        return [ParkedAlert(s, Alert.from_json(json.loads(a)), d, r, float(at)) for s, a, d, r, at in rows]

    def _write(self, parked: ParkedAlert, status: str) -> None:
        row = (
            parked.subscriber,
            parked.alert.alert_id,
            parked.destination,
            parked.alert.model,
            parked.alert.kind,
            parked.reason[:2000],
            column_json(parked.alert.to_json()),
            int(parked.parked_at),
            status,
            time.time_ns() // 1000,
        )
        client = connect(self.settings.clickhouse)
        try:
            client.execute(f"INSERT INTO parked_alerts ({', '.join(COLUMNS)}) VALUES", [row])
        finally:
            client.disconnect()
