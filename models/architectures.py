"""Model architectures, by name. ``tabular_mlp`` is built in; register your own ``torch.nn.Module`` factory.

>>> import torch
>>> net = build_architecture("tabular_mlp", ArchitectureInput(3, (4, 2), 2), {"hidden": [16]})
>>> net(torch.zeros(5, 3), torch.zeros(5, 2, dtype=torch.long)).shape
torch.Size([5, 2])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from driftloop.infra.errors import DriftloopError


@dataclass(frozen=True)
class ArchitectureInput:
    """What a network must accept: numeric feature count, each categorical feature's ids, and outputs."""

    n_numeric: int
    cardinalities: tuple[int, ...]  # ids per categorical feature, 0 ("unknown") included
    n_outputs: int


Factory = Callable[[ArchitectureInput, Mapping[str, Any]], nn.Module]
_REGISTRY: dict[str, Factory] = {}


class UnknownArchitectureError(DriftloopError):
    """A spec names an architecture nobody registered."""


def register_architecture(name: str, factory: Factory) -> None:
    """Make ``factory(inputs, params) -> nn.Module`` available to specs as ``architecture.name = name``.

    The module's ``forward(numeric: float32[n, k], categorical: int64[n, m])`` returns logits (or the
    regression value as ``[n, 1]``).
    """
    _REGISTRY[name] = factory


def build_architecture(name: str, inputs: ArchitectureInput, params: Mapping[str, Any]) -> nn.Module:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownArchitectureError(
            f"architecture {name!r} is not registered (known: {', '.join(sorted(_REGISTRY))}); "
            "call models.architectures.register_architecture first"
        ) from None
    return factory(inputs, params)


class TabularMLP(nn.Module):
    """An MLP over standardised numeric features and an embedding per categorical feature."""

    def __init__(
        self,
        inputs: ArchitectureInput,
        hidden: tuple[int, ...] = (64, 64),
        dropout: float = 0.1,
        embedding_dim: int = 8,
    ) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(
            nn.Embedding(cardinality, min(embedding_dim, max(2, cardinality))) for cardinality in inputs.cardinalities
        )
        width = inputs.n_numeric + sum(e.embedding_dim for e in self.embeddings)
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, inputs.n_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        parts = [numeric] + [embedding(categorical[:, j]) for j, embedding in enumerate(self.embeddings)]
        return self.net(torch.cat(parts, dim=1))


def _tabular_mlp(inputs: ArchitectureInput, params: Mapping[str, Any]) -> nn.Module:
    return TabularMLP(
        inputs,
        hidden=tuple(int(h) for h in params.get("hidden", (64, 64))),
        dropout=float(params.get("dropout", 0.1)),
        embedding_dim=int(params.get("embedding_dim", 8)),
    )


register_architecture("tabular_mlp", _tabular_mlp)
