"""Release notices: the release controller's changes of stage as alerts of kind ``release``, for the subscribers
that ask for them (``driftloop alerts webhook --kind release``).

A version rolled back after its promotion, or rejected by a gate, is news for the people who own the model as
much as a drift is: the notice goes through the subscriber's filters, payload format, retries and parking as
any alert. Each ``model-versions`` announcement (``docs/release.md``) becomes one notice:

- ``rolled_back``: **critical** (a champion degraded, or a person took it back);
- ``rejected``: **warning** (a shadow or canary lost, or its deadline passed);
- a stage taken on the **urgent path** (the champion below its floor): **critical**;
- ``promoted`` (a new champion, or one brought back by a rollback) and a step to ``shadow`` or ``canary``: info.

A candidate's arrival and a champion's retirement (the other half of a promotion) are no notice. The notice's
``signal`` is ``release`` (a PagerDuty incident per model), its ``alert_id`` derived from the change (a notice
delivered twice has one id), its evidence the announcement's fields.

>>> from driftloop.infra.contract import VersionAnnouncement
>>> back = VersionAnnouncement("rolled_back", "fraud", 5, "rolled_back", "champion", 0.0, "release", "", "", 5,
...                            "degraded after promotion: f1 0.41 vs v4 0.58", 1790000000.0)
>>> notice = release_notice(back)
>>> notice.kind, notice.severity, notice.message
('release', 'critical', 'fraud v5 rolled back: degraded after promotion: f1 0.41 vs v4 0.58')
"""

from __future__ import annotations

from dataclasses import asdict

from driftloop.infra.contract import RELEASE, Alert, Severity, VersionAnnouncement
from driftloop.infra.spec import ModelSpec


def release_notice(change: VersionAnnouncement, spec: ModelSpec | None = None) -> Alert | None:
    """The notice of ``change`` (``spec``: the model's, for its owner and runbook); None for a change that is
    none (a candidate, a retirement)."""
    said = _said(change)
    if said is None:
        return None
    severity, what = said
    return Alert(
        alert_id=Alert.make_id(change.model, RELEASE, change.stage, round(change.at * 1000), f"v{change.version}"),
        model=change.model,
        model_version=change.version,
        kind=RELEASE,
        signal=RELEASE,
        detector=change.path or RELEASE,
        severity=severity,
        event_ts=change.at,
        request_id="",
        detected_at=change.at,
        statistic=float("nan"),
        threshold=float("nan"),
        reference_size=0,
        window_size=0,
        change_point_ts=change.at,
        change_point_request_id="",
        evidence={k: v for k, v in asdict(change).items() if k not in ("model", "version", "reason")},
        message=f"{change.model} v{change.version} {what}" + (f": {change.reason}" if change.reason else ""),
        owner=spec.owner if spec is not None else "",
        runbook=spec.runbook if spec is not None else "",
    )


def _said(change: VersionAnnouncement) -> tuple[Severity, str] | None:
    """The notice's severity and what happened, in words; None when the change is no notice."""
    urgent = change.path == "urgent"
    if change.stage == "rolled_back":
        return "critical", "rolled back"
    if change.stage == "rejected":
        return "warning", f"rejected in {change.from_stage}" if change.from_stage else "rejected"
    if change.stage == "champion":
        again = change.from_stage in ("retired", "rolled_back")
        return ("critical" if urgent else "info"), ("champion again" if again else "promoted to champion")
    if change.stage in ("shadow", "canary"):
        share = f" ({change.traffic_share:.0%} of requests)" if change.stage == "canary" else ""
        return ("critical" if urgent else "info"), f"in {change.stage}{share}"
    return None
