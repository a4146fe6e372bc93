"""MovieLens-100k → Parquet for ranking and recall models.

``prepare_movielens(source, output)`` reads either layout of MovieLens-100k from
``source`` (auto-detected):

* GroupLens: ``u.data`` (tab: user, item, rating, timestamp), ``u.user``
  (``|``: user, age, gender, occupation, zip), ``u.item`` (``|``, latin-1: id,
  title, release date, video release date, url, 19 genre flags; genre names from
  ``u.genre`` when present);
* atomic (RecBole): ``<name>.inter``, ``<name>.user``, ``<name>.item`` with
  typed headers (``user_id:token`` ...); ``tools/fetch_movielens.sh`` fetches them.

and writes::

    OUTPUT/vocab.json            raw value -> id for every categorical feature
    OUTPUT/ranking/{train,valid,test}.parquet, schema.json, vocab.json
    OUTPUT/recall/{train,valid,test,train_sequences}.parquet, schema.json, vocab.json, items.parquet

Every row is one interaction with columns ``user_id, item_id, gender, age,
occupation, zip3, genres (list), year, hist_item_ids (list), rating, click,
timestamp``. Categorical values map to contiguous ids from 1 (0 = padding or
unknown); numeric raw ids keep numeric order (raw user ``"1"`` → id 1 when the
raw ids are 1..N). ``age`` is bucketed (:data:`AGE_BUCKETS`), ``year`` is the
release decade, ``zip3`` the first three characters of the zip code.
``hist_item_ids`` holds the user's items strictly before this interaction
(time order, ties by file order), oldest first, the most recent
``history_len`` of them. ``click = float(rating >= 4)``.

Splits: ``ranking`` holds out each user's last 10% of interactions (at least
one) as test and the 10% before (at least one for users with ≥ 3) as valid;
``recall`` is leave-last-out (last → test, second last → valid). Every split is
sorted by timestamp (ties by file order). ``recall/items.parquet`` is the item
catalogue: ``item_id, genres, year`` of every item id (schema metadata
``item_catalogue``). ``recall/train_sequences.parquet`` holds the training rows
that end a window (every ``sequence_stride``-th row from each user's last one;
its last ``sequence_stride`` positions are targets, the earlier ones context
only), one pass over every position for sequence models
(:mod:`bigrec.data.sequences`).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from bigrec.data.parquet_io import DEFAULT_ROW_GROUP_SIZE, SPLITS, write_item_catalogue, write_json, write_split_dir
from bigrec.data.sequences import SEQUENCES_SPLIT, check_stride, layout_metadata, window_ends
from bigrec.errors import DataError
from bigrec.features import Schema, SequenceFeature, SparseFeature

# (upper bound exclusive, label); the last bucket has no upper bound.
AGE_BUCKETS: tuple[tuple[int | None, str], ...] = (
    (18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"), (56, "50-55"), (None, "56+"))

# Genre order of the GroupLens u.genre file (used when u.genre is absent).
GROUPLENS_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")

CATEGORICAL_FEATURES = ("user_id", "item_id", "gender", "age", "occupation", "zip3", "genres", "year")
DEFAULT_HISTORY_LEN = 50
DEFAULT_EMBEDDING_DIM = 16
_TITLE_YEAR = re.compile(r"\((\d{4})\)")


# --------------------------------------------------------------- bucketing
def age_bucket(age) -> str:
    """The age bucket label of a raw age (``""`` when unknown)."""
    try:
        age = int(float(str(age).strip()))
    except ValueError:
        return ""
    for upper, label in AGE_BUCKETS:
        if upper is None or age < upper:
            return label
    return ""  # pragma: no cover


def year_bucket(year) -> str:
    """The decade label (``"1990s"``) of a raw year; ``""`` when unknown."""
    text = str(year).strip()
    if not re.fullmatch(r"\d{4}", text):
        return ""
    return f"{text[:3]}0s"


def zip_prefix(zip_code) -> str:
    """The first three characters of a zip code (``""`` when empty)."""
    return str(zip_code).strip()[:3]


# ------------------------------------------------------------------ reading
@dataclass
class RawMovieLens:
    """The three MovieLens tables as raw strings / numbers, in file order."""

    layout: str  # "grouplens" or "atomic"
    inter_user: list[str]
    inter_item: list[str]
    rating: np.ndarray  # float64
    timestamp: np.ndarray  # int64
    user_ids: list[str]
    user_age: list[str]
    user_gender: list[str]
    user_occupation: list[str]
    user_zip: list[str]
    item_ids: list[str]
    item_year: list[str]  # four-digit year or "" when unknown
    item_genres: list[list[str]]


def _csv_error(path: Path, exc: Exception, names: list[str]) -> DataError:
    message = str(exc).splitlines()[0]
    match = re.search(r"Expected (\d+) columns, got (\d+)", message)
    if match:
        expected, got = int(match.group(1)), int(match.group(2))
        if got < expected:
            return DataError(str(path), f"a line has {got} fields, expected {expected}: column missing",
                             column=names[got])
        return DataError(str(path), f"a line has {got} fields, expected {expected}")
    return DataError(str(path), f"cannot parse: {message}")


def _read_delimited(path: Path, delimiter: str, names: list[str], *, skip_rows: int = 0,
                    encoding: str = "utf8") -> dict[str, pa.ChunkedArray]:
    """Read a delimited text file with every column as a string."""
    if not path.is_file():
        raise DataError(str(path), "file not found")
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip_rows, encoding=encoding),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise _csv_error(path, exc, names) from None
    return {name: table.column(name) for name in names}


def _read_atomic(path: Path, required: list[str]) -> dict[str, pa.ChunkedArray]:
    """Read a RecBole atomic file; header fields are ``name:type``."""
    if not path.is_file():
        raise DataError(str(path), "file not found")
    with open(path, encoding="utf8", errors="replace") as handle:
        header = handle.readline().rstrip("\r\n")
    names = [field.split(":", 1)[0].strip() for field in header.split("\t")]
    for name in required:
        if name not in names:
            raise DataError(str(path), f"missing column (header has {names})", column=name)
    if len(set(names)) != len(names):
        raise DataError(str(path), f"duplicate column names in header {names}")
    return _read_delimited(path, "\t", names, skip_rows=1)


def _to_numbers(path: Path, column: str, values: pa.ChunkedArray) -> np.ndarray:
    try:
        numbers = pc.cast(pc.utf8_trim_whitespace(values), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(str(path), f"non-numeric value ({str(exc).splitlines()[0]})", column=column) from None
    array = numbers.to_numpy(zero_copy_only=False).astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise DataError(str(path), "empty or non-finite value", column=column)
    return array


def _strings(values: pa.ChunkedArray) -> list[str]:
    return [s.strip() for s in values.to_pylist()]


def release_year(year: str, title: str) -> str:
    year = year.strip()
    if re.fullmatch(r"\d{4}", year):
        return year
    found = _TITLE_YEAR.findall(title or "")
    return found[-1] if found else ""


def _read_grouplens(source: Path) -> RawMovieLens:
    data_path, user_path, item_path = source / "u.data", source / "u.user", source / "u.item"
    inter = _read_delimited(data_path, "\t", ["user_id", "item_id", "rating", "timestamp"])
    users = _read_delimited(user_path, "|", ["user_id", "age", "gender", "occupation", "zip_code"])

    genre_names = list(GROUPLENS_GENRES)
    genre_path = source / "u.genre"
    if genre_path.is_file():
        rows = [line.strip().split("|") for line in genre_path.read_text(encoding="latin-1").splitlines()]
        parsed = sorted((int(r[1]), r[0]) for r in rows if len(r) == 2 and r[1].strip().isdigit())
        if parsed:
            genre_names = [name for _, name in parsed]
    genre_cols = [f"genre:{g}" for g in genre_names]
    item_names = ["item_id", "movie_title", "release_date", "video_release_date", "url"] + genre_cols
    items = _read_delimited(item_path, "|", item_names, encoding="latin-1")

    flags = np.stack([_to_numbers(item_path, c, items[c]) for c in genre_cols], axis=1) if genre_cols else None
    item_genres = [[genre_names[j] for j in np.flatnonzero(row)] for row in flags] if flags is not None else []
    titles = _strings(items["movie_title"])
    years = [release_year(date[-4:] if date else "", title)
             for date, title in zip(_strings(items["release_date"]), titles)]
    return _assemble("grouplens", data_path, inter, users, _strings(items["item_id"]), years, item_genres)


def _assemble(layout: str, inter_path: Path, inter: dict, users: dict, item_ids: list[str],
              item_year: list, item_genres: list[list[str]]) -> RawMovieLens:
    """``RawMovieLens`` from the columns both layouts share once read (interactions, users)."""
    return RawMovieLens(
        layout=layout,
        inter_user=_strings(inter["user_id"]),
        inter_item=_strings(inter["item_id"]),
        rating=_to_numbers(inter_path, "rating", inter["rating"]),
        timestamp=_to_numbers(inter_path, "timestamp", inter["timestamp"]).astype(np.int64),
        user_ids=_strings(users["user_id"]),
        user_age=_strings(users["age"]),
        user_gender=_strings(users["gender"]),
        user_occupation=_strings(users["occupation"]),
        user_zip=_strings(users["zip_code"]),
        item_ids=item_ids,
        item_year=item_year,
        item_genres=item_genres,
    )


def _atomic_stem(source: Path) -> str:
    if (source / "ml-100k.inter").is_file():
        return "ml-100k"
    stems = sorted(p.stem for p in source.glob("*.inter"))
    if len(stems) != 1:
        raise DataError(str(source), f"expected one *.inter file, found {len(stems)}")
    return stems[0]


def _read_atomic_layout(source: Path) -> RawMovieLens:
    stem = _atomic_stem(source)
    inter_path, user_path, item_path = (source / f"{stem}.{ext}" for ext in ("inter", "user", "item"))
    inter = _read_atomic(inter_path, ["user_id", "item_id", "rating", "timestamp"])
    users = _read_atomic(user_path, ["user_id", "age", "gender", "occupation", "zip_code"])
    items = _read_atomic(item_path, ["item_id", "release_year", "class"])
    titles = _strings(items["movie_title"]) if "movie_title" in items else [""] * len(items["item_id"])
    return _assemble("atomic", inter_path, inter, users, _strings(items["item_id"]),
                     [release_year(y, t) for y, t in zip(_strings(items["release_year"]), titles)],
                     [c.split() for c in _strings(items["class"])])


def detect_layout(source: str | Path) -> str:
    """``"grouplens"`` when ``source/u.data`` exists, ``"atomic"`` for a ``*.inter`` file."""
    source = Path(source)
    if not source.is_dir():
        raise DataError(str(source), "source directory not found")
    if (source / "u.data").is_file():
        return "grouplens"
    if any(source.glob("*.inter")):
        return "atomic"
    raise DataError(str(source), "no MovieLens files found: expected u.data, u.user, u.item (GroupLens) "
                                 "or ml-100k.inter, ml-100k.user, ml-100k.item (atomic)")


def read_movielens(source: str | Path) -> RawMovieLens:
    """Read MovieLens-100k from ``source`` in either layout (auto-detected)."""
    source = Path(source)
    layout = detect_layout(source)
    raw = _read_grouplens(source) if layout == "grouplens" else _read_atomic_layout(source)
    if not raw.inter_user:
        raise DataError(str(source), "no interactions")
    return raw


# ----------------------------------------------------------------- encoding
def _natural_key(value: str):
    return (0, int(value), value) if value.isdigit() else (1, 0, value)


def value_vocab(values, order=None) -> dict[str, int]:
    """Raw value -> id from 1; empty strings (unknown) get no id."""
    present = {v for v in values if v != ""}
    if order is not None:
        ordered = [v for v in order if v in present]
    else:
        ordered = sorted(present, key=_natural_key)
    return {value: i + 1 for i, value in enumerate(ordered)}


def encode_values(values: list[str], vocab: dict[str, int]) -> np.ndarray:
    """Vectorised raw -> id lookup; unknown values -> 0."""
    if not vocab:
        return np.zeros(len(values), dtype=np.int64)
    keys = pa.array(list(vocab), type=pa.string())
    ids = np.fromiter(vocab.values(), dtype=np.int64, count=len(vocab))
    index = pc.index_in(pa.array(values, type=pa.string()), value_set=keys)
    index = index.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.where(index >= 0, ids[np.clip(index, 0, None)], 0)


def ranges_to_list(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> pa.ListArray:
    """A list<int64> array whose row ``r`` is ``values[starts[r]:starts[r]+lengths[r]]``."""
    lengths = lengths.astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    flat = np.repeat(starts.astype(np.int64) - offsets[:-1], lengths) + np.arange(total, dtype=np.int64)
    flat_values = values[flat].astype(np.int64) if total else np.zeros(0, dtype=np.int64)
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32() if total < 2**31 else pa.int64()),
                                    pa.array(flat_values, type=pa.int64())).cast(pa.list_(pa.int64()))


def _by_id(size: int, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.zeros(size, dtype=np.int64)
    keep = ids > 0
    out[ids[keep]] = values[keep]
    return out


def user_positions(user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(position, count)`` per row of rows grouped by ``user``: the row's index within its user's
    rows and the number of rows of that user (both int64 [N])."""
    n = len(user)
    is_start = np.ones(n, dtype=bool)
    is_start[1:] = user[1:] != user[:-1]
    group_start = np.maximum.accumulate(np.where(is_start, np.arange(n), 0))
    group_id = np.cumsum(is_start) - 1
    return np.arange(n) - group_start, np.bincount(group_id)[group_id]


@dataclass
class EncodedMovieLens:
    """All interactions with features, sorted by (user, time, file order)."""

    table: pa.Table
    user: np.ndarray  # user id per row
    timestamp: np.ndarray
    file_order: np.ndarray
    position: np.ndarray  # index of the interaction within its user's history
    count: np.ndarray  # number of interactions of the row's user
    vocab: dict[str, dict[str, int]]
    items: pa.Table  # the item catalogue: item_id, genres, year of every item id


def encode_movielens(raw: RawMovieLens, history_len: int = DEFAULT_HISTORY_LEN) -> EncodedMovieLens:
    """Map raw values to ids and build one feature row per interaction."""
    if history_len < 1:
        raise ValueError(f"history_len must be >= 1, got {history_len}")
    ages = [age_bucket(a) if a else "" for a in raw.user_age]
    zips = [zip_prefix(z) for z in raw.user_zip]
    decades = [year_bucket(y) for y in raw.item_year]
    vocab = {
        "user_id": value_vocab(raw.user_ids + raw.inter_user),
        "item_id": value_vocab(raw.item_ids + raw.inter_item),
        "gender": value_vocab(raw.user_gender),
        "age": {label: i + 1 for i, (_, label) in enumerate(AGE_BUCKETS)},
        "occupation": value_vocab(raw.user_occupation),
        "zip3": value_vocab(zips),
        "genres": value_vocab([g for genres in raw.item_genres for g in genres]),
        "year": value_vocab(decades),
    }
    n_user_ids, n_item_ids = len(vocab["user_id"]) + 1, len(vocab["item_id"]) + 1

    # Per-user and per-item side features, indexed by id.
    uid_rows = encode_values(raw.user_ids, vocab["user_id"])
    gender_of = _by_id(n_user_ids, uid_rows, encode_values(raw.user_gender, vocab["gender"]))
    age_of = _by_id(n_user_ids, uid_rows, encode_values(ages, vocab["age"]))
    occupation_of = _by_id(n_user_ids, uid_rows, encode_values(raw.user_occupation, vocab["occupation"]))
    zip_of = _by_id(n_user_ids, uid_rows, encode_values(zips, vocab["zip3"]))
    iid_rows = encode_values(raw.item_ids, vocab["item_id"])
    year_of = _by_id(n_item_ids, iid_rows, encode_values(decades, vocab["year"]))
    genre_lists = [[] for _ in range(n_item_ids)]
    for iid, genres in zip(iid_rows.tolist(), raw.item_genres):
        if iid > 0:
            genre_lists[iid] = sorted({vocab["genres"][g] for g in genres if g in vocab["genres"]})
    genre_len = np.array([len(g) for g in genre_lists], dtype=np.int64)
    genre_start = np.concatenate([[0], np.cumsum(genre_len)[:-1]]).astype(np.int64)
    genre_values = np.array([g for lst in genre_lists for g in lst], dtype=np.int64)

    # Interactions sorted by (user, timestamp, file order).
    user = encode_values(raw.inter_user, vocab["user_id"])
    item = encode_values(raw.inter_item, vocab["item_id"])
    file_order = np.arange(len(user), dtype=np.int64)
    order = np.lexsort((file_order, raw.timestamp, user))
    user, item, file_order = user[order], item[order], file_order[order]
    timestamp, rating = raw.timestamp[order], raw.rating[order]
    n = len(user)
    position, count = user_positions(user)
    hist_len = np.minimum(position, history_len)
    hist = ranges_to_list(item, np.arange(n) - hist_len, hist_len)
    genres = ranges_to_list(genre_values, genre_start[item], genre_len[item])

    table = pa.table({
        "user_id": pa.array(user, pa.int64()),
        "item_id": pa.array(item, pa.int64()),
        "gender": pa.array(gender_of[user], pa.int64()),
        "age": pa.array(age_of[user], pa.int64()),
        "occupation": pa.array(occupation_of[user], pa.int64()),
        "zip3": pa.array(zip_of[user], pa.int64()),
        "genres": genres,
        "year": pa.array(year_of[item], pa.int64()),
        "hist_item_ids": hist,
        "rating": pa.array(rating.astype(np.float32), pa.float32()),
        "click": pa.array((rating >= 4).astype(np.float32), pa.float32()),
        "timestamp": pa.array(timestamp, pa.int64()),
    })
    item_ids = np.arange(1, n_item_ids, dtype=np.int64)
    items = pa.table({"item_id": pa.array(item_ids, pa.int64()),
                      "genres": ranges_to_list(genre_values, genre_start[item_ids], genre_len[item_ids]),
                      "year": pa.array(year_of[item_ids], pa.int64())})
    return EncodedMovieLens(table, user, timestamp, file_order, position, count, vocab, items)


# ------------------------------------------------------------------ splits
def ranking_split(position: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Split code per row (0 train, 1 valid, 2 test): last 10% test, 10% before valid."""
    from_end = count - 1 - position
    n_test = np.maximum(1, count // 10)
    n_valid = np.where(count >= 3, np.maximum(1, count // 10), 0)
    # A user with 2 interactions keeps one for training; with 1, it goes to test.
    return np.where(from_end < n_test, 2, np.where(from_end < n_test + n_valid, 1, 0)).astype(np.int8)


def leave_last_out_split(position: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Split code per row: last interaction test, second last valid, rest train."""
    from_end = count - 1 - position
    return np.where(from_end == 0, 2, np.where(from_end == 1, 1, 0)).astype(np.int8)


def build_schema(vocab: dict[str, dict[str, int]], history_len: int,
                 embedding_dim: int = DEFAULT_EMBEDDING_DIM, metadata: dict | None = None) -> Schema:
    """The bigrec schema of a prepared MovieLens directory."""
    size = {name: len(values) + 1 for name, values in vocab.items()}
    features = [
        SparseFeature("user_id", size["user_id"], embedding_dim, side="user"),
        SparseFeature("item_id", size["item_id"], embedding_dim, table="item", side="item"),
        SparseFeature("gender", size["gender"], embedding_dim, side="user"),
        SparseFeature("age", size["age"], embedding_dim, side="user"),
        SparseFeature("occupation", size["occupation"], embedding_dim, side="user"),
        SparseFeature("zip3", size["zip3"], embedding_dim, side="user"),
        SparseFeature("genres", size["genres"], embedding_dim, multi_valued=True, pooling="mean",
                      side="item"),
        SparseFeature("year", size["year"], embedding_dim, side="item"),
        SequenceFeature("hist_item_ids", size["item_id"], embedding_dim, table="item", max_len=history_len),
    ]
    return Schema(features, labels=["click"], metadata=dict(metadata or {}))


def _split_counts(table: pa.Table) -> dict:
    return {
        "rows": table.num_rows,
        "users": len(pc.unique(table.column("user_id"))) if table.num_rows else 0,
        "items": len(pc.unique(table.column("item_id"))) if table.num_rows else 0,
    }


def prepare_movielens(
    source: str | Path,
    output: str | Path,
    history_len: int = DEFAULT_HISTORY_LEN,
    seed: int = 0,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    embedding_dim: int = DEFAULT_EMBEDDING_DIM,
    sequence_stride: Optional[int] = None,
) -> dict[str, Schema]:
    """Prepare ``output/ranking`` and ``output/recall`` from MovieLens in ``source``.

    ``seed`` is recorded only: the preparation is deterministic. ``sequence_stride``:
    targets per window of ``recall/train_sequences.parquet`` (default half of
    ``history_len``; the earlier positions of a window are context only,
    :mod:`bigrec.data.sequences`).
    Returns ``{"ranking": schema, "recall": schema}``.
    """
    stride = check_stride(history_len, sequence_stride)
    raw = read_movielens(source)
    encoded = encode_movielens(raw, history_len)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    write_json(encoded.vocab, output / "vocab.json")

    common = {
        "dataset": "movielens-100k",
        "source_layout": raw.layout,
        "history_len": int(history_len),
        "seed": int(seed),
        "num_users": len(encoded.vocab["user_id"]),
        "num_items": len(encoded.vocab["item_id"]),
        "num_interactions": encoded.table.num_rows,
        "vocab_file": "vocab.json",
        "id_mapping": "raw value -> id from 1 (0 = padding/unknown); hist_item_ids uses the item_id vocabulary",
        "age_buckets": [label for _, label in AGE_BUCKETS],
        "year_bucket": "release decade",
        "zip3": "first three characters of the zip code",
    }
    schemas = {}
    for name, split_fn, task_split in (
        ("ranking", ranking_split, "user_time_ratio_80_10_10"),
        ("recall", leave_last_out_split, "leave_last_out"),
    ):
        code = split_fn(encoded.position, encoded.count)
        tables = {}
        for index, split in enumerate(SPLITS):
            rows = np.flatnonzero(code == index)
            rows = rows[np.lexsort((encoded.file_order[rows], encoded.timestamp[rows]))]
            tables[split] = encoded.table.take(pa.array(rows, pa.int64()))
        layouts = {}
        if name == "recall":  # one row per window of history_len items, stride targets (bigrec.data.sequences)
            ends = np.flatnonzero(window_ends(encoded.position, encoded.count - 3, stride))
            tables[SEQUENCES_SPLIT] = encoded.table.take(pa.array(ends, pa.int64()))
            layouts["sequences"] = layout_metadata(history_len, len(ends), stride)
        metadata = dict(common, task_split=task_split, **layouts,
                        counts={split: _split_counts(t) for split, t in tables.items()})
        schema = build_schema(encoded.vocab, history_len, embedding_dim, metadata)
        if name == "recall":
            write_item_catalogue(output / name, encoded.items, schema, row_group_size)
        write_split_dir(output / name, tables, schema, row_group_size)
        shutil.copyfile(output / "vocab.json", output / name / "vocab.json")
        schemas[name] = schema
    return schemas
