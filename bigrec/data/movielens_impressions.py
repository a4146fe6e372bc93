"""MovieLens-100k impressions for multi-task models (MMoE, SharedBottom...).

``prepare_impressions(source, output)`` writes ``train/valid/test.parquet`` and
``schema.json`` where every user's *impressions* are the items they rated plus
``negatives_per_rating`` times as many items they did not rate, sampled
uniformly without replacement with ``seed``. Three labels:

* ``click``      = 1 for a rated item, 0 for a sampled unrated one;
* ``conversion`` = 1 for a rating >= 4, else 0 (so conversion implies click);
* ``rating``     = the rating (1..5) of a rated item, 0 for an unrated one (a
  regression target: the value of an impression).

Rated rows are split like the ranking split of :mod:`bigrec.data.movielens`
(each user's last 10% test, the 10% before valid); unrated samples are assigned
to train/valid/test at random (80/10/10, seeded). Each split's rows are
shuffled with the seed. Features: ``user_id, item_id, gender, age, occupation,
zip3, genres, year`` (the same ids and vocabularies as the ranking data; no
history, so every table is pooled).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from bigrec.data.movielens import (
    DEFAULT_EMBEDDING_DIM,
    encode_movielens,
    ranking_split,
    read_movielens,
)
from bigrec.data.movielens import build_schema as build_movielens_schema
from bigrec.data.parquet_io import DEFAULT_ROW_GROUP_SIZE, SPLITS, write_json, write_split_dir
from bigrec.features import Schema

FEATURES = ("user_id", "item_id", "gender", "age", "occupation", "zip3", "genres", "year")
LABELS = ("click", "conversion", "rating")
UNRATED_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def sample_unrated(user: np.ndarray, item: np.ndarray, per_rating: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(users, items)``: ``round(per_rating * n_u)`` items user ``u`` did not rate, per user,
    drawn without replacement from the items that have at least one rating."""
    catalogue = np.unique(item)
    users, items = [], []
    rated = {}
    for u, i in zip(user.tolist(), item.tolist()):
        rated.setdefault(u, set()).add(i)
    for u in sorted(rated):
        pool = np.setdiff1d(catalogue, np.fromiter(rated[u], dtype=np.int64))
        k = min(len(pool), int(round(per_rating * len(rated[u]))))
        items.append(rng.choice(pool, size=k, replace=False))
        users.append(np.full(k, u, dtype=np.int64))
    return np.concatenate(users), np.concatenate(items)


def build_schema(vocab: dict, embedding_dim: int = DEFAULT_EMBEDDING_DIM, metadata: dict | None = None) -> Schema:
    """The MovieLens schema restricted to :data:`FEATURES`, with labels ``click``, ``conversion`` and ``rating``."""
    base = build_movielens_schema(vocab, history_len=1, embedding_dim=embedding_dim)
    features = [base[name] for name in FEATURES]
    # item_id shares table "item" with the (absent) history in the ranking schema; alone it is pooled
    return Schema(features, labels=list(LABELS), metadata=dict(metadata or {}))


def prepare_impressions(source: str | Path, output: str | Path, negatives_per_rating: float = 1.0, seed: int = 0,
                        row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
                        embedding_dim: int = DEFAULT_EMBEDDING_DIM) -> Schema:
    """Write the impressions data set (see the module docstring); return its schema."""
    if negatives_per_rating < 0:
        raise ValueError(f"negatives_per_rating must be >= 0, got {negatives_per_rating}")
    raw = read_movielens(source)
    encoded = encode_movielens(raw, history_len=1)
    rated = encoded.table.select(list(FEATURES) + ["rating"])
    rated_split = ranking_split(encoded.position, encoded.count)

    rng = np.random.default_rng([int(seed), 0x1A9])
    user = rated.column("user_id").to_numpy()
    item = rated.column("item_id").to_numpy()
    neg_user, neg_item = sample_unrated(user, item, negatives_per_rating, rng)
    # user features of a sampled row come from any rated row of the user, item features from the item's
    first_of_user = {u: r for r, u in reversed(list(enumerate(user.tolist())))}
    first_of_item = {i: r for r, i in reversed(list(enumerate(item.tolist())))}
    user_rows = np.array([first_of_user[u] for u in neg_user.tolist()], dtype=np.int64)
    columns = {}
    for name in FEATURES:
        source_rows = user_rows if name in ("user_id", "gender", "age", "occupation", "zip3") else None
        if source_rows is not None:
            columns[name] = rated.column(name).take(pa.array(source_rows))
    unrated = _item_columns(encoded, neg_item, first_of_item, columns)
    unrated_split = rng.choice(len(SPLITS), size=len(neg_item), p=UNRATED_SPLIT_FRACTIONS).astype(np.int8)

    rating = rated.column("rating").to_numpy()
    rated_labels = pa.table({"click": pa.array(np.ones(len(rating), np.float32)),
                             "conversion": pa.array((rating >= 4).astype(np.float32)),
                             "rating": pa.array(rating.astype(np.float32))})
    rated_rows = pa.Table.from_arrays(rated.select(list(FEATURES)).columns + rated_labels.columns,
                                      names=list(FEATURES) + list(LABELS))
    zeros = pa.array(np.zeros(len(neg_item), np.float32))
    unrated_rows = pa.Table.from_arrays([unrated[n] for n in FEATURES] + [zeros] * len(LABELS),
                                        names=list(FEATURES) + list(LABELS))
    all_rows = pa.concat_tables([rated_rows, unrated_rows.cast(rated_rows.schema)])
    codes = np.concatenate([rated_split, unrated_split])
    tables, counts = {}, {}
    for index, split in enumerate(SPLITS):
        rows = np.flatnonzero(codes == index)
        tables[split] = all_rows.take(pa.array(rng.permutation(rows)))
        counts[split] = {"rows": len(rows), **{label: int(np.sum(tables[split].column(label).to_numpy()))
                                               for label in ("click", "conversion")}}
    metadata = {"dataset": "movielens-100k-impressions", "source_layout": raw.layout, "seed": int(seed),
                "negatives_per_rating": negatives_per_rating, "counts": counts, "vocab_file": "vocab.json",
                "task_split": "rated rows: user_time_ratio_80_10_10; unrated samples: random 80/10/10"}
    schema = build_schema(encoded.vocab, embedding_dim, metadata)
    output = Path(output)
    write_split_dir(output, tables, schema, row_group_size)
    write_json(encoded.vocab, output / "vocab.json")
    return schema


def _item_columns(encoded, items: np.ndarray, first_of_item: dict, columns: dict) -> dict:
    """``columns`` plus the item-side columns (item_id, genres, year) of ``items``, read from
    each item's first rated row (sampled items always have one)."""
    table = encoded.table
    rows = np.array([first_of_item[i] for i in items.tolist()], dtype=np.int64)
    out = dict(columns)
    for name in ("item_id", "genres", "year"):
        out[name] = table.column(name).take(pa.array(rows))
    return out
