"""``bigrec data criteo|avazu|taobao|ali-ccp|amazon`` (and MovieLens 1M/20M/25M through ``bigrec data movielens``)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from bigrec.data.converters.badinput import BadInput
from bigrec.data.converters.common import Settings, fix_heap_growth, print_summary

PARQUET_CODECS = ("snappy", "zstd", "lz4", "gzip", "none")
# name -> (module, one-line help)
CONVERTERS = {
    "criteo": ("criteo", "Criteo Kaggle train.txt or 1TB day_0..day_23 -> sharded Parquet (CTR)"),
    "avazu": ("avazu", "Avazu train.csv -> sharded Parquet (CTR)"),
    "taobao": ("taobao", "Taobao user behaviour UserBehavior.csv -> behaviour sequences (DIN/DIEN/BST) and recall"),
    "ali-ccp": ("aliccp", "Ali-CCP sample skeletons + common features -> click and conversion labels (ESMM, MMoE)"),
    "amazon": ("amazon", "Amazon reviews 5-core JSON lines (+ metadata categories) -> sequences and recall"),
}


def add_common_arguments(parser: argparse.ArgumentParser, positive_int) -> None:
    """Options every converter takes, plus positional ``key=value`` preprocessing overrides."""
    parser.add_argument("--source", required=True, help="raw file or directory (the data set's published layout)")
    parser.add_argument("--output", required=True, help="output directory (written under a temporary name, "
                                                        "renamed at the end)")
    parser.add_argument("--row-group-size", type=positive_int, default=65536, help="Parquet row group (default 65536)")
    parser.add_argument("--embedding-dim", type=positive_int, default=16, help="embedding dim in schema.json")
    parser.add_argument("--seed", type=int, default=0, help="seed of negative sampling (sequence data sets)")
    add_scale_arguments(parser, positive_int)


def add_scale_arguments(parser: argparse.ArgumentParser, positive_int) -> None:
    """The out-of-core options (also on ``bigrec data movielens`` for 1M / 20M / 25M)."""
    parser.add_argument("--memory-mb", type=positive_int, default=2048,
                        help="memory cap in MiB: block sizes, counting budgets and spill partitions follow it "
                             "(default 2048)")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad line (default: skip, count, "
                                                              "report the first few)")
    parser.add_argument("--rows-per-file", type=positive_int, default=2_000_000,
                        help="rows per Parquet file (default 2000000)")
    parser.add_argument("--workers", type=positive_int, default=2, help="parsing / encoding threads (default 2)")
    parser.add_argument("--temp-dir", help="scratch space for spill files (default: inside the output's temporary "
                                           "directory)")
    parser.add_argument("--partitions", type=positive_int, default=0,
                        help="spill partitions of the sequence / join converters (default: from the memory cap "
                             "and the input size)")
    parser.add_argument("--compression", default="snappy", choices=PARQUET_CODECS,
                        help="Parquet codec of the output files (default snappy)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--config", help="preprocessing YAML (vocab / dense per feature; see docs/data.md)")
    parser.add_argument("overrides", nargs="*", help="preprocessing overrides, e.g. vocab.default.min_count=5 "
                                                     "vocab.features.sparse_3.hash_buckets=100000")


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(source=Path(args.source), output=Path(args.output), memory_mb=args.memory_mb,
                    strict=args.strict, rows_per_file=args.rows_per_file, row_group_size=args.row_group_size,
                    embedding_dim=args.embedding_dim, workers=args.workers, progress=not args.no_progress,
                    temp_dir=args.temp_dir, seed=args.seed, config=args.config, overrides=list(args.overrides),
                    partition_count=args.partitions, compression=args.compression)


def register(commands, positive_int) -> None:
    for name, (module, help_text) in CONVERTERS.items():
        parser = commands.add_parser(name, help=help_text)
        add_common_arguments(parser, positive_int)
        importlib.import_module(f"bigrec.data.converters.{module}").add_arguments(parser, positive_int)
        parser.set_defaults(handler=run, converter=name)


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"bigrec.data.converters.{CONVERTERS[args.converter][0]}")
    settings = settings_from(args)
    bad = BadInput(strict=settings.strict)
    fix_heap_growth()
    results = module.convert(settings, args, bad)
    print_summary(args.converter, settings.output, results, bad)
    return 0


def run_movielens_large(args: argparse.Namespace) -> int:
    from bigrec.data.converters.movielens_large import convert_movielens

    settings = settings_from(args)
    bad = BadInput(strict=settings.strict)
    fix_heap_growth()
    results = convert_movielens(settings, args.history_len, bad)
    print_summary("movielens", settings.output, results, bad)
    return 0
