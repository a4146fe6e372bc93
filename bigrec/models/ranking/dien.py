"""DIEN: Deep Interest Evolution Network (Zhou et al., AAAI 2019).

Two GRUs over the behaviour history, oldest first:

1. **Interest extractor**: a GRU over the behaviour embeddings gives one interest
   state ``h_t`` per behaviour. An *auxiliary loss* supervises each state with the
   behaviour that followed it: ``h_t`` should score the next clicked behaviour
   ``e_{t+1}`` above a negative behaviour sampled from the same table,
   ``-log s(h_t, e_{t+1}) - log(1 - s(h_t, e~_{t+1}))`` (``s``: a small MLP with a
   sigmoid), averaged over a row's real consecutive pairs, then over the rows. It is emitted
   as ``ModelOutput.aux_losses["next_behavior"]`` and weighted with
   ``task.aux_loss_weights: {next_behavior: w}``.
2. **Interest evolution**: attention of the candidate over the interest states
   (softmax over the real positions) drives a second GRU, of ``gru_type``
   ``AUGRU`` (the attention scales the update gate), ``AIGRU`` (the attention
   scales the GRU's input) or ``AGRU`` (the attention replaces the update gate).
   Its final state is the user's interest in the candidate.

Padding never reaches a result: the extractor is causal and padding sits after
the real behaviours, so every real state is computed from real inputs only;
padded states are zeroed, get no attention and take no part in the auxiliary
loss; the evolution GRU keeps its state unchanged on padded steps (masked
updates), so its final state is the state after the last real behaviour. An empty
history leaves the evolution GRU at its zero initial state.

Negatives are looked up through the model's own (possibly sharded) tables: the
first history's table (the items) gets an extra feature ``<history>__negative``
carrying one id per behaviour; the auxiliary network compares the state with that
history's embedding only (with aligned histories such as categories, a negative
whose category was drawn apart from its item would be told apart by the mismatch
alone). The ids are a hash of (behaviour id, position, candidate id, training
step), uniform over ``1 .. rows - 1`` (id 0 is padding in the data sets), so they
are the same whatever the rows' split over ranks is, and a fresh draw each step.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema, SequenceFeature
from bigrec.models.base import RecModel
from bigrec.models.embeddings import FeatureEmbeddings
from bigrec.models.inputs import DenseColumns, id_feature_names
from bigrec.models.layers import MLP
from bigrec.models.output import ModelOutput
from bigrec.models.registry import register_model
from bigrec.models.sequence import TargetAttention, behavior_tensors, history_length, keep_recent, pair_behaviors

GRU_TYPES = ("AUGRU", "AIGRU", "AGRU")
NEGATIVE_SUFFIX = "__negative"
_PRIME = 2_147_483_647  # 2^31 - 1: products of two residues fit in int64


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A non-linear scramble of int64 residues mod ``_PRIME`` (two squaring rounds)."""
    for constant in (1_234_567, 7_654_321):
        x = (x * x + constant) % _PRIME
        x = (x * 48_271 + 11) % _PRIME
    return x


@torch.fx.wrap
def append_negatives(features: KeyedJaggedTensor, history: str, rows: int, step: torch.Tensor,
                     candidate: str) -> KeyedJaggedTensor:
    """``features`` plus ``<history>__negative``: one sampled id per behaviour of ``history``.

    A negative is uniform over ``1 .. rows - 1`` and differs from the behaviour it
    stands against; it depends only on the row's own ids and ``step``, never on
    which rank or batch position holds the row.
    """
    candidate_ids = features[candidate].to_padded_dense(desired_length=1)[:, 0]  # [B], the row's (first) candidate
    jagged = features[history]
    ids, counts = jagged.values(), jagged.lengths()
    starts = torch.cumsum(counts, 0) - counts
    positions = torch.arange(ids.numel(), device=ids.device) - torch.repeat_interleave(starts, counts)
    seed = (ids % _PRIME) * 1_000_003 + positions * 7_919 + torch.repeat_interleave(candidate_ids, counts) % _PRIME
    seed = _mix((seed + step * 104_729) % _PRIME)
    negatives = 1 + seed % max(rows - 1, 1)
    negatives = torch.where(negatives == ids, 1 + negatives % max(rows - 1, 1), negatives)
    return KeyedJaggedTensor(keys=list(features.keys()) + [history + NEGATIVE_SUFFIX],
                             values=torch.cat([features.values(), negatives]),
                             lengths=torch.cat([features.lengths(), counts]), stride=features.stride())


class AttentionalGRUCell(nn.Module):
    """One step of a GRU whose update is driven by an attention score.

    ``AUGRU``: ``u' = a * u`` (the attention scales the update gate);
    ``AGRU``: ``u' = a`` (the attention replaces it). Then
    ``h' = (1 - u') * h + u' * tanh(W_n x + r * (U_n h))``.

    Shapes: ``forward(x [B, I], h [B, H], a [B, 1]) -> [B, H]``.
    """

    def __init__(self, input_size: int, hidden_size: int, gru_type: str) -> None:
        super().__init__()
        self.update_gate = gru_type == "AUGRU"
        gates = 3 if self.update_gate else 2  # reset, candidate (and update)
        self.input_map = nn.Linear(input_size, gates * hidden_size)
        self.hidden_map = nn.Linear(hidden_size, gates * hidden_size)
        self.hidden_size = hidden_size

    def forward(self, x: torch.Tensor, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        size = self.hidden_size
        xs, hs = self.input_map(x), self.hidden_map(h)
        reset = torch.sigmoid(xs[:, :size] + hs[:, :size])
        new = torch.tanh(xs[:, size:2 * size] + reset * hs[:, size:2 * size])
        update = a * torch.sigmoid(xs[:, 2 * size:] + hs[:, 2 * size:]) if self.update_gate else a
        return (1 - update) * h + update * new


class InterestEvolution(nn.Module):
    """DIEN's attention-driven GRU over the interest states, with masked updates.

    Args:
        input_size: I, width of the interest states.
        hidden_size: H.
        gru_type: ``AUGRU``, ``AIGRU`` or ``AGRU``.
        steps: L, the (fixed) history length, unrolled.

    Shapes: ``forward(states [B, L, I], attention [B, L], mask [B, L]) -> [B, H]``,
    the state after the last real step (zeros for an empty history).
    """

    def __init__(self, input_size: int, hidden_size: int, gru_type: str, steps: int) -> None:
        super().__init__()
        self.gru_type = gru_type
        self.hidden_size = hidden_size
        self.steps = steps
        self.cell = (nn.GRUCell(input_size, hidden_size) if gru_type == "AIGRU"
                     else AttentionalGRUCell(input_size, hidden_size, gru_type))

    def forward(self, states: torch.Tensor, attention: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = states.new_zeros(states.shape[0], self.hidden_size)
        for t in range(self.steps):  # a static count: no control flow on tensor values
            x, a = states[:, t], attention[:, t:t + 1]
            new = self.cell(x * a, h) if self.gru_type == "AIGRU" else self.cell(x, h, a)
            h = torch.where(mask[:, t:t + 1], new, h)  # padding leaves the state as it is
        return h


@register_model("dien")
class DIEN(RecModel):
    """Deep Interest Evolution Network over the schema's features and one behaviour history.

    Args:
        schema: data schema.
        features: non-sequence features fed to the output MLP (default: all of them);
            the candidates of ``behavior_features`` must be among them.
        behavior_features: ``{candidate: history}`` or a list of histories, each paired
            with the feature of ``features`` reading the same table (as in DIN); aligned
            histories are concatenated per position.
        interest_units: H, the width of the interest states (both GRUs).
        gru_type: ``AUGRU`` (default), ``AIGRU`` or ``AGRU``.
        hidden_units: hidden sizes of the output MLP (a 1-unit layer is added).
        attention_units: hidden sizes of the attention MLP.
        auxiliary_units: hidden sizes of the auxiliary next-behaviour MLP.
        activation: activation of the MLPs (``prelu``, ``dice``, ``relu``...).
        dropout_rates: dropout of the output MLP.
        embedding_dim: D of every table.
        max_len: history positions used, the most recent kept (default: the history's ``max_len``).

    Shapes: ``forward(batch) -> ModelOutput(logits [B], aux_losses {"next_behavior": []})``;
    ``attention(batch) -> [B, L]`` evolution attention (0 on padding).

    Example::

        model = DIEN(schema, behavior_features={"item_id": "hist_item_ids"}, interest_units=16, gru_type="AUGRU")
        output = model(batch)  # output.logits [B], output.aux_losses["next_behavior"] []
    """

    task = "ranking"
    aux_loss_names = ("next_behavior",)

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None,
                 behavior_features: Mapping[str, str] | Sequence[str] = ("hist_item_ids",),
                 interest_units: int = 32, gru_type: str = "AUGRU", hidden_units: Sequence[int] = (200, 80),
                 attention_units: Sequence[int] = (64, 16), auxiliary_units: Sequence[int] = (32,),
                 activation: str = "prelu", dropout_rates: float | Sequence[float] = 0.0, embedding_dim: int = 16,
                 max_len: Optional[int] = None, device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        names = self.resolve_features(features)
        if str(gru_type).upper() not in GRU_TYPES:
            raise ConfigError(f"dien: gru_type '{gru_type}' is not one of {list(GRU_TYPES)}")
        if not isinstance(interest_units, int) or interest_units < 1:
            raise ConfigError(f"dien: interest_units must be a positive integer (the GRU width), got {interest_units!r}")
        self.pairs = pair_behaviors(schema, names, behavior_features, "dien")
        self.max_len = history_length(schema, self.pairs, max_len, "dien")
        self.id_names = id_feature_names(schema, names)
        self.dense = DenseColumns(schema, names)
        histories = [h for _, h in self.pairs]
        self.behavior = histories[0]  # its table (the items) serves the negatives
        self.negative_rows = schema.tables[schema[self.behavior].table].num_embeddings
        self.embeddings = FeatureEmbeddings(_with_negatives(schema, self.behavior),
                                            self.id_names + histories + [self.behavior + NEGATIVE_SUFFIX],
                                            embedding_dim, device=device)
        width = sum(self.embeddings.output_dim(h) for h in histories)
        self.extractor = nn.GRU(width, interest_units, batch_first=True)
        behavior_width = self.embeddings.output_dim(self.behavior)
        self.auxiliary = nn.Sequential(MLP(interest_units + behavior_width, auxiliary_units, activation=activation),
                                       nn.Linear(int(auxiliary_units[-1]), 1))
        self.query = nn.Linear(width, interest_units)
        self.attention_unit = TargetAttention(interest_units, attention_units, activation, normalize=True)
        self.evolution = InterestEvolution(interest_units, interest_units, str(gru_type).upper(), self.max_len)
        in_dim = sum(self.embeddings.output_dim(n) for n in self.id_names) + interest_units + self.dense.out_features
        self.mlp = MLP(in_dim, hidden_units, dropout_rates, activation)
        self.head = nn.Linear(self.mlp.out_features, 1)
        self.register_buffer("step", torch.zeros((), dtype=torch.int64), persistent=False)

    def sequence(self, batch: Batch):
        """Embeddings, candidate ``[B, E]``, kept history ``[B, m, E]``, negatives ``[B, m, D]``, mask ``[B, m]``.

        ``E`` sums the dims of the aligned histories; the negatives are rows of the first
        history's table (D its dim), one per behaviour.
        """
        features = append_negatives(batch.sequence_features, self.behavior, self.negative_rows, self.step,
                                    self.pairs[0][0])
        embedded = self.embeddings(Batch(batch.dense, batch.sparse_features, features, batch.labels))
        candidate, history, mask = behavior_tensors(embedded, self.pairs)
        negatives = embedded.sequences[self.behavior + NEGATIVE_SUFFIX]
        both, mask = keep_recent(torch.cat([history, negatives], dim=-1), mask, self.max_len)
        history, negatives = both.split([history.shape[-1], negatives.shape[-1]], dim=-1)
        return embedded, candidate, history, negatives, mask

    def evolve(self, candidate: torch.Tensor, history: torch.Tensor, negatives: torch.Tensor, mask: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Interest ``[B, H]``, evolution attention ``[B, m]`` and the auxiliary loss ``[]``."""
        states = self.extractor(history)[0] * mask[:, :, None].to(history.dtype)  # [B, m, H], causal
        aux = self._next_behavior_loss(states, history, negatives, mask)
        attention = self.attention_unit(self.query(candidate), states, mask)[1]  # softmax over real positions
        return self.evolution(states, attention, mask), attention, aux

    def _next_behavior_loss(self, states: torch.Tensor, history: torch.Tensor, negatives: torch.Tensor,
                            mask: torch.Tensor) -> torch.Tensor:
        """BCE of ``s(h_t, e_{t+1}) -> 1`` and ``s(h_t, e~_{t+1}) -> 0``: mean over a row's real pairs, then
        over the rows (a row without pairs counts 0), so the loss of a batch is the mean of its rows'
        whatever its split over ranks.

        ``e`` is the first history's embedding (the behaviour's item), so the clicked and the
        sampled behaviour differ in nothing but the id.
        """
        pairs = mask[:, 1:]  # [B, m-1]: position t+1 real implies t real
        flat = pairs.reshape(-1)
        width = negatives.shape[-1]
        state = states[:, :-1].reshape(-1, states.shape[-1])[flat]
        clicked = history[:, 1:, :width].reshape(-1, width)[flat]
        sampled = negatives[:, 1:].reshape(-1, width)[flat]
        logits = self.auxiliary(torch.cat([torch.cat([state, clicked], -1), torch.cat([state, sampled], -1)], 0))
        logits = logits.squeeze(-1).reshape(2, -1)  # [2, P]: clicked, sampled
        targets = torch.stack([torch.ones_like(logits[0]), torch.zeros_like(logits[1])])
        per_pair = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(0)  # [P]
        rows = torch.arange(pairs.shape[0], device=pairs.device)[:, None].expand_as(pairs).reshape(-1)[flat]
        per_row = torch.zeros(pairs.shape[0], dtype=per_pair.dtype, device=per_pair.device).index_add(0, rows, per_pair)
        return (per_row / pairs.sum(1).clamp(min=1).to(per_pair.dtype)).mean()

    def attention(self, batch: Batch) -> torch.Tensor:
        """Evolution attention ``[B, m]`` over the kept history (softmax over real positions, 0 on padding)."""
        return self.evolve(*self.sequence(batch)[1:])[1]

    def forward(self, batch: Batch) -> ModelOutput:
        if self.training:
            self.step.add_(1)  # fresh negatives every training step
        embedded, candidate, history, negatives, mask = self.sequence(batch)
        interest, _, aux = self.evolve(candidate, history, negatives, mask)
        parts = [embedded.pooled[n] for n in self.id_names] + [interest, self.dense(batch)]
        logits = self.head(self.mlp(torch.cat(parts, dim=-1))).squeeze(-1)
        return ModelOutput(logits, aux_losses={"next_behavior": aux})


def _with_negatives(schema: Schema, history: str) -> Schema:
    """``schema`` plus a ``<history>__negative`` sequence feature on the history's table."""
    feature = schema[history]
    negatives = SequenceFeature(history + NEGATIVE_SUFFIX, feature.vocab_size, feature.embedding_dim,
                                table=feature.table, max_len=feature.max_len)
    return Schema(list(schema.features) + [negatives], labels=list(schema.labels), metadata=dict(schema.metadata))

