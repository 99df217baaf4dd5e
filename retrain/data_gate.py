"""The data gate: whether a training window is fit to train on, with the numbers that say why not.

A window is refused when it is too small (fewer rows than ``training.min_labels``, or a split left empty), when
its labels are of one class only (or, for regression, all equal), when one class holds more than
``max_class_share`` of the labels, when a numeric feature is null in more than ``max_null_share`` of the rows, or
when the rows carry no feature at all.
A refused job is recorded as ``skipped`` in ``retrain_runs`` with these numbers in ``details``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftloop.infra.spec import TrainingSpec
from driftloop.retrain.dataset import LabeledData
from driftloop.retrain.splits import Splits


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict: ``passed``, the reasons it did not, and the numbers it looked at."""

    passed: bool
    reasons: tuple[str, ...] = ()
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def check_window(data: LabeledData, splits: Splits, task: str, rules: TrainingSpec) -> GateResult:
    """Check the window (all its rows) and its splits against the spec's limits."""
    reasons: list[str] = []
    rows = len(data)
    numbers: dict[str, Any] = {"rows": rows, "split_rows": [r.rows for r in splits.records()]}
    if rows < rules.min_labels:
        reasons.append(f"{rows} labeled rows in the window, training.min_labels is {rules.min_labels}")
    empty = [r.name for r in splits.records() if r.rows == 0]
    if empty:
        reasons.append(f"the {' and '.join(empty)} split would be empty")
    if task == "regression":
        values = data.label_num[np.isfinite(data.label_num)]
        numbers["label_std"] = float(values.std()) if len(values) else 0.0
        if len(values) and float(values.std()) == 0.0:
            reasons.append(f"every label is {values[0]:g}: nothing to learn")
    elif rows:
        counts = Counter(str(label) for label in data.labels)
        top, top_count = counts.most_common(1)[0]
        share = top_count / rows
        numbers |= {"classes": len(counts), "majority_class": top, "majority_share": round(share, 6)}
        if len(counts) < 2:
            reasons.append(f"one class only ({top!r}): nothing to learn")
        elif share > rules.max_class_share:
            reasons.append(
                f"{share:.2%} of the labels are {top!r}, above training.max_class_share {rules.max_class_share:.2%}"
            )
    if rows and not data.numeric and not data.categorical:
        reasons.append("the rows carry no features (their predictions sent `features: {}`): nothing to learn from")
    null_shares = {name: float(np.mean(np.isnan(column))) for name, column in data.numeric.items() if len(column)}
    if null_shares:
        worst = max(null_shares, key=lambda name: null_shares[name])
        numbers |= {"worst_null_feature": worst, "worst_null_share": round(null_shares[worst], 6)}
        over = sorted(name for name, share in null_shares.items() if share > rules.max_null_share)
        if over:
            reasons.append(
                f"{len(over)} feature(s) null in more than training.max_null_share {rules.max_null_share:.0%} of "
                f"the rows: {', '.join(over[:5])}{' …' if len(over) > 5 else ''} ({worst}: {null_shares[worst]:.0%})"
            )
    return GateResult(not reasons, tuple(reasons), numbers)
