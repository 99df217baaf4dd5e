"""A labeled history on River's Agrawal generator, as the outcome join writes it to ``labeled``: for the
retraining tests and benchmark (one concept, then another, each row labeled a minute after it).

>>> rows = agrawal_rows("m", function=0, start=0, n=3, seed=1)
>>> len(rows), rows["request_id"], rows["num.name"][0][:2]
(3, ['r0', 'r1', 'r2'], ['salary', 'commission'])
"""

from __future__ import annotations

from river.datasets import synth

from driftloop.streams.batch import ColumnBatch
from driftloop.streams.join import LABELED_COLUMNS

TS0 = 1_790_000_000
NUMERIC = ("salary", "commission", "age", "hvalue", "hyears", "loan")
CATEGORICAL = ("elevel", "car", "zipcode")


def agrawal_rows(model: str, function: int, start: int, n: int, seed: int) -> ColumnBatch:
    rows = []
    for i, (x, y) in enumerate(synth.Agrawal(classification_function=function, seed=seed).take(n), start=start):
        ts = TS0 + i
        rows.append(
            (
                f"{model}-o{i}",
                f"{model}-p{i}",
                model,
                1,
                f"r{i}",
                ts,
                ts * 1000,
                ts + 60,
                (ts + 60) * 1000,
                list(NUMERIC),
                [float(x[k]) for k in NUMERIC],
                list(CATEGORICAL),
                [str(x[k]) for k in CATEGORICAL],
                [],
                "0",
                0.0,
                float("nan"),
                str(y),
                float(y),
                int(y == 0),
                float(y != 0),
                60.0,
                1,
                float("nan"),
            )
        )
    return ColumnBatch("labeled", {name: [r[j] for r in rows] for j, name in enumerate(LABELED_COLUMNS)})
