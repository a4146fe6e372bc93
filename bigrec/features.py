"""Feature schema: the single source of truth for features, tables and labels.

Every feature says which *side* it describes: ``user`` (the user and their
history), ``item`` (the candidate item and its attributes) or ``context`` (the
request: time, device, ...). Two-tower models take their towers' inputs by side,
so the candidate's own features never reach a user tower.

A :class:`Schema` lists dense, sparse (categorical, single- or multi-valued) and
sequence features plus label columns. Features name the embedding *table* they
read, so two features can share one table (``item_id`` and ``hist_item_ids``).

Placement rule (used by the data layer *and* the models, so they always agree):
a table read by any sequence feature lives in a TorchRec ``EmbeddingCollection``
and every feature reading it travels in ``Batch.sequence_features``; all other
tables live in an ``EmbeddingBagCollection`` and their features travel in
``Batch.sparse_features``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Literal, Optional, Union

from bigrec.errors import SchemaError, read_json_file

IdPolicy = Literal["error", "modulo", "hash"]
SIDES = ("user", "item", "context")
ID_POLICIES = ("error", "modulo", "hash")
POOLINGS = ("sum", "mean")


@dataclass(frozen=True)
class DenseFeature:
    """A float column; ``dim`` > 1 means a fixed-size list<float> column."""

    name: str
    dim: int = 1
    side: str = "context"
    kind: str = field(default="dense", init=False)


@dataclass(frozen=True)
class SparseFeature:
    """A categorical id column (int64) or a multi-hot list<int64> column, pooled.

    Attributes:
        vocab_size: number of rows of the table; valid ids are ``[0, vocab_size)``.
        table: table name; defaults to the feature name. Features naming the same
            table share its rows.
        multi_valued: the column is ``list<int64>`` and is pooled with ``pooling``.
        id_policy: ``error`` rejects out-of-range ids, ``modulo`` wraps them,
            ``hash`` hashes every id into range.
    """

    name: str
    vocab_size: int
    embedding_dim: int = 16
    table: str = ""
    multi_valued: bool = False
    pooling: str = "sum"
    id_policy: str = "error"
    side: str = "context"
    kind: str = field(default="sparse", init=False)

    def __post_init__(self) -> None:
        if not self.table:
            object.__setattr__(self, "table", self.name)


@dataclass(frozen=True)
class SequenceFeature:
    """A time-ordered ``list<int64>`` column (oldest first), kept unpooled.

    Histories longer than ``max_len`` keep their *most recent* ``max_len`` ids.
    """

    name: str
    vocab_size: int
    embedding_dim: int = 16
    table: str = ""
    max_len: int = 50
    id_policy: str = "error"
    side: str = "user"
    kind: str = field(default="sequence", init=False)

    def __post_init__(self) -> None:
        if not self.table:
            object.__setattr__(self, "table", self.name)


Feature = Union[DenseFeature, SparseFeature, SequenceFeature]
IdFeature = Union[SparseFeature, SequenceFeature]
_KINDS = {"dense": DenseFeature, "sparse": SparseFeature, "sequence": SequenceFeature}


@dataclass(frozen=True)
class TableSpec:
    """One embedding table and the features that read it."""

    name: str
    num_embeddings: int
    embedding_dim: int
    feature_names: tuple[str, ...]
    is_sequence: bool  # True: lives in an EmbeddingCollection


@dataclass
class Schema:
    """Features and labels of one data set.

    Example::

        schema = Schema(
            features=[SparseFeature("item_id", 1683, table="item"),
                      SequenceFeature("hist_item_ids", 1683, table="item", max_len=50),
                      DenseFeature("age")],
            labels=["click"])
    """

    features: list[Feature]
    labels: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_name: dict[str, Feature] = {}
        for feature in self.features:
            if feature.name in self._by_name:
                raise SchemaError(f"feature '{feature.name}' is declared twice")
            if isinstance(feature, (SparseFeature, SequenceFeature)):
                if feature.vocab_size <= 0:
                    raise SchemaError(f"feature '{feature.name}': vocab_size must be > 0")
                if feature.id_policy not in ID_POLICIES:
                    raise SchemaError(
                        f"feature '{feature.name}': id_policy '{feature.id_policy}' is not one of {ID_POLICIES}")
            if feature.side not in SIDES:
                raise SchemaError(f"feature '{feature.name}': side '{feature.side}' is not one of {SIDES}")
            if isinstance(feature, SparseFeature) and feature.pooling not in POOLINGS:
                raise SchemaError(f"feature '{feature.name}': pooling must be one of {POOLINGS}")
            self._by_name[feature.name] = feature
        self._tables = self._build_tables()

    # ------------------------------------------------------------------ lookups
    def __getitem__(self, name: str) -> Feature:
        try:
            return self._by_name[name]
        except KeyError:
            raise SchemaError(
                f"feature '{name}' is not in the schema; known features: {sorted(self._by_name)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    @property
    def dense(self) -> list[DenseFeature]:
        return [f for f in self.features if isinstance(f, DenseFeature)]

    @property
    def sparse(self) -> list[SparseFeature]:
        return [f for f in self.features if isinstance(f, SparseFeature)]

    @property
    def sequence(self) -> list[SequenceFeature]:
        return [f for f in self.features if isinstance(f, SequenceFeature)]

    @property
    def id_features(self) -> list[IdFeature]:
        return [f for f in self.features if not isinstance(f, DenseFeature)]

    def side(self, side: str) -> list[Feature]:
        """The features describing ``side`` (``user``, ``item`` or ``context``), in schema order."""
        if side not in SIDES:
            raise SchemaError(f"side '{side}' is not one of {SIDES}")
        return [f for f in self.features if f.side == side]

    @property
    def dense_dim(self) -> int:
        return sum(f.dim for f in self.dense)

    @property
    def tables(self) -> dict[str, TableSpec]:
        return self._tables

    def in_sequence_table(self, name: str) -> bool:
        """Whether feature ``name`` travels in ``Batch.sequence_features``."""
        return self._tables[self[name].table].is_sequence

    @property
    def pooled_keys(self) -> list[str]:
        """Keys of ``Batch.sparse_features``, in order."""
        return [f.name for f in self.id_features if not self.in_sequence_table(f.name)]

    @property
    def sequence_keys(self) -> list[str]:
        """Keys of ``Batch.sequence_features``, in order."""
        return [f.name for f in self.id_features if self.in_sequence_table(f.name)]

    def _build_tables(self) -> dict[str, TableSpec]:
        grouped: dict[str, list[IdFeature]] = {}
        for feature in self.id_features:
            grouped.setdefault(feature.table, []).append(feature)
        tables = {}
        for name, members in grouped.items():
            sizes = {f.vocab_size for f in members}
            dims = {f.embedding_dim for f in members}
            if len(sizes) > 1 or len(dims) > 1:
                raise SchemaError(
                    f"table '{name}' is read by {[f.name for f in members]} with different "
                    f"vocab sizes {sorted(sizes)} or embedding dims {sorted(dims)}")
            tables[name] = TableSpec(
                name=name,
                num_embeddings=sizes.pop(),
                embedding_dim=dims.pop(),
                feature_names=tuple(f.name for f in members),
                is_sequence=any(isinstance(f, SequenceFeature) for f in members),
            )
        return tables

    def window_stride(self) -> Optional[int]:
        """Targets per window row of the sequences layout (``train_sequences.parquet``) described in the
        metadata (``None``: every position is a target).

        Data prepared before strides existed has disjoint windows: every position a target.
        """
        layout = self.metadata.get("sequences")
        if not layout or layout.get("stride") is None or layout["stride"] >= layout["window"]:
            return None
        return int(layout["stride"])

    # ------------------------------------------------------------ manipulation
    def select(self, names: Iterable[str]) -> "Schema":
        """A schema with only ``names`` (unknown names raise a clear error)."""
        return Schema([self[n] for n in names], labels=list(self.labels), metadata=dict(self.metadata))

    def with_embedding_dim(self, dim: int) -> "Schema":
        """A copy whose tables all have ``dim`` columns."""
        features = [f if isinstance(f, DenseFeature) else replace(f, embedding_dim=dim) for f in self.features]
        return Schema(features, labels=list(self.labels), metadata=dict(self.metadata))

    # ---------------------------------------------------------------- json io
    def to_dict(self) -> dict:
        features = []
        for f in self.features:
            d = asdict(f)
            features.append(d)
        return {"features": features, "labels": list(self.labels), "metadata": self.metadata}

    @classmethod
    def from_dict(cls, data: dict) -> "Schema":
        features: list[Feature] = []
        for raw in data.get("features", []):
            raw = dict(raw)
            kind = raw.pop("kind", None)
            if kind not in _KINDS:
                raise SchemaError(f"feature {raw.get('name')!r}: unknown kind {kind!r}; use one of {list(_KINDS)}")
            try:
                features.append(_KINDS[kind](**raw))
            except TypeError as exc:
                raise SchemaError(f"feature {raw.get('name')!r}: {exc}") from None
        return cls(features, labels=list(data.get("labels", [])), metadata=dict(data.get("metadata", {})))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Schema":
        data = read_json_file(path, SchemaError, "schema")
        try:
            return cls.from_dict(data)
        except SchemaError as exc:
            raise SchemaError(f"{path}: {exc}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and self.to_dict() == other.to_dict()
