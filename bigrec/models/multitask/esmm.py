"""ESMM: Entire Space Multi-task Model (Ma et al., SIGIR 2018)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from bigrec.batch import Batch
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.experts import TaskTowers
from bigrec.models.inputs import FlatInput
from bigrec.models.layers import MLP
from bigrec.models.output import ModelOutput
from bigrec.models.registry import register_model


@torch.fx.wrap  # a leaf for TorchRec's pipeline tracer (it reads the dtype's finfo)
def product_logit(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``logit(sigmoid(a) * sigmoid(b))`` computed in log space.

    ``log p = logsigmoid(a) + logsigmoid(b)`` and ``log(1 - p) = log(-expm1(log p))`` for
    ``log p > -ln 2`` else ``log1p(-exp(log p))``, so tiny and near-1 products keep their
    precision (a BCE on this logit is exactly the BCE on the product). ``log p`` is capped
    just below 0 so that two saturated towers give a large finite logit, not ``inf``.

    Shapes: ``[...] x [...] -> [...]``.
    """
    log_p = F.logsigmoid(a) + F.logsigmoid(b)
    log_p = log_p.clamp(max=-torch.finfo(log_p.dtype).tiny)
    near_one = log_p > -0.6931471805599453
    # each branch sees only its own inputs, so the other's inf never meets a gradient
    other = torch.full_like(log_p, -1.0)
    log_1mp = torch.where(near_one, torch.log(-torch.expm1(torch.where(near_one, log_p, other))),
                          torch.log1p(-torch.exp(torch.where(near_one, other, log_p))))
    return log_p - log_1mp


@register_model("esmm")
class ESMM(RecModel):
    """A CTR tower and a CVR tower on shared embeddings, trained on the entire impression space.

    The outputs are the logits of pCTR and of pCTCVR = pCTR x pCVR; the task labels them
    with ``click`` and ``click and conversion`` on every impression (binary cross-entropy
    on both), so the CVR tower learns only through pCTCVR over all impressions -- never
    from clicked rows alone, which is the sample-selection bias ESMM removes. pCVR itself is
    ``extras["p_cvr"]`` (``bigrec predict`` writes it beside ``score_<click>`` = pCTR and
    ``score_<conversion>`` = pCTCVR). ``nested_labels`` declares that a conversion implies
    a click; the task rejects data where it does not.

    Args:
        schema: data schema.
        features: input features (default: every non-sequence feature).
        hidden_units: a dense MLP shared by both towers on top of the embeddings; empty (the
            paper) shares the embeddings only. Its last layer is the model's last shared layer
            (GradNorm needs one).
        tower_units: hidden sizes of the CTR tower and of the CVR tower (a 1-unit head is added).
        embedding_dim: D of every table.
        activation: activation of the shared MLP and the towers.
        dropout_rates: dropout of the shared MLP (one rate or one per layer).
        tower_dropout_rates: dropout of each tower (one rate or one per layer).

    Shapes: ``forward(batch) -> ModelOutput(logits [B, 2] = (logit pCTR, logit pCTCVR),
    extras {"p_cvr": [B]})``; ``tower_logits(batch) -> [B, 2]`` = (logit pCTR, logit pCVR).

    Example::

        model = ESMM(schema, hidden_units=[], tower_units=[64, 32], embedding_dim=8)
        out = model(batch)  # out.logits [B, 2]; torch.sigmoid(out.logits[:, 1]) == pCTR * out.extras["p_cvr"]
    """

    task = "multitask"
    nested_labels = ((1, 0),)  # click and conversion => click

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None,
                 hidden_units: Sequence[int] = (), tower_units: Sequence[int] = (128, 64), embedding_dim: int = 16,
                 activation: str = "relu", dropout_rates: float | Sequence[float] = 0.0,
                 tower_dropout_rates: float | Sequence[float] = 0.0, device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        self.num_tasks, self.task_types = 2, ["binary", "binary"]
        self.inputs = FlatInput(schema, self.resolve_features(features), embedding_dim, device=device)
        width = self.inputs.out_features
        self.bottom = MLP(width, hidden_units, dropout_rates, activation) if list(hidden_units) else None
        width = self.bottom.out_features if self.bottom is not None else width
        self.towers = TaskTowers(width, tower_units, 2, tower_dropout_rates, activation)  # (CTR, CVR)

    def last_shared_layer(self) -> Optional[nn.Module]:
        """The shared MLP's last linear layer; None when only the embeddings are shared."""
        return self.bottom.last_linear() if self.bottom is not None else None

    def tower_logits(self, batch: Batch) -> torch.Tensor:
        """``[B, 2]`` logits of pCTR and pCVR."""
        x = self.inputs(batch)
        if self.bottom is not None:
            x = self.bottom(x)
        return self.towers([x, x])

    def forward(self, batch: Batch) -> ModelOutput:
        ctr, cvr = self.tower_logits(batch).unbind(dim=1)
        logits = torch.stack([ctr, product_logit(ctr, cvr)], dim=1)
        return ModelOutput(logits, extras={"p_cvr": torch.sigmoid(cvr)})
