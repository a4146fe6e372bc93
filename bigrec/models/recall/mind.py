"""MIND (Li et al., 2019): multi-interest network with dynamic routing."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.embeddings import EmbeddedFeatures, FeatureEmbeddings
from bigrec.models.layers import MLP
from bigrec.models.recall import RecallModel, RecallOutput
from bigrec.models.registry import register_model
from bigrec.models.sequence import keep_recent


def squash(z: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Capsule squash ``|z|^2 / (1 + |z|^2) * z / |z|`` over the last dim (0 stays 0): ``[..., H] -> [..., H]``."""
    norm2 = (z * z).sum(dim=-1, keepdim=True)
    return z * (norm2 / (1.0 + norm2) / torch.sqrt(norm2 + eps))


@register_model("mind")
class MIND(RecallModel):
    """Behaviour-to-interest dynamic routing: K interest vectors per user, scored by their best match.

    The history's item embeddings ``e_i`` (the item table, shared with the target)
    pass through one shared bilinear map ``S`` (``u_i = S e_i``, the same ``S`` for
    every interest capsule). ``routing_iterations`` rounds of dynamic routing give
    the K capsules: ``w_ki = softmax_k(b_ki)`` (padding behaviours weigh 0),
    ``c_k = squash(sum_i w_ki u_i)``, ``b_ki += <c_k, u_i>``. The routing logits
    start from fixed Gaussian values (a buffer, so runs and ranks agree) and carry no
    gradient: only the last round's ``c_k`` back-propagates, through ``w`` held
    constant and ``u_i``. With ``dynamic_interests`` a user with ``n`` behaviours
    gets ``K_u = max(1, min(K, floor(log2 n)))`` capsules (the paper's rule); the
    others repeat capsule 0, so they change no score.

    Each capsule, concatenated with the pooled ``user_features``, goes through the
    H-layer (ReLU MLP of ``hidden_size``, linear output of ``embedding_dim``) to an
    interest vector ``v_k`` in the item space. Training: label-aware attention
    ``a = softmax_k(attention_power * <v_k, e_target>)`` (``attention_power`` large
    = hard attention) gives one user vector ``sum_k a_k v_k`` for the row's target
    (``user [B, D]``; the sampled softmax of the retrieval task scores it against
    every candidate). Evaluation, export and retrieval: ``user [B, K, D]``, an
    item's score is its best interest's (the K top-K lists merged).

    Args:
        schema: data schema (leave-last-out recall layout).
        item_num: number of item ids (default: the item table's size; must match it).
        num_interests: K, interest capsules per user (>= 1; 1 is the single-vector ablation).
        routing_iterations: rounds of dynamic routing (>= 1).
        hidden_size: H, capsule width and H-layer width.
        embedding_dim: D of the item table, and of the interest vectors (divisible by 4).
        dynamic_interests: adapt K to the history length (see above).
        attention_power: sharpness of the label-aware attention (> 0).
        user_features: pooled user-side id features concatenated to every capsule (default none).
        max_len: history positions routed (most recent kept; default the history's ``max_len``).
        item_feature, history_feature: column names.

    Shapes: ``forward(batch, candidate_ids [M]) -> RecallOutput(user [B, D] (training) or [B, K, D],
    target [B, D], candidates [M, D])``.

    Example::

        model = MIND(schema, num_interests=4, routing_iterations=3, hidden_size=32, embedding_dim=16)
        model.eval()
        interests = model(batch, torch.zeros(0, dtype=torch.int64)).user  # [B, 4, 16]
    """

    def __init__(self, schema: Schema, item_num: Optional[int] = None, num_interests: int = 4,
                 routing_iterations: int = 3, hidden_size: int = 64, embedding_dim: int = 32,
                 dynamic_interests: bool = False, attention_power: float = 1.0,
                 user_features: Sequence[str] = (), max_len: Optional[int] = None, item_feature: str = "item_id",
                 history_feature: str = "hist_item_ids", device: Optional[torch.device] = None) -> None:
        super().__init__(schema, item_feature, history_feature)
        if item_num is not None and int(item_num) != self.num_items:
            raise ConfigError(f"mind: item_num={item_num} but the item table has {self.num_items} rows")
        if int(num_interests) < 1:
            raise ConfigError(f"mind: num_interests must be >= 1, got {num_interests}")
        if int(routing_iterations) < 1:
            raise ConfigError(f"mind: routing_iterations must be >= 1, got {routing_iterations}")
        if embedding_dim % 4 or hidden_size < 1:
            raise ConfigError(f"mind: embedding_dim={embedding_dim} must be divisible by 4 and hidden_size >= 1")
        if attention_power <= 0:
            raise ConfigError(f"mind: attention_power must be > 0, got {attention_power}")
        self.user_features = self.resolve_features(list(user_features))
        bad = [n for n in self.user_features if schema[n].side != "user" or schema[n].kind != "sparse"]
        if bad:
            raise ConfigError(f"mind: user_features must be single id features of side 'user', got {bad}")
        self.num_interests = int(num_interests)
        self.routing_iterations = int(routing_iterations)
        self.dynamic_interests = bool(dynamic_interests)
        self.attention_power = float(attention_power)
        self.max_len = int(max_len or schema[history_feature].max_len)
        self.embeddings = FeatureEmbeddings(self.lookup_schema, [item_feature, history_feature] + self.candidates.keys
                                            + self.user_features, embedding_dim=embedding_dim, device=device)
        self.bilinear = nn.Linear(embedding_dim, hidden_size, bias=False)  # S, shared by all capsules
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("routing_init", torch.randn(self.num_interests, self.max_len, generator=generator))
        profile = len(self.user_features) * embedding_dim
        self.h_layer = nn.Sequential(MLP(hidden_size + profile, [hidden_size]), nn.Linear(hidden_size, embedding_dim))
        self.register_buffer("capsule_index", torch.arange(self.num_interests), persistent=False)

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        return self.item_inputs(ids)[0]

    def capsule_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """``[B, m]`` behaviour mask -> ``[B, K]`` bool: capsules in use (all K unless ``dynamic_interests``)."""
        count = mask.sum(dim=1)  # [B]
        if self.dynamic_interests:
            used = torch.floor(torch.log2(count.clamp(min=1).to(torch.float32))).clamp(min=1, max=self.num_interests)
        else:
            used = torch.full_like(count, self.num_interests)
        return self.capsule_index[None, :] < used[:, None]

    def route(self, history: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dynamic routing: ``[B, L, D]`` history, ``[B, L]`` mask -> capsules ``[B, K, H]``, capsule mask ``[B, K]``."""
        items, mask = keep_recent(history, mask, self.max_len)
        behaviours = self.bilinear(items)  # [B, m, H]
        fixed = behaviours.detach()
        capsules_used = self.capsule_mask(mask)
        real = mask[:, None, :].to(behaviours.dtype)  # [B, 1, m]
        logits = self.routing_init[None, :, :] + torch.zeros_like(real)  # [B, K, m]
        absent = ~capsules_used[:, :, None]
        capsules = behaviours  # replaced by every round (routing_iterations >= 1)
        for step in range(self.routing_iterations):
            weights = torch.softmax(logits.masked_fill(absent, float("-inf")), dim=1) * real  # [B, K, m]
            last = step == self.routing_iterations - 1
            capsules = squash(torch.bmm(weights, behaviours if last else fixed))  # [B, K, H]
            if not last:
                logits = logits + torch.bmm(capsules, fixed.transpose(1, 2))
        return capsules, capsules_used

    def interests(self, embedded: EmbeddedFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """Interest vectors ``[B, K, D]`` (unused capsules repeat capsule 0) and the capsule mask ``[B, K]``."""
        capsules, used = self.route(embedded.sequences[self.history_feature], embedded.masks[self.history_feature])
        if self.user_features:
            profile = torch.cat([embedded.pooled[n] for n in self.user_features], dim=1)  # [B, P]
            capsules = torch.cat([capsules, profile[:, None, :].expand(-1, self.num_interests, -1)], dim=2)
        vectors = self.h_layer(capsules)  # [B, K, D]
        return torch.where(used[:, :, None], vectors, vectors[:, :1, :]), used

    def label_attention(self, interests: torch.Tensor, used: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[B, K]`` weights of the interests for each row's target ``[B, D]`` (unused capsules weigh 0)."""
        scores = (interests * target[:, None, :]).sum(dim=-1) * self.attention_power
        return torch.softmax(scores.masked_fill(~used, float("-inf")), dim=1)

    def forward(self, batch: Batch, candidate_ids: torch.Tensor) -> RecallOutput:
        inputs = self.candidates.embed(self.embeddings, batch, candidate_ids)
        target = inputs.targets[0]
        interests, used = self.interests(inputs.batch)
        if self.training:  # the target picks its interest (label-aware attention)
            user = (self.label_attention(interests, used, target)[:, :, None] * interests).sum(dim=1)
        else:
            user = interests
        return RecallOutput(user, target, inputs.candidates[0])
