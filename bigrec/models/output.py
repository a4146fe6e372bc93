"""What every model's ``forward`` returns: the one contract between models and tasks.

Ranking and multi-task models return :class:`ModelOutput`; recall models return
:class:`RecallOutput`. A model never computes its training loss: the task
(:mod:`bigrec.tasks`) turns these outputs into losses, metrics and predictions.

Auxiliary losses (DIEN's interest loss, regularisers) are scalar tensors under a
name; the task adds each with the weight ``task.aux_loss_weights[name]`` (1.0 by
default) and logs it. Extras are per-row tensors under a name that predict writes
beside the scores (e.g. ESMM's ``p_cvr``; inspection values such as attention or gate
weights belong in a model method, e.g. ``DIN.attention(batch)``, not here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

TASK_TYPES = ("binary", "regression")  # what one column of a multi-task model's logits predicts


@dataclass
class ModelOutput:
    """Output of a ranking (``logits [B]``) or multi-task (``logits [B, T]``) model.

    Attributes:
        logits: ``[B]`` or ``[B, T]``; binary tasks apply a sigmoid, regression
            tasks read them as the predicted value.
        aux_losses: name -> ``[]`` scalar tensors the task adds to the loss.
        extras: name -> ``[B]`` or ``[B, k]`` per-row predictions written beside the scores.
    """

    logits: torch.Tensor
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class RecallOutput:
    """Output of a recall model's ``forward(batch, candidate_ids)``.

    Attributes:
        user: ``[B, D]`` user vectors, or ``[B, K, D]`` for K interests per user;
            the score of an item is then the max over the K interests.
        target: ``[B, D]`` vectors of each row's target item (in-batch candidates).
        candidates: ``[M, D]`` vectors of the candidate ids passed to ``forward``.
        aux_losses: as in :class:`ModelOutput`.
        extras: as in :class:`ModelOutput`.
        position_targets: one-pass sequence training: ``[B, L]`` the item each
            position predicts (``-1`` = padding, no target); ``user`` is then
            ``[B, L, D]`` (or ``[B, L, K, D]``) and ``target`` ``[B, L, D]``, and the
            task scores every real position as a row of its own.
    """

    user: torch.Tensor
    target: torch.Tensor
    candidates: torch.Tensor
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    position_targets: Optional[torch.Tensor] = None


def _interests(user: torch.Tensor) -> torch.Tensor:
    """``[B, D]`` or ``[B, K, D]`` -> ``[B, K, D]`` (K = 1 for one vector); no branch (FX), and B may be 0."""
    return user.reshape(user.shape[0], user.shape[1:-1].numel(), user.shape[-1])


def score(user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Scores of every (user, item) pair: ``[B, D] x [N, D] -> [B, N]``.

    With ``user [B, K, D]`` (several interests) an item's score is its best
    interest's: ``max_k <u_k, v>``.
    """
    return torch.matmul(_interests(user), items.t()).amax(dim=1)


def paired_score(user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Row-wise scores ``<u_b, v_b>``: ``[B, D] (or [B, K, D]) x [B, D] -> [B]``."""
    return (_interests(user) * items[:, None, :]).sum(dim=-1).amax(dim=1)
