"""EDCN (Chen et al., 2021): parallel cross and deep layers sharing information at every depth."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.inputs import FieldInput
from bigrec.models.layers import MLP, per_layer
from bigrec.models.output import ModelOutput
from bigrec.models.ranking.dcnv2 import CROSS_PARAMETERIZATIONS
from bigrec.models.registry import register_model

GATE_TYPES = ("FGU", "BGU")
BRIDGE_TYPES = ("hadamard_product", "pointwise_addition", "concatenation", "attention_pooling")


class RegulationGate(nn.Module):
    """Field-wise softmax gate computed from its input: ``out = F * softmax_f(s / tau) * x``.

    ``FGU`` (field-wise gating unit) scores each field from its own vector,
    ``s_f = w_f . x_f + b_f`` (one gate per field); ``BGU`` (bit-wise) scores every
    element, ``s_f = x_f W_f + b_f`` (one gate per field and dimension, the softmax
    still over fields). The factor F makes a uniform gate the identity.

    Shapes: ``[B, F, D] -> [B, F, 1]`` (FGU) or ``[B, F, D]`` (BGU), the gate to multiply ``x`` by.
    """

    def __init__(self, num_fields: int, dim: int, gate_type: str, temperature: float) -> None:
        super().__init__()
        out = 1 if gate_type == "FGU" else dim
        self.weight = nn.Parameter(torch.empty(num_fields, dim, out))
        self.bias = nn.Parameter(torch.zeros(num_fields, out))
        self.temperature = temperature
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small random scores: gates start near uniform (the identity) but already input-dependent."""
        nn.init.normal_(self.weight, std=0.1 * self.weight.shape[1] ** -0.5)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("bfd,fde->bfe", x, self.weight) + self.bias
        return self.weight.shape[0] * torch.softmax(scores / self.temperature, dim=1)


class CrossLayer(nn.Module):
    """One cross layer with an explicit ``x_0``: ``vector`` (DCN) ``x_0 * (x_l . w) + b + x_l`` or
    ``matrix`` (DCN-V2) ``x_0 * (W x_l + b) + x_l``.

    TorchRec's cross networks run all their layers on one input; EDCN feeds every
    layer a new (regulated) input, so each layer is called separately.

    Shapes: ``([B, N], [B, N]) -> [B, N]``.
    """

    def __init__(self, in_features: int, cross_parameterization: str) -> None:
        super().__init__()
        self.vector = cross_parameterization == "vector"
        self.kernel = nn.Linear(in_features, 1 if self.vector else in_features, bias=False)
        self.bias = nn.Parameter(torch.zeros(in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As TorchRec's cross networks: Xavier-normal kernels, zero biases."""
        nn.init.xavier_normal_(self.kernel.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.vector:
            return x0 * self.kernel(x) + self.bias + x
        return x0 * (self.kernel(x) + self.bias) + x


class Bridge(nn.Module):
    """Joins the cross and deep outputs of one depth.

    ``hadamard_product`` ``c * h``; ``pointwise_addition`` ``c + h``; ``concatenation``
    ``relu(W [c, h])``; ``attention_pooling`` ``a_c * c + a_h * h`` with
    ``a = softmax(W2 relu(W1 x))``.

    Shapes: ``([B, N], [B, N]) -> [B, N]``.
    """

    def __init__(self, in_features: int, bridge_type: str) -> None:
        super().__init__()
        self.bridge_type = bridge_type
        if bridge_type == "concatenation":
            self.concat = nn.Sequential(nn.Linear(2 * in_features, in_features), nn.ReLU())
        if bridge_type == "attention_pooling":
            self.attend_cross, self.attend_deep = (
                nn.Sequential(nn.Linear(in_features, in_features), nn.ReLU(),
                              nn.Linear(in_features, in_features, bias=False), nn.Softmax(dim=-1))
                for _ in range(2))

    def forward(self, cross: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        if self.bridge_type == "hadamard_product":
            return cross * deep
        if self.bridge_type == "pointwise_addition":
            return cross + deep
        if self.bridge_type == "concatenation":
            return self.concat(torch.cat([cross, deep], dim=1))
        return self.attend_cross(cross) * cross + self.attend_deep(deep) * deep


@register_model("edcn")
class EDCN(RecModel):
    """Enhanced DCN: cross and deep layers in parallel, sharing information at every depth.

    With ``x`` the fields ``[B, F', D]`` and N = F' D, at every depth ``l`` two
    regulation gates (:class:`RegulationGate`, ``gate_type`` FGU or BGU, computed from
    the depth's input) re-weight its fields separately for the two branches; then::

        c_l = cross_l(c_0, c_{l-1} + s_c * gate_c(x_l) x_l)     (c_0: the first gated input)
        h_l = u_l + mlp_l(u_l),  u_l = h_{l-1} + s_d * gate_d(x_l) x_l   (N -> hidden_units -> N)
        x_{l+1} = bridge_l(c_l, h_l)

    with ``x_0`` the embeddings (depth 0 takes the gated embeddings alone) and
    ``logit = w . [c_L, h_L, x_{L+1}] + b`` after ``cross_num`` depths. Both branches
    are residual: each keeps its own output and adds the regulated bridge output
    through a learned scale ``s`` that starts small (0.1), so training starts close to a
    plain parallel DCN and takes in the shared information as far as it helps (with a
    fixed ``s = 1`` the hadamard bridge's products of products made 3-depth training
    unstable on the planted-cross data).

    Args:
        schema: data schema.
        features: feature names (default: every non-sequence feature); dense features
            form one projected field.
        cross_num: number of depths (cross layers = deep blocks = bridges).
        hidden_units: hidden sizes of each depth's deep block (it returns to width N).
        gate_type: ``FGU`` (one gate per field) or ``BGU`` (one per field and dimension).
        cross_parameterization: ``matrix`` (DCN-V2 cross layers) or ``vector`` (DCN's, as
            in the paper).
        bridge_type: ``hadamard_product``, ``pointwise_addition``, ``concatenation`` or
            ``attention_pooling``.
        temperature: softmax temperature of the gates.
        dropout_rates: one rate or one per hidden layer of the deep blocks.
        embedding_dim: D of every field.
        activation: deep block activation.
        device: device of the embedding tables (``meta`` under sharding).

    Shapes: ``forward(batch) -> ModelOutput(logits [B])``; ``regulation_gates(batch)`` ->
    one ``(cross gate, deep gate)`` pair per depth, each ``[B, F', 1]`` (FGU) or ``[B, F', D]`` (BGU).

    Example::

        model = EDCN(schema, cross_num=3, hidden_units=[256], gate_type="FGU", embedding_dim=16)
        logits = model(batch).logits  # [B]
    """

    task = "ranking"

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None, cross_num: int = 2,
                 hidden_units: Sequence[int] = (256,), gate_type: str = "FGU",
                 cross_parameterization: str = "matrix", bridge_type: str = "hadamard_product",
                 temperature: float = 1.0, dropout_rates: float | Sequence[float] = 0.0, embedding_dim: int = 16,
                 activation: str = "relu", device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        for name, value, valid in (("gate_type", gate_type, GATE_TYPES), ("bridge_type", bridge_type, BRIDGE_TYPES),
                                   ("cross_parameterization", cross_parameterization, CROSS_PARAMETERIZATIONS)):
            if value not in valid:
                raise ConfigError(f"model EDCN: {name} must be one of {list(valid)}, got '{value}'")
        if cross_num < 1:
            raise ConfigError(f"model EDCN: cross_num must be >= 1, got {cross_num}")
        if temperature <= 0:
            raise ConfigError(f"model EDCN: temperature must be > 0, got {temperature}")
        self.fields = FieldInput(schema, self.resolve_features(features), embedding_dim, device=device)
        num_fields, width = self.fields.num_fields, self.fields.num_fields * embedding_dim
        rates = per_layer(dropout_rates, len(hidden_units), "model EDCN: dropout_rates") + [0.0]
        self.cross_gates, self.deep_gates = (
            nn.ModuleList(RegulationGate(num_fields, embedding_dim, gate_type, temperature) for _ in range(cross_num))
            for _ in range(2))
        self.cross_layers = nn.ModuleList(CrossLayer(width, cross_parameterization) for _ in range(cross_num))
        self.deep_blocks = nn.ModuleList(MLP(width, list(hidden_units) + [width], rates, activation)
                                         for _ in range(cross_num))
        self.bridges = nn.ModuleList(Bridge(width, bridge_type) for _ in range(cross_num))
        self.share = nn.Parameter(torch.full((2,), 0.1))  # scales of the bridge output added to (cross, deep)
        self.head = nn.Linear(3 * width, 1)

    def _run(self, batch: Batch) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        x = self.fields(batch)  # [B, F', D]: the embeddings, then each depth's bridge output
        gates: list[tuple[torch.Tensor, torch.Tensor]] = []
        cross0 = cross = deep = x.flatten(1)
        for depth, (gate_c, gate_d, cross_layer, deep_block, bridge) in enumerate(zip(
                self.cross_gates, self.deep_gates, self.cross_layers, self.deep_blocks, self.bridges)):
            gates.append((gate_c(x), gate_d(x)))
            cross_in, deep_in = (gates[-1][0] * x).flatten(1), (gates[-1][1] * x).flatten(1)  # [B, N]
            if depth == 0:
                cross0 = cross_in
            else:
                cross_in, deep_in = cross + self.share[0] * cross_in, deep + self.share[1] * deep_in
            cross = cross_layer(cross0, cross_in)
            deep = deep_in + deep_block(deep_in)
            x = bridge(cross, deep).unflatten(1, (self.fields.num_fields, self.fields.embedding_dim))
        return self.head(torch.cat([cross, deep, x.flatten(1)], dim=1)).squeeze(1), gates

    def regulation_gates(self, batch: Batch) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The (cross, deep) gate of every depth: ``[B, F', 1]`` (FGU) or ``[B, F', D]`` (BGU)."""
        return self._run(batch)[1]

    def forward(self, batch: Batch) -> ModelOutput:
        return ModelOutput(self._run(batch)[0])
