"""Retrieval losses: full softmax over every item and sampled softmax with log-Q correction.

Both take dot-product scores divided by a temperature. Sampled softmax scores
each user against in-batch candidates (the other rows' targets) plus extra
sampled negatives, subtracting ``log Q(item)``, the log of the item's expected
count among the candidates, so popular items are not over-penalised as
negatives (Yi et al., 2019, "Sampling-bias-corrected neural modeling").
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.nn import functional as F


def full_softmax_loss(user: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                      invalid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cross-entropy of each row's target among all items.

    Args:
        user: ``[B, D]`` user vectors.
        items: ``[N, D]`` vectors of items ``0..N-1`` (row ``i`` is item ``i``).
        targets: ``[B]`` target item ids.
        invalid: ``[N]`` bool, items that are never candidates (padding id).

    Returns: ``[]`` mean loss.
    """
    logits = user @ items.t() / temperature  # [B, N]
    if invalid is not None:
        logits = logits.masked_fill(invalid[None, :], float("-inf"))
    return F.cross_entropy(logits, targets)


def sampled_softmax_loss(user: torch.Tensor, positives: torch.Tensor, positive_ids: torch.Tensor,
                         negatives: torch.Tensor, negative_ids: torch.Tensor, log_q_positive: torch.Tensor,
                         log_q_negative: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax over in-batch positives plus extra negatives, log-Q corrected.

    Row ``b``'s label is candidate ``b`` (its own target); another candidate with
    the same item id (an accidental hit) is masked out.

    Args:
        user: ``[B, D]``; positives: ``[B, D]`` target vectors; positive_ids: ``[B]``.
        negatives: ``[M, D]`` extra negatives (``M`` may be 0); negative_ids: ``[M]``.
        log_q_positive: ``[B]``, log_q_negative: ``[M]`` log expected counts (zeros: no correction).

    Returns: ``[]`` mean loss.
    """
    candidates = torch.cat([positives, negatives], dim=0)  # [B + M, D]
    ids = torch.cat([positive_ids, negative_ids])
    log_q = torch.cat([log_q_positive, log_q_negative])
    logits = user @ candidates.t() / temperature - log_q[None, :]  # [B, B + M]
    rows = torch.arange(user.shape[0], device=user.device)
    own = rows[:, None] == torch.arange(ids.shape[0], device=user.device)[None, :]
    accidental = (ids[None, :] == positive_ids[:, None]) & ~own
    logits = logits.masked_fill(accidental, float("-inf"))
    return F.cross_entropy(logits, rows)
