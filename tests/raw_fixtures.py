"""Tiny raw files in the exact published layouts of the converted data sets (no downloads)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

CRITEO_ROWS = 40


def criteo_lines(rows: int = CRITEO_ROWS, seed: int = 0) -> list[list[str]]:
    """Criteo lines as fields: label, 13 integers (some missing, some negative), 26 hex values (few distinct)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rows):
        label = str(int(rng.random() < 0.3))
        ints = ["" if rng.random() < 0.15 else str(int(rng.integers(-3, 50))) for _ in range(13)]
        cats = ["" if rng.random() < 0.1 else format(int(rng.integers(0, 6)) * 0x1F3A5 + 0x68FD1E00, "08x")
                for _ in range(26)]
        out.append([label] + ints + cats)
    return out


def write_lines(path: Path, lines: list[str], gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def avazu_rows() -> list[dict]:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(30):
        hour = f"1410{21 + i // 10:02d}{i % 24:02d}"  # 2014-10-21 (a Tuesday) .. 2014-10-23
        rows.append({"id": str(10**19 + i), "click": str(int(rng.random() < 0.4)), "hour": hour,
                     "C1": "1005", "banner_pos": str(int(rng.integers(0, 2))), "site_id": ["1fbe01fe", "85f751fd"][i % 2],
                     "site_domain": "f3845767", "site_category": "28905ebd", "app_id": "ecad2386",
                     "app_domain": "7801e8d9", "app_category": "07d7df22", "device_id": "a99f214a",
                     "device_ip": f"{int(rng.integers(0, 4)):08x}", "device_model": ["44956a24", "711ee120"][i % 3 == 0],
                     "device_type": "1", "device_conn_type": "2", "C14": str(15700 + i % 5), "C15": "320",
                     "C16": "50", "C17": "1722", "C18": "0", "C19": "35", "C20": "-1", "C21": "79"})
    return rows


# ------------------------------------------------------------------ MovieLens
ML_USERS = [("1", "F", "1", "10", "48067"), ("2", "M", "56", "16", "70072"), ("3", "M", "25", "15", "55117"),
            ("4", "M", "45", "7", "02460")]
ML_MOVIES = [("1", "Toy Story (1995)", "Animation|Children's|Comedy"), ("2", "Jumanji (1995)", "Adventure|Children's"),
             ("3", "Grumpier Old Men (1995)", "Comedy|Romance"), ("5", "Father of the Bride, Part II (1995)", "Comedy"),
             ("7", "Sabrina (1954)", "Comedy|Romance"), ("9", "Nameless", "(no genres listed)")]


def ml_ratings() -> list[tuple[str, str, int, int]]:
    """(user, movie, rating, timestamp) with ties; every movie rated."""
    return [("1", "1", 5, 978300760), ("1", "2", 3, 978300760), ("1", "5", 4, 978300800), ("1", "7", 2, 978300900),
            ("1", "9", 4, 978301000), ("2", "3", 4, 978200000), ("2", "1", 1, 978200100), ("2", "2", 5, 978200200),
            ("3", "5", 2, 978100000), ("3", "7", 5, 978100050), ("3", "9", 4, 978100050), ("3", "1", 3, 978100100),
            ("3", "3", 4, 978100200), ("4", "2", 4, 978000000), ("4", "9", 1, 978000100)]


def write_ml1m(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ratings.dat").write_text("".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in ml_ratings()))
    (directory / "users.dat").write_text("".join("::".join(u) + "\n" for u in ML_USERS))
    (directory / "movies.dat").write_bytes("".join("::".join(m) + "\n" for m in ML_MOVIES).encode("latin-1"))
    return directory


def write_ml_csv(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{m},{r}.0,{t}\n" for u, m, r, t in ml_ratings()))
    (directory / "movies.csv").write_text("movieId,title,genres\n" + "".join(
        f'{m},"{t}",{g}\n' for m, t, g in ML_MOVIES))
    return directory


def write_ml100k(directory: Path) -> Path:
    """The same users, movies and ratings in the GroupLens 100k layout."""
    from bigrec.data.movielens import GROUPLENS_GENRES

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "u.data").write_text("".join(f"{u}\t{m}\t{r}\t{t}\n" for u, m, r, t in ml_ratings()))
    (directory / "u.user").write_text("".join(f"{u}|{age}|{g}|{occ}|{z}\n" for u, g, age, occ, z in ML_USERS))
    lines = []
    for movie, title, genres in ML_MOVIES:
        year = title[-5:-1] if title.endswith(")") else ""
        flags = ["1" if g in genres.split("|") else "0" for g in GROUPLENS_GENRES]
        lines.append("|".join([movie, title, f"01-Jan-{year}" if year else "", "", "http://x"] + flags))
    (directory / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return directory


# ------------------------------------------------------------------ Taobao, Amazon, Ali-CCP
TAOBAO = [  # user, item, category, behaviour, timestamp (file order is not time order)
    (7, 100, 10, "pv", 1511544070), (7, 101, 10, "pv", 1511544000), (7, 102, 11, "buy", 1511544100),
    (7, 103, 11, "pv", 1511544200), (7, 100, 10, "pv", 1511544300), (8, 104, 12, "pv", 1511600000),
    (8, 101, 10, "pv", 1511600100), (8, 105, 12, "pv", 1511600100), (8, 103, 11, "cart", 1511600200),
    (9, 100, 10, "pv", 1511700000), (7, 106, 13, "pv", 1511544400), (9, 105, 12, "pv", 1511700050),
]


def write_taobao(directory: Path, extra: list[str] = ()) -> Path:
    lines = [f"{u},{i},{c},{b},{t}" for u, i, c, b, t in TAOBAO] + list(extra)
    return write_lines(directory / "UserBehavior.csv", lines)


AMAZON_REVIEWS = [  # reviewerID, asin, overall, unixReviewTime
    ("A2SUAM1J3GNN3B", "0000013714", 5.0, 1355616000), ("A2SUAM1J3GNN3B", "0000031852", 4.0, 1355700000),
    ("A2SUAM1J3GNN3B", "0000031887", 3.0, 1355800000), ("AZZY1", "0000031852", 2.0, 1300000000),
    ("AZZY1", "0000013714", 5.0, 1300000500), ("AZZY1", "B00000JHXX", 4.0, 1300001000),
    ("AZZY1", "0000031887", 1.0, 1300002000),
]
AMAZON_META = {"0000013714": ["Books", "Religion"], "0000031852": ["Clothing", "Girls"],
               "0000031887": ["Clothing", "Girls"], "B00000JHXX": []}


def write_amazon(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    reviews = [json.dumps({"reviewerID": u, "asin": a, "reviewerName": "x", "helpful": [0, 0], "reviewText": "ok",
                           "overall": r, "summary": "s", "unixReviewTime": t, "reviewTime": "01 1, 2013"})
               for u, a, r, t in AMAZON_REVIEWS]
    reviews.insert(3, '{"reviewerID": "broken", "asin": ')  # a truncated line
    write_lines(directory / "reviews_Books_5.json", reviews)
    meta = [repr({"asin": a, "title": "t", "categories": [path] if path else [], "salesRank": {"Books": 1}})
            for a, path in AMAZON_META.items()]
    write_lines(directory / "meta_Books.json", meta)
    return directory


ALICCP_COMMON = {  # common index -> features (field, id)
    "c0ffee0000000001": [("101", 1), ("121", 7), ("109_14", 30), ("109_14", 31)],
    "c0ffee0000000002": [("101", 2), ("121", 7), ("109_14", 31)],
}
ALICCP_TRAIN = [  # common index, click, buy, sample features
    ("c0ffee0000000001", 1, 0, [("205", 500), ("206", 60), ("210", 70), ("210", 71), ("301", 1)]),
    ("c0ffee0000000002", 0, 0, [("205", 501), ("206", 60), ("301", 2)]),
    ("c0ffee0000000001", 1, 1, [("205", 500), ("206", 61), ("301", 1)]),
    ("c0ffee0000000002", 0, 0, [("205", 500), ("206", 60), ("210", 70), ("301", 1)]),
    ("c0ffee0000000009", 1, 0, [("205", 502), ("206", 60), ("301", 1)]),  # no common features
]
ALICCP_TEST = [("c0ffee0000000003", 1, 1, [("205", 500), ("206", 62), ("301", 3)])]
ALICCP_TEST_COMMON = {"c0ffee0000000003": [("101", 1), ("121", 8)]}


def _feature_list(features) -> str:
    return "\x01".join(f"{field}\x02{fid}\x031.0" for field, fid in features)


def write_aliccp(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split, samples, common in (("train", ALICCP_TRAIN, ALICCP_COMMON), ("test", ALICCP_TEST, ALICCP_TEST_COMMON)):
        write_lines(directory / f"sample_skeleton_{split}.csv",
                    [f"{i + 1},{c},{b},{index},{len(f)},{_feature_list(f)}" for i, (index, c, b, f) in enumerate(samples)])
        write_lines(directory / f"common_features_{split}.csv",
                    [f"{index},{len(f)},{_feature_list(f)}" for index, f in common.items()])
    return directory


def write_ml1m_generated(directory: Path, users: int = 150, movies: int = 80, seed: int = 0) -> Path:
    """A larger MovieLens-1M-layout set with a learnable rating signal (user and movie biases)."""
    rng = np.random.default_rng(seed)
    genres = ["Action", "Comedy", "Drama", "Horror", "Romance"]
    directory.mkdir(parents=True, exist_ok=True)
    movie_bias = rng.normal(0, 1, movies)
    user_bias = rng.normal(0, 1, users)
    with open(directory / "ratings.dat", "w") as handle:
        for u in range(users):
            for m in rng.choice(movies, size=int(rng.integers(10, 30)), replace=False):
                score = 3 + movie_bias[m] + user_bias[u] + rng.normal(0, 0.5)
                handle.write(f"{u + 1}::{m + 1}::{int(np.clip(np.rint(score), 1, 5))}::{978300000 + int(rng.integers(0, 10**6))}\n")
    (directory / "users.dat").write_text("".join(
        f"{u + 1}::{'MF'[u % 2]}::{[1, 18, 25, 35, 45, 50, 56][u % 7]}::{u % 21}::{10000 + u}\n" for u in range(users)))
    (directory / "movies.dat").write_text("".join(
        f"{m + 1}::Movie {m} ({1950 + m % 50})::{'|'.join(rng.choice(genres, size=2, replace=False))}\n"
        for m in range(movies)))
    return directory
