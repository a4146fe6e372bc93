"""Dense building blocks shared by the model zoo: MLP, activations (Dice), per-layer values, field pairs.

Device rule: embedding tables are created on the model's ``device`` (``meta`` under
sharding, so ``DistributedModelParallel`` allocates only each rank's shards); dense
layers are always built on the CPU and moved by DMP. So no dense block takes a
device argument.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from bigrec.errors import ConfigError


class Dice(nn.Module):
    """Data-adaptive activation from DIN: ``p(x) * x + (1 - p(x)) * alpha * x``.

    ``p(x) = sigmoid(batch_norm(x))``; input ``[B, D]`` or ``[B, L, D]``.
    """

    def __init__(self, dim: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, eps=eps, affine=False)
        self.alpha = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        p = torch.sigmoid(self.norm(flat)).reshape(x.shape)
        return p * x + (1 - p) * self.alpha * x


def make_activation(name: str, dim: int) -> nn.Module:
    """``relu | prelu | sigmoid | tanh | gelu | dice | identity`` for width ``dim``."""
    name = name.lower()
    if name == "dice":
        return Dice(dim)
    if name == "prelu":
        return nn.PReLU(dim)
    simple = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU,
              "identity": nn.Identity, "linear": nn.Identity}
    if name not in simple:
        raise ConfigError(f"unknown activation '{name}'; use one of {sorted(simple) + ['dice', 'prelu']}")
    return simple[name]()


def per_layer(values: float | Sequence[float] | None, num_layers: int, what: str) -> list[float]:
    """Broadcast a scalar (or check a list) to one value per layer."""
    if values is None:
        return [0.0] * num_layers
    if isinstance(values, (int, float)):
        return [float(values)] * num_layers
    values = list(values)
    if len(values) != num_layers:
        raise ConfigError(f"{what} has {len(values)} values for {num_layers} layers")
    return [float(v) for v in values]


class MLP(nn.Module):
    """Linear → (batch norm) → activation → dropout, per entry of ``hidden_units``.

    Args:
        in_features: input width D_in.
        hidden_units: output width of each layer; the last is the output width.
        dropout_rates: one rate, or one per layer.
        activation: see :func:`make_activation`.
        batch_norm: add BatchNorm1d after each linear layer.

    Shapes: ``[..., D_in] -> [..., hidden_units[-1]]``.

    Example::

        mlp = MLP(32, [64, 16], dropout_rates=0.1)
        mlp(torch.randn(8, 32)).shape  # torch.Size([8, 16])
    """

    def __init__(self, in_features: int, hidden_units: Sequence[int], dropout_rates: float | Sequence[float] = 0.0,
                 activation: str = "relu", batch_norm: bool = False) -> None:
        super().__init__()
        hidden_units = [int(u) for u in hidden_units]
        if not hidden_units or min(hidden_units) <= 0:
            raise ConfigError(f"hidden_units must be a non-empty list of positive sizes, got {hidden_units}")
        rates = per_layer(dropout_rates, len(hidden_units), "dropout_rates")
        layers: list[nn.Module] = []
        width = in_features
        for units, rate in zip(hidden_units, rates):
            layers.append(nn.Linear(width, units))
            if batch_norm:
                layers.append(nn.BatchNorm1d(units))
            layers.append(make_activation(activation, units))
            if rate > 0:
                layers.append(nn.Dropout(rate))
            width = units
        self.layers = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def last_linear(self) -> nn.Linear:
        """The last linear layer (e.g. a shared bottom's last shared layer)."""
        return [layer for layer in self.layers if isinstance(layer, nn.Linear)][-1]


class FieldPairs(nn.Module):
    """Every unordered pair ``i < j`` of F fields, in ``torch.triu_indices`` order.

    ``left`` / ``right`` hold the pairs' field indices ``[P]``, P = F (F - 1) / 2.

    Shapes: ``[B, F, D] -> ([B, P, D], [B, P, D])`` (the left and right field of each pair).
    """

    def __init__(self, num_fields: int) -> None:
        super().__init__()
        if num_fields < 2:
            raise ConfigError(f"pairwise interactions need at least 2 fields, got {num_fields}")
        left, right = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("left", left, persistent=False)
        self.register_buffer("right", right, persistent=False)
        self.num_pairs = int(left.numel())

    def forward(self, fields: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return fields[:, self.left], fields[:, self.right]
