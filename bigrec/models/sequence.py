"""Behaviour-sequence helpers shared by the zoo.

Histories arrive from :class:`~bigrec.models.embeddings.FeatureEmbeddings` as
``[B, L, D]`` embeddings, oldest first and padded at the end, with a ``[B, L]``
bool mask (True where a real behaviour sits). These helpers never let padding
reach a result: pooled, attended or read as a state.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import nn

from bigrec.errors import ConfigError
from bigrec.features import Schema, SequenceFeature
from bigrec.models.embeddings import EmbeddedFeatures
from bigrec.models.layers import MLP


def keep_recent(history: torch.Tensor, mask: torch.Tensor, max_len: int, right_aligned: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The most recent ``max_len`` behaviours: ``[B, L, D], [B, L] -> [B, m, D], [B, m]`` (``m = max_len``).

    Left-aligned (oldest kept first, padding at the end), or with ``right_aligned``
    the most recent behaviour at position ``m - 1`` and the padding first, so a
    position counts back from the latest behaviour. Padding is zeros.
    """
    steps = torch.arange(max_len, device=history.device)
    lengths = mask.sum(dim=1)
    if right_aligned:
        index = lengths[:, None] - max_len + steps[None, :]  # [B, m], negative on padding
        recent_mask = index >= 0
    else:
        kept = lengths.clamp(max=max_len)
        index = (lengths - kept)[:, None] + steps[None, :]
        recent_mask = steps[None, :] < kept[:, None]
    index = index.clamp(min=0, max=history.shape[1] - 1)
    items = history.gather(1, index[:, :, None].expand(-1, -1, history.shape[2]))
    return items * recent_mask[:, :, None].to(items.dtype), recent_mask


def masked_mean(sequence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real positions: ``[B, L, D], [B, L] -> [B, D]`` (zeros for an empty history)."""
    weights = mask.to(sequence.dtype)[:, :, None]
    return (sequence * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def last_state(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state at the last real position: ``[B, L, H], [B, L] -> [B, H]`` (position 0 when empty)."""
    last = (mask.sum(dim=1) - 1).clamp(min=0)
    return states.gather(1, last[:, None, None].expand(-1, 1, states.shape[2])).squeeze(1)


def causal_mean(sequence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real positions up to each position: ``[B, L, D], [B, L] -> [B, L, D]``.

    Position ``t`` averages the real behaviours ``0..t`` (:func:`masked_mean` of each
    prefix); positions before the first real one are zeros.
    """
    weights = mask.to(sequence.dtype)[:, :, None]
    return (sequence * weights).cumsum(dim=1) / weights.cumsum(dim=1).clamp(min=1)


def next_item_targets(ids: torch.Tensor, items: torch.Tensor, mask: torch.Tensor, target_id: torch.Tensor,
                      target: torch.Tensor, targets: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The next item of every history position (one-pass sequence training).

    Position ``t`` of a history predicts ``ids[t + 1]``; the last real position
    predicts the row's target. With ``targets`` only the last ``targets`` real
    positions are trained; the earlier ones are context only (``-1``), as in a
    sequences layout with overlapping windows (:mod:`bigrec.data.sequences`).

    Args:
        ids: ``[B, L]`` history item ids, padded at the end.
        items: ``[B, L, D]`` their vectors; mask: ``[B, L]`` bool, True on real positions.
        target_id: ``[B]`` the row's target id; target: ``[B, D]`` its vector.
        targets: trained positions per row, counted back from the last (``None``: all).

    Returns: ``(next_ids [B, L], next_items [B, L, D])``; ``next_ids`` is ``-1`` on padding
    and context-only positions (an empty history has no position to train).
    """
    last = mask.sum(dim=1) - 1  # [B], -1 for an empty history
    steps = torch.arange(mask.shape[1], device=mask.device)[None, :]
    is_last = steps == last[:, None]  # [B, L]
    next_ids = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], -1)], dim=1)
    trained = mask if targets is None else mask & (steps > last[:, None] - targets)
    next_ids = torch.where(is_last, target_id[:, None], next_ids).masked_fill(~trained, -1)
    next_items = torch.cat([items[:, 1:], torch.zeros_like(items[:, :1])], dim=1)
    return next_ids, torch.where(is_last[:, :, None], target[:, None, :], next_items)


class TargetAttention(nn.Module):
    """DIN's local activation unit: un-normalised, masked attention pooling of a history by a target.

    Each position is scored by an MLP over ``[q, k, q - k, q * k]``; padding gets a
    weight of exactly 0 and never enters the MLP's batch statistics (Dice / batch
    norm see the real positions only).

    Args:
        dim: E, width of query and keys.
        attention_units: hidden sizes of the scoring MLP (a 1-unit output is added).
        activation: activation of the scoring MLP (``dice`` included).
        normalize: softmax the scores over real positions (DIN keeps them raw).

    Shapes: ``forward(query [B, E], keys [B, L, E], mask [B, L] bool)`` ->
    ``(interest [B, E], weights [B, L])``.

    Example::

        unit = TargetAttention(8, [16])
        interest, weights = unit(torch.randn(2, 8), torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool))
    """

    def __init__(self, dim: int, attention_units: Sequence[int], activation: str = "dice",
                 normalize: bool = False) -> None:
        super().__init__()
        self.mlp = MLP(4 * dim, attention_units, activation=activation)
        self.score = nn.Linear(self.mlp.out_features, 1)
        self.normalize = normalize

    def scores(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` raw scores; 0 on padding (``-inf`` when ``normalize``)."""
        q = query.unsqueeze(1).expand_as(keys)  # [B, L, E]
        features = torch.cat([q, keys, q - keys, q * keys], dim=-1)  # [B, L, 4E]
        flat_mask = mask.reshape(-1)
        # only the real positions go through the MLP, so batch statistics (Dice) ignore padding
        real = self.score(self.mlp(features.reshape(-1, features.shape[-1])[flat_mask])).squeeze(-1)
        fill = float("-inf") if self.normalize else 0.0
        flat = torch.full(flat_mask.shape, fill, dtype=real.dtype, device=real.device)
        return flat.masked_scatter(flat_mask, real).reshape(mask.shape)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.scores(query, keys, mask)
        if self.normalize:
            weights = torch.softmax(weights, dim=1).nan_to_num(0.0)  # an empty history: all zeros
        return (weights.unsqueeze(-1) * keys).sum(dim=1), weights


def pair_behaviors(schema: Schema, features: list[str], behavior_features: Mapping[str, str] | Sequence[str],
                   model: str) -> list[tuple[str, str]]:
    """``[(candidate, history), ...]``: each behaviour history with the candidate feature reading its table.

    ``behavior_features`` is ``{candidate: history}`` or a list of histories, each
    paired with the one feature of ``features`` on the same table. Aligned histories
    must share one ``max_len``.
    """
    if isinstance(behavior_features, Mapping):
        pairs = [(str(c), str(h)) for c, h in behavior_features.items()]
    else:
        pairs = []
        for history in behavior_features:
            if history not in schema:
                raise ConfigError(f"{model}: behaviour feature '{history}' is not in the schema; known features: "
                                  f"{[f.name for f in schema.features]}")
            table = schema[history].table
            candidates = [n for n in features if schema[n].kind != "sequence" and schema[n].table == table]
            if len(candidates) != 1:
                raise ConfigError(f"{model}: history '{history}' (table '{table}') needs exactly one candidate "
                                  f"feature reading the same table among features {features}, found {candidates}; "
                                  "give behavior_features as {candidate: history}")
            pairs.append((candidates[0], history))
    if not pairs:
        raise ConfigError(f"{model}: behavior_features is empty")
    missing = [n for pair in pairs for n in pair if n not in schema]
    if missing:
        raise ConfigError(f"{model}: behavior_features names {missing}, absent from the schema; known features: "
                          f"{[f.name for f in schema.features]}")
    for candidate, history in pairs:
        if not isinstance(schema[history], SequenceFeature):
            raise ConfigError(f"{model}: behaviour feature '{history}' is not a sequence feature")
        if schema[candidate].kind in ("sequence", "dense"):
            raise ConfigError(f"{model}: candidate feature '{candidate}' must be a single id feature")
        if schema[candidate].table != schema[history].table:
            raise ConfigError(f"{model}: candidate '{candidate}' (table '{schema[candidate].table}') and history "
                              f"'{history}' (table '{schema[history].table}') must share one table")
        if candidate not in features:
            raise ConfigError(f"{model}: candidate feature '{candidate}' is not among features {features}")
    lengths = {schema[h].max_len for _, h in pairs}
    if len(lengths) > 1:
        raise ConfigError(f"{model}: aligned histories {[h for _, h in pairs]} must have one max_len, got {lengths}")
    return pairs


def behavior_tensors(embedded: EmbeddedFeatures, pairs: list[tuple[str, str]]
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidates and histories of aligned behaviour pairs, concatenated per position.

    ``pairs`` as from :func:`pair_behaviors`; ``E = sum of the pairs' dims``.
    Returns ``candidate [B, E]``, ``history [B, L, E]`` and the first history's mask ``[B, L]``.
    """
    candidate = torch.cat([embedded.pooled[c] for c, _ in pairs], dim=-1)
    history = torch.cat([embedded.sequences[h] for _, h in pairs], dim=-1)
    return candidate, history, embedded.masks[pairs[0][1]]


def history_length(schema: Schema, pairs: list[tuple[str, str]], max_len: Optional[int], model: str) -> int:
    """The history positions a model reads: its ``max_len`` (at most the history's) or the history's ``max_len``."""
    stored = schema[pairs[0][1]].max_len
    if max_len is None:
        return stored
    if isinstance(max_len, bool) or not isinstance(max_len, int) or not 1 <= max_len <= stored:
        raise ConfigError(f"{model}: max_len must be an integer in [1, {stored}] (the history's max_len), "
                          f"got {max_len!r}")
    return max_len
