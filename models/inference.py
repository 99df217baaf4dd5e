"""Predictions from a network and its preprocessing, for rows given as columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from driftloop.models.preprocess import Preprocessor


@torch.no_grad()
def predict_columns(
    network: nn.Module,
    pre: Preprocessor,
    numeric: Mapping[str, Sequence[float]],
    categorical: Mapping[str, Sequence[str]],
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, scores): class labels as text with the predicted class's probability, or regression
    values with NaN scores."""
    x, ids = pre.transform(numeric, categorical)
    network.eval()
    output = network(torch.from_numpy(x).to(device), torch.from_numpy(ids).to(device)).float().cpu()
    if pre.task == "regression":
        values = pre.values(output.squeeze(1).numpy())
        return values, np.full(len(values), np.nan)
    probabilities = torch.softmax(output, dim=1)
    best = probabilities.argmax(dim=1)
    labels = np.asarray(pre.classes, dtype=object)[best.numpy()]
    return labels, probabilities.gather(1, best.unsqueeze(1)).squeeze(1).numpy()
