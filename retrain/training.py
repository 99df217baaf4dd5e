"""The training loop: seeded, early stopping on the validation split, CUDA with mixed precision when there is
a GPU and the CPU otherwise."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from driftloop.infra.errors import DriftloopError
from driftloop.infra.spec import ModelSpec
from driftloop.models.architectures import ArchitectureInput, build_architecture
from driftloop.models.preprocess import Preprocessor
from driftloop.retrain.dataset import LabeledData


class TrainingError(DriftloopError):
    """Training could not produce a usable model (diverged to NaN, or no usable rows)."""


def pick_device() -> torch.device:
    """The first CUDA device when there is one, else the CPU."""
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Tensors:
    numeric: torch.Tensor
    categorical: torch.Tensor
    target: torch.Tensor


def tensors(pre: Preprocessor, data: LabeledData, device: torch.device) -> Tensors:
    numeric, categorical = pre.transform(data.numeric, data.categorical)
    labels = data.label_num if pre.task == "regression" else data.labels
    target = pre.encode_labels(labels)
    keep = np.isfinite(target) if pre.task == "regression" else target >= 0  # labels never seen in training
    return Tensors(
        torch.from_numpy(numeric[keep]).to(device),
        torch.from_numpy(categorical[keep]).to(device),
        torch.from_numpy(target[keep]).to(device),
    )


def architecture_input(pre: Preprocessor) -> ArchitectureInput:
    return ArchitectureInput(len(pre.numeric), tuple(len(v) + 1 for v in pre.vocabularies), pre.n_outputs)


@dataclass
class TrainResult:
    network: nn.Module
    inputs: ArchitectureInput
    device: str
    epochs: int
    best_validation_loss: float
    seconds: float
    history: list[float] = field(default_factory=list)
    steps: int = 0  # optimiser steps taken
    out_of_time: bool = False  # stopped at ``max_seconds`` (at the end of a step), before its epochs or patience


def train(
    spec: ModelSpec,
    pre: Preprocessor,
    train_data: LabeledData | Tensors,
    validation: LabeledData | Tensors,
    *,
    device: torch.device | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    max_seconds: float = math.inf,
) -> TrainResult:
    """Train a fresh network of ``spec.architecture`` on ``train_data``; keep the best epoch on ``validation``.

    Seeded by ``spec.training.seed``: on the CPU, the same rows, spec and thread count give the same weights,
    bit for bit. ``progress(epoch, epochs, validation_loss)`` is called after every epoch; an exception it
    raises (a pruned trial) ends the training. Rows may come as :class:`Tensors` already on ``device``.

    Training stops after ``spec.training.max_steps`` optimiser steps, and once ``max_seconds`` have passed (what
    is left of a compute budget): the epoch under way ends there, is validated like any other, and the best
    epoch is kept. ``steps`` says where it stopped: the spec with ``max_steps`` at that number trains the same
    weights again.
    """
    started = time.perf_counter()
    config = spec.training
    device = device or pick_device()
    torch.manual_seed(config.seed)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    inputs = architecture_input(pre)
    network = build_architecture(spec.architecture.name, inputs, spec.architecture.params).to(device)
    fit = train_data if isinstance(train_data, Tensors) else tensors(pre, train_data, device)
    check = validation if isinstance(validation, Tensors) else tensors(pre, validation, device)
    if len(fit.target) == 0 or len(check.target) == 0:
        raise TrainingError("no usable rows to train or validate on")
    regression = pre.task == "regression"
    loss_fn: nn.Module = nn.SmoothL1Loss() if regression else nn.CrossEntropyLoss()
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate)
    cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    best, best_state, since_best, history = math.inf, copy.deepcopy(network.state_dict()), 0, []
    epoch = steps = 0
    max_steps, deadline, out_of_time = config.max_steps or math.inf, started + max_seconds, False
    for epoch in range(1, config.epochs + 1):
        network.train()
        order = torch.randperm(len(fit.target), generator=generator).to(device)
        before = steps
        for start in range(0, len(order), config.batch_size):
            if steps >= max_steps or (steps and time.perf_counter() >= deadline):  # one step at least
                out_of_time = steps < max_steps
                break
            steps += 1
            batch = order[start : start + config.batch_size]
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=cuda):
                output = network(fit.numeric[batch], fit.categorical[batch])
                loss = loss_fn(output.squeeze(1) if regression else output, fit.target[batch])
            if not torch.isfinite(loss):
                raise TrainingError(f"the training loss became {loss.item()} in epoch {epoch}: diverged")
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
        if steps == before:  # stopped before this epoch's first step: nothing new to validate
            epoch -= 1
            break
        validation_loss = _loss(network, check, loss_fn, regression, cuda)
        history.append(validation_loss)
        if progress:
            progress(epoch, config.epochs, validation_loss)
        if validation_loss < best - 1e-6:
            best, best_state, since_best = validation_loss, copy.deepcopy(network.state_dict()), 0
        else:
            since_best += 1
            if since_best >= config.patience:
                break
        if steps >= max_steps or out_of_time:
            break
    network.load_state_dict(best_state)
    network.eval()
    seconds = time.perf_counter() - started
    return TrainResult(network, inputs, str(device), epoch, best, seconds, history, steps, out_of_time)


@torch.no_grad()
def _loss(network: nn.Module, data: Tensors, loss_fn: nn.Module, regression: bool, cuda: bool) -> float:
    network.eval()
    with torch.autocast(device_type=data.target.device.type, dtype=torch.float16, enabled=cuda):
        output = network(data.numeric, data.categorical)
        loss = loss_fn(output.squeeze(1) if regression else output, data.target)
    value = float(loss.item())
    if not math.isfinite(value):
        raise TrainingError(f"the validation loss is {value}: diverged")
    return value
