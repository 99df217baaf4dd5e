"""Predictions from a network and its preprocessing, for rows given as columns."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from driftloop.models.preprocess import Preprocessor

log = logging.getLogger("driftloop.serving")


def one_thread_after_fork() -> None:
    """Run torch on one thread in a process forked from one that ran it (a pre-fork server's worker).

    torch's CPU kernels run on an OpenMP thread pool that does not survive a fork: in a child of a process
    that had used it, the next parallel kernel waits for the parent's threads for ever (a warm-up prediction
    before gunicorn forks its workers hung every worker's first request). One thread needs no pool; a pre-fork
    server's parallelism is its workers."""
    if torch.get_num_threads() > 1:
        log.info(
            "a forked process: torch runs on one thread here (its thread pool stayed in the parent)",
            extra={"fields": {"threads_before": torch.get_num_threads()}},
        )
        torch.set_num_threads(1)


@torch.no_grad()
def predict_columns(
    network: nn.Module,
    pre: Preprocessor,
    numeric: Mapping[str, Sequence[float]],
    categorical: Mapping[str, Sequence[str]],
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, scores): class labels as text with the predicted class's probability (the class
    :meth:`Preprocessor.decide` chooses), or regression values with NaN scores."""
    x, ids = pre.transform(numeric, categorical)
    network.eval()
    output = network(torch.from_numpy(x).to(device), torch.from_numpy(ids).to(device)).float().cpu()
    if pre.task == "regression":
        values = pre.values(output.squeeze(1).numpy())
        return values, np.full(len(values), np.nan)
    probabilities = torch.softmax(output, dim=1).numpy()
    best = pre.decide(probabilities)
    labels = np.asarray(pre.classes, dtype=object)[best]
    return labels, probabilities[np.arange(len(best)), best]
