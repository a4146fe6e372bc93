"""``bigrec data <name>`` converters on tiny fixtures in the raw layouts: exact rows, ids, OOV, splits,
histories, bad input, atomic output; the pieces (blocks, keys, out-of-core counting) on their own."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bigrec.cli import main
from bigrec.data.converters.badinput import BadInput
from bigrec.data.converters.keys import hex_keys, hex_word_entries, str_keys
from bigrec.data.converters.options import DenseSpec
from bigrec.data.converters.textio import CsvFormat, parse_csv, text_blocks
from bigrec.data.converters.vocab import KeyCounter, load_vocabulary
from bigrec.data.movielens import leave_last_out_split, prepare_movielens, ranking_split, user_positions
from bigrec.features import Schema
from tests import raw_fixtures as rf

SPLITS = ("train", "valid", "test")


def run(*argv: str) -> int:
    return main(["data", *argv, "--no-progress"])


def read(directory: Path) -> list[dict]:
    return pq.read_table(directory).to_pylist() if directory.exists() else []


# ------------------------------------------------------------------ pieces
def test_blocks_keep_line_numbers_across_blocks_and_bad_rows(tmp_path):
    lines = [f"{i}\tv{i}" for i in range(1, 301)]
    lines[9], lines[150], lines[299] = "10", "", "x\tv300"  # wrong field count, empty line, not an integer
    path = rf.write_lines(tmp_path / "f.tsv", lines)
    bad = BadInput()
    fmt = CsvFormat(("n", "v"), {"n": "int"}, delimiter="\t")
    seen = []
    for block in text_blocks(path, 97):  # blocks far smaller than the file: many cuts
        table, numbers = parse_csv(block, fmt, bad)
        assert table.column("n").to_pylist() == numbers.tolist()  # each row is its line number
        seen += numbers.tolist()
    assert seen == [n for n in range(1, 301) if n not in (10, 151, 300)]
    assert bad.count == 3 and [e.split(":")[1] for e in bad.examples] == ["10", "151", "300"]


def test_keys_and_out_of_core_counting(tmp_path):
    keys, present, wrong = hex_keys(pa.array([b"68fd1e64", b"", b"zz", b"ABC"]))
    assert keys.tolist()[::3] == [0x68FD1E64, 0xABC] and present.tolist() == [True, False, False, True]
    assert wrong.tolist() == [False, False, True, False]
    words = [b"68fd1e64", b"ABCDEF09", b"0000000g", b"12 45678", b"", b"ffffffff", b"/0:9@AGa"]
    keys, present, wrong = hex_keys(pa.array(words))  # equal width 8: each value read as one 64-bit word
    assert wrong.tolist() == [False, False, True, True, False, False, True]
    assert keys[present].tolist() == [0x68FD1E64, 0xABCDEF09, 0xFFFFFFFF]
    # read in place as words, dictionary-encoded, the rule applied per distinct word: the same keys and flags
    entry_keys, entry_present, entry_bad, rows = hex_word_entries(pa.array(words + [b"abcdef09", b"ffffffff"]))
    assert entry_keys[rows].tolist() == keys.tolist() + keys[[1, 5]].tolist()
    assert entry_present[rows].tolist()[:len(words)] == present.tolist()
    assert entry_bad[rows].tolist()[:len(words)] == wrong.tolist()
    assert hex_word_entries(pa.array([b"68fd1e64", b"abc"])) is None  # another width: the general rule
    assert str_keys(pa.array(["a"]))[0][0] == 0xAF63DC4C8601EC8C  # FNV-1a 64 of "a"
    rng = np.random.default_rng(0)
    counter = KeyCounter("x", tmp_path, budget_bytes=1 << 20)
    chunks = [rng.integers(0, 60_000, size=30_000).astype(np.uint64) for _ in range(8)]
    for chunk in chunks:
        counter.add(chunk)
    assert counter.spilled  # over budget: partial counts went to disk
    kept, counts, distinct = counter.finish(min_count=5)
    values, expected = np.unique(np.concatenate(chunks), return_counts=True)
    assert distinct == len(values)
    assert kept.tolist() == values[expected >= 5].tolist() and counts.tolist() == expected[expected >= 5].tolist()


# ------------------------------------------------------------------ Criteo
def _criteo_file(tmp_path) -> tuple[Path, list[list[str]], list[int]]:
    """40 generated lines with three bad ones; returns (file, good lines' fields, their line numbers)."""
    rows = rf.criteo_lines()
    rows[12][3] = "abc"  # a non-numeric integer feature
    text = ["\t".join(r) for r in rows]
    text.insert(5, "1\t2\t3")  # wrong number of fields: line 6
    text.insert(20, "")  # empty line: line 21
    path = rf.write_lines(tmp_path / "raw" / "train.txt", text)
    good = [r for i, r in enumerate(rows) if i != 12]
    numbers = [n for n in range(1, len(text) + 1) if n not in (6, 21)]
    numbers.remove(numbers[12])
    return path, good, numbers


def _expected_ids(values: list[str], train: list[str], min_count: int) -> list[int]:
    counts = {}
    for v in train:
        if v:
            counts[v] = counts.get(v, 0) + 1
    kept = sorted((v for v, c in counts.items() if c >= min_count), key=lambda v: int(v, 16))
    ids = {v: i + 2 for i, v in enumerate(kept)}
    return [0 if not v else ids.get(v, 1) for v in values]


def test_integer_dense_columns_prepared_through_the_table_equal_prepare():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.integers(-3000, 70000, 2000), [2**63 - 1, -2**63, -1024, -1025, 64511, 64512]])
    column = pa.array(values, mask=rng.random(len(values)) < 0.2).slice(3)
    raw = column.to_numpy(zero_copy_only=False).astype(np.float64)
    for spec in (DenseSpec("log1p", 0.0, 0.0), DenseSpec("none", 3.5, None), DenseSpec("log1p_standardize", -2.0, -3.0)):
        for dtype in (np.float64, np.float32):
            got = spec.prepare_ints(column, dtype)
            assert got.dtype == dtype and np.array_equal(got, spec.prepare(raw).astype(dtype))  # bit for bit


def test_criteo_kaggle_rows_ids_oov_dense_splits_and_bad_lines(tmp_path, capsys):
    path, good, _ = _criteo_file(tmp_path)
    out = tmp_path / "out"
    assert run("criteo", "--source", str(path.parent), "--output", str(out), "--valid-fraction", "0.1",
               "--test-fraction", "0.1", "--row-group-size", "8", "--rows-per-file", "16",
               "vocab.default.min_count=3", "vocab.features.sparse_5.hash_buckets=7",
               "dense.features.dense_3.transform=log1p_standardize") == 0
    printed = capsys.readouterr().out
    assert "skipped 3 bad line(s)" in printed
    for where in ("train.txt:6: wrong number of fields", "train.txt:14: not an integer (column 'I3')",
                  "train.txt:21: empty line"):
        assert where in printed
    n = len(good)  # 39: last 4 test, 4 before valid
    expected_split = {"train": good[:n - 8], "valid": good[n - 8:n - 4], "test": good[n - 4:]}
    schema = Schema.load(out / "schema.json")
    assert {f.side for f in schema.features} == {"context"} and schema.labels == ["label"]
    stats = json.loads((out / "stats.json").read_text())
    for split, rows in expected_split.items():
        table = read(out / split)
        assert [r["label"] for r in table] == [float(r[0]) for r in rows]
        for j in range(13):
            want = np.array([math.log1p(max(float(r[1 + j] or 0), 0.0)) for r in rows])
            if j == 3:  # standardised by the training rows alone (pass 1 tallies every row, then takes back)
                train = np.array([math.log1p(max(float(r[4] or 0), 0.0)) for r in expected_split["train"]])
                want = (want - train.mean()) / train.std()
            assert np.allclose([r[f"dense_{j}"] for r in table], want, atol=1e-6)
        for j in range(26):
            if j == 5:
                continue
            want = _expected_ids([r[14 + j] for r in rows], [r[14 + j] for r in expected_split["train"]], 3)
            assert [r[f"sparse_{j}"] for r in table] == want, (split, j)
        assert stats["splits"][split]["rows"] == len(rows)
        assert stats["splits"][split]["label_rate"]["label"] == pytest.approx(np.mean([float(r[0]) for r in rows]))
    distinct_train = {r[14] for r in expected_split["train"]} - {""}
    assert schema.metadata["vocabularies"]["sparse_0"]["distinct_values"] == len(distinct_train)
    test_ids = [r["sparse_0"] for r in read(out / "test")]
    present = [i for i in test_ids if i]
    assert stats["features"]["sparse_0"]["oov_rate"]["test"] == pytest.approx(present.count(1) / len(present))
    hashed = [r["sparse_5"] for r in read(out / "train")]
    assert schema["sparse_5"].vocab_size == 8 and 0 < max(hashed) <= 7
    # bounded files with row groups of 8 rows; the serving lookup maps raw values to the same ids
    files = sorted((out / "train").glob("*.parquet"))
    assert [pq.ParquetFile(f).metadata.num_rows for f in files] == [16, n - 8 - 16]
    assert {pq.ParquetFile(files[0]).metadata.row_group(i).num_rows for i in range(2)} == {8}
    vocab = load_vocabulary(out / "schema.json", "sparse_3")
    assert vocab.lookup([r[17] for r in expected_split["test"]]).tolist() == [r["sparse_3"] for r in read(out / "test")]
    assert load_vocabulary(out / "schema.json", "sparse_5").lookup([good[0][19]]).tolist() == [hashed[0]]


def test_criteo_1tb_days_split_by_day_and_empty_days(tmp_path, capsys):
    rows = rf.criteo_lines(30, seed=3)
    raw = tmp_path / "days"
    rf.write_lines(raw / "day_0", ["\t".join(r) for r in rows[:12]])
    rf.write_lines(raw / "day_1.gz", ["\t".join(r) for r in rows[12:20]], gz=True)
    (raw / "day_2").write_bytes(b"")
    rf.write_lines(raw / "day_3", ["\t".join(r) for r in rows[20:]])
    out = tmp_path / "out"
    assert run("criteo", "--source", str(raw), "--output", str(out)) == 0
    assert "skipped 1 empty file(s)" in capsys.readouterr().out
    labels = {s: [r["label"] for r in read(out / s)] for s in SPLITS}
    assert labels == {"train": [float(r[0]) for r in rows[:20]], "valid": [float(r[0]) for r in rows[20:25]],
                      "test": [float(r[0]) for r in rows[25:]]}
    # --strict: the empty day is fatal and nothing is left behind
    assert run("criteo", "--source", str(raw), "--output", str(tmp_path / "strict"), "--strict") == 2
    assert "day_2: file is empty" in capsys.readouterr().err
    assert not (tmp_path / "strict").exists() and not list(tmp_path.glob(".strict*"))


def test_failed_run_leaves_no_output_and_strict_names_the_line(tmp_path, capsys):
    path, _, _ = _criteo_file(tmp_path)
    out = tmp_path / "out"
    assert run("criteo", "--source", str(path), "--output", str(out), "--strict") == 2
    assert "train.txt: line 6: wrong number of fields (expected 40) (--strict)" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    assert run("criteo", "--source", str(tmp_path / "nothing"), "--output", str(out)) == 2
    assert "source not found" in capsys.readouterr().err
    assert run("criteo", "--source", str(path), "--output", str(out), "vocab.features.sparse_99.min_count=2") == 2
    assert "vocab.features.sparse_99: not a vocab of this data set" in capsys.readouterr().err
    assert run("criteo", "--source", str(path), "--output", str(out), "dense.default.transform=log2") == 2
    assert "transform 'log2' is not one of" in capsys.readouterr().err


# ------------------------------------------------------------------ Avazu
def test_avazu_time_features_sides_encoding_and_missing_file(tmp_path, capsys):
    rows = rf.avazu_rows()
    header = ",".join(rows[0])
    lines = [header] + [",".join(r.values()) for r in rows]
    raw = tmp_path / "raw"
    raw.mkdir()
    data = ("\n".join(lines) + "\n").encode()
    data += ",".join(rows[0].values()).replace("1fbe01fe", "\xff\xfe").encode("latin-1") + b"\n"  # bad encoding
    (raw / "train.csv").write_bytes(data)
    out = tmp_path / "out"
    assert run("avazu", "--source", str(raw), "--output", str(out), "--test-fraction", "0.2",
               "--valid-fraction", "0") == 0
    assert "train.csv:32: bad encoding (not UTF-8) (column 'site_id')" in capsys.readouterr().out
    schema = Schema.load(out / "schema.json")
    assert schema["device_ip"].side == "user" and schema["C14"].side == "item" and schema["site_id"].side == "context"
    hours = {v["id"]: v["value"] for v in read(out / "vocab" / "hour_of_day.parquet")}
    got = read(out / "train") + read(out / "test")
    assert [int(hours[r["hour_of_day"]]) for r in got] == [int(r["hour"][-2:]) for r in rows]
    days = {v["id"]: int(v["value"]) for v in read(out / "vocab" / "weekday.parquet")}
    assert [days[r["weekday"]] for r in got] == [1 + int(r["hour"][4:6]) - 21 for r in rows]  # 2014-10-21: Tuesday
    assert run("avazu", "--source", str(tmp_path / "out" / "vocab"), "--output", str(tmp_path / "o2")) == 2
    assert "Avazu train.csv not found: expected train.csv or train.gz or train" in capsys.readouterr().err


# ------------------------------------------------------------------ MovieLens
COLUMNS = ("user_id", "item_id", "gender", "age", "occupation", "zip3", "genres", "year", "hist_item_ids", "click",
           "rating")


def _sorted_rows(directory: Path, columns=COLUMNS) -> list[tuple]:
    table = pq.read_table(directory)
    rows = [tuple(tuple(v) if isinstance(v, list) else v for v in (r[c] for c in columns)) for r in table.to_pylist()]
    return sorted(rows, key=repr)


def test_movielens_1m_equals_the_100k_preparer_on_the_same_ratings(tmp_path):
    prepare_movielens(rf.write_ml100k(tmp_path / "raw100k"), tmp_path / "ref", history_len=3)
    out = tmp_path / "ml1m"
    assert run("movielens", "--source", str(rf.write_ml1m(tmp_path / "raw1m")), "--output", str(out),
               "--history-len", "3", "--partitions", "3") == 0
    for layout in ("ranking", "recall"):
        for split in SPLITS:
            assert _sorted_rows(out / layout / split) == _sorted_rows(tmp_path / "ref" / layout / f"{split}.parquet")
        schema = Schema.load(out / layout / "schema.json")
        assert [f.side for f in schema.features] == [f.side for f in Schema.load(
            tmp_path / "ref" / layout / "schema.json").features]
    for directory in (out / "recall", tmp_path / "ref" / "recall"):  # the item catalogue, both preparers
        assert Schema.load(directory / "schema.json").metadata["item_catalogue"] == "items.parquet"
        assert read(directory / "items.parquet") == read(tmp_path / "ref" / "recall" / "items.parquet")
    assert [r["item_id"] for r in read(out / "recall" / "items.parquet")] == [1, 2, 3, 4, 5, 6]


def test_movielens_csv_layout(tmp_path):
    out = tmp_path / "ml20"
    assert run("movielens", "--source", str(rf.write_ml_csv(tmp_path / "raw")), "--output", str(out),
               "--history-len", "3") == 0
    reference = tmp_path / "ml1m"
    assert run("movielens", "--source", str(rf.write_ml1m(tmp_path / "raw1m")), "--output", str(reference),
               "--history-len", "3") == 0
    columns = ("user_id", "item_id", "genres", "year", "hist_item_ids", "click", "rating")
    for split in SPLITS:
        assert _sorted_rows(out / "recall" / split, columns) == _sorted_rows(reference / "recall" / split, columns)
    assert "gender" not in Schema.load(out / "ranking" / "schema.json")


# ------------------------------------------------------------------ Taobao
def test_taobao_histories_negatives_splits_and_catalogue(tmp_path, capsys):
    raw = rf.write_taobao(tmp_path / "raw", extra=["7,100,10,click,1511544500", "7,100,10"])
    out = tmp_path / "out"
    assert run("taobao", "--source", str(raw), "--output", str(out), "--history-len", "2", "--negatives", "2",
               "--partitions", "2") == 0
    printed = capsys.readouterr().out
    assert "UserBehavior.csv:13: behaviour type is not one of" in printed and "UserBehavior.csv:14: wrong number" in printed
    clicks = [(u, i, c, t, n) for n, (u, i, c, b, t) in enumerate(rf.TAOBAO) if b == "pv"]
    item_id = {raw_item: k + 1 for k, raw_item in enumerate(sorted({i for _, i, _, _, _ in clicks}))}
    category_id = {raw_cat: k + 1 for k, raw_cat in enumerate(sorted({c for _, _, c, _, _ in clicks}))}
    category_of = {item_id[i]: category_id[c] for _, i, c, _, _ in clicks}
    expected = {s: [] for s in SPLITS}
    for user in sorted({u for u, *_ in clicks}):
        events = sorted((e for e in clicks if e[0] == user), key=lambda e: (e[3], e[4]))
        items = [item_id[e[1]] for e in events]
        codes = leave_last_out_split(*user_positions(np.full(len(events), user)))
        for k, code in enumerate(codes):
            hist = items[max(0, k - 2):k]
            expected[SPLITS[code]].append((user, items[k], category_of[items[k]], tuple(hist),
                                           tuple(category_of[h] for h in hist)))
    columns = ("user_id", "item_id", "category_id", "hist_item_ids", "hist_category_ids")
    for split in SPLITS:
        got = [(u, i, c, h, hc) for u, i, c, h, hc in _sorted_rows(out / "recall" / split, columns)]
        assert sorted(got) == sorted((u - 6, i, c, h, hc) for u, i, c, h, hc in expected[split])  # users 7,8,9 -> 1,2,3
    ranking = read(out / "ranking" / "train") + read(out / "ranking" / "valid") + read(out / "ranking" / "test")
    assert len(ranking) == 3 * len(clicks) and [r["label"] for r in ranking[:6]] == [1.0, 0.0, 0.0] * 2
    for positive, *negatives in zip(*[ranking[k::3] for k in range(3)]):
        for negative in negatives:
            assert negative["item_id"] != positive["item_id"] and 1 <= negative["item_id"] <= len(item_id)
            assert negative["category_id"] == category_of[negative["item_id"]]
            assert negative["hist_item_ids"] == positive["hist_item_ids"]
    assert read(out / "recall" / "items.parquet") == [{"item_id": i, "category_id": category_of[i]}
                                                      for i in sorted(category_of)]
    schema = Schema.load(out / "recall" / "schema.json")
    assert [f.name for f in schema.side("item")] == ["item_id", "category_id"] and schema.labels == []
    assert [f.name for f in schema.side("user")] == ["user_id", "hist_item_ids", "hist_category_ids"]


# ------------------------------------------------------------------ Amazon
def test_amazon_reviews_with_categories_from_metadata(tmp_path, capsys):
    out = tmp_path / "out"
    assert run("amazon", "--source", str(rf.write_amazon(tmp_path / "raw")), "--output", str(out),
               "--history-len", "5") == 0
    assert "reviews_Books_5.json:4: not valid JSON" in capsys.readouterr().out
    schema_path = out / "recall" / "schema.json"
    items, users = load_vocabulary(schema_path, "item_id"), load_vocabulary(schema_path, "user_id")
    categories = {r["value"]: r["id"] for r in read(out / "recall" / "vocab" / "category_id.parquet")}
    assert set(categories) == {"Religion", "Girls"}
    asins = ["0000031852", "0000013714", "B00000JHXX", "0000031887"]  # AZZY1 in time order
    ids = items.lookup(asins).tolist()
    cats = [categories["Girls"], categories["Religion"], 0, categories["Girls"]]
    test = [r for r in read(out / "recall" / "test") if r["user_id"] == users.lookup(["AZZY1"])[0]]
    assert [(r["item_id"], r["hist_item_ids"], r["category_id"], r["hist_category_ids"]) for r in test] == [
        (ids[3], ids[:3], cats[3], cats[:3])]
    assert {r["item_id"]: r["category_id"] for r in read(out / "recall" / "items.parquet")} == dict(zip(ids, cats))


# ------------------------------------------------------------------ Ali-CCP
def test_aliccp_joins_common_features_and_keeps_both_labels(tmp_path, capsys):
    raw = rf.write_aliccp(tmp_path / "raw")
    with open(raw / "sample_skeleton_train.csv", "a") as handle:
        handle.write("9,1,0,c0ffee0000000001,3,205\x02500\x031.0\n")  # says 3 features, has 1
    out = tmp_path / "out"
    assert run("ali-ccp", "--source", str(raw), "--output", str(out), "--valid-fraction", "0.2",
               "vocab.default.min_count=1", "--partitions", "2") == 0
    assert "sample_skeleton_train.csv:6: malformed feature list" in capsys.readouterr().out
    schema = Schema.load(out / "schema.json")
    assert schema.labels == ["click", "conversion"] and schema["f109_14"].multi_valued
    assert (schema["f101"].side, schema["f205"].side, schema["f508"].side) == ("user", "item", "context")

    def ids(field, raw_ids):
        return load_vocabulary(out / "schema.json", f"f{field}").lookup(raw_ids).tolist()

    train = sorted(read(out / "train"), key=lambda r: (r["f205"], r["f206"], r["click"], r["f101"]))
    expected = sorted([(ids("205", [500])[0], ids("206", [60])[0], 1.0, 0.0, ids("101", [1])[0], ids("109_14", [30, 31]),
                        ids("210", [70, 71])),
                       (ids("205", [501])[0], ids("206", [60])[0], 0.0, 0.0, ids("101", [2])[0], ids("109_14", [31]), []),
                       (ids("205", [500])[0], ids("206", [61])[0], 1.0, 1.0, ids("101", [1])[0], ids("109_14", [30, 31]),
                        []),
                       (ids("205", [500])[0], ids("206", [60])[0], 0.0, 0.0, ids("101", [2])[0], ids("109_14", [31]),
                        ids("210", [70]))])
    got = sorted((r["f205"], r["f206"], r["click"], r["conversion"], r["f101"], r["f109_14"], r["f210"]) for r in train)
    assert got == expected
    assert [(r["f101"], r["f109_14"], r["click"]) for r in read(out / "valid")] == [(0, [], 1.0)]  # no common features
    test = read(out / "test")
    assert [(r["f121"], r["f206"], r["conversion"]) for r in test] == [(1, 1, 1.0)]  # unseen in training: OOV


def test_synthetic_sequences_write_the_item_catalogue(tmp_path):
    from bigrec.data.synthetic_sequences import generate_sequences

    schema = generate_sequences(tmp_path, num_users=20, num_items=30, num_clusters=3)
    assert schema.metadata["item_catalogue"] == "items.parquet"
    assert [r["item_id"] for r in read(tmp_path / "items.parquet")] == list(range(1, 31))
