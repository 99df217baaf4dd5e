"""The demo's world: loan applications from River's Agrawal generator, with a drift at a known point.

Before the drift, whether an application is approved follows Agrawal's concept 0 (by age). At the drift
the concept switches to Agrawal's concept 2 (by age and salary): the served model's accuracy falls (a
concept drift, found by the performance detectors), and the ``loan`` amounts asked for grow by half (a
feature shift, found by the data detectors). Everything is generated from a seed: the same seed gives the
same stream.

>>> scenario = DriftScenario(events=1000, drift_at=0.5, seed=7)
>>> scenario.drift_index
500
>>> len(scenario.features), sorted(scenario.features.columns)[:3]
(1000, ['age', 'car', 'commission'])
>>> bool(scenario.labels[:500].isin(["0", "1"]).all())
True
>>> business_value("0", "0", loan=100_000), business_value("0", "1", loan=100_000), business_value("1", "1", 1)
(8.0, -40.0, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from river.datasets import synth

NUMERIC = ("salary", "commission", "age", "hvalue", "hyears", "loan")
CATEGORICAL = ("elevel", "car", "zipcode")
BEFORE_CONCEPT, AFTER_CONCEPT = 0, 2
LOAN_GROWTH = 1.5


def agrawal_frame(function: int, n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """``n`` applications of one Agrawal concept: features (6 numeric, 3 categorical as text) and labels."""
    rows, labels = [], []
    for x, y in synth.Agrawal(classification_function=function, seed=seed).take(n):
        rows.append(x)
        labels.append(str(y))
    frame = pd.DataFrame(rows, columns=[*NUMERIC, *CATEGORICAL])
    frame[list(NUMERIC)] = frame[list(NUMERIC)].astype("float64")
    for name in CATEGORICAL:
        frame[name] = frame[name].astype(str)
    return frame, pd.Series(labels, dtype=object)


APPROVE = "0"  # Agrawal's group A: the applications the lender wants


def business_value(decision: str, label: str, loan: float) -> float:
    """What a decision earned the lender, in thousands: an approved good loan pays 8 % of the amount, an
    approved bad one loses 40 %, a refused good one loses the 8 % it would have paid, a refused bad one 0.
    The demo's outcomes carry it as ``value``: the KPI its release gate and scorecard judge."""
    margin = 0.08 * loan / 1000
    if decision == APPROVE:
        return margin if label == APPROVE else -5 * margin
    return -margin if label == APPROVE else 0.0


@dataclass
class DriftScenario:
    """``events`` applications; from ``drift_index`` on, the new concept and the larger loans."""

    events: int
    drift_at: float = 0.35
    seed: int = 42
    features: pd.DataFrame = field(init=False, repr=False)
    labels: pd.Series = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.events < 2:
            raise ValueError(f"a scenario needs at least 2 events, not {self.events}")
        if not 0 < self.drift_at < 1:
            raise ValueError(f"drift_at is a fraction of the stream in (0, 1), not {self.drift_at}")
        before, before_labels = agrawal_frame(BEFORE_CONCEPT, self.drift_index, self.seed)
        after, after_labels = agrawal_frame(AFTER_CONCEPT, self.events - self.drift_index, self.seed + 1)
        after["loan"] *= LOAN_GROWTH
        self.features = pd.concat([before, after], ignore_index=True)
        self.labels = pd.concat([before_labels, after_labels], ignore_index=True)

    @property
    def drift_index(self) -> int:
        return min(self.events - 1, max(1, round(self.events * self.drift_at)))

    def describe(self) -> str:
        return (
            f"Agrawal concept {BEFORE_CONCEPT} → {AFTER_CONCEPT} at event {self.drift_index:,} of {self.events:,}, "
            f"loan amounts ×{LOAN_GROWTH} from there (seed {self.seed})"
        )
