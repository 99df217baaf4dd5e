"""``driftloop report --model M``: one self-contained HTML file (plots embedded as PNG) about a model.

What it shows: who owns the model and its runbook, accuracy (or error) over time with alerts and version
changes marked, the scorecard in three layers (business, model, operations), the release of each version
(shadow, canary, champion, with the evidence), the distributions of the features that drifted before and
after their change point, and the retraining runs, followed by the tables behind them. Nothing is fetched
when the file is opened: it can be mailed or attached.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from pathlib import Path

import pandas as pd

from driftloop.infra.settings import Settings
from driftloop.infra.spec import SpecCatalog, SpecError
from driftloop.streams.drift.signal_names import CORRELATION, JOINT, MEAN_SHIFT, feature_of

from .plots import feature_shift_plot, pair_shift_plot, performance_plot, retrain_plot
from .queries import ModelHistory, feature_values, load_history, pair_values
from .scorecard import LAYERS, load_scorecard

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } img { max-width: 100%; } .features img { max-width: 49%; }
.facts td:first-child { font-weight: 600; }
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(float(epoch), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(frame: pd.DataFrame, times: tuple[str, ...] = ()) -> str:
    if frame.empty:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row, strict=True):
            text = _when(value) if column in times else (f"{value:.4g}" if isinstance(value, float) else str(value))
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def drifted_features(history: ModelHistory, limit: int = 4) -> list[tuple[str, float]]:
    """The features named by data alerts (first alert each), with that alert's change point: a feature's own
    alert names it, a mean shift the two whose means moved most."""
    features: dict[str, float] = {}
    for alert in history.alerts[history.alerts["kind"] == "data"].itertuples():
        if alert.signal == MEAN_SHIFT:
            for name in _named(alert.features)[:2]:
                features.setdefault(name, float(alert.change_point_ts))
        elif alert.signal not in (JOINT, CORRELATION):  # those name pairs (drifted_pairs)
            features.setdefault(feature_of(str(alert.signal)), float(alert.change_point_ts))
    return list(features.items())[:limit]


def _named(features: str | None) -> list[str]:
    """The features an alert's evidence names (its JSON array; none where it is not one: an alert written before
    alerts named features)."""
    try:
        names = json.loads(features or "[]")
    except ValueError:
        return []
    return [str(name) for name in names] if isinstance(names, list) else []


def drifted_pairs(history: ModelHistory, limit: int = 2) -> list[tuple[tuple[str, str], float]]:
    """The two features each joint or correlation alert names first (first alert each pair), with its change
    point."""
    pairs: dict[tuple[str, str], float] = {}
    for alert in history.alerts[history.alerts["signal"].isin([JOINT, CORRELATION])].itertuples():
        names = _named(alert.features)
        if len(names) >= 2:
            pairs.setdefault((names[0], names[1]), float(alert.change_point_ts))
    return list(pairs.items())[:limit]


def render_report(settings: Settings, history: ModelHistory) -> str:
    """The report's HTML for ``history``."""
    performance = history.performance
    labeled = int(performance["labeled"].sum()) if not performance.empty else 0
    champion = history.versions[history.versions["status"] == "champion"]
    facts = {
        "time range (UTC)": f"{_when(history.start)} → {_when(history.end)}",
        "predictions": f"{int(history.volume['predictions'].sum()):,}",
        "labeled": f"{labeled:,}",
        "drift alerts": ", ".join(f"{n} {k}" for k, n in history.alerts["kind"].value_counts().items()) or "none",
        "retraining runs": ", ".join(f"{n} {s}" for s, n in history.runs["status"].value_counts().items()) or "none",
        "champion now": f"v{int(champion['version'].iloc[-1])}" if not champion.empty else "none",
    }
    try:
        spec = SpecCatalog.of(settings).get(history.model)
        facts = {
            "owner": spec.owner or "not set (the spec's `owner`)",
            "runbook": spec.runbook or "not set (the spec's `runbook`)",
        } | facts
    except SpecError as exc:
        facts = {"spec": str(exc)} | facts
    sections = [
        f"<h1>{html.escape(history.model)}</h1>",
        f'<p class="sub">driftloop report · written {_when(dt.datetime.now(dt.UTC).timestamp())} UTC</p>',
        '<table class="facts">'
        + "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in facts.items())
        + "</table>",
        "<h2>Performance over time</h2>",
        _img(performance_plot(history), "performance over time") if not performance.empty else "<p>no labels yet</p>",
    ]
    scorecard = pd.DataFrame(load_scorecard(settings, history.model, history.start, history.end))
    if not scorecard.empty:
        sections.append("<h2>Scorecard: business results, model metrics, operations (per hour)</h2>")
        for layer, columns in LAYERS:
            sections += [f"<h3>{layer}</h3>", _table(scorecard[["hour", "version", "stage", *columns]])]
    if not history.stages.empty:
        sections += [
            "<h2>Release: candidate → shadow → canary → champion</h2>",
            _table(history.stages, times=("changed_at",)),
        ]
    features, pairs = drifted_features(history), drifted_pairs(history)
    if features or pairs:
        sections.append("<h2>Drifted features, before and after the change point</h2><div class='features'>")
        for feature, change_point in features:
            before, after, kind = feature_values(
                settings, history.model, feature, history.start, change_point, history.end
            )
            if len(before) and len(after):
                sections.append(_img(feature_shift_plot(feature, before, after, kind), f"{feature} before/after"))
        for pair, change_point in pairs:
            together = pair_values(settings, history.model, pair, history.start, change_point, history.end)
            if all(len(half) for half in together):
                sections.append(_img(pair_shift_plot(pair, *together), f"{pair[0]} and {pair[1]} before/after"))
        sections.append("</div>")
    if not history.runs.empty:
        sections += [
            "<h2>Retraining runs</h2>",
            _img(retrain_plot(history.runs), "retraining runs"),
            _table(history.runs, times=("started_at", "finished_at")),
        ]
    sections += [
        "<h2>Drift alerts</h2>",
        _table(
            history.alerts.drop(columns=["alert_id", "features"]), times=("event_ts", "detected_at", "change_point_ts")
        ),
        "<h2>Model versions</h2>",
        _table(history.versions, times=("created_at", "updated_at")),
    ]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>driftloop · {html.escape(history.model)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(sections)}</body></html>"
    )


def write_report(
    settings: Settings,
    model: str,
    *,
    since: float | None = None,
    until: float | None = None,
    path: Path | None = None,
) -> Path:
    """Write the report for ``model`` (default ``HOME/reports/<model>.html``) and return its path."""
    history = load_history(settings, model, since, until)
    path = path or settings.home / "reports" / f"{model}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render_report(settings, history), encoding="utf-8")
    tmp.replace(path)
    return path
