"""Criteo display advertising logs -> bigrec Parquet.

Two raw layouts, found from ``--source``:

* **Kaggle** (Display Advertising Challenge): ``train.txt`` (``--source`` is the
  file or its directory). Split by line order; by default the last 1/14 of the
  lines is test and the 1/14 before it valid, i.e. the last of the 7 days cut in
  half, as in DLRM's Kaggle setting (``--valid-fraction``, ``--test-fraction``);
* **1TB** (Criteo Terabyte): ``day_0`` ... ``day_23`` (also ``.gz``). Every day but
  the last is train; the last day's first half is valid and its second half test
  (the MLPerf DLRM setting).

Each line: label, 13 integer features, 26 categorical features (32-bit hex
strings), tab-separated, an empty field = missing. Output columns ``label``
(float32), ``dense_0..dense_12`` (float32, by default ``log(1 + max(x, 0))`` with
missing -> 0, Criteo's convention) and ``sparse_0..sparse_25`` (int64 ids; by
default a vocabulary of the values seen at least 10 times in the training rows,
others -> the out-of-vocabulary id 1, missing -> 0). Criteo's features are
anonymous, so every feature is on the ``context`` side.
"""

from __future__ import annotations

import re
from pathlib import Path

from bigrec.data.converters.tabular import Field, SplitRule, TabularSource
from bigrec.data.converters.textio import CsvFormat
from bigrec.errors import DataError

NUM_DENSE = 13
NUM_SPARSE = 26
RAW_NAMES = ("label",) + tuple(f"I{i}" for i in range(1, NUM_DENSE + 1)) + tuple(f"C{i}" for i in range(1, NUM_SPARSE + 1))
DEFAULTS = {
    "vocab": {"default": {"min_count": 10}, "features": {}},
    "dense": {"default": {"transform": "log1p", "fill": 0.0, "clip_min": 0.0}, "features": {}},
}
KAGGLE_FRACTION = 1 / 14
_DAY = re.compile(r"^day_(\d+)(\.gz)?$")


def fields() -> list[Field]:
    out = [Field("label", "label", "label")]
    out += [Field(f"dense_{i}", f"I{i + 1}", "dense") for i in range(NUM_DENSE)]
    out += [Field(f"sparse_{i}", f"C{i + 1}", "sparse", key="hex") for i in range(NUM_SPARSE)]
    return out


def find_layout(source: Path) -> tuple[str, list[Path]]:
    """``("kaggle", [train.txt])`` or ``("1tb", [day_0, day_1, ...])`` from a file or directory."""
    if source.is_file():
        return "kaggle", [source]
    if not source.is_dir():
        raise DataError(str(source), "source not found: expected Kaggle's train.txt (or its directory) or a "
                                     "directory of Criteo 1TB day_0 ... day_23 files")
    if (source / "train.txt").is_file():
        return "kaggle", [source / "train.txt"]
    days = sorted(((int(m.group(1)), p) for p in source.iterdir() if (m := _DAY.match(p.name))))
    if not days:
        raise DataError(str(source), "no Criteo files found: expected train.txt (Kaggle) or day_0 ... day_23 "
                                     "(1TB, optionally .gz)")
    numbers = [d for d, _ in days]
    if len(days) < 2:
        raise DataError(str(source), f"found only {days[0][1].name}: the 1TB layout needs at least two day files "
                                     "(the last is valid/test)")
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        raise DataError(str(source), f"day files are not consecutive: missing day_{missing[0]}")
    return "1tb", [p for _, p in days]


def criteo_source(source: Path, valid_fraction: float | None = None, test_fraction: float | None = None) -> TabularSource:
    layout, files = find_layout(source)
    if layout == "kaggle":
        split = SplitRule("fractions", KAGGLE_FRACTION if valid_fraction is None else valid_fraction,
                          KAGGLE_FRACTION if test_fraction is None else test_fraction)
    else:
        if valid_fraction is not None or test_fraction is not None:
            raise DataError(str(source), "the 1TB layout splits by day (last day: valid, then test); "
                                         "--valid-fraction / --test-fraction apply to the Kaggle layout only")
        split = SplitRule("last_file")
    fmt = CsvFormat(RAW_NAMES, {f"I{i}": "int" for i in range(1, NUM_DENSE + 1)} | {"label": "int"}, delimiter="\t")
    return TabularSource(f"criteo-{layout}", files, fmt, fields(), split, metadata={"source_layout": layout})


def add_arguments(parser, positive_int) -> None:
    parser.add_argument("--valid-fraction", type=float, help="Kaggle layout: fraction of lines before the test "
                                                             "lines that is valid (default 1/14)")
    parser.add_argument("--test-fraction", type=float, help="Kaggle layout: last fraction of lines that is test "
                                                            "(default 1/14)")


def convert(settings, args, bad) -> dict:
    from bigrec.data.converters.options import options_for
    from bigrec.data.converters.tabular import convert_tabular

    source = criteo_source(settings.source, args.valid_fraction, args.test_fraction)
    options = options_for(DEFAULTS, settings, [f.name for f in source.of_kind("sparse")],
                          [f.name for f in source.of_kind("dense")])
    return {"": convert_tabular(source, settings, options, bad)}
