"""A budgeted hyper-parameter search per job: Optuna's TPE sampler, a pruner that stops weak trials early.

Every trial trains on the train split and is judged on the validation split only (the test split stays
unseen until the gate). The search minimises the best validation loss a trial reaches (the loss early stopping
keeps; a proper score for every task, available after every epoch), and the pruner compares trials epoch by
epoch on that same loss (``median``: below the median of earlier trials at the same epoch; ``hyperband``).
The first trial is the spec's own configuration, so a search never does worse on validation than not
searching. Trials learn from the most recent ``tuning.max_rows`` rows of the train split (a search costs
what it finds out, not the size of the window); the chosen configuration is then trained on the whole train
split, and that is the version. The budget is trials and seconds: no trial starts after the deadline, and one
running past it is stopped at its next epoch (recorded as pruned) once another trial has completed. Every
training is seeded with the spec's seed, so the version trains again to the same weights from its record
(``driftloop models rebuild``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import optuna
import torch

from driftloop.infra.spec import TRAINING_PARAMS, ModelSpec, ParamRange
from driftloop.models.architectures import check_architecture
from driftloop.models.preprocess import Preprocessor
from driftloop.retrain.evaluation import metric
from driftloop.retrain.splits import Splits
from driftloop.retrain.training import TrainingError, TrainResult, pick_device, tensors, train

#: ``tabular_mlp``'s search space when the spec declares none.
TABULAR_MLP_SPACE: dict[str, ParamRange] = {
    "learning_rate": ParamRange(low=3e-4, high=1e-2, log=True),
    "batch_size": ParamRange(choices=[256, 512, 1024]),
    "hidden": ParamRange(choices=[[32], [64], [64, 64], [128, 128]]),
    "dropout": ParamRange(low=0.0, high=0.3),
}
#: Any other architecture's, when the spec declares none: the training loop's alone.
TRAINING_SPACE: dict[str, ParamRange] = {k: TABULAR_MLP_SPACE[k] for k in ("learning_rate", "batch_size")}

TrialState = Literal["complete", "pruned", "failed"]


@dataclass(frozen=True)
class TrialRecord:
    """One trial, as a row of ``tuning_trials`` will hold it."""

    trial: int
    state: TrialState
    params: dict[str, Any]
    epochs: int
    validation_loss: float
    validation_metric: float
    seconds: float
    device: str
    started_at: float
    chosen: bool = False


@dataclass
class SearchResult:
    """The chosen configuration, its trained network, and every trial."""

    params: dict[str, Any]
    spec: ModelSpec  # the spec with the chosen parameters in it
    result: TrainResult
    trials: list[TrialRecord] = field(default_factory=list)
    seconds: float = 0.0
    rows: int = 0  # training rows each trial learnt from

    @property
    def pruned(self) -> int:
        return sum(t.state == "pruned" for t in self.trials)


def search_space(spec: ModelSpec) -> dict[str, ParamRange]:
    """The spec's space, or the default one for its architecture."""
    if spec.tuning.space:
        return dict(spec.tuning.space)
    return dict(TABULAR_MLP_SPACE if spec.architecture.name == "tabular_mlp" else TRAINING_SPACE)


def check_spec_architecture(spec: ModelSpec) -> None:
    """:func:`~driftloop.models.architectures.check_architecture` on the spec's architecture and, when it searches,
    on the ends of each range (or each choice) of its space that the architecture reads."""
    space = {
        name: bounds.choices if bounds.choices is not None else (bounds.low, bounds.high)
        for name, bounds in (spec.tuning.space.items() if spec.tuning.trials else ())
        if name not in TRAINING_PARAMS
    }
    check_architecture(spec.architecture.name, spec.architecture.params, space)


def with_steps(spec: ModelSpec, result: TrainResult) -> ModelSpec:
    """``spec`` as ``result`` was trained: with ``training.max_steps`` at its steps when it ran out of time (the
    spec that trains the same weights again)."""
    if not result.out_of_time:
        return spec
    return spec.model_copy(update={"training": spec.training.model_copy(update={"max_steps": result.steps})})


def with_params(spec: ModelSpec, params: Mapping[str, Any]) -> ModelSpec:
    """``spec`` with ``params`` put in place: training-loop names into ``training``, the rest into
    ``architecture.params``."""
    training = {k: v for k, v in params.items() if k in TRAINING_PARAMS}
    architecture = {k: v for k, v in params.items() if k not in TRAINING_PARAMS}
    return spec.model_copy(
        update={
            "training": spec.training.model_copy(update=training),
            "architecture": spec.architecture.model_copy(
                update={"params": {**spec.architecture.params, **architecture}}
            ),
        }
    )


def search(
    spec: ModelSpec,
    pre: Preprocessor,
    splits: Splits,
    *,
    metric_name: str,
    budget_s: float,
    device: torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_seconds: float = math.inf,
) -> SearchResult:
    """Search ``spec``'s space within ``spec.tuning.trials`` trials and ``budget_s`` seconds (see the module
    docstring); ``progress(trials_done, trials)`` after each trial. Raises :class:`TrainingError` when no
    trial completes. ``max_seconds``: what is left of the compute budget for the search and the chosen
    configuration's training on every row together (that training stops where it runs out, recorded in the
    spec it returns as ``training.max_steps``)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rules = spec.tuning
    device = device or pick_device()
    space = search_space(spec)
    recent = splits.train.slice(max(0, len(splits.train) - rules.max_rows), len(splits.train))
    fit, check = tensors(pre, recent, device), tensors(pre, splits.validation, device)
    started = time.perf_counter()
    deadline = started + budget_s
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=spec.training.seed, n_startup_trials=max(rules.startup_trials, 1)),
        pruner=_pruner(spec),
    )
    own = _own_params(spec, space)
    if own:
        study.enqueue_trial(own)
    trials: list[TrialRecord] = []
    best: list[TrainResult] = []

    def objective(trial: optuna.Trial) -> float:
        params = {name: _suggest(trial, name, bounds) for name, bounds in space.items()}
        trial_started, wall_started = time.perf_counter(), time.time()
        losses: list[float] = []

        def on_epoch(epoch: int, total: int, loss: float) -> None:
            losses.append(loss)
            trial.report(loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation loss {loss:.4f} at epoch {epoch}: weaker than earlier trials")
            if time.perf_counter() > deadline and best:
                raise optuna.TrialPruned(f"the search's {budget_s:.0f} s were spent")

        def record(state: TrialState, loss: float = math.nan, value: float = math.nan) -> None:
            seconds = time.perf_counter() - trial_started
            trials.append(
                TrialRecord(trial.number, state, params, len(losses), loss, value, seconds, str(device), wall_started)
            )
            if progress:
                progress(len(trials), rules.trials)

        try:
            result = train(with_params(spec, params), pre, fit, check, device=device, progress=on_epoch)
        except optuna.TrialPruned:
            record("pruned", min(losses, default=math.nan))
            raise
        except TrainingError:
            record("failed")
            raise
        positive = spec.training.positive_class
        value = metric(metric_name, result.network, pre, splits.validation, result.device, positive=positive)
        record("complete", result.best_validation_loss, value)
        if not best or result.best_validation_loss < best[0].best_validation_loss:
            best[:] = [result]
        return result.best_validation_loss

    study.optimize(objective, n_trials=rules.trials, timeout=budget_s, catch=(TrainingError,), gc_after_trial=False)
    if not best:
        raise TrainingError(f"no trial of {len(trials)} completed: every configuration diverged or failed")
    chosen = study.best_trial
    params = {name: _decode(space[name], value) for name, value in chosen.params.items()}
    trials = [replace(t, chosen=True) if t.trial == chosen.number else t for t in trials]
    tuned = with_params(spec, params)
    result = best[0]
    if len(recent) < len(splits.train):  # the trials saw the recent rows: the version learns from all of them
        left = max_seconds - (time.perf_counter() - started)
        result = train(tuned, pre, splits.train, check, device=device, max_seconds=left)
        tuned = with_steps(tuned, result)
    return SearchResult(params, tuned, result, trials, time.perf_counter() - started, len(recent))


def _pruner(spec: ModelSpec) -> optuna.pruners.BasePruner:
    rules = spec.tuning
    if rules.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=rules.min_epochs, max_resource=spec.training.epochs)
    if rules.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=rules.startup_trials, n_warmup_steps=rules.min_epochs)
    return optuna.pruners.NopPruner()


def _suggest(trial: optuna.Trial, name: str, bounds: ParamRange) -> Any:
    if bounds.choices is not None:
        return json.loads(trial.suggest_categorical(name, [json.dumps(c) for c in bounds.choices]))
    assert bounds.low is not None and bounds.high is not None
    if isinstance(bounds.low, int) and isinstance(bounds.high, int) and not isinstance(bounds.step, float):
        return trial.suggest_int(name, bounds.low, bounds.high, step=bounds.step or 1, log=bounds.log)
    return trial.suggest_float(name, bounds.low, bounds.high, step=bounds.step, log=bounds.log)


def _decode(bounds: ParamRange, value: Any) -> Any:
    return json.loads(value) if bounds.choices is not None else value


def _own_params(spec: ModelSpec, space: Mapping[str, ParamRange]) -> dict[str, Any]:
    """The spec's own values of the searched parameters that lie in the space (the first trial)."""
    current: dict[str, Any] = {**spec.architecture.params, **spec.training.model_dump(include=set(TRAINING_PARAMS))}
    if spec.architecture.name == "tabular_mlp":
        current = {"hidden": [64, 64], "dropout": 0.1, "embedding_dim": 8} | current
    own: dict[str, Any] = {}
    for name, bounds in space.items():
        if name not in current:
            continue
        value = current[name]
        if bounds.choices is not None:
            if value in bounds.choices:
                own[name] = json.dumps(value)
        elif isinstance(value, int | float) and bounds.low <= value <= bounds.high:  # type: ignore[operator]
            own[name] = value
    return own
