"""Avazu click-through logs -> bigrec Parquet.

``--source`` is Avazu's ``train.csv`` (or ``train.gz``), or a directory holding
it: a CSV with a header ``id,click,hour,C1,banner_pos,site_id,...,C21``. ``hour``
(``YYMMDDHH``) becomes ``hour_of_day`` (0-23) and ``weekday`` (0 = Monday); ``id``
is dropped; every other column is categorical (hashed from its text, then a
frequency-thresholded vocabulary, by default values seen at least 5 times in the
training rows). Split by line order (the file is in time order): by default the
last 10% test, the 10% before valid.

Sides: the device columns (``device_id``, ``device_ip``, ``device_model``)
describe the user; the ad columns (``C1``, ``C14``-``C21``) the item; the
publisher (``site_*``, ``app_*``), ``banner_pos``, the connection and the time are
context.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from bigrec.data.converters.badinput import BadInput
from bigrec.data.converters.tabular import Field, SplitRule, TabularSource
from bigrec.data.converters.textio import CsvFormat, read_header, require_file
from bigrec.errors import DataError

USER = ("device_id", "device_ip", "device_model")
ITEM = ("C1", "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21")
CONTEXT = ("banner_pos", "site_id", "site_domain", "site_category", "app_id", "app_domain", "app_category",
           "device_type", "device_conn_type")
RAW_NAMES = ("id", "click", "hour", "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id",
             "app_domain", "app_category", "device_id", "device_ip", "device_model", "device_type",
             "device_conn_type", "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21")
DEFAULTS = {"vocab": {"default": {"min_count": 5},
                      "features": {"hour_of_day": {"min_count": 1}, "weekday": {"min_count": 1}}},
            "dense": {"default": {}, "features": {}}}


def fields() -> list[Field]:
    out = [Field("click", "click", "label"), Field("hour_of_day", "hour_of_day", "sparse", key="int"),
           Field("weekday", "weekday", "sparse", key="int")]
    for name in RAW_NAMES[3:]:
        side = "user" if name in USER else "item" if name in ITEM else "context"
        out.append(Field(name, name, "sparse", key="str", side=side))
    return out


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm), vectorised."""
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def derive_time(table: pa.Table, lines: np.ndarray, path: str, bad: BadInput) -> tuple[pa.Table, np.ndarray]:
    """``hour`` (YYMMDDHH) -> ``hour_of_day`` and ``weekday`` (Monday = 0); impossible dates are bad lines."""
    hour = table.column("hour").to_numpy(zero_copy_only=False)
    hour = np.nan_to_num(hour.astype(np.float64), nan=-1).astype(np.int64)
    hh, dd, mm, yy = hour % 100, (hour // 100) % 100, (hour // 10_000) % 100, hour // 1_000_000
    ok = (hour >= 0) & (hh < 24) & (dd >= 1) & (dd <= 31) & (mm >= 1) & (mm <= 12)
    bad.report(path, lines[~ok], "hour is not a YYMMDDHH time", column="hour")
    weekday = (_days_from_civil(2000 + yy, mm, dd) + 3) % 7
    table = table.append_column("hour_of_day", pa.array(hh)).append_column("weekday", pa.array(weekday))
    return table.filter(pa.array(ok)), lines[ok]


def avazu_source(source: Path, valid_fraction: float | None = None, test_fraction: float | None = None) -> TabularSource:
    path = source if source.is_file() else require_file(source, ("train.csv", "train.gz", "train"), "Avazu train.csv")
    header = [name.strip() for name in read_header(path).split(",")]
    if header != list(RAW_NAMES):
        missing = [n for n in RAW_NAMES if n not in header]
        problem = f"missing column(s) {missing}" if missing else f"columns {header} are not in Avazu's order"
        raise DataError(str(path), f"not an Avazu header: {problem}; expected {','.join(RAW_NAMES)}")
    fmt = CsvFormat(RAW_NAMES, {"click": "int", "hour": "int"}, delimiter=",")
    split = SplitRule("fractions", 0.1 if valid_fraction is None else valid_fraction,
                      0.1 if test_fraction is None else test_fraction)
    return TabularSource("avazu", [path], fmt, fields(), split, skip_lines=1, derive=derive_time,
                         metadata={"time_features": "hour (YYMMDDHH) -> hour_of_day 0-23, weekday 0 = Monday"})


def add_arguments(parser, positive_int) -> None:
    parser.add_argument("--valid-fraction", type=float, default=0.1, help="lines before the test lines (default 0.1)")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="last lines (default 0.1)")


def convert(settings, args, bad) -> dict:
    from bigrec.data.converters.options import options_for
    from bigrec.data.converters.tabular import convert_tabular

    source = avazu_source(settings.source, args.valid_fraction, args.test_fraction)
    options = options_for(DEFAULTS, settings, [f.name for f in source.of_kind("sparse")], [])
    return {"": convert_tabular(source, settings, options, bad)}
