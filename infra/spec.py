"""Model specs: the optional TOML file per model that adds types, detector settings and what retraining needs.

Monitoring needs no spec: a model that sends events is watched with the defaults below. A spec file
``<DRIFTLOOP_SPECS_DIR>/<model>.toml`` (default ``DRIFTLOOP_HOME/specs``) refines it::

    name = "fraud"
    owner = "risk-ml@example.com"         # who answers for the model: on alerts, payloads, the report
    runbook = "https://wiki.example.com/fraud-drift"
    task = "binary"                       # binary | multiclass | regression (default: inferred)

    [features]                            # name = "numeric" | "categorical"
    amount = "numeric"
    country = "categorical"

    [monitoring]
    warmup = 2000                         # events a signal learns its reference from before it may alert
    expected_run_length = 1e8             # events between two false alarms of the model (all its signals)
    # expected_run_length_hours = 720     # or in hours at the model's own event rate
    cooldown_s = 900                      # per model and kind of drift, in event time
    max_alerts_per_hour = 6
    max_features = 500                    # names watched per model; more are counted, not watched

    # shape = false                       # a numeric feature's bins of its reference's deciles (default on)

    [monitoring.detectors]                # per signal type: numeric, categorical, missing, outliers, shape,
    error = { name = "HDDM_A" }           # correlation, mean_shift, score, prediction, error; River's keyword
                                          # arguments in `params`

    [monitoring.signals.amount]           # one signal: another detector, or `enabled = false`
    detector = { name = "KSWIN", params = { alpha = 0.0001 } }

    [architecture]                        # models.architectures: "tabular_mlp", or one you register
    name = "tabular_mlp"
    params = { hidden = [64, 64], dropout = 0.1, embedding_dim = 8 }

    [training]                            # see TrainingSpec for every field
    min_labels = 1000                     # labels after the change point before a challenger is trained
    metric = "roc_auc"                    # the gate on the test split: accuracy | roc_auc | f1 | mae | rmse,
                                          # and a classifier's live metric in release, floor and threshold
    positive_class = "fraud"              # the class roc_auc and f1 score (default: the last in sorted order)
    # tune_threshold = true               # predict it above the validation split's best-F1 probability (f1: on)
    budget_s_per_day = 3600               # training seconds per model in any 24 h

    [tuning]                              # a search per job; see TuningSpec
    trials = 20
    timeout_s = 60
    space = { learning_rate = { low = 1e-4, high = 1e-2, log = true }, hidden = { choices = [[64], [64, 64]] } }

    [retraining]
    kinds = ["performance"]               # alert kinds that start a job
    schedule = "0 3 * * *"                # and every day at 03:00 UTC (or interval_s = 86400)
    threshold = 0.85                      # and when the champion's live metric falls below 0.85 (mae: above)
    debounce_s = 10
    max_wait_s = 21600                    # a job short of labels this long is skipped (recorded with why)

    [release]                             # see ReleaseSpec: shadow -> canary -> champion, then a watch
    shadow_min_pairs = 300
    canary_steps = [0.05, 0.25, 0.5]      # the canary's share, widened once each step passes on its own rows
    floor = 0.6                           # champion below it: the urgent path (straight to a larger canary)
    latency_margin = 0.5                  # a canary whose p99 latency_ms is 1.5 x the champion's is rejected

    [kpi]                                 # the business value outcome events carry in `value`
    name = "loss avoided"
    higher_is_better = true

A field that is wrong is a :class:`SpecError` naming the file and the field.

>>> spec = ModelSpec.model_validate({"name": "fraud", "monitoring": {"detectors": {"error": {"name": "DDM"}}}})
>>> spec.monitoring.detector_for("error").name, spec.monitoring.detector_for("numeric").name
('DDM', 'CUSUM')
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from driftloop.infra.cron import Cron
from driftloop.infra.errors import DriftloopError

if TYPE_CHECKING:
    from driftloop.infra.settings import Settings

SignalType = Literal[
    "numeric",
    "categorical",
    "missing",
    "outliers",
    "shape",
    "correlation",
    "mean_shift",
    "score",
    "prediction",
    "error",
]
#: Detector names a spec may use; ``streams.drift.detectors`` implements exactly these.
DETECTOR_NAMES = (
    "CUSUM",
    "ADWIN",
    "PageHinkley",
    "KSWIN",
    "DDM",
    "EDDM",
    "HDDM_A",
    "HDDM_W",
    "FHDDM",
    "CategoricalShift",
)
#: Detectors that take categories (text); every other one takes numbers.
CATEGORY_DETECTORS = frozenset({"CategoricalShift"})
#: Detectors that take 0/1 values only (1: a mistake, a null, a value far out of range).
BINARY_DETECTORS = frozenset({"DDM", "EDDM", "HDDM_A", "HDDM_W", "FHDDM"})
#: Signal types whose values are categories (``shape``: the bins of a numeric feature's reference's deciles), and
#: those whose values are 0/1 (``error``: a classifier's).
CATEGORY_SIGNALS = frozenset({"categorical", "prediction", "shape"})
BINARY_SIGNALS = frozenset({"missing", "outliers", "error"})
log = logging.getLogger("driftloop.specs")

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class SpecError(DriftloopError):
    """A model spec file is missing a field, has a wrong one, or cannot be read."""


def misfit(detector: str, signal_type: str, *, binary: bool = True) -> str | None:
    """Why ``detector`` cannot watch values of ``signal_type`` (None: it can); ``binary``: whether that signal's
    values are 0/1 (a regression's errors are not).

    >>> misfit("CUSUM", "numeric") is None, misfit("DDM", "error") is None
    (True, True)
    >>> misfit("ADWIN", "categorical")
    'ADWIN takes numbers and categorical values are categories: use CategoricalShift'
    >>> misfit("DDM", "error", binary=False)
    'DDM takes 0/1 values only and error values are any number: use CUSUM, ADWIN, PageHinkley or KSWIN'
    """
    numbers = ", ".join(n for n in DETECTOR_NAMES if n not in CATEGORY_DETECTORS | BINARY_DETECTORS)
    numbers = " or ".join(numbers.rsplit(", ", 1))
    if signal_type in CATEGORY_SIGNALS and detector not in CATEGORY_DETECTORS:
        return f"{detector} takes numbers and {signal_type} values are categories: use CategoricalShift"
    if signal_type not in CATEGORY_SIGNALS and detector in CATEGORY_DETECTORS:
        return f"{detector} takes categories and {signal_type} values are numbers: use {numbers}"
    if detector in BINARY_DETECTORS and not (signal_type in BINARY_SIGNALS and binary):
        return f"{detector} takes 0/1 values only and {signal_type} values are any number: use {numbers}"
    return None


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DetectorConfig(_Frozen):
    """A detector by name, with the keyword arguments of its class (River's, or driftloop's ``CUSUM`` and
    ``CategoricalShift``)."""

    name: str
    params: dict[str, float | int | str | bool | list[float]] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in DETECTOR_NAMES:
            raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTOR_NAMES)}")
        return name


_DEFAULT_DETECTORS: dict[str, DetectorConfig] = {
    "numeric": DetectorConfig(name="CUSUM"),
    "missing": DetectorConfig(name="CUSUM"),
    "outliers": DetectorConfig(name="CUSUM", params={"direction": "up"}),  # a rate of values far out of range
    # the correlation signal's score rises with any change (streams.drift.correlation); below its mean it is a
    # stream back at its reference's own sample (a reference replayed), no drift
    "correlation": DetectorConfig(name="CUSUM", params={"direction": "up"}),
    "mean_shift": DetectorConfig(name="CUSUM", params={"direction": "up"}),  # the same: it rises with any shift
    "score": DetectorConfig(name="CUSUM"),
    "error": DetectorConfig(name="CUSUM", params={"direction": "up"}),  # a falling error is no drift
    "categorical": DetectorConfig(name="CategoricalShift"),
    "prediction": DetectorConfig(name="CategoricalShift"),
    # a numeric feature's bins (its reference's deciles): one window of 2,000 tested every 200 values, as a shape
    # moves its bins' shares by a few points (a window of 500 adds nothing), at a third of the two windows' cost
    "shape": DetectorConfig(name="CategoricalShift", params={"window": 2000, "long_window": 0, "clock": 200}),
}


class SignalOverride(_Frozen):
    """Settings for one signal (a feature name, ``score``, ``prediction`` or ``error``)."""

    enabled: bool = True
    detector: DetectorConfig | None = None


class MonitoringSpec(_Frozen):
    """Detectors and the alert policy for one model."""

    warmup: int = Field(
        2000, ge=0, description="events a signal learns its reference from (at least 200) before it may alert"
    )
    expected_run_length: float = Field(
        1e8, gt=1, description="events between two false alarms of the model, all its signals together"
    )
    expected_run_length_hours: float | None = Field(
        None, gt=0, description="the same in hours, at the model's event rate (measured over the warm-up)"
    )
    min_evidence: int = Field(30, ge=1, description="events before the change an alert needs")
    confirm_events: int = Field(
        50, ge=0, description="detectors without a run length (River's): events after a detection that confirm it"
    )
    false_alarm_budget: float = Field(
        1e-3, gt=0, lt=1, description="detectors without a run length (River's): their confidence, split by signal"
    )
    cooldown_s: float = Field(900.0, ge=0)
    max_alerts_per_hour: int = Field(6, ge=1)
    spread: bool = Field(True, description="also watch each numeric feature's spread (catches variance changes)")
    outliers: bool = Field(
        True,
        description="also watch the rate of each numeric feature's values far beyond its reference's range "
        "(catches a share of values sent in another unit)",
    )
    shape: bool = Field(
        True,
        description="also watch how each numeric feature's values fall into its reference's deciles (catches a "
        "change of its distribution's shape that keeps its mean and spread: values rounded, a second mode)",
    )
    max_features: int = Field(
        500, ge=1, description="features watched per model; names beyond it are counted, not watched (bounds memory)"
    )
    detectors: dict[SignalType, DetectorConfig] = Field(default_factory=dict)
    signals: dict[str, SignalOverride] = Field(default_factory=dict)

    def detector_for(self, signal_type: str, signal: str | None = None, *, binary: bool = True) -> DetectorConfig:
        """The detector of a ``signal_type`` signal of the feature (or output) ``signal``: its own override, the
        type's, or the default, the first that can take its values (``binary``: whether they are 0/1; see
        :func:`misfit`). An override is a feature's, and its other signals (null rate, spread) may need another."""
        override = self.signals.get(signal or "")
        of_type = self.detectors.get(signal_type)  # type: ignore[call-overload]
        for config in (override.detector if override else None, of_type):
            if config is not None and misfit(config.name, signal_type, binary=binary) is None:
                return config
        return _DEFAULT_DETECTORS[signal_type]

    def enabled(self, signal: str) -> bool:
        override = self.signals.get(signal)
        return override is None or override.enabled


class ArchitectureSpec(_Frozen):
    """Which network to train (a name registered in ``models.architectures``) and its hyper-parameters."""

    name: str = "tabular_mlp"
    params: dict[str, float | int | str | bool | list[int]] = Field(default_factory=dict)


class ParamRange(_Frozen):
    """One hyper-parameter's range: ``low``/``high`` (``log`` for a log scale, ``step``) or ``choices``."""

    low: int | float | None = None  # both ints: an int parameter
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: list[float | int | str | bool | list[int]] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ParamRange:
        if (self.choices is None) == (self.low is None or self.high is None):
            raise ValueError("give either low and high, or choices")
        if self.choices is not None and not self.choices:
            raise ValueError("choices is empty")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self


#: Gate metrics: what a challenger is judged on (on the test split), and which way is better.
GateMetric = Literal["accuracy", "roc_auc", "f1", "mae", "rmse"]
HIGHER_IS_BETTER: dict[str, bool] = {"accuracy": True, "roc_auc": True, "f1": True, "mae": False, "rmse": False}
_CLASSIFICATION_METRICS = ("accuracy", "roc_auc", "f1")


class TrainingSpec(_Frozen):
    """How a challenger is trained and judged, on splits by time: train, validation (the most recent
    ``validation_fraction`` of the rest: early stopping and tuning see only it), test (the most recent
    ``holdout_fraction``: the gate's metric)."""

    window_days: float = Field(30.0, gt=0, description="labeled rows this far back are the training window")
    max_rows: int = Field(500_000, ge=100)
    min_labels: int = Field(1000, ge=10, description="labels after the change point needed before training")
    holdout_fraction: float = Field(0.2, gt=0, lt=0.9, description="the most recent rows: the test split")
    validation_fraction: float = Field(0.1, gt=0, lt=0.5, description="of the rest, for early stopping and tuning")
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(512, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    patience: int = Field(4, ge=1)
    max_steps: int | None = Field(
        None, ge=1, description="optimiser steps at most (a version the compute budget stopped records its steps here)"
    )
    seed: int = 0
    metric: GateMetric | None = Field(
        None, description="the gate metric on the test split (default: accuracy, or mae for regression)"
    )
    positive_class: str | None = Field(
        None, description="binary tasks: the class roc_auc and f1 score (default: the last in sorted order)"
    )
    tune_threshold: bool | None = Field(
        None,
        description="binary tasks: predict the positive class above the probability that gives its best F1 on the "
        "validation split, not above one half (default: when the gate metric is f1)",
    )
    min_improvement: float = Field(0.0, description="the challenger must beat the champion by this much")
    max_null_share: float = Field(
        0.5, gt=0, le=1, description="data gate: a numeric feature null in more of the window's rows refuses it"
    )
    max_class_share: float = Field(
        0.995, gt=0, le=1, description="data gate: one label in more of the window's rows refuses it"
    )
    budget_s_per_day: float | None = Field(
        None, gt=0, description="training seconds per model in any 24 h; a job over it is skipped"
    )


#: Parameters of the training loop a search space may name; every other name in it is the architecture's.
TRAINING_PARAMS = ("learning_rate", "batch_size", "patience", "epochs")


class TuningSpec(_Frozen):
    """A budgeted hyper-parameter search per job (Optuna: TPE sampler, pruner on the validation loss by epoch).

    ``space`` maps a parameter to its range: ``{ low = 1e-4, high = 1e-2, log = true }`` (a float, or an int
    when both bounds are ints) or ``{ choices = [[32], [64, 64]] }``. ``learning_rate``, ``batch_size``,
    ``patience`` and ``epochs`` are the training's; every other name is the architecture's parameter. Without a
    space, ``tabular_mlp`` searches its width, depth, dropout, the learning rate and the batch size.
    """

    trials: int = Field(0, ge=0, description="trials per job (0: no search, the spec's parameters as given)")
    timeout_s: float = Field(600.0, gt=0, description="seconds the search may take per job (and the day's budget)")
    pruner: Literal["median", "hyperband", "none"] = "median"
    min_epochs: int = Field(3, ge=1, description="epochs every trial runs before it may be pruned")
    startup_trials: int = Field(4, ge=0, description="trials sampled at random (and never pruned) first")
    max_rows: int = Field(
        10_000, ge=100, description="trials learn from the most recent this many training rows (all: the chosen one)"
    )
    space: dict[str, ParamRange] = Field(default_factory=dict)


class RetrainingSpec(_Frozen):
    """What starts a retraining job (alerts of ``kinds``, a ``schedule`` or ``interval_s``, the champion's live
    metric worse than ``threshold``), and how bursts and repeats are tamed."""

    kinds: tuple[Literal["data", "prediction", "performance"], ...] = ("performance",)
    debounce_s: float = Field(10.0, ge=0, description="alerts this close together make one job")
    cooldown_s: float = Field(300.0, ge=0, description="after a job, alerts of the model wait this long")
    recheck_s: float = Field(15.0, gt=0, description="too few labels yet: look again after this long")
    max_wait_s: float = Field(
        6 * 3600.0, gt=0, description="a job still short of labels this long after its alert is skipped"
    )
    max_attempts: int = Field(3, ge=1)
    schedule: str | None = Field(
        None, description="also retrain on this cron schedule (five fields, UTC), e.g. '0 3 * * *' daily at 03:00"
    )
    interval_s: float | None = Field(None, gt=0, description="also retrain this often (seconds after the last)")
    threshold: float | None = Field(
        None,
        description="also retrain when the champion's live metric (the gate's: accuracy, f1 or roc_auc; mae for "
        "regression) over its most recent threshold_rows labeled rows is worse than this (below it; above it for "
        "mae), beyond doubt",
    )
    threshold_rows: int = Field(200, ge=10, description="the champion's most recent labeled rows the threshold judges")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, schedule: str | None) -> str | None:
        if schedule is not None:
            Cron.parse(schedule)
        return schedule


class ReleaseSpec(_Frozen):
    """How a new version earns its traffic: shadow, then canary, then champion, with a watch for rollback.

    Comparisons are non-inferiority tests at ``confidence``: a stage passes when the new version's lower
    bound is within ``margin`` (a fraction of the baseline's value) of the baseline, and fails when its
    upper bound is beyond it. A canary also fails when it answers slower than the champion: its
    ``latency_quantile`` of ``latency_ms`` beyond ``1 + latency_margin`` times the champion's in most spans of
    time, with ``confidence``, or beyond ``latency_slo_ms`` where the champion keeps to it, and one that passes on
    its outcomes while its answer times lean slower waits for them to decide; and a champion in its watch is
    rolled back when it breaks ``latency_slo_ms`` where its predecessor kept to it (docs/release.md, "Answer
    times")."""

    shadow: bool = Field(True, description="score live requests unseen before any traffic (false: straight to canary)")
    shadow_min_pairs: int = Field(300, ge=10, description="labeled requests both versions scored, at least")
    canary_share: float = Field(0.1, gt=0, le=1, description="the share of requests the canary serves")
    canary_steps: tuple[float, ...] = Field(
        (),
        description="the canary's shares in turn, widening, each judged on its own rows (empty: canary_share alone)",
    )
    canary_min_rows: int = Field(200, ge=10, description="labeled rows of each side during the canary, at least")
    margin: float = Field(0.01, ge=0, lt=1, description="how much worse (fraction of the baseline) still passes")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="one-sided confidence of every bound")
    shadow_deadline_s: float = Field(3600.0, gt=0)
    canary_deadline_s: float = Field(3600.0, gt=0)
    on_deadline: Literal["reject", "extend"] = Field(
        "reject", description="a stage short of evidence at its deadline: reject the version, or extend once more"
    )
    watch_s: float = Field(1800.0, ge=0, description="after promotion, the champion is watched this long")
    watch_rows: int = Field(500, ge=10, description="the champion's most recent labeled rows the watch judges")
    floor: float | None = Field(
        None, description="a champion whose live metric is worse than this (below it; above it for mae) is failing"
    )
    urgent_path: Literal["canary", "champion", "normal"] = Field(
        "canary", description="the path of a new version when the champion is below its floor"
    )
    urgent_canary_share: float = Field(0.5, gt=0, le=1)
    floor_rows: int = Field(200, ge=10, description="the champion's most recent labeled rows the floor judges")
    latency_margin: float = Field(
        0.5,
        ge=0,
        description="how much slower than the champion's a canary's answer times may be (a fraction; inf: not judged)",
    )
    latency_quantile: float = Field(0.99, gt=0, lt=1, description="the quantile of answer times judged (latency_ms)")
    latency_span_s: float = Field(2.0, gt=0, description="the shortest span of time answer times are compared in")
    latency_slo_ms: float | None = Field(
        None,
        gt=0,
        description="the answer time (latency_quantile) a version must keep to: a canary that breaks it where the "
        "champion keeps it is rejected, a champion that breaks it in its watch (its predecessor kept it) rolled back",
    )

    @field_validator("canary_steps")
    @classmethod
    def _widening(cls, steps: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < share < 1 for share in steps):
            raise ValueError(f"each step is a share of requests above 0 and below 1 (the champion's is 1), not {steps}")
        if any(later <= earlier for earlier, later in pairwise(steps)):
            raise ValueError(f"the steps widen: each share above the one before, not {list(steps)}")
        return steps

    @model_validator(mode="after")
    def _one_first_share(self) -> ReleaseSpec:
        if self.canary_steps and "canary_share" in self.model_fields_set and self.canary_share != self.canary_steps[0]:
            raise ValueError(
                f"canary_share {self.canary_share} and canary_steps {list(self.canary_steps)} both say where a canary "
                "starts: keep canary_steps (its first share is the canary's) and remove canary_share"
            )
        return self

    @property
    def canary_shares(self) -> tuple[float, ...]:
        """The canary's shares of requests, one step each: ``canary_steps``, or ``canary_share`` alone."""
        return self.canary_steps or (self.canary_share,)

    def canary_step_after(self, share: float) -> float | None:
        """The share a canary serving ``share`` widens to once it passes; None when it goes to champion (the
        last step passed, or a share at or above it: an urgent canary's)."""
        return next((step for step in self.canary_shares if step > share + 1e-9), None)


class KpiSpec(_Frozen):
    """The business metric: the ``value`` outcome events carry (e.g. revenue won, loss avoided)."""

    name: str = "value"
    higher_is_better: bool = True


class ModelSpec(_Frozen):
    """Everything driftloop knows about a model beyond its events (see the module docstring)."""

    name: str
    owner: str = Field("", description="who answers for the model (a team, a person, an on-call alias)")
    runbook: str = Field("", description="the URL of the model's response plan")
    task: Literal["binary", "multiclass", "regression"] | None = None
    features: dict[str, Literal["numeric", "categorical"]] = Field(default_factory=dict)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    architecture: ArchitectureSpec = Field(default_factory=ArchitectureSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    tuning: TuningSpec = Field(default_factory=TuningSpec)
    retraining: RetrainingSpec = Field(default_factory=RetrainingSpec)
    release: ReleaseSpec = Field(default_factory=ReleaseSpec)
    kpi: KpiSpec | None = Field(None, description="without it, releases are judged on the model metric only")

    def gate_metric(self, task: str | None = None) -> str:
        """The offline gate's metric for ``task`` (the spec's, or the one inferred from the data)."""
        return self.training.metric or ("mae" if (task or self.task) == "regression" else "accuracy")

    def tunes_threshold(self, task: str | None = None) -> bool:
        """Whether training chooses a binary model's decision threshold (``training.tune_threshold``; by default
        when the gate metric is ``f1``)."""
        chosen = self.training.tune_threshold
        return chosen if chosen is not None else self.gate_metric(task) == "f1"

    @property
    def metric(self) -> str:
        """The live metric that releases, floors and thresholds judge: the gate's for a classifier (``accuracy``,
        or ``f1`` and ``roc_auc``, which see what accuracy misses on imbalanced classes), ``mae`` for errors."""
        gate = self.gate_metric()
        return gate if gate in _CLASSIFICATION_METRICS else "mae"

    @property
    def numeric_features(self) -> list[str]:
        """The features the spec declares numeric (``[features] amount = "numeric"``)."""
        return [name for name, kind in self.features.items() if kind == "numeric"]

    @model_validator(mode="after")
    def _detectors_fit_signals(self) -> ModelSpec:
        """A detector that cannot take its signal's values (:func:`misfit`), where the spec says what they are:
        each signal type's, a feature's type, a regression's errors (any number) and predictions (numbers)."""
        regression = self.task == "regression"
        known: dict[str, str] = {**self.features, "score": "score", "error": "error"}
        if self.task:
            known["prediction"] = "score" if regression else "prediction"
        monitoring = self.monitoring
        fields = [(f"monitoring.detectors.{t}", c, t) for t, c in monitoring.detectors.items()]
        overrides = monitoring.signals.items()
        fields += [(f"monitoring.signals.{n}.detector", o.detector, known.get(n)) for n, o in overrides]
        for field, config, signal_type in fields:
            binary = not (regression and signal_type == "error")
            if config and signal_type and (why := misfit(config.name, signal_type, binary=binary)):
                raise ValueError(f"{field}: {why}")
        return self

    @model_validator(mode="after")
    def _space_fits_training(self) -> ModelSpec:
        """A search space's training-loop parameter whose range holds a value its training field refuses (a
        batch size of 0): the trials would have trained with it."""
        for name, bounds in self.tuning.space.items():
            if name not in TRAINING_PARAMS:
                continue
            for value in bounds.choices if bounds.choices is not None else (bounds.low, bounds.high):
                try:
                    TrainingSpec.model_validate({**self.training.model_dump(), name: value})
                except ValidationError as exc:
                    problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
                    raise ValueError(f"tuning.space.{name}: {value!r}: {problem}") from None
        return self

    @model_validator(mode="after")
    def _floor_fits_metric(self) -> ModelSpec:
        """A classifier's floor and retraining threshold are levels of its live metric (accuracy, F1, ROC AUC): one
        past [0, 1] (a percentage: 60) put the champion below it, or above it, for good (a threshold would retrain
        on every 200 new rows). A spec without a task or a metric may be a regression's (a level of its errors)."""
        classifier = self.task in ("binary", "multiclass") or self.training.metric in _CLASSIFICATION_METRICS
        for name, level in (("release.floor", self.release.floor), ("retraining.threshold", self.retraining.threshold)):
            if level is not None and classifier and not 0 <= level <= 1:
                what = "an accuracy" if self.metric == "accuracy" else f"a level of {self.metric}"
                raise ValueError(f"{name} {level} is {what} for this classifier: between 0 and 1 (0.6, not 60)")
        return self

    @model_validator(mode="after")
    def _metric_fits_task(self) -> ModelSpec:
        chosen = self.training.metric
        if chosen and self.task:
            if (self.task == "regression") == (chosen in _CLASSIFICATION_METRICS):
                raise ValueError(f"training.metric {chosen!r} does not apply to a {self.task} task")
            if chosen == "roc_auc" and self.task == "multiclass":
                raise ValueError("training.metric 'roc_auc' needs a binary task (use f1: macro F1, or accuracy)")
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not MODEL_NAME.fullmatch(name):
            raise ValueError(f"must match {MODEL_NAME.pattern}")
        return name


def load_spec(path: Path) -> ModelSpec:
    """Read and check one spec file: UTF-8 whatever the locale (a byte-order mark, as some editors write, is
    skipped)."""
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the model spec ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start}): save the spec as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(map(_problem, exc.errors()))
        raise SpecError(f"{path}: {problems}") from None
    if spec.name != path.stem:
        raise SpecError(f"{path}: name: the spec of {spec.name!r} must be in {spec.name}.toml")
    return spec


def _problem(error: ErrorDetails) -> str:
    """One problem pydantic found, after the field it is in (a check of several fields names them itself)."""
    field, message = ".".join(map(str, error["loc"])), error["msg"].removeprefix("Value error, ")
    return f"{field}: {message}" if field else message


#: Seconds between two looks at a spec file for an edit (a stat, once a model a while).
RECHECK_S = 5.0


@dataclass
class _Read:
    """A spec in force, the file it was read from (:func:`file_signature`; None: there is no file) and when
    that was last looked at; ``refused``: the file's last edit, found broken and not taken (and why)."""

    spec: ModelSpec
    signature: tuple[int, int, int] | None
    checked_at: float
    refused: tuple[int, int, int] | None = None
    refused_error: str = ""


class SpecCatalog:
    """Specs by model name, read from a directory when first asked for; a model without one gets defaults.

    An edit is taken without a restart: a model's file is looked at again when its spec is asked for and
    ``recheck_s`` have passed, and read again when it changed (written, added or removed: the defaults). An edit
    that breaks a spec in force is not taken: the last good spec stays, and the ERROR names the file and the
    field, once for each error. A file that is broken from its first read is a :class:`SpecError` each time it is asked
    for (and read again each time), as the model has no spec to keep.
    """

    def __init__(self, directory: Path, *, recheck_s: float = RECHECK_S, clock: Callable[[], float] = time.monotonic):
        self.directory = directory
        self.recheck_s = recheck_s
        self.clock = clock
        self._specs: dict[str, _Read] = {}

    @classmethod
    def of(cls, settings: Settings) -> SpecCatalog:
        """The catalog of ``settings``' spec directory, looked at again every ``spec_recheck_s``."""
        return cls(settings.spec_directory, recheck_s=settings.spec_recheck_s)

    def get(self, model: str) -> ModelSpec:
        read, now = self._specs.get(model), self.clock()
        if read is not None and now - read.checked_at < self.recheck_s:
            return read.spec
        path = self.path(model)
        signature = file_signature(path)
        if read is not None and (signature == read.signature or (read.refused and signature == read.refused)):
            read.checked_at = now
            return read.spec
        try:
            spec = load_spec(path) if signature is not None else ModelSpec(name=model)
        except SpecError as exc:
            if read is None:
                raise
            read.checked_at = now
            if read.refused is None or str(exc) != read.refused_error:  # once an error, not once a look
                log.error(
                    "an edit broke a model spec in force: the last good spec stays until the file is fixed",
                    extra={"fields": {"model": model, "error": str(exc)}},
                )
            read.refused, read.refused_error = signature, str(exc)
            return read.spec
        if read is not None and spec == read.spec:  # a comment, or spaces: the same spec (the same object)
            spec = read.spec
        elif read is not None:
            log.info("model spec changed: in force from now", extra={"fields": {"model": model, "path": str(path)}})
        self._specs[model] = _Read(spec, signature, now)
        return spec

    def path(self, model: str) -> Path:
        """Where the spec of ``model`` is (or would be); a :class:`SpecError` for a name no model may have (a
        path such as ``../x`` would be read, and its versions written, outside the directories)."""
        if not MODEL_NAME.fullmatch(model):
            raise SpecError(
                f"{model[:80]!r} is no model name: it must match {MODEL_NAME.pattern} (letters, digits, . _ -)"
            )
        return self.directory / f"{model}.toml"

    def forget(self, model: str) -> None:
        """Read the spec of ``model`` again when next asked for (it was found wanting, and may be fixed)."""
        self._specs.pop(model, None)

    def names(self) -> list[str]:
        """The models that have a spec file (sorted)."""
        if not self.directory.is_dir():
            return []
        return sorted(path.stem for path in self.directory.glob("*.toml") if MODEL_NAME.fullmatch(path.stem))


#: A file modified this recently (nanoseconds) may be modified again within the same mtime (a file system that
#: keeps whole seconds): its signature is its content's digest until then.
_SETTLING_NS = 2_000_000_000


def file_signature(path: Path) -> tuple[int, int, int] | None:
    """What tells an edit of ``path`` (mtime, size, inode: an editor that writes a new file and renames it has
    a new inode), None when there is no file. A file modified in the last two seconds (or stamped ahead of this
    machine's clock) is told by its content
    (an edit of the same size within the same second of a file system that keeps whole seconds would keep the
    first signature, and the edit would never be taken)."""
    try:
        stat = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:  # there, but not to be looked at: reading it says why
        return -1, -1, -1
    if time.time_ns() - stat.st_mtime_ns < _SETTLING_NS:
        try:
            digest = hashlib.blake2b(path.read_bytes(), digest_size=7).digest()
        except OSError:
            return -1, -1, -1
        return stat.st_mtime_ns, stat.st_size, -int.from_bytes(digest) - 1  # never an inode
    return stat.st_mtime_ns, stat.st_size, stat.st_ino
