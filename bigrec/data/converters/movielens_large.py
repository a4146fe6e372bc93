"""MovieLens 1M / 20M / 25M -> ``ranking/`` and ``recall/`` Parquet, out of core.

``bigrec data movielens --source DIR`` comes here when ``DIR`` holds

* **1M**: ``ratings.dat`` (``user::movie::rating::timestamp``), ``users.dat``
  (``user::gender::age::occupation::zip``), ``movies.dat`` (``movie::title::genres``,
  latin-1);
* **20M / 25M**: ``ratings.csv`` (``userId,movieId,rating,timestamp`` with a header)
  and ``movies.csv`` (``movieId,title,genres``); there is no user file.

(MovieLens-100k goes to :mod:`bigrec.data.movielens`, which holds it in memory.)
The output has the columns and splits of the 100k preparer: ``user_id, item_id``,
for 1M ``gender, age, occupation, zip3``, then ``genres`` (list), ``year`` (release
decade), ``hist_item_ids`` (the user's earlier ratings, most recent
``--history-len``), labels ``click`` (rating >= 4), plus ``rating`` and
``timestamp``. ``ranking/`` splits each user's last 10% of ratings to test and the
10% before to valid; ``recall/`` is leave-last-out with ``items.parquet``. User
and item ids follow the raw ids' numeric order from 1 (vocabularies over all
ratings; a ``min_count`` above 1 adds the out-of-vocabulary id 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from bigrec.data.converters.badinput import BadInput
from bigrec.data.converters.events import EventSource, SequencePlan, run_sequences
from bigrec.data.converters.keys import int_keys
from bigrec.data.converters.sequences import RANKING_SPLIT, RECALL_SPLIT, ListAttribute, SequenceRows
from bigrec.data.converters.textio import Block, CsvFormat, parse_csv, read_header, require_file
from bigrec.data.converters.vocab import Vocabulary
from bigrec.data.movielens import AGE_BUCKETS, age_bucket, release_year, value_vocab, year_bucket, zip_prefix
from bigrec.errors import DataError
from bigrec.features import Schema, SequenceFeature, SparseFeature

DEFAULTS = {"vocab": {"default": {"min_count": 1}, "features": {}}, "dense": {"default": {}, "features": {}}}
RATING_NAMES = ("user", "item", "rating", "timestamp")
RATING_TYPES = {"user": "int", "item": "int", "rating": "float", "timestamp": "int"}


def detect(source: Path) -> str | None:
    """``"1m"`` (ratings.dat), ``"csv"`` (ratings.csv: 20M / 25M) or None (another layout)."""
    if (source / "ratings.dat").is_file():
        return "1m"
    if (source / "ratings.csv").is_file():
        return "csv"
    return None


def parse_ratings(layout: str):
    """Block -> staged ratings: ``user``/``item`` keys, ``rating`` float32, ``timestamp``, ``click``."""
    fmt = CsvFormat(RATING_NAMES, RATING_TYPES, delimiter="\t" if layout == "1m" else ",")

    def parse(block: Block, bad: BadInput) -> tuple[pa.Table, np.ndarray]:
        if layout == "1m":
            block = Block(block.path, block.first_line, block.text.replace(b"::", b"\t"), block.raw_bytes)
        table, lines = parse_csv(block, fmt, bad)
        missing = np.zeros(table.num_rows, dtype=bool)
        for name in RATING_NAMES:
            missing |= ~table.column(name).is_valid().to_numpy(zero_copy_only=False)
        bad.report(block.path, lines[missing], "empty field")
        table, lines = table.filter(pa.array(~missing)), lines[~missing]
        rating = table.column("rating").to_numpy().astype(np.float32)
        return pa.table({"user": pa.array(int_keys(table.column("user"))[0]),
                         "item": pa.array(int_keys(table.column("item"))[0]),
                         "timestamp": table.column("timestamp"), "rating": pa.array(rating),
                         "click": pa.array((rating >= 4).astype(np.float32))}), lines

    return parse


def _split_lines(path: Path, encoding: str, fields: int, bad: BadInput) -> list[list[str]]:
    """A small ``::`` file as rows of ``fields`` strings (bad lines reported)."""
    rows = []
    for number, line in enumerate(path.read_bytes().decode(encoding, errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != fields:
            bad.report(str(path), [number], f"wrong number of fields (expected {fields})")
            continue
        rows.append([p.strip() for p in parts])
    return rows


def read_movies(source: Path, layout: str, bad: BadInput) -> list[tuple[str, str, list[str]]]:
    """``(movie id, release year or "", genres)`` of every movie."""
    if layout == "1m":
        rows = _split_lines(require_file(source, ("movies.dat",), "MovieLens movies.dat"), "latin-1", 3, bad)
    else:
        path = require_file(source, ("movies.csv",), "MovieLens movies.csv")
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={"movieId": pa.string(), "title": pa.string(), "genres": pa.string()}))
        for name in ("movieId", "title", "genres"):
            if name not in table.column_names:
                raise DataError(str(path), f"missing column (header has {table.column_names})", column=name)
        rows = list(zip(*(table.column(n).to_pylist() for n in ("movieId", "title", "genres"))))
    return [(movie, release_year("", title or ""),
             [g for g in (genres or "").split("|") if g and g != "(no genres listed)"]) for movie, title, genres in rows]


def _per_id(vocab: Vocabulary, raw_ids: list[str], values: list) -> tuple[np.ndarray, list]:
    """Ids of ``raw_ids`` in ``vocab`` and the values of those present."""
    ids = vocab.lookup(raw_ids)
    keep = ids >= vocab.first_id
    return ids[keep], [v for v, k in zip(values, keep) if k]


def build(source: Path, layout: str, embedding_dim: int, history_len: int, bad: BadInput):
    """The ``build`` step of the plan: attributes, schemas, item catalogue."""

    def build_rows(vocabs: dict[str, Vocabulary], spill):
        users, items = vocabs["user_id"], vocabs["item_id"]
        movies = read_movies(source, layout, bad)
        decades = [year_bucket(year) for _, year, _ in movies]
        small = {"genres": value_vocab([g for _, _, genres in movies for g in genres]), "year": value_vocab(decades)}
        item_ids, kept = _per_id(items, [m for m, _, _ in movies], list(zip(decades, [g for _, _, g in movies])))
        year_of = np.zeros(items.size, dtype=np.int64)
        year_of[item_ids] = [small["year"].get(decade, 0) for decade, _ in kept]
        genre_lists = [[] for _ in range(items.size)]
        for item, (_, genres) in zip(item_ids.tolist(), kept):
            genre_lists[item] = sorted({small["genres"][g] for g in genres})
        rows = SequenceRows(history_len, items.size, items.first_id,
                            item_attributes={"genres": ListAttribute.from_lists(genre_lists), "year": year_of},
                            event_columns={"rating": "rating", "click": "click", "timestamp": "timestamp"})
        features = [SparseFeature("user_id", users.size, embedding_dim, side="user"),
                    SparseFeature("item_id", items.size, embedding_dim, table="item", side="item")]
        if layout == "1m":
            user_rows = _split_lines(require_file(source, ("users.dat",), "MovieLens users.dat"), "latin-1", 5, bad)
            ages = [age_bucket(r[2]) for r in user_rows]
            zips = [zip_prefix(r[4]) for r in user_rows]
            small.update(gender=value_vocab([r[1] for r in user_rows]), occupation=value_vocab([r[3] for r in user_rows]),
                         zip3=value_vocab(zips), age={label: i + 1 for i, (_, label) in enumerate(AGE_BUCKETS)})
            user_ids, kept_users = _per_id(users, [r[0] for r in user_rows], list(zip(user_rows, ages, zips)))
            for name, pick in (("gender", lambda r: r[0][1]), ("age", lambda r: r[1]),
                               ("occupation", lambda r: r[0][3]), ("zip3", lambda r: r[2])):
                attribute = np.zeros(users.size, dtype=np.int64)
                attribute[user_ids] = [small[name].get(pick(r), 0) for r in kept_users]
                rows.user_attributes[name] = attribute
                features.append(SparseFeature(name, len(small[name]) + 1, embedding_dim, side="user"))
        features += [SparseFeature("genres", len(small["genres"]) + 1, embedding_dim, multi_valued=True,
                                   pooling="mean", side="item"),
                     SparseFeature("year", len(small["year"]) + 1, embedding_dim, side="item"),
                     SequenceFeature("hist_item_ids", items.size, embedding_dim, table="item", max_len=history_len)]
        metadata = {"dataset": f"movielens-{layout}", "source_layout": layout, "small_vocabularies": small,
                    "id_mapping": "user_id / item_id: raw ids in numeric order from first_id (see vocabularies); "
                                  "small vocabularies: value -> id from 1, 0 = unknown",
                    "age_buckets": [label for _, label in AGE_BUCKETS], "year_bucket": "release decade"}
        schemas = {name: Schema(list(features), labels=["click"], metadata=dict(metadata)) for name in ("ranking", "recall")}
        catalogue_ids = np.arange(items.first_id, items.size, dtype=np.int64)
        catalogue = pa.table({"item_id": pa.array(catalogue_ids), "genres": rows.item_attributes["genres"].take(catalogue_ids),
                              "year": pa.array(year_of[catalogue_ids])})
        return rows, schemas, catalogue

    return build_rows


def convert_movielens(settings, history_len: int, bad: BadInput) -> dict:
    from bigrec.data.converters.options import options_for

    layout = detect(settings.source)
    ratings = require_file(settings.source, ("ratings.dat",) if layout == "1m" else ("ratings.csv",), "MovieLens ratings")
    if layout == "csv" and read_header(ratings).replace(" ", "") != "userId,movieId,rating,timestamp":
        raise DataError(str(ratings), "expected the header userId,movieId,rating,timestamp")
    source = EventSource(f"movielens-{layout}", [ratings], parse_ratings(layout), {"user": "user_id", "item": "item_id"},
                         skip_lines=0 if layout == "1m" else 1)
    options = options_for(DEFAULTS, settings, ["user_id", "item_id"], [])
    plan = SequencePlan(source, {"user_id": "int", "item_id": "int"},
                        {"user_id": ["user_id"], "item_id": ["item_id", "hist_item_ids"]},
                        {"user_id": ("user", "user_id"), "item_id": ("item", "item_id")},
                        ["timestamp", "order", "rating", "click"],
                        [(*RANKING_SPLIT[:2], 0, RANKING_SPLIT[2]), (*RECALL_SPLIT[:2], 0, RECALL_SPLIT[2])],
                        build(settings.source, layout, settings.embedding_dim, history_len, bad))
    return run_sequences(plan, settings, options, bad)
