"""Each model's spec in force, as SQL reads it: a row of ``model_specs`` (migration 0017) a model, written by the
drift worker when it first watches the model and again whenever its spec changes (edited, added, or removed: a
row of the defaults). The ``scorecard`` view takes a model's task and positive class from it; people join alerts
to owners and runbooks with it.

>>> recorder = SpecRecorder()
>>> fraud = ModelSpec.model_validate({"name": "fraud", "owner": "risk-ml", "training": {"positive_class": "fraud"}})
>>> batch = recorder.changed([fraud], has_file=lambda model: True, now_us=1_764_547_200_000_000)
>>> {name: batch[name][0] for name in ("model", "task", "positive_class", "metric", "owner", "spec_file")}
{'model': 'fraud', 'task': '', 'positive_class': 'fraud', 'metric': 'accuracy', 'owner': 'risk-ml', 'spec_file': 1}
>>> recorder.written(batch)
>>> recorder.changed([fraud], has_file=lambda model: True, now_us=1_764_547_260_000_000) is None  # the same spec object
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from driftloop.infra.spec import ModelSpec
from driftloop.streams.batch import ColumnBatch

#: The columns of ``model_specs`` a row fills, in the table's order.
COLUMNS = (
    "model",
    "task",
    "positive_class",
    "metric",
    "owner",
    "runbook",
    "kpi_name",
    "kpi_higher_is_better",
    "spec_file",
    "recorded_at",
    "revision",
)


def spec_row(spec: ModelSpec, *, spec_file: bool, now_us: int) -> tuple[object, ...]:
    """The ``model_specs`` row of ``spec`` (empty texts where the spec leaves a field out)."""
    kpi = spec.kpi
    return (
        spec.name,
        spec.task or "",
        spec.training.positive_class or "",
        spec.metric,
        spec.owner,
        spec.runbook,
        kpi.name if kpi else "",
        int(kpi.higher_is_better) if kpi else 1,
        int(spec_file),
        now_us // 1_000_000,
        now_us,
    )


class SpecRecorder:
    """Which spec of each model was last written: a catalog hands out the same object while a spec is unchanged,
    so telling a change costs a comparison of identities a model."""

    def __init__(self) -> None:
        self._written: dict[str, ModelSpec] = {}
        self._pending: dict[str, ModelSpec] = {}

    def changed(
        self, specs: Iterable[ModelSpec], *, has_file: Callable[[str], bool], now_us: int
    ) -> ColumnBatch | None:
        """The rows of the specs among ``specs`` not written as they are (``has_file``: whether a model has a spec
        file, asked of those only), or None; :meth:`written` once the rows are in ClickHouse."""
        self._pending = {spec.name: spec for spec in specs if self._written.get(spec.name) is not spec}
        if not self._pending:
            return None
        rows = [spec_row(spec, spec_file=has_file(spec.name), now_us=now_us) for spec in self._pending.values()]
        return ColumnBatch("model_specs", {name: [row[i] for row in rows] for i, name in enumerate(COLUMNS)})

    def written(self, batch: ColumnBatch) -> None:
        """``batch`` (from :meth:`changed`) is in ClickHouse: its specs are not written again until they change."""
        for model in batch["model"]:
            self._written[model] = self._pending.pop(model)
