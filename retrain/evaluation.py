"""Offline metrics of a network on labeled rows, and which way each is better.

Classification: ``accuracy``; ``roc_auc`` (binary: the positive class's probability ranked, ties averaged) and
``f1`` at the model's threshold (the class it predicts: probability above one half for binary; macro F1 for
more classes), which do not mislead on imbalanced data the way accuracy does. Regression: ``mae`` and ``rmse``.

>>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
0.75
>>> f1_score(np.array(["a", "b", "b"], dtype=object), np.array(["a", "b", "a"], dtype=object), "b")
0.6666666666666666
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from driftloop.infra.errors import DriftloopError
from driftloop.infra.spec import HIGHER_IS_BETTER
from driftloop.models.preprocess import Preprocessor
from driftloop.retrain.dataset import LabeledData

CLASSIFICATION = ("accuracy", "roc_auc", "f1")
REGRESSION = ("mae", "rmse")


class MetricError(DriftloopError):
    """A metric that does not apply to the task or the rows (roc_auc for many classes, a test split of one class)."""


def roc_auc(positive_probability: np.ndarray, is_positive: np.ndarray) -> float:
    """The area under the ROC curve (Mann-Whitney U over the ranks); NaN when one class is absent."""
    positives = int(is_positive.sum())
    negatives = len(is_positive) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(positive_probability)
    return float((ranks[is_positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def f1_score(predicted: np.ndarray, actual: np.ndarray, positive: str) -> float:
    """F1 of the ``positive`` class; 0 when it is never predicted and never true."""
    true_positive = float(np.sum((predicted == positive) & (actual == positive)))
    denominator = float(np.sum(predicted == positive) + np.sum(actual == positive))
    return 2 * true_positive / denominator if denominator else 0.0


def positive_class(pre: Preprocessor, configured: str | None) -> str:
    """The class ``roc_auc`` and binary ``f1`` score: the spec's, else the last class in sorted order."""
    if configured is not None:
        if configured not in pre.classes:
            raise MetricError(
                f"training.positive_class {configured!r} is not among the labels ({', '.join(pre.classes)})"
            )
        return configured
    return pre.classes[-1]


@torch.no_grad()
def probabilities(network: nn.Module, pre: Preprocessor, data: LabeledData, device: str = "cpu") -> np.ndarray:
    """Class probabilities ``[rows, classes]`` (classification), or the predicted values ``[rows]`` (regression)."""
    x, ids = pre.transform(data.numeric, data.categorical)
    network.eval()
    output = network(torch.from_numpy(x).to(device), torch.from_numpy(ids).to(device)).float().cpu()
    if pre.task == "regression":
        return pre.values(output.squeeze(1).numpy())
    return torch.softmax(output, dim=1).numpy().astype(np.float64)


def evaluate(
    network: nn.Module, pre: Preprocessor, data: LabeledData, device: str = "cpu", *, positive: str | None = None
) -> dict[str, float]:
    """Every metric that applies to the task, on ``data``."""
    output = probabilities(network, pre, data, device)
    if pre.task == "regression":
        errors = output - data.label_num
        return {"mae": float(np.nanmean(np.abs(errors))), "rmse": float(np.sqrt(np.nanmean(errors**2)))}
    classes = np.asarray(pre.classes, dtype=object)
    predicted = classes[pre.decide(output)]
    actual = np.asarray([str(label) for label in data.labels], dtype=object)
    scores = {"accuracy": float(np.mean(predicted == actual))}
    if len(classes) == 2:
        chosen = positive_class(pre, positive)
        column = int(np.flatnonzero(classes == chosen)[0])
        scores["roc_auc"] = roc_auc(output[:, column], actual == chosen)
        scores["f1"] = f1_score(predicted, actual, chosen)
    else:
        scores["f1"] = float(np.mean([f1_score(predicted, actual, c) for c in classes]))
    return scores


#: Positives the validation split must hold for a decision threshold to be chosen on it.
MIN_THRESHOLD_POSITIVES = 20


def best_f1_threshold(positive_probability: np.ndarray, is_positive: np.ndarray) -> float | None:
    """The probability of the positive class at or above which predicting it gives the best F1 on these rows
    (half-way between the lowest probability predicted positive and the next below it); None when the rows
    hold fewer than :data:`MIN_THRESHOLD_POSITIVES` positives, or no threshold predicts one right.

    >>> p = np.array([0.9, 0.45, 0.4, 0.3, 0.2, 0.1] * 20)
    >>> y = np.array([True, True, True, False, False, False] * 20)
    >>> round(best_f1_threshold(p, y), 4)  # three positives in six: every one above 0.35
    0.35
    """
    positives = int(is_positive.sum())
    if positives < MIN_THRESHOLD_POSITIVES:
        return None
    order = np.argsort(-positive_probability, kind="stable")
    ranked, hits = positive_probability[order], is_positive[order]
    true_positives = np.cumsum(hits)
    predicted = np.arange(1, len(ranked) + 1)
    f1 = 2 * true_positives / (predicted + positives)
    cut = np.r_[ranked[1:] < ranked[:-1], True]  # a threshold falls only where the probability changes
    f1 = np.where(cut, f1, -1.0)
    k = int(np.argmax(f1))
    if f1[k] <= 0:
        return None
    below = ranked[k + 1] if k + 1 < len(ranked) else 0.0
    return float((ranked[k] + below) / 2)


def with_decision_threshold(
    network: nn.Module,
    pre: Preprocessor,
    validation: LabeledData,
    device: str = "cpu",
    *,
    positive: str | None = None,
) -> Preprocessor:
    """``pre`` with the binary decision threshold that gives the positive class's best F1 on the validation split
    (``training.tune_threshold``): on imbalanced classes the most probable class is nearly always the majority,
    and F1 of the rare class at one half is low. Unchanged for other tasks, or where the split holds too few
    positives (:data:`MIN_THRESHOLD_POSITIVES`)."""
    if pre.task == "regression" or len(pre.classes) != 2:
        return pre
    chosen = positive_class(pre, positive)
    column = pre.classes.index(chosen)
    output = probabilities(network, pre, validation, device)
    actual = np.asarray([str(label) for label in validation.labels], dtype=object)
    threshold = best_f1_threshold(output[:, column], actual == chosen)
    return pre if threshold is None else replace(pre, threshold=threshold, positive=chosen)


def metric(
    name: str,
    network: nn.Module,
    pre: Preprocessor,
    data: LabeledData,
    device: str = "cpu",
    *,
    positive: str | None = None,
) -> float:
    """One metric of ``network`` on ``data`` (see the module docstring)."""
    scores = evaluate(network, pre, data, device, positive=positive)
    if name not in scores:
        raise MetricError(
            f"metric {name!r} does not apply to a {pre.task} model with {len(pre.classes)} classes "
            f"(available: {', '.join(scores)}); set training.metric in the model's spec"
        )
    return scores[name]


def better(name: str, challenger: float, champion: float, margin: float = 0.0) -> bool:
    """Whether the challenger is at least as good as the champion (by ``margin``) on ``name``."""
    if HIGHER_IS_BETTER[name]:
        return challenger >= champion + margin
    return challenger <= champion - margin
