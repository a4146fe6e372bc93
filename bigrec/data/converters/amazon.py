"""Amazon reviews 5-core (JSON lines) + item metadata -> behaviour sequences with item categories.

``--source`` is a directory with one reviews file ``*_5.json`` (``reviews_Books_5.json``
of the 2014 release or ``Books_5.json`` of 2018, optionally ``.gz``) and one
metadata file ``meta_*.json`` (2014: one Python-literal dict per line with
``categories``, a list of category paths; 2018: JSON with ``category``, a path).
A review is an event: ``reviewerID`` (user), ``asin`` (item), ``unixReviewTime``,
``overall`` (kept as ``rating``). An item's category is the last (most specific)
entry of its first category path (DIEN's convention); items without metadata
get category 0. Output: :mod:`~bigrec.data.converters.behaviour`.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from bigrec.data.converters import behaviour
from bigrec.data.converters.badinput import BadInput
from bigrec.data.converters.events import EventSource, run_sequences
from bigrec.data.converters.keys import str_keys
from bigrec.data.converters.textio import Block, parse_json_lines, text_blocks
from bigrec.data.converters.vocab import Vocabulary, VocabSpec
from bigrec.errors import DataError

REVIEW_SCHEMA = pa.schema([("reviewerID", pa.string()), ("asin", pa.string()), ("unixReviewTime", pa.int64()),
                           ("overall", pa.float64())])


def find_files(source: Path) -> tuple[Path, Path]:
    """``(reviews, metadata)`` in ``source``; a DataError names what is missing."""
    if not source.is_dir():
        raise DataError(str(source), "source directory not found")
    reviews = sorted(p for p in source.iterdir() if p.name.endswith(("_5.json", "_5.json.gz")))
    metas = sorted(p for p in source.iterdir() if p.name.startswith("meta_") and p.name.endswith((".json", ".json.gz")))
    for found, what in ((reviews, "a 5-core reviews file *_5.json (e.g. reviews_Books_5.json)"),
                        (metas, "a metadata file meta_*.json (e.g. meta_Books.json)")):
        if len(found) != 1:
            listed = f" (found {', '.join(p.name for p in found)})" if found else ""
            raise DataError(str(source), f"expected exactly one {what}{listed}")
    return reviews[0], metas[0]


def parse_reviews(block: Block, bad: BadInput) -> tuple[pa.Table, np.ndarray]:
    table, lines = parse_json_lines(block, REVIEW_SCHEMA, bad)
    missing = np.zeros(table.num_rows, dtype=bool)
    for name in ("reviewerID", "asin", "unixReviewTime"):
        column = table.column(name)
        missing |= ~column.is_valid().to_numpy(zero_copy_only=False)
    bad.report(block.path, lines[missing], "a review without reviewerID, asin or unixReviewTime")
    table, lines = table.filter(pa.array(~missing)), lines[~missing]
    return pa.table({"user": pa.array(str_keys(table.column("reviewerID"))[0]),
                     "item": pa.array(str_keys(table.column("asin"))[0]),
                     "timestamp": table.column("unixReviewTime"),
                     "rating": table.column("overall").cast(pa.float32())}), lines


def _category(record: dict) -> str:
    paths = record.get("categories")
    if isinstance(paths, list) and paths and isinstance(paths[0], list) and paths[0]:
        return str(paths[0][-1])
    path = record.get("category")
    if isinstance(path, list) and path:
        return str(path[-1])
    return ""


def read_categories(path: Path, block_bytes: int, wanted: np.ndarray,
                    bad: BadInput) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(item keys sorted, category index per item, category names)`` from the metadata file, for the
    items whose key is in ``wanted`` (sorted) only, so memory follows the reviewed items."""
    keys, cats, names, index = [], [], [], {}
    for block in text_blocks(path, block_bytes):
        asins, found = [], []
        for number, line in enumerate(block.text.split(b"\n")[:block.lines], start=block.first_line):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
                try:
                    record = json.loads(text)
                except json.JSONDecodeError:
                    record = ast.literal_eval(text)  # the 2014 metadata: Python literals
                asins.append(str(record["asin"]))
            except UnicodeDecodeError:
                bad.report(str(path), [number], "bad encoding (not UTF-8)")
                continue
            except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
                bad.report(str(path), [number], "not a metadata record with an asin")
                continue
            found.append(_category(record))
        block_keys = str_keys(pa.array(asins, pa.string()))[0]
        for key, category in zip(block_keys[np.isin(block_keys, wanted)].tolist(),
                                 [c for c, k in zip(found, np.isin(block_keys, wanted)) if k]):
            keys.append(key)
            cats.append(index.setdefault(category, len(index)) if category else -1)
            if category and len(names) < len(index):
                names.append(category)
    keys = np.asarray(keys, dtype=np.uint64)
    order = np.argsort(keys, kind="stable")
    return keys[order], np.asarray(cats, dtype=np.int64)[order], names


def convert(settings, args, bad: BadInput) -> dict:
    from bigrec.data.converters.options import options_for

    reviews, meta = find_files(Path(settings.source))
    source = EventSource("amazon", [reviews], parse_reviews, {"user": "user_id", "item": "item_id"})

    def build(vocabs, spill):
        items = vocabs["item_id"]
        meta_keys, meta_cats, names = read_categories(meta, settings.block_bytes, items.keys, bad)
        # the category index of every item of the vocabulary (-1: no metadata)
        pos = np.minimum(np.searchsorted(meta_keys, items.keys), max(len(meta_keys) - 1, 0))
        found = (meta_keys[pos] == items.keys) if len(meta_keys) else np.zeros(len(items.keys), dtype=bool)
        cat_index = np.where(found, meta_cats[pos] if len(meta_keys) else -1, -1)
        used = np.unique(cat_index[cat_index >= 0])
        name_array = pa.array([names[i] for i in used.tolist()], pa.string())
        cat_keys = str_keys(name_array)[0]
        order = np.argsort(cat_keys)
        vocab = Vocabulary("category_id", "str", VocabSpec(), cat_keys[order],
                           np.bincount(np.searchsorted(used, cat_index[cat_index >= 0]), minlength=len(used))[order],
                           has_oov=False, distinct_values=len(used))
        vocabs["category_id"] = vocab
        category_of = np.zeros(items.size, dtype=np.int64)
        with_meta = np.flatnonzero(cat_index >= 0)
        category_of[with_meta + items.first_id] = vocab.encode(cat_keys[np.searchsorted(used, cat_index[with_meta])],
                                                               np.ones(len(with_meta), dtype=bool))[0]
        vocab.observe(vocab.encode(cat_keys, np.ones(len(cat_keys), dtype=bool))[0], name_array)
        rows, catalogue = behaviour.rows_and_catalogue(vocabs, category_of, args.history_len,
                                                       {"rating": "rating", "timestamp": "timestamp"})
        meta_info = {"dataset": f"amazon-{reviews.name.split('_5.json')[0]}", "reviews_file": reviews.name,
                     "metadata_file": meta.name, "negatives": args.negatives,
                     "items_without_metadata": int(np.count_nonzero(~found)),
                     "category": "last entry of the item's first category path"}
        return rows, behaviour.schemas(vocabs, settings.embedding_dim, args.history_len, meta_info), catalogue

    options = options_for(behaviour.DEFAULTS, settings, ["user_id", "item_id"], [])
    plan = behaviour.plan(source, {"user_id": "str", "item_id": "str"}, ["timestamp", "order", "rating"],
                          args.negatives, build)
    return run_sequences(plan, settings, options, bad)


def add_arguments(parser, positive_int) -> None:
    behaviour.add_arguments(parser, positive_int)
