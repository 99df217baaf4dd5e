"""Model architectures, by name. ``tabular_mlp`` is built in; register your own ``torch.nn.Module`` factory.

>>> import torch
>>> net = build_architecture("tabular_mlp", ArchitectureInput(3, (4, 2), 2), {"hidden": [16]})
>>> net(torch.zeros(5, 3), torch.zeros(5, 2, dtype=torch.long)).shape
torch.Size([5, 2])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
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


@dataclass(frozen=True)
class _Registered:
    factory: Factory
    params: frozenset[str] | None  # the names the factory reads (None: it did not say)


_REGISTRY: dict[str, _Registered] = {}
#: A network small enough to build in a moment, to check a spec's parameters on.
_PROBE = ArchitectureInput(2, (3,), 2)


class ArchitectureError(DriftloopError):
    """A spec names an architecture nobody registered, or parameters its factory does not take."""


class UnknownArchitectureError(ArchitectureError):
    """A spec names an architecture nobody registered."""


def register_architecture(name: str, factory: Factory, *, params: Iterable[str] | None = None) -> None:
    """Make ``factory(inputs, params) -> nn.Module`` available to specs as ``architecture.name = name``.

    The module's ``forward(numeric: float32[n, k], categorical: int64[n, m])`` returns logits (or the
    regression value as ``[n, 1]``). ``params``: the names the factory reads; a spec (or a search space) that
    gives another is refused by :func:`check_architecture` (a misspelt name would be ignored, and the network
    trained with the default).
    """
    _REGISTRY[name] = _Registered(factory, None if params is None else frozenset(params))


def _registered(name: str) -> _Registered:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownArchitectureError(
            f"architecture {name!r} is not registered (known: {', '.join(sorted(_REGISTRY))}); "
            "call models.architectures.register_architecture first"
        ) from None


def build_architecture(name: str, inputs: ArchitectureInput, params: Mapping[str, Any]) -> nn.Module:
    """The network ``name`` for ``inputs``; names the factory does not read are left alone (a version trained
    before they were refused still loads)."""
    return _registered(name).factory(inputs, params)


def check_architecture(name: str, params: Mapping[str, Any], space: Mapping[str, Iterable[Any]] | None = None) -> None:
    """Refuse, naming the spec's field, what training would ignore or fail on only once it had its data: a name
    the factory does not read (``architecture.params.<name>``, ``tuning.space.<name>``), values it refuses
    (each of ``space``'s values to try, its bounds or choices, is built once with the others)."""
    registered = _registered(name)
    space = space or {}
    for field, names in (("architecture.params", params), ("tuning.space", space)):
        unknown = sorted(set(names) - registered.params) if registered.params is not None else []
        if unknown:
            raise ArchitectureError(
                f"{field}.{unknown[0]}: {name} takes no parameter {unknown[0]!r} "
                f"(it takes {', '.join(sorted(registered.params or ()))})"
            )
    tries = [("architecture.params", dict(params))]
    tries += [(f"tuning.space.{k}", {**params, k: value}) for k, values in space.items() for value in values]
    for field, given in tries:
        try:
            registered.factory(_PROBE, given)
        except Exception as exc:  # whatever the factory raises on a value it refuses
            shown = ", ".join(f"{k}={v!r}" for k, v in given.items())
            raise ArchitectureError(f"{field}: {name}({shown}) cannot be built: {exc}") from None


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
    hidden = params.get("hidden", (64, 64))
    hidden = tuple(int(h) for h in (hidden if isinstance(hidden, list | tuple) else [hidden]))
    dropout, embedding_dim = float(params.get("dropout", 0.1)), int(params.get("embedding_dim", 8))
    if min(hidden, default=1) < 1:
        raise ValueError(f"hidden sizes must be 1 or more, got {list(hidden)}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be 1 or more, got {embedding_dim}")
    return TabularMLP(inputs, hidden=hidden, dropout=dropout, embedding_dim=embedding_dim)


register_architecture("tabular_mlp", _tabular_mlp, params=("hidden", "dropout", "embedding_dim"))
