"""The report's plots as PNG bytes (matplotlib, no display needed)."""

from __future__ import annotations

import datetime as dt
import functools
import io
from collections.abc import Callable
from typing import ParamSpec

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from .queries import ModelHistory

KIND_COLOURS = {"data": "#1f77b4", "prediction": "#9467bd", "performance": "#d62728"}
VERSION_COLOURS = ("#17becf", "#2ca02c", "#e377c2", "#bcbd22", "#8c564b")


P = ParamSpec("P")


def _as_written(plot: Callable[P, bytes]) -> Callable[P, bytes]:
    """Texts drawn as written: feature names and categories come from the events' producers, and matplotlib read
    text between two ``$`` as TeX (``$0-$100`` drawn in italics, ``$x^$`` a ValueError that stopped the report)."""

    @functools.wraps(plot)
    def drawn(*args: P.args, **kwargs: P.kwargs) -> bytes:
        with plt.rc_context({"text.parse_math": False}):
            return plot(*args, **kwargs)

    return drawn


def _time(values: pd.Series | list[float]) -> list[dt.datetime]:
    return [dt.datetime.fromtimestamp(float(v), dt.UTC).replace(tzinfo=None) for v in values]


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


@_as_written
def performance_plot(history: ModelHistory) -> bytes:
    """Accuracy (or mean error) per time bucket and serving version, with alerts and promotions marked."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True, height_ratios=(3, 1))
    column, label = ("accuracy", "accuracy") if history.task == "classification" else ("mean_error", "mean error")
    for i, (version, rows) in enumerate(history.performance.groupby("model_version")):
        top.plot(
            _time(rows["bucket"] + history.bucket_s / 2),
            rows[column],
            marker=".",
            lw=1.5,
            color=VERSION_COLOURS[i % len(VERSION_COLOURS)],
            label=f"served by v{version}",
        )
    marked: set[str] = set()
    for alert in history.alerts.itertuples():
        kind = str(alert.kind)
        top.axvline(
            _time([alert.event_ts])[0],
            color=KIND_COLOURS.get(kind, "grey"),
            ls="--",
            lw=1,
            label=None if kind in marked else f"{kind} drift alert",
        )
        marked.add(kind)
    for promotion in history.promotions.itertuples():
        when = _time([promotion.at])[0]
        top.axvline(when, color="black", lw=1.2)
        top.annotate(f" v{promotion.version} serving", (when, 0.02), xycoords=("data", "axes fraction"), fontsize=8)
    top.set_ylabel(label)
    top.set_title(f"{history.model}: {label} per {history.bucket_s} s of prediction time")
    top.grid(alpha=0.3)
    top.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    bottom.bar(
        _time(history.volume["bucket"] + history.bucket_s / 2),
        history.volume["predictions"],
        width=history.bucket_s / 86400 * 0.9,
        color="#7f7f7f",
    )
    bottom.set_ylabel("predictions")
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    bottom.set_xlabel("UTC")
    return _png(figure)


@_as_written
def feature_shift_plot(feature: str, before: pd.Series, after: pd.Series, kind: str) -> bytes:
    """A feature's distribution before and after the change point (histograms, or category shares)."""
    figure, axis = plt.subplots(figsize=(5.5, 3.2))
    if kind == "numeric":
        values = pd.concat([before, after])
        bins = 40 if values.nunique() > 40 else max(values.nunique(), 1)
        axis.hist(before, bins=bins, range=(values.min(), values.max()), density=True, alpha=0.55, label="before")
        axis.hist(after, bins=bins, range=(values.min(), values.max()), density=True, alpha=0.55, label="after")
        axis.set_ylabel("density")
    else:
        shares = pd.DataFrame(
            {"before": before.value_counts(normalize=True), "after": after.value_counts(normalize=True)}
        ).fillna(0.0)
        shares = shares.sort_values("before", ascending=False).head(15)
        shares.plot.bar(ax=axis, alpha=0.8)
        axis.set_ylabel("share")
    axis.set_title(f"{feature}: before ({len(before):,}) and after ({len(after):,}) the change")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return _png(figure)


@_as_written
def pair_shift_plot(pair: tuple[str, str], before: pd.DataFrame, after: pd.DataFrame) -> bytes:
    """Two features together before and after the change point (a joint or correlation alert): two numbers
    against each other, each half's correlation in its label; a number's mean in each of a category's main
    values; or, of two categories, the shares of the second's within each of the first's."""
    texts = [name for name in pair if not all(pd.api.types.is_numeric_dtype(half[name]) for half in (before, after))]
    if len(texts) == 2:
        return _shares_within(pair, before, after)
    if texts:
        return _means_by_category(texts[0], next(name for name in pair if name not in texts), before, after)
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    for half, label, colour in ((before, "before", "#1f77b4"), (after, "after", "#ff7f0e")):
        shown = half.sample(min(len(half), 1500), random_state=0) if len(half) else half
        correlation = half[pair[0]].corr(half[pair[1]]) if len(half) > 2 else float("nan")
        axis.scatter(shown[pair[0]], shown[pair[1]], s=4, alpha=0.35, color=colour,
                     label=f"{label} ({len(half):,}; correlation {correlation:+.2f})")  # fmt: skip
    axis.set_xlabel(pair[0])
    axis.set_ylabel(pair[1])
    axis.set_title(f"{pair[0]} and {pair[1]} before and after the change")
    axis.legend(fontsize=8, markerscale=3)
    axis.grid(alpha=0.3)
    return _png(figure)


def _main_values(before: pd.Series, after: pd.Series, top: int = 8) -> list[str]:
    """A categorical feature's most common values over both halves."""
    return pd.concat([before, after]).value_counts().index[:top].tolist()


def _means_by_category(category: str, number: str, before: pd.DataFrame, after: pd.DataFrame) -> bytes:
    """The number's mean (± its standard error) in each main value of the category, before and after."""
    values = _main_values(before[category], after[category])
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    width = 0.4
    for k, (half, label) in enumerate(((before, "before"), (after, "after"))):
        groups = half.groupby(category)[number].agg(["mean", "sem"]).reindex(values)
        axis.bar([i + (k - 0.5) * width for i in range(len(values))], groups["mean"], width, yerr=groups["sem"],
                 alpha=0.8, label=f"{label} ({len(half):,})")  # fmt: skip
    axis.set_xticks(range(len(values)), [str(v) for v in values], rotation=30, ha="right")
    axis.axhline(0.0, color="#888", linewidth=0.8)
    axis.set_ylabel(f"mean {number}")
    axis.set_title(f"{number} by {category} before and after the change")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3, axis="y")
    return _png(figure)


def _shares_within(pair: tuple[str, str], before: pd.DataFrame, after: pd.DataFrame) -> bytes:
    """The shares of the second feature's main values within each main value of the first, before and after."""
    rows = _main_values(before[pair[0]], after[pair[0]], top=6)
    columns = _main_values(before[pair[1]], after[pair[1]], top=6)
    figure, axes = plt.subplots(1, 2, figsize=(8.5, 3.6), sharey=True)
    for axis, half, label in zip(axes, (before, after), ("before", "after"), strict=True):
        shares = pd.crosstab(half[pair[0]], half[pair[1]], normalize="index").reindex(index=rows, columns=columns)
        axis.imshow(shares.fillna(0.0).to_numpy(), vmin=0.0, vmax=1.0, cmap="Blues", aspect="auto")
        for (i, j), share in pd.DataFrame(shares.to_numpy()).stack().items():
            axis.text(j, i, f"{share:.0%}", ha="center", va="center", fontsize=8,
                      color="white" if share > 0.6 else "#222")  # fmt: skip
        axis.set_xticks(range(len(columns)), [str(v) for v in columns], rotation=30, ha="right")
        axis.set_yticks(range(len(rows)), [str(v) for v in rows])
        axis.set_xlabel(pair[1])
        axis.set_title(f"{label} ({len(half):,})", fontsize=9)
    axes[0].set_ylabel(pair[0])
    figure.suptitle(f"shares of {pair[1]} within each {pair[0]} before and after the change", fontsize=10)
    return _png(figure)


@_as_written
def retrain_plot(runs: pd.DataFrame) -> bytes:
    """Each retraining run as a bar of its phases (seconds), labelled with its outcome."""
    figure, axis = plt.subplots(figsize=(8, 0.6 + 0.5 * len(runs)))
    phases = ("fetch_s", "train_s", "evaluate_s", "publish_s")
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")
    labels = [f"{r.status}: v{r.challenger_version} ({_time([r.started_at])[0]:%H:%M:%S})" for r in runs.itertuples()]
    left = pd.Series(0.0, index=runs.index)
    for phase, colour in zip(phases, colours, strict=True):
        axis.barh(labels, runs[phase], left=left, color=colour, label=phase.removesuffix("_s"))
        left += runs[phase]
    axis.set_xlabel("seconds")
    axis.set_title("retraining runs by phase")
    axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axis.invert_yaxis()
    return _png(figure)
