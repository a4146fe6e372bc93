"""Data preparation: MovieLens (both layouts), synthetic Criteo-like data, ``bigrec data``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bigrec.data.movielens import AGE_BUCKETS, GROUPLENS_GENRES, age_bucket, prepare_movielens, year_bucket
from bigrec.data.synthetic import (
    default_cardinalities,
    generate_criteo_like,
    planted_model,
    roc_auc,
    true_logits,
)
from bigrec.errors import BigrecError, DataError
from bigrec.features import Schema, SequenceFeature, SparseFeature

SPLITS = ("train", "valid", "test")
HISTORY_LEN = 3

# ------------------------------------------------------------ tiny MovieLens
# Raw ids are deliberately non-contiguous; zip "T8H1N" is non-numeric.
USERS = [  # user, age, gender, occupation, zip
    ("5", "17", "M", "student", "85711"),
    ("12", "24", "F", "other", "94043"),
    ("40", "33", "M", "writer", "T8H1N"),
    ("7", "45", "F", "technician", "85701"),
    ("100", "61", "M", "other", "02139"),
    ("3", "50", "F", "artist", "94043"),
]
ITEMS = [  # item, title, year ("" = unknown), genres
    ("10", "Alpha (1995)", "1995", ["Action", "Comedy"]),
    ("3", "Beta (1977)", "1977", ["Sci-Fi"]),
    ("7", "Gamma", "", ["unknown"]),
    ("25", "Delta (1994)", "1994", ["Drama", "Romance", "War"]),
    ("1", "Epsilon (1988)", "1988", ["Children's", "Animation"]),
    ("2", "Zeta (1960)", "1960", ["Film-Noir"]),
    ("30", "Eta (1998)", "1998", ["Comedy"]),
    ("4", "Theta (1999)", "1999", ["Thriller", "Crime"]),
    ("8", "Iota (1985)", "1985", ["Horror"]),
    ("9", "Kappa (1970)", "1970", ["Western"]),
    ("11", "Lambda (1990)", "1990", ["Documentary"]),
    ("12", "Mu (1992)", "1992", ["Musical", "Mystery"]),
    ("13", "Nu (1993)", "1993", ["Fantasy", "Adventure"]),
    ("14", "Xi (1991)", "1991", ["Drama"]),
    ("15", "Omicron (1996)", "1996", ["Action"]),
    ("16", "Pi (1997)", "1997", ["Comedy", "Drama"]),
    ("17", "Rho (1994)", "1994", ["Romance"]),
    ("18", "Sigma (1993)", "1993", ["Sci-Fi", "Action"]),
    ("19", "Tau (1989)", "1989", ["Drama"]),
    ("20", "Upsilon (1986)", "1986", ["Comedy"]),
    ("99", "Never Rated (1990)", "1990", ["Drama"]),  # in the item file only
]
COUNTS = {"5": 5, "12": 7, "40": 12, "7": 20, "100": 2, "3": 1}


def _interactions() -> list[tuple[str, str, int, int]]:
    """(user, item, rating, timestamp) in file order; timestamp ties, shuffled order."""
    rng = np.random.default_rng(7)
    rated = [i for i, *_ in ITEMS if i != "99"]
    rows = []
    for user, count in COUNTS.items():
        items = rng.choice(rated, size=count, replace=False)
        # Coarse timestamps so that some interactions of a user tie.
        stamps = 880_000_000 + 100 * rng.integers(0, max(2, count // 2), size=count)
        for item, stamp in zip(items, stamps):
            rows.append((user, str(item), int(rng.integers(1, 6)), int(stamp)))
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


INTERACTIONS = _interactions()


def _write_grouplens(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in INTERACTIONS))
    (directory / "u.user").write_text("".join("|".join(row) + "\n" for row in USERS))
    lines = []
    for item, title, year, genres in ITEMS:
        date = f"01-Jan-{year}" if year else ""
        flags = ["1" if g in genres else "0" for g in GROUPLENS_GENRES]
        lines.append("|".join([item, title, date, "", "http://example.invalid/x"] + flags))
    (directory / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return directory


def _write_atomic(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    (directory / "ml-100k.inter").write_text(
        header + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in INTERACTIONS))
    header = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    (directory / "ml-100k.user").write_text(header + "".join("\t".join(row) + "\n" for row in USERS))
    header = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    (directory / "ml-100k.item").write_text(header + "".join(
        f"{item}\t{title}\t{year or 'unkonwn'}\t{' '.join(genres)}\n" for item, title, year, genres in ITEMS))
    return directory


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("movielens")
    grouplens = _write_grouplens(root / "raw_grouplens")
    atomic = _write_atomic(root / "raw_atomic")
    out_g, out_a = root / "out_grouplens", root / "out_atomic"
    schemas_g = prepare_movielens(grouplens, out_g, history_len=HISTORY_LEN, row_group_size=4)
    schemas_a = prepare_movielens(atomic, out_a, history_len=HISTORY_LEN, row_group_size=4)
    return {"root": root, "grouplens": out_g, "atomic": out_a, "schemas_g": schemas_g, "schemas_a": schemas_a}


def _read(out: Path, task: str, split: str) -> list[dict]:
    return pq.read_table(out / task / f"{split}.parquet").to_pylist()


def _expected_sequences(vocab) -> dict[int, list[tuple[int, int, float]]]:
    """user id -> [(item id, timestamp, rating)] sorted by (timestamp, file order)."""
    by_user: dict[int, list] = {}
    for order, (u, i, r, t) in enumerate(INTERACTIONS):
        by_user.setdefault(vocab["user_id"][u], []).append((t, order, vocab["item_id"][i], r))
    return {u: [(i, t, float(r)) for t, _, i, r in sorted(rows)] for u, rows in by_user.items()}


def test_both_layouts_give_identical_outputs(prepared):
    for task in ("ranking", "recall"):
        for split in SPLITS:
            a = pq.read_table(prepared["grouplens"] / task / f"{split}.parquet")
            b = pq.read_table(prepared["atomic"] / task / f"{split}.parquet")
            assert a.num_rows > 0
            assert a.equals(b), (task, split)
        meta_g = prepared["schemas_g"][task].metadata
        meta_a = prepared["schemas_a"][task].metadata
        assert (meta_g["source_layout"], meta_a["source_layout"]) == ("grouplens", "atomic")
        assert meta_g["counts"] == meta_a["counts"]
    vocab_g = json.loads((prepared["grouplens"] / "vocab.json").read_text())
    vocab_a = json.loads((prepared["atomic"] / "vocab.json").read_text())
    assert vocab_g == vocab_a


def test_schema_round_trips_and_shares_the_item_table(prepared):
    for task in ("ranking", "recall"):
        schema = Schema.load(prepared["atomic"] / task / "schema.json")
        assert schema == prepared["schemas_a"][task]
        assert schema.labels == ["click"]
        assert isinstance(schema["item_id"], SparseFeature) and schema["item_id"].table == "item"
        hist = schema["hist_item_ids"]
        assert isinstance(hist, SequenceFeature) and hist.table == "item" and hist.max_len == HISTORY_LEN
        genres = schema["genres"]
        assert genres.multi_valued and genres.pooling == "mean"
        assert all(f.embedding_dim == 16 for f in schema.id_features)
        assert schema.tables["item"].is_sequence
        assert schema.metadata["history_len"] == HISTORY_LEN
        assert schema.metadata["num_users"] == len(USERS)
        assert schema.metadata["num_items"] == len(ITEMS)
        # vocab size = max id + 1, and every id in the data is in range
        rows = [r for split in SPLITS for r in _read(prepared["atomic"], task, split)]
        for feature in schema.id_features:
            ids = [v for r in rows for v in (r[feature.name] if isinstance(r[feature.name], list)
                                              else [r[feature.name]])]
            assert max(ids) < feature.vocab_size
            assert min(ids) >= 0
    assert Schema.load(prepared["atomic"] / "recall" / "schema.json").metadata["task_split"] == "leave_last_out"


def test_vocab_maps_raw_values_consistently(prepared):
    vocab = json.loads((prepared["atomic"] / "vocab.json").read_text())
    assert json.loads((prepared["atomic"] / "ranking" / "vocab.json").read_text()) == vocab
    # Contiguous from 1; numeric raw ids in numeric order.
    for name, mapping in vocab.items():
        assert sorted(mapping.values()) == list(range(1, len(mapping) + 1)), name
    assert list(vocab["user_id"]) == ["3", "5", "7", "12", "40", "100"]
    assert vocab["item_id"]["1"] == 1 and vocab["item_id"]["99"] == len(ITEMS)
    assert list(vocab["age"]) == [label for _, label in AGE_BUCKETS]
    assert vocab["zip3"]["T8H"] > 0 and "unkonwn" not in vocab["year"]
    users = {u: row for u, *row in USERS}
    items = {i: (y, g) for i, _, y, g in ITEMS}
    inv_user = {v: k for k, v in vocab["user_id"].items()}
    inv_item = {v: k for k, v in vocab["item_id"].items()}
    rows = [r for split in SPLITS for r in _read(prepared["atomic"], "ranking", split)]
    assert len(rows) == len(INTERACTIONS)
    for row in rows:
        age, gender, occupation, zip_code = users[inv_user[row["user_id"]]]
        assert row["age"] == vocab["age"][age_bucket(age)]
        assert row["gender"] == vocab["gender"][gender]
        assert row["occupation"] == vocab["occupation"][occupation]
        assert row["zip3"] == vocab["zip3"][zip_code[:3]]
        year, genres = items[inv_item[row["item_id"]]]
        assert row["year"] == (vocab["year"][year_bucket(year)] if year else 0)
        assert row["genres"] == sorted(vocab["genres"][g] for g in genres)


def test_history_holds_only_earlier_items_most_recent_last(prepared):
    vocab = json.loads((prepared["atomic"] / "vocab.json").read_text())
    sequences = _expected_sequences(vocab)
    truncated = 0
    for task in ("ranking", "recall"):
        seen = 0
        for split in SPLITS:
            for row in _read(prepared["atomic"], task, split):
                seq = sequences[row["user_id"]]
                pos = [i for i, _, _ in seq].index(row["item_id"])
                assert seq[pos][1] == row["timestamp"]
                expected = [i for i, _, _ in seq[max(0, pos - HISTORY_LEN):pos]]
                assert row["hist_item_ids"] == expected
                assert len(row["hist_item_ids"]) <= HISTORY_LEN
                assert row["item_id"] not in row["hist_item_ids"]
                stamps = {i: t for i, t, _ in seq}
                assert all(stamps[i] <= row["timestamp"] for i in row["hist_item_ids"])
                truncated += pos > HISTORY_LEN
                seen += 1
        assert seen == len(INTERACTIONS)
    assert truncated > 0  # history-len 3 is exercised


def test_click_is_rating_at_least_four(prepared):
    for task in ("ranking", "recall"):
        for split in SPLITS:
            for row in _read(prepared["atomic"], task, split):
                assert row["click"] == float(row["rating"] >= 4)


def test_splits_are_sorted_by_time(prepared):
    for task in ("ranking", "recall"):
        for split in SPLITS:
            stamps = [r["timestamp"] for r in _read(prepared["atomic"], task, split)]
            assert stamps == sorted(stamps)
    # row_group_size=4 gives several row groups
    assert pq.ParquetFile(prepared["atomic"] / "ranking" / "train.parquet").metadata.num_row_groups > 3


def test_recall_is_leave_last_out(prepared):
    vocab = json.loads((prepared["atomic"] / "vocab.json").read_text())
    sequences = _expected_sequences(vocab)
    by_split = {s: [(r["user_id"], r["item_id"]) for r in _read(prepared["atomic"], "recall", s)] for s in SPLITS}
    assert sorted(u for u, _ in by_split["test"]) == sorted(sequences)
    for user, seq in sequences.items():
        assert (user, seq[-1][0]) in by_split["test"]
        if len(seq) >= 2:
            assert (user, seq[-2][0]) in by_split["valid"]
        assert sorted(i for u, i in by_split["train"] if u == user) == sorted(i for i, _, _ in seq[:-2])
    single = vocab["user_id"]["3"]  # one interaction: kept, empty history
    (row,) = [r for r in _read(prepared["atomic"], "recall", "test") if r["user_id"] == single]
    assert row["hist_item_ids"] == []
    # one-pass windows: a row's last `stride` positions are targets; together every target with a history, once
    stride = prepared["schemas_a"]["recall"].metadata["sequences"]["stride"]
    assert stride == max(1, HISTORY_LEN // 2)
    trained: dict[int, list[int]] = {}
    for window in _read(prepared["atomic"], "recall", "train_sequences"):
        targets = window["hist_item_ids"][1:] + [window["item_id"]]
        trained.setdefault(window["user_id"], []).extend(targets[-stride:])
    expected = {}
    for r in _read(prepared["atomic"], "recall", "train"):
        if r["hist_item_ids"]:
            expected.setdefault(r["user_id"], []).append(r["item_id"])
    assert {u: sorted(v) for u, v in trained.items()} == {u: sorted(v) for u, v in expected.items()}


def test_ranking_split_is_per_user_time_ratio(prepared):
    vocab = json.loads((prepared["atomic"] / "vocab.json").read_text())
    rows = {s: _read(prepared["atomic"], "ranking", s) for s in SPLITS}
    for raw_user, count in COUNTS.items():
        user = vocab["user_id"][raw_user]
        per = {s: [r["timestamp"] for r in rows[s] if r["user_id"] == user] for s in SPLITS}
        n_test = max(1, count // 10)
        n_valid = max(1, count // 10) if count >= 3 else 0
        assert (len(per["train"]), len(per["valid"]), len(per["test"])) == (count - n_test - n_valid, n_valid, n_test)
        if per["train"]:
            assert min(per["test"]) >= max(per["train"])
            if per["valid"]:
                assert min(per["valid"]) >= max(per["train"])
        if per["valid"]:
            assert min(per["test"]) >= max(per["valid"])
    counts = prepared["schemas_a"]["ranking"].metadata["counts"]
    assert {s: counts[s]["rows"] for s in SPLITS} == {s: len(rows[s]) for s in SPLITS}
    assert counts["test"]["users"] == len(COUNTS)


# --------------------------------------------------------------- bad inputs
def test_missing_atomic_column_names_file_and_column(tmp_path):
    source = _write_atomic(tmp_path / "raw")
    path = source / "ml-100k.inter"
    lines = path.read_text().splitlines()
    fixed = ["\t".join(f for k, f in enumerate(line.split("\t")) if k != 2) for line in lines]
    path.write_text("\n".join(fixed) + "\n")
    with pytest.raises(DataError) as info:
        prepare_movielens(source, tmp_path / "out")
    assert "ml-100k.inter" in str(info.value) and "'rating'" in str(info.value)
    assert info.value.column == "rating"


def test_short_grouplens_line_names_file_and_column(tmp_path):
    source = _write_grouplens(tmp_path / "raw")
    path = source / "u.user"
    path.write_text(path.read_text().replace("3|50|F|artist|94043", "3|50|F|artist"))
    with pytest.raises(DataError) as info:
        prepare_movielens(source, tmp_path / "out")
    assert "u.user" in str(info.value) and "'zip_code'" in str(info.value)


def test_missing_file_names_it(tmp_path):
    source = _write_grouplens(tmp_path / "raw")
    (source / "u.item").unlink()
    with pytest.raises(DataError, match=r"u\.item: file not found"):
        prepare_movielens(source, tmp_path / "out")
    atomic = _write_atomic(tmp_path / "raw_atomic")
    (atomic / "ml-100k.user").unlink()
    with pytest.raises(DataError, match=r"ml-100k\.user: file not found"):
        prepare_movielens(atomic, tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MovieLens files"):
        prepare_movielens(tmp_path / "empty", tmp_path / "out")


def test_non_numeric_rating_names_column(tmp_path):
    source = _write_grouplens(tmp_path / "raw")
    path = source / "u.data"
    first, rest = path.read_text().split("\n", 1)
    u, i, _, t = first.split("\t")
    path.write_text(f"{u}\t{i}\tgood\t{t}\n{rest}")
    with pytest.raises(DataError) as info:
        prepare_movielens(source, tmp_path / "out")
    assert "u.data" in str(info.value) and info.value.column == "rating"


# ----------------------------------------------------------------- synthetic
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("criteo")
    schema = generate_criteo_like(out, 20000, seed=3, row_group_size=4096, chunk_rows=8192)
    return out, schema


def test_synthetic_columns_and_schema(synthetic):
    out, schema = synthetic
    assert Schema.load(out / "schema.json") == schema
    assert schema.labels == ["label"]
    assert [f.name for f in schema.dense] == [f"dense_{i}" for i in range(13)]
    assert [f.name for f in schema.sparse] == [f"sparse_{i}" for i in range(26)]
    assert [f.vocab_size for f in schema.sparse] == default_cardinalities()
    assert all(f.id_policy == "error" for f in schema.sparse)
    assert schema.metadata["rows"] == {"train": 16000, "valid": 2000, "test": 2000}
    for split, n in schema.metadata["rows"].items():
        file = pq.ParquetFile(out / f"{split}.parquet")
        assert file.metadata.num_rows == n
        table = file.read()
        for f in schema.dense:
            col = table.column(f.name)
            assert str(col.type) == "float"
            values = col.to_numpy()
            assert np.isfinite(values).all() and (values >= 0).all()
        for f in schema.sparse:
            col = table.column(f.name)
            assert str(col.type) == "int64"
            values = col.to_numpy()
            assert values.min() >= 0 and values.max() < f.vocab_size
        label = table.column("label")
        assert str(label.type) == "float"
        assert set(np.unique(label.to_numpy())) <= {0.0, 1.0}
    assert pq.ParquetFile(out / "train.parquet").metadata.num_row_groups == 4  # 16000 rows / 4096


def test_synthetic_ids_are_zipf_skewed(synthetic):
    out, schema = synthetic
    table = pq.read_table(out / "train.parquet")
    for name in ("sparse_7", "sparse_13"):
        counts = np.bincount(table.column(name).to_numpy(), minlength=schema[name].vocab_size)
        assert counts.max() >= 20 * max(1.0, float(np.median(counts))), name


def test_synthetic_labels_carry_the_planted_signal(synthetic):
    out, schema = synthetic
    for split in SPLITS:
        table = pq.read_table(out / f"{split}.parquet")
        labels = table.column("label").to_numpy()
        assert 0.1 < labels.mean() < 0.5
        assert roc_auc(true_logits(table, schema), labels) >= 0.8
    assert schema.metadata["bayes_auc_estimate"] >= 0.8
    # A simple per-id estimate from train alone already ranks test well above chance.
    train = pq.read_table(out / "train.parquet")
    test = pq.read_table(out / "test.parquet")
    prior = train.column("label").to_numpy().mean()
    score = np.zeros(test.num_rows)
    for name in schema.metadata["signal"]["sparse_columns"]:
        ids = train.column(name).to_numpy()
        card = schema[name].vocab_size
        pos = np.bincount(ids, weights=train.column("label").to_numpy(), minlength=card)
        cnt = np.bincount(ids, minlength=card)
        rate = (pos + 10 * prior) / (cnt + 10)
        score += np.log(rate / (1 - rate))[test.column(name).to_numpy()]
    assert roc_auc(score, test.column("label").to_numpy()) >= 0.7


def test_synthetic_is_deterministic(tmp_path):
    a = generate_criteo_like(tmp_path / "a", 3000, cardinalities=[5, 50, 500], seed=1, num_dense=4)
    b = generate_criteo_like(tmp_path / "b", 3000, cardinalities=[5, 50, 500], seed=1, num_dense=4)
    generate_criteo_like(tmp_path / "c", 3000, cardinalities=[5, 50, 500], seed=2, num_dense=4)
    assert a == b
    for split in SPLITS:
        ta = pq.read_table(tmp_path / "a" / f"{split}.parquet")
        assert ta.equals(pq.read_table(tmp_path / "b" / f"{split}.parquet"))
        assert not ta.equals(pq.read_table(tmp_path / "c" / f"{split}.parquet"))
        assert ta.column_names == ["dense_0", "dense_1", "dense_2", "dense_3",
                                   "sparse_0", "sparse_1", "sparse_2", "label"]
    assert [f.vocab_size for f in a.sparse] == [5, 50, 500]


def test_synthetic_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate_criteo_like(tmp_path, 100, valid_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError):
        generate_criteo_like(tmp_path, 100, cardinalities=[10] * 26, max_cardinality=100)
    with pytest.raises(ValueError):
        planted_model([0, 10])


def test_roc_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=200).astype(float)  # many ties
    labels = rng.random(200) < 0.3
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        len(pos) * len(neg))
    assert roc_auc(scores, labels) == pytest.approx(pairwise)


# ----------------------------------------------------------------------- CLI
def _cli(argv: list[str]) -> int:
    """``bigrec.cli.main`` when all its command modules import, else the data commands alone."""
    try:
        from bigrec.cli import build_parser, main

        build_parser()
    except ImportError:
        pass
    else:
        return main(argv)
    from bigrec.data.cli import register

    parser = argparse.ArgumentParser(prog="bigrec")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except BigrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def test_cli_synthetic_criteo(tmp_path, capsys):
    out = tmp_path / "criteo"
    assert _cli(["data", "synthetic-criteo", "--output", str(out), "--rows", "5000"]) == 0
    schema = Schema.load(out / "schema.json")
    assert schema.metadata["rows"] == {"train": 4000, "valid": 500, "test": 500}
    assert _cli(["data", "synthetic-criteo", "--output", str(tmp_path / "c2"), "--rows", "1000",
                 "--cardinalities", "7", "--row-group-size", "100"]) == 0
    assert [f.vocab_size for f in Schema.load(tmp_path / "c2" / "schema.json").sparse] == [7] * 26
    assert _cli(["data", "synthetic-criteo", "--output", str(tmp_path / "c3"), "--rows", "10",
                 "--valid-fraction", "0.9", "--test-fraction", "0.5"]) == 2


def test_cli_movielens(tmp_path, capsys):
    source = _write_atomic(tmp_path / "raw")
    out = tmp_path / "out"
    assert _cli(["data", "movielens", "--source", str(source), "--output", str(out), "--history-len", "2"]) == 0
    assert Schema.load(out / "recall" / "schema.json")["hist_item_ids"].max_len == 2
    assert "recall" in capsys.readouterr().out
    assert _cli(["data", "movielens", "--source", str(tmp_path / "nowhere"), "--output", str(out)]) == 2
    assert "nowhere" in capsys.readouterr().err
