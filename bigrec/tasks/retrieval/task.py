"""The ``retrieval`` task: losses for training, full-ranking metrics for evaluation.

Options (``task.options`` in the run config):

=================== ============ ==========================================================
``loss``            ``auto``     a loss of :data:`~bigrec.tasks.retrieval.losses.LOSSES`
                                 (``full``, ``sampled``, ``margin``, ``bpr_max``,
                                 ``top1_max``), or ``auto``: full
                                 softmax up to ``full_softmax_max_items`` items, else sampled
``full_softmax_max_items`` 100000
``num_negatives``   ``0``        extra sampled negatives per step (all but full)
``margin``          ``0.1``      margin of the ``margin`` loss
``hard_negatives``  ``false``    ``margin``: hardest candidate as the negative (mined online)
``random_negatives`` ``1``       ``margin``: random negatives per row otherwise (the mean of their
                                 triplets), drawn from the in-batch and sampled candidates
``mining``          ``online``   ``offline``: ``margin`` adds a negative per row drawn from its
                                 user's ``mined_count`` items ranked from ``mined_start`` by the
                                 model, mined before every epoch but the first (``mining.py``);
                                 its triplet weighs ``mined_weight`` (1.0) beside the random one
``bpr_reg``         ``1.0``      ``bpr_max``: weight of the score regularisation
``negative_sampler`` ``uniform`` ``uniform`` over items or ``popularity`` (online counts)
``log_q``           ``true``     log-Q correction of sampled softmax
``temperature``     model's      logits are ``u·v / temperature``
``padding_item``    ``0``        an id that is never a candidate (``null``: none)
``ks``              5,10,20,50   cut-offs of Recall/NDCG/HitRate/MRR@K
``eval_chunk_users`` ``1024``    users scored per matrix product in evaluation
``user_feature``    ``user_id``  the user id feature that keys each user's seen items
=================== ============ ==========================================================

**Data.** Built with the run's data config, the task loads the item catalogue
the schema names (``items.parquet``, :mod:`bigrec.data.catalogue`) and hands it
to the model in :meth:`RetrievalTask.wrap` when its item tower reads item
features; and it builds each user's seen items from the splits before the
evaluated one (:mod:`bigrec.data.seen`): full-ranking metrics exclude them for
every model alike.

**Full softmax with a sharded item table.** Every rank looks up its contiguous
slice of item ids through the model's (sharded) ``EmbeddingCollection``, then
the slices are all-gathered (gradients flow back: the backward all-reduces the
gradient and keeps this rank's slice), so every rank scores its rows against
all items while each row of the table is looked up once per rank-step.

**Sampled softmax** uses the other rows' targets as negatives plus
``num_negatives`` extra ids; the item frequencies behind log-Q are counted
online from every rank's targets (a checkpointed buffer, the same on every
rank), which needs no pass over the data. One correction serves the mixed
proposal: ``log(B p_j + M r_j)`` for every candidate (``p``: target frequency,
``r``: the sampler's distribution).

**One-pass sequence training**: a model output with ``position_targets`` (a user
vector per history position) is flattened to one row per real position before the
loss; as ranks hold different numbers of positions, each rank's mean is weighted by
``W n_rank / n_total`` so that training on W ranks equals one rank on the global batch.

The validation/test ``loss`` is the in-batch softmax (no correction); ranking
metrics come from :class:`~bigrec.tasks.retrieval.metrics.FullRankingMetrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.config import DataConfig, TaskConfig
from bigrec.data.catalogue import ItemCatalogue
from bigrec.data.seen import SeenItems, splits_before
from bigrec.data.sequences import interactions_file
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.output import RecallOutput
from bigrec.tasks.retrieval.losses import LOSSES, position_loss, sampled_softmax_loss
from bigrec.tasks.base import AuxiliaryLosses
from bigrec.tasks.retrieval.metrics import FullRankingMetrics, unwrap_model
from bigrec.tasks.retrieval.mining import MiningPass
from bigrec.tasks.retrieval.slices import DEFAULT_KS


@dataclass(frozen=True)
class RetrievalOptions:
    loss: str = "auto"
    margin: float = 0.1
    hard_negatives: bool = False
    random_negatives: int = 1
    bpr_reg: float = 1.0
    full_softmax_max_items: int = 100_000
    num_negatives: int = 0
    negative_sampler: str = "uniform"
    log_q: bool = True
    temperature: Optional[float] = None
    padding_item: Optional[int] = 0
    ks: tuple = DEFAULT_KS
    eval_chunk_users: int = 1024
    user_feature: str = "user_id"
    mining: str = "online"
    mined_start: int = 0
    mined_count: int = 10
    mined_weight: float = 1.0

    @classmethod
    def from_dict(cls, raw: dict) -> "RetrievalOptions":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown task.options key(s) {unknown} for the retrieval task; valid: {sorted(known)}")
        options = cls(**{k: (tuple(v) if k == "ks" else v) for k, v in raw.items()})
        if options.loss != "auto" and options.loss not in LOSSES:
            raise ConfigError(f"task.options.loss must be auto or one of {sorted(LOSSES)}, got '{options.loss}'")
        if options.negative_sampler not in ("uniform", "popularity"):
            raise ConfigError(f"task.options.negative_sampler must be uniform or popularity, "
                              f"got '{options.negative_sampler}'")
        if options.num_negatives < 0 or not options.ks or min(options.ks) < 1:
            raise ConfigError("task.options: num_negatives must be >= 0 and ks positive integers")
        if options.random_negatives < 1:
            raise ConfigError(f"task.options.random_negatives must be >= 1, got {options.random_negatives}")
        if options.bpr_reg < 0:
            raise ConfigError(f"task.options.bpr_reg must be >= 0, got {options.bpr_reg}")
        if options.temperature is not None and options.temperature <= 0:
            raise ConfigError(f"task.options.temperature must be > 0, got {options.temperature}")
        if options.mining not in ("online", "offline"):
            raise ConfigError(f"task.options.mining must be online or offline, got '{options.mining}'")
        if options.mining == "offline" and (options.loss != "margin" or options.mined_count < 1
                                            or options.mined_start < 0):
            raise ConfigError("task.options.mining: offline mines negatives for loss: margin, with mined_count >= 1 "
                              "and mined_start >= 0")
        return options


class RetrievalStep(NamedTuple):
    """An evaluation step's output: the input of :class:`FullRankingMetrics`.

    ``loss`` ``[]`` and ``terms`` detached; ``user`` ``[B, D]`` or ``[B, K, D]``;
    ``targets`` ``[B]``; ``user_ids`` ``[B]`` (whose seen items the ranking excludes).
    A training step gives ``(loss, terms)`` only.
    """

    loss: torch.Tensor
    terms: dict
    user: torch.Tensor
    targets: torch.Tensor
    user_ids: torch.Tensor


class RetrievalModule(nn.Module):
    """A recall model plus its loss, in the form TorchRec's pipelines drive.

    ``forward(batch)`` returns ``(loss, (loss detached, terms))`` in training and
    ``(loss, RetrievalStep)`` in evaluation.
    """

    def __init__(self, model, options: RetrievalOptions, aux: AuxiliaryLosses, schema: Schema) -> None:
        super().__init__()
        self.model = model
        self.options = options
        self.aux = aux
        self.user_feature = options.user_feature if options.user_feature in schema else None
        self.user_in_sequences = self.user_feature is not None and schema.in_sequence_table(self.user_feature)
        num_items = model.num_items
        name = options.loss
        if name == "auto":
            name = "full" if num_items <= options.full_softmax_max_items else "sampled"
        self.temperature = float(options.temperature or getattr(model, "temperature", 1.0))
        self.loss_fn = LOSSES[name](num_items=num_items, temperature=self.temperature,
                                    padding_item=options.padding_item, num_negatives=options.num_negatives,
                                    negative_sampler=options.negative_sampler, log_q=options.log_q,
                                    margin=options.margin, hard_negatives=options.hard_negatives,
                                    random_negatives=options.random_negatives,
                                    mining=options.mining, mined_count=options.mined_count,
                                    mined_weight=options.mined_weight,
                                    num_users=schema[self.user_feature].vocab_size if self.user_feature else 0,
                                    bpr_reg=options.bpr_reg)
        self.register_buffer("no_ids", torch.zeros(0, dtype=torch.int64), persistent=False)

    def forward(self, batch: Batch):
        targets = self.model.target_ids(batch)
        if not self.training:
            output: RecallOutput = self.model(batch, self.no_ids)
            zeros = torch.zeros(targets.shape[0], dtype=output.target.dtype, device=targets.device)
            loss = sampled_softmax_loss(output.user, output.target, targets, output.candidates, self.no_ids,
                                        zeros, zeros[:0], self.temperature)
            return loss, RetrievalStep(loss.detach(), {}, output.user.detach(), targets, self.user_ids(batch))
        candidate_ids = self.loss_fn.candidate_ids(self.user_ids(batch))
        output = self.model(batch, candidate_ids)
        if output.position_targets is None:
            loss = self.loss_fn(output, targets, candidate_ids)
        else:  # one-pass sequence training: every real position is a row
            loss = position_loss(self.loss_fn, output, candidate_ids)
        terms = {"loss/retrieval": loss.detach()}
        loss = self.aux.add(loss, output.aux_losses, terms)
        return loss, (loss.detach(), terms)

    def user_ids(self, batch: Batch) -> torch.Tensor:
        """``[B]`` the rows' user ids (``-1`` when the schema has no user id feature: nothing is excluded)."""
        if self.user_feature is None:
            return torch.full_like(self.model.target_ids(batch), -1)
        features = batch.sequence_features if self.user_in_sequences else batch.sparse_features
        return features[self.user_feature].values()


class RetrievalTask:
    """The task of ``task = "retrieval"`` models (see :mod:`bigrec.tasks.base`).

    ``data``: the run's data config, where the item catalogue and the seen items
    come from; without it (e.g. planning) no catalogue is attached and metrics
    cannot be made.
    """

    def __init__(self, model, schema: Schema, options: RetrievalOptions,
                 aux_loss_weights: Optional[dict] = None, data: Optional[DataConfig] = None) -> None:
        self.schema = schema
        self.options = options
        self.data = data
        self.num_items = model.num_items
        self.item_feature = model.item_feature
        self.aux = AuxiliaryLosses(aux_loss_weights)
        self.aux.check(getattr(model, "aux_loss_names", None))
        user = schema[options.user_feature] if options.user_feature in schema else None
        if user is not None and (user.kind != "sparse" or user.multi_valued):
            raise ConfigError(f"task.options.user_feature '{options.user_feature}' must be a single-valued id "
                              f"feature (it keys each user's seen items)")
        self.catalogue = self._load_catalogue(model) if data is not None and model.needs_catalogue else None
        self._seen: dict[tuple[str, ...], SeenItems] = {}

    @classmethod
    def from_config(cls, model, schema: Schema, config: TaskConfig,
                    data: Optional[DataConfig] = None) -> "RetrievalTask":
        return cls(model, schema, RetrievalOptions.from_dict(dict(config.options or {})), config.aux_loss_weights,
                   data)

    def _load_catalogue(self, model) -> ItemCatalogue:
        """The item catalogue the schema names (checked now, before any process group)."""
        schema_path = self.data.resolve("schema")
        catalogue = ItemCatalogue.for_schema(self.schema, schema_path, self.item_feature)
        if catalogue is None:
            raise ConfigError(f"the item tower of '{type(model).__name__.lower()}' reads {model.item_features}, "
                              f"so candidates need the item catalogue, but {schema_path} names none (metadata "
                              f"'item_catalogue'); re-prepare the data set or let the item tower read the id only")
        return catalogue

    def wrap(self, model) -> RetrievalModule:
        """The model with its loss; hands the item catalogue over when its item tower reads item features."""
        if self.catalogue is not None:
            model.attach_catalogue(self.catalogue.features)
        return RetrievalModule(model, self.options, self.aux, self.schema)

    def seen_items(self, split: str) -> SeenItems:
        """Each user's items in the splits before ``split`` (:func:`~bigrec.data.seen.splits_before`), read once."""
        if self.data is None:
            raise ConfigError("full-ranking metrics exclude each user's seen items, read from the data: build the "
                              "retrieval task with the run's data config")
        specs = tuple(interactions_file(self.schema, spec) for name in splits_before(split)
                      if (spec := self.data.resolve(name)) is not None)
        if specs not in self._seen:
            self._seen[specs] = SeenItems.from_splits(specs, self.schema, self.options.user_feature,
                                                      self.item_feature)
        return self._seen[specs]

    def make_metrics(self, sharded_model: nn.Module, device: torch.device,
                     split: str = "valid") -> FullRankingMetrics:
        model = unwrap_model(sharded_model)
        return FullRankingMetrics(model.item_vectors, self.num_items, device, self.seen_items(split),
                                  ks=self.options.ks, padding_item=self.options.padding_item,
                                  chunk_users=self.options.eval_chunk_users)

    def epoch_passes(self, sharded_model: nn.Module, device: torch.device, epoch: int) -> list[tuple[str, MiningPass]]:
        """Offline mining (``mining: offline``): a pass over the training split before every epoch but the first."""
        if self.options.mining != "offline" or epoch == 0:
            return []
        module = sharded_model
        while not isinstance(module, RetrievalModule):
            module = module.module
        seen = self.seen_items("valid").to(device)  # the users' training items
        return [("train", MiningPass(module.loss_fn.miner, module.model.item_vectors, seen, self.options.mined_start,
                                     self.options.padding_item))]

    def prediction_columns(self, step) -> dict[str, torch.Tensor]:
        raise ConfigError("predict writes per-row scores of ranking and multi-task models; for a recall model "
                          "use `bigrec export` and `bigrec retrieve`")
