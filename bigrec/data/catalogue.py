"""The item catalogue of a recall data set: every item id with its item-side features.

A recall data set carries ``items.parquet`` next to its splits and names it in
its schema metadata, ``"item_catalogue": "items.parquet"`` (a path relative to
``schema.json``). Its columns are the item id feature and every item-side
feature of the schema (``side: item``), with the column types of the splits:
one row per item, ids unique, in any order. Ids of the item table that the file
does not list (typically the padding id 0) read as *unknown*: id 0 for a
single-valued feature, an empty list for a multi-valued one. Such an item stays a
candidate (its id embedding scores it); how many ids of ``[1, vocab_size)`` are
unlisted is printed once when the catalogue is loaded.

The preparers write it with :func:`bigrec.data.parquet_io.write_item_catalogue`.
Item towers embed the whole corpus from it (full-ranking evaluation, export)
and embed sampled candidates with it in training: the retrieval task hands
:attr:`ItemCatalogue.features` to the model (``RecallModel.attach_catalogue``),
which looks every item-tower feature up through its own (sharded) tables.

Example::

    catalogue = ItemCatalogue.for_schema(schema, "data/ml-100k/recall/schema.json")
    pieces = catalogue.lookup(torch.tensor([5, 1]))  # {"genres": (values, lengths [2]), "year": ...}
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa
import torch

from bigrec.batch import select_jagged
from bigrec.data.convert import check_arrow_schema, check_values, ids_and_lengths
from bigrec.data.stream import open_parquet
from bigrec.errors import ConfigError, DataError
from bigrec.features import Feature, Schema, SparseFeature

CATALOGUE_KEY = "item_catalogue"  # schema metadata key naming the file (written by parquet_io.write_item_catalogue)


def catalogue_columns(schema: Schema, item_feature: str = "item_id") -> list[Feature]:
    """The features an item catalogue holds: ``item_feature``, then the schema's other item-side features.

    Sequence features (histories) describe users, never an item, and are left out.
    """
    item = schema[item_feature]
    if not isinstance(item, SparseFeature) or item.multi_valued:
        raise ConfigError(f"item catalogue: '{item_feature}' must be a single-valued id feature, "
                          f"it is a {item.kind} feature")
    return [item] + [f for f in schema.features
                     if f.side == "item" and f.kind != "sequence" and f.name != item_feature]


@dataclass
class ItemCatalogue:
    """Every item's item-side id features, indexed by item id.

    Attributes:
        path: the Parquet file it was read from.
        item_feature: the item id feature.
        num_items: rows of the item table (valid ids ``[0, num_items)``).
        features: feature name -> ``(values [T] int64, lengths [num_items] int32)``, a
            jagged table whose row ``i`` holds item ``i``'s ids (id policy applied);
            a single-valued feature has one value per item.
    """

    path: str
    item_feature: str
    num_items: int
    features: dict[str, tuple[torch.Tensor, torch.Tensor]]

    def lookup(self, ids: torch.Tensor, names: Optional[Sequence[str]] = None) -> dict[str, tuple[torch.Tensor,
                                                                                               torch.Tensor]]:
        """``{name: (values, lengths [M])}`` of items ``ids`` ``[M]``: the pieces of a KJT key, in ``ids`` order."""
        names = list(self.features) if names is None else list(names)
        unknown = [n for n in names if n not in self.features]
        if unknown:
            raise ConfigError(f"{self.path}: the item catalogue has no feature(s) {unknown}; it holds "
                              f"{sorted(self.features)}")
        ids = ids.long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_items):
            raise ConfigError(f"{self.path}: item ids must lie in [0, {self.num_items})")
        return {n: select_jagged(*self.features[n], ids) for n in names}

    @classmethod
    def for_schema(cls, schema: Schema, schema_path: str | Path,
                   item_feature: str = "item_id") -> Optional["ItemCatalogue"]:
        """The catalogue ``schema``'s metadata names (relative to ``schema_path``), or ``None`` when it names none."""
        name = schema.metadata.get(CATALOGUE_KEY)
        if not name:
            return None
        return cls.load(Path(schema_path).parent / str(name), schema, item_feature)

    @classmethod
    def load(cls, path: str | Path, schema: Schema, item_feature: str = "item_id") -> "ItemCatalogue":
        """Read and check ``path`` against ``schema``; errors name the file, the column and the problem."""
        path = str(path)
        if not Path(path).is_file():
            raise DataError(path, f"file not found; the schema names it as the item catalogue "
                                  f"(metadata '{CATALOGUE_KEY}'): re-prepare the data set")
        columns = Schema(catalogue_columns(schema, item_feature))
        parquet = open_parquet(path)
        check_arrow_schema(columns, parquet.schema_arrow, path)
        try:
            table = parquet.read(columns=[f.name for f in columns.features])
        except (pa.ArrowException, OSError) as exc:
            raise DataError(path, f"cannot be read ({exc})") from None
        if table.num_rows == 0:
            raise DataError(path, "the item catalogue has no rows")
        check_values(table, columns, path)
        ones = np.ones(table.num_rows, dtype=np.int32)
        item = columns[item_feature]
        ids, _ = ids_and_lengths(table, item, ones)
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise DataError(path, f"{int((counts > 1).sum())} item id(s) appear more than once (e.g. "
                                  f"{int(unique[counts > 1][0])}); list every item once", column=item_feature)
        _report_unlisted(path, unique, item.vocab_size)
        order = torch.from_numpy(np.argsort(ids, kind="stable"))
        by_id = torch.from_numpy(ids.copy())
        features = {}
        for feature in columns.features[1:]:
            if not isinstance(feature, SparseFeature):
                continue  # dense item features: checked above, not looked up yet
            values, lengths = (torch.from_numpy(a.copy()) for a in ids_and_lengths(table, feature, ones))
            values, lengths = select_jagged(values, lengths, order)  # rows in ascending item id
            if feature.multi_valued:
                table_lengths = torch.zeros(item.vocab_size, dtype=torch.int32)
                table_lengths[by_id[order]] = lengths.int()
                features[feature.name] = (values, table_lengths)
            else:  # an unlisted item reads the unknown id 0
                table_values = torch.zeros(item.vocab_size, dtype=torch.int64)
                table_values[by_id[order]] = values
                features[feature.name] = (table_values, torch.ones(item.vocab_size, dtype=torch.int32))
        return cls(path, item_feature, item.vocab_size, features)


def _report_unlisted(path: str, listed: np.ndarray, vocab_size: int) -> None:
    """Print how many ids of ``[1, vocab_size)`` the catalogue does not list (rank 0 only; nothing when none)."""
    missing = (vocab_size - 1) - int(((listed >= 1) & (listed < vocab_size)).sum())
    if missing > 0 and int(os.environ.get("RANK", "0")) == 0:
        print(f"{path}: {missing:,} item id(s) of [1, {vocab_size:,}) are not listed; they stay candidates and "
              f"their item features read as unknown", flush=True)
