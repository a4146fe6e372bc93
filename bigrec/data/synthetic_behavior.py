"""Synthetic behaviour-sequence click data for DIN-like models, with a planted signal.

``generate_behavior(output_dir, rows)`` writes ``train/valid/test.parquet`` and
``schema.json`` with columns::

    user_id       int64     a random user bucket (no signal; an EmbeddingBagCollection table)
    item_id       int64     the candidate item              (table "item")
    item_cat      int64     the candidate's category        (table "cat")
    hist_item_ids list<int> the user's history, oldest first (table "item"), possibly empty
    hist_cat_ids  list<int> the categories of the history   (table "cat"), aligned with it
    label         float32   0/1

Items ``1..num_items`` are grouped into ``num_categories`` categories (id 0 is
padding). Each row draws 1-3 "interest" categories, a history of 0..max_len
items from them, and a candidate that comes from an interest category with
probability 1/2. The label is ``Bernoulli(sigmoid(strength * (2 m - 1)))`` where
``m = 1`` when the candidate's category occurs in the history. By construction
the candidate alone carries no signal (every item is equally likely to match),
so a model that ignores the history sits at AUC 0.5 while the Bayes AUC
(recorded as ``bayes_auc_estimate``) is about 0.85 with the defaults.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from bigrec.data.parquet_io import SPLITS, write_split_dir
from bigrec.data.synthetic import roc_auc, split_sizes
from bigrec.features import Schema, SequenceFeature, SparseFeature

GENERATOR = "synthetic_behavior_v1"
LABEL = "label"


def build_schema(num_items: int, num_categories: int, num_users: int, max_len: int, embedding_dim: int = 16,
                 metadata: dict | None = None) -> Schema:
    """Candidate and history share the tables ``item`` and ``cat``."""
    features = [
        SparseFeature("user_id", num_users, embedding_dim, side="user"),
        SparseFeature("item_id", num_items + 1, embedding_dim, table="item", side="item"),
        SparseFeature("item_cat", num_categories + 1, embedding_dim, table="cat", side="item"),
        SequenceFeature("hist_item_ids", num_items + 1, embedding_dim, table="item", max_len=max_len),
        SequenceFeature("hist_cat_ids", num_categories + 1, embedding_dim, table="cat", max_len=max_len),
    ]
    return Schema(features, labels=[LABEL], metadata=dict(metadata or {}))


def list_array(values: np.ndarray, lengths: np.ndarray) -> pa.ListArray:
    """One list per row: ``values`` split by ``lengths`` (int64 lists)."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.astype(np.int64), pa.int64()))


def sample_rows(rng: np.random.Generator, n: int, num_items: int, num_categories: int, num_users: int,
                max_len: int, strength: float, empty_fraction: float) -> tuple[pa.Table, np.ndarray]:
    """``n`` rows and their planted logits."""
    category_of = 1 + (np.arange(num_items) % num_categories)  # item i+1 -> category
    items_by_cat = [np.flatnonzero(category_of == c) + 1 for c in range(1, num_categories + 1)]
    per_cat = min(len(items) for items in items_by_cat)
    table_by_cat = np.stack([items[:per_cat] for items in items_by_cat])  # [C, per_cat]

    num_interests = rng.integers(1, 4, n)
    interests = np.stack([rng.permutation(num_categories)[:3] + 1 for _ in range(n)])  # [n, 3]
    lengths = rng.integers(1, max_len + 1, n)
    lengths[rng.random(n) < empty_fraction] = 0
    row_of = np.repeat(np.arange(n), lengths)
    picked = interests[row_of, rng.integers(0, 3, row_of.size) % num_interests[row_of]]
    hist_items = table_by_cat[picked - 1, rng.integers(0, per_cat, row_of.size)]
    hist_cats = category_of[hist_items - 1]

    from_interest = rng.random(n) < 0.5
    cand_cat = np.where(from_interest, interests[np.arange(n), rng.integers(0, 3, n) % num_interests],
                        rng.integers(1, num_categories + 1, n))
    cand_item = table_by_cat[cand_cat - 1, rng.integers(0, per_cat, n)]
    match = np.zeros(n, dtype=bool)
    hit = hist_cats == cand_cat[row_of]
    np.logical_or.at(match, row_of[hit], True)
    logits = strength * (2.0 * match - 1.0)
    return behavior_table(rng, logits, num_users, cand_item, cand_cat, hist_items, hist_cats, lengths), logits


def behavior_table(rng: np.random.Generator, logits: np.ndarray, num_users: int, cand_item: np.ndarray,
                   cand_cat: np.ndarray, hist_items: np.ndarray, hist_cats: np.ndarray,
                   lengths: np.ndarray) -> pa.Table:
    """The columns of the behaviour layout; labels ``Bernoulli(sigmoid(logits))``, random user buckets."""
    n = len(logits)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return pa.table({
        "user_id": pa.array(rng.integers(0, num_users, n), pa.int64()),
        "item_id": pa.array(cand_item, pa.int64()),
        "item_cat": pa.array(cand_cat, pa.int64()),
        "hist_item_ids": list_array(hist_items, lengths),
        "hist_cat_ids": list_array(hist_cats, lengths),
        LABEL: pa.array(labels, pa.float32()),
    })


def write_behavior_splits(output_dir: str | Path, rows: int, sample, schema_shape: dict, metadata: dict, seed: int,
                          valid_fraction: float, test_fraction: float, embedding_dim: int,
                          row_group_size: int) -> Schema:
    """Draw each split with ``sample(rng, n) -> (table, planted logits)``, write it with its schema.

    ``schema_shape``: ``num_items``, ``num_categories``, ``num_users``, ``max_len`` (see :func:`build_schema`);
    the metadata gain the seed, the split sizes and the Bayes AUC of the planted logits on test.
    """
    sizes = split_sizes(int(rows), valid_fraction, test_fraction)
    tables, aucs = {}, {}
    for index, split in enumerate(SPLITS):
        rng = np.random.default_rng([int(seed), index])
        tables[split], logits = sample(rng, sizes[split])
        aucs[split] = roc_auc(logits, tables[split].column(LABEL).to_numpy()) if sizes[split] else None
    metadata = {**metadata, "seed": int(seed), "rows": sizes,
                "bayes_auc_estimate": round(aucs["test"], 4) if aucs["test"] is not None else None}
    schema = build_schema(embedding_dim=embedding_dim, metadata=metadata, **schema_shape)
    write_split_dir(output_dir, tables, schema, row_group_size)
    return schema


def generate_behavior(output_dir: str | Path, rows: int, num_items: int = 1000, num_categories: int = 20,
                      num_users: int = 1000, max_len: int = 20, strength: float = 1.5,
                      empty_fraction: float = 0.05, seed: int = 0, valid_fraction: float = 0.1,
                      test_fraction: float = 0.1, embedding_dim: int = 16, row_group_size: int = 8192) -> Schema:
    """Write the data set (see the module docstring) and return its schema."""
    if num_items < num_categories or num_categories < 2:
        raise ValueError(f"need num_items >= num_categories >= 2, got {num_items} items, {num_categories} categories")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    shape = {"num_items": num_items, "num_categories": num_categories, "num_users": num_users, "max_len": max_len}
    metadata = {"generator": GENERATOR, **shape, "strength": strength, "empty_fraction": empty_fraction,
                "signal": "label depends only on whether item_cat occurs in hist_cat_ids"}
    return write_behavior_splits(
        output_dir, rows, lambda rng, n: sample_rows(rng, n, num_items, num_categories, num_users, max_len, strength,
                                                     empty_fraction),
        shape, metadata, seed, valid_fraction, test_fraction, embedding_dim, row_group_size)
