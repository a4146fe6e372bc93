"""Behaviour sequences with item categories (Taobao, Amazon): what the two converters share.

Output (see :mod:`~bigrec.data.converters.sequences` for the histories and splits)::

    OUTPUT/ranking/   user_id, item_id, category_id, hist_item_ids, hist_category_ids, label, timestamp
                      (DIN / DIEN / BST: each event a positive, plus --negatives sampled items, label 0)
    OUTPUT/recall/    user_id, item_id, category_id, hist_item_ids, hist_category_ids, timestamp
                      + items.parquet (item_id, category_id of every item)

``item_id`` / ``hist_item_ids`` share the table ``item``, ``category_id`` /
``hist_category_ids`` the table ``category``; an item's category is the one it
carries in the data (``category_of``), also for sampled negatives.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from bigrec.data.converters.events import EventSource, SequencePlan
from bigrec.data.converters.sequences import RANKING_SPLIT, RECALL_SPLIT, SequenceRows
from bigrec.data.converters.vocab import Vocabulary
from bigrec.features import Schema, SequenceFeature, SparseFeature

VOCAB_FEATURES = {"user_id": ["user_id"], "item_id": ["item_id", "hist_item_ids"],
                  "category_id": ["category_id", "hist_category_ids"]}
DEFAULTS = {"vocab": {"default": {"min_count": 1}, "features": {}}, "dense": {"default": {}, "features": {}}}


def add_arguments(parser, positive_int) -> None:
    parser.add_argument("--history-len", type=positive_int, default=50, help="events kept in the histories (default 50)")
    parser.add_argument("--negatives", type=int, default=1,
                        help="sampled negative items per event in ranking/ (default 1; 0 = positives only)")


def schemas(vocabs: dict[str, Vocabulary], embedding_dim: int, history_len: int, metadata: dict) -> dict[str, Schema]:
    items, categories = vocabs["item_id"], vocabs["category_id"]
    features = [
        SparseFeature("user_id", vocabs["user_id"].size, embedding_dim, side="user"),
        SparseFeature("item_id", items.size, embedding_dim, table="item", side="item"),
        SparseFeature("category_id", categories.size, embedding_dim, table="category", side="item"),
        SequenceFeature("hist_item_ids", items.size, embedding_dim, table="item", max_len=history_len),
        SequenceFeature("hist_category_ids", categories.size, embedding_dim, table="category", max_len=history_len),
    ]
    meta = dict(metadata, id_mapping="0 = padding / missing; see vocabularies for first_id and oov_id")
    return {"ranking": Schema(list(features), labels=["label"], metadata=dict(meta)),
            "recall": Schema(list(features), labels=[], metadata=dict(meta))}


def rows_and_catalogue(vocabs: dict[str, Vocabulary], category_of: np.ndarray, history_len: int,
                       event_columns: dict) -> tuple[SequenceRows, pa.Table]:
    items = vocabs["item_id"]
    rows = SequenceRows(history_len, items.size, items.first_id, item_attributes={"category_id": category_of},
                        history={"hist_item_ids": "item_id", "hist_category_ids": "category_id"},
                        event_columns=event_columns)
    ids = np.arange(items.first_id, items.size, dtype=np.int64)
    return rows, pa.table({"item_id": pa.array(ids), "category_id": pa.array(category_of[ids])})


def plan(source: EventSource, key_kinds: dict[str, str], keep: list[str], negatives: int, build) -> SequencePlan:
    if negatives < 0:
        from bigrec.errors import ConfigError

        raise ConfigError(f"--negatives must be >= 0, got {negatives}")
    id_columns = {"user_id": ("user", "user_id"), "item_id": ("item", "item_id")}
    if "category" in source.vocab_columns:
        id_columns["category_id"] = ("category", "category_id")
    return SequencePlan(source, key_kinds, VOCAB_FEATURES, id_columns, keep,
                        [(*RANKING_SPLIT[:2], negatives, RANKING_SPLIT[2]), (*RECALL_SPLIT[:2], 0, RECALL_SPLIT[2])],
                        build)
