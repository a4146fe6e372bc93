"""DSSM two-tower recall (Huang et al., 2013; the in-batch-softmax form of Yi et al., 2019)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.embeddings import FeatureEmbeddings
from bigrec.models.layers import MLP
from bigrec.models.recall import RecallModel, RecallOutput
from bigrec.models.registry import register_model
from bigrec.models.sequence import masked_mean


@register_model("dssm")
class DSSM(RecallModel):
    """User and item towers (MLPs over pooled embeddings), L2-normalised, scored by cosine / temperature.

    The user tower reads ``user_features``: id features pooled as usual, and a
    sequence feature (e.g. ``hist_item_ids``) as the masked mean of its item
    embeddings (an order-free summary of the history). The item tower reads
    ``item_features``: the item id's row of the item table (shared with the
    history) and item-side id features such as ``genres`` and ``year``. Targets
    read them from the batch, candidates (sampled negatives, the whole corpus in
    full ranking and export) from the item catalogue, all through the model's
    (sharded) tables. By default each tower reads its own side of the schema, so
    no item-side feature (the candidate's own ``genres``) reaches the user tower.
    Trained with in-batch negatives (plus optional sampled ones), temperature and
    log-Q correction (the retrieval task).

    Args:
        schema: data schema (leave-last-out recall layout).
        user_features: user tower inputs (default: the schema's user-side id features).
        item_features: item tower inputs, ``item_feature`` first or anywhere (default:
            the schema's item-side id features).
        hidden_units: tower MLP sizes (both towers); the last is the output dim.
        dropout_rates: one rate or one per layer.
        embedding_dim: D of every table (divisible by 4).
        temperature: logits are ``cos(u, v) / temperature``.
        activation: MLP activation.
        item_feature: the target item id column.

    Shapes: ``forward(batch, candidate_ids [M]) -> RecallOutput(user [B, H], target [B, H], candidates [M, H])``.

    Example::

        model = DSSM(schema, user_features=["user_id", "hist_item_ids"], item_features=["item_id", "genres"],
                     hidden_units=[64, 32])
        model.attach_catalogue(catalogue.features)  # genres of every item (bigrec.data.catalogue)
        vectors = model(batch, torch.arange(10))
    """

    def __init__(self, schema: Schema, user_features: Optional[Sequence[str]] = None,
                 item_features: Optional[Sequence[str]] = None, hidden_units: Sequence[int] = (128, 64),
                 dropout_rates: float | Sequence[float] = 0.0, embedding_dim: int = 32, temperature: float = 0.05,
                 activation: str = "relu", item_feature: str = "item_id",
                 device: Optional[torch.device] = None) -> None:
        if user_features is None:  # the user side only: the candidate's own features never reach the user tower
            user_features = _side_features(schema, "user", "user_features")
        if item_features is None:
            item_features = _side_features(schema, "item", "item_features")
        user_features = list(user_features)
        item_table = schema[item_feature].table if item_feature in schema else None
        histories = [n for n in user_features if n in schema and schema[n].kind == "sequence"
                     and schema[n].table == item_table]
        super().__init__(schema, item_feature, histories[0] if histories else None, item_features)
        self.resolve_features(user_features)
        leaks = [n for n in user_features if n in self.item_features]
        if leaks:
            raise ConfigError(f"dssm: {leaks} are item tower inputs; the target's features cannot be user features")
        if temperature <= 0:
            raise ConfigError(f"dssm: temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.user_features = [n for n in user_features if schema[n].kind != "dense"]
        if len(self.user_features) != len(user_features):
            raise ConfigError("dssm: dense user features are not supported yet; use id or sequence features")
        self.embeddings = FeatureEmbeddings(self.lookup_schema,
                                            self.user_features + self.item_features + self.candidates.keys,
                                            embedding_dim=embedding_dim, device=device)
        self.sequence_names = {n for n in self.user_features if schema[n].kind == "sequence"}
        self.user_tower = _tower(len(self.user_features) * embedding_dim, hidden_units, dropout_rates, activation)
        self.item_tower = _tower(len(self.item_features) * embedding_dim, hidden_units, dropout_rates, activation)

    def _item_vectors(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Per item-tower feature ``[n, D]`` -> ``[n, H]`` normalised item vectors."""
        return F.normalize(self.item_tower(torch.cat(inputs, dim=1)), dim=-1)

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        return self._item_vectors(self.item_inputs(ids))

    def forward(self, batch: Batch, candidate_ids: torch.Tensor) -> RecallOutput:
        inputs = self.candidates.embed(self.embeddings, batch, candidate_ids)
        embedded = inputs.batch
        fields = [masked_mean(embedded.sequences[name], embedded.masks[name]) if name in self.sequence_names
                  else embedded.pooled[name] for name in self.user_features]
        user = F.normalize(self.user_tower(torch.cat(fields, dim=1)), dim=-1)
        return RecallOutput(user, self._item_vectors(inputs.targets), self._item_vectors(inputs.candidates))


def _side_features(schema: Schema, side: str, parameter: str) -> list[str]:
    """The schema's id features describing ``side``; an error naming ``parameter`` when there is none."""
    names = [f.name for f in schema.id_features if f.side == side]
    if not names:
        raise ConfigError(f"dssm: the schema marks no id feature as side '{side}'; set model.{parameter}")
    return names


def _tower(in_features: int, hidden_units: Sequence[int], dropout_rates: float | Sequence[float],
           activation: str) -> nn.Module:
    """MLP whose last layer is linear (its output is normalised, not activated): ``[B, in] -> [B, H]``."""
    hidden_units = [int(u) for u in hidden_units]
    if not hidden_units:
        raise ConfigError("dssm: hidden_units must name at least the output size")
    if len(hidden_units) == 1:
        return nn.Linear(in_features, hidden_units[0])
    rates = dropout_rates if isinstance(dropout_rates, (int, float)) else list(dropout_rates)[:-1]
    body = MLP(in_features, hidden_units[:-1], rates, activation)
    return nn.Sequential(body, nn.Linear(body.out_features, hidden_units[-1]))
