"""``bigrec data movielens|synthetic-*``: prepare data sets as Parquet."""

from __future__ import annotations

import argparse
import json
import time

from bigrec.data.cli_args import behaviour_parser, positive_int as _positive_int, synthetic_parser


def _cardinalities(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"cardinalities must be integers >= 1, got {text!r}")
    return values


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="prepare data sets (MovieLens-100k, synthetic Criteo-like)")
    commands = data.add_subparsers(dest="data_command", required=True)

    ml = commands.add_parser(
        "movielens", help="MovieLens 100k / 1M / 20M / 25M -> ranking/ and recall/ Parquet")
    ml.add_argument("--source", required=True, help="directory with u.data/u.user/u.item or ml-100k.inter/.user/.item "
                                                    "(100k), ratings.dat/users.dat/movies.dat (1M), or "
                                                    "ratings.csv/movies.csv (20M, 25M)")
    ml.add_argument("--output", required=True, help="output directory (gets ranking/, recall/, vocab.json)")
    ml.add_argument("--history-len", type=_positive_int, default=50, help="items kept in hist_item_ids (default 50)")
    ml.add_argument("--sequence-stride", type=_positive_int, default=None,
                    help="targets per window of recall/train_sequences.parquet, <= --history-len; the earlier "
                         "positions are context only (default half of --history-len)")
    ml.add_argument("--seed", type=int, default=0, help="recorded in the schema; the preparation is deterministic")
    ml.add_argument("--row-group-size", type=_positive_int, default=8192, help="Parquet row group size (default 8192)")
    ml.add_argument("--embedding-dim", type=_positive_int, default=16, help="embedding dim in schema.json (default 16)")
    from bigrec.data.converters.cli import add_scale_arguments

    add_scale_arguments(ml, _positive_int)  # MovieLens 1M / 20M / 25M are converted out of core
    ml.set_defaults(handler=_run_movielens)

    sc = commands.add_parser("synthetic-criteo", help="synthetic Criteo-like click data with a planted signal")
    sc.add_argument("--output", required=True, help="output directory")
    sc.add_argument("--rows", type=_positive_int, default=1_000_000, help="total rows over all splits (default 1000000)")
    cards = sc.add_mutually_exclusive_group()
    cards.add_argument("--cardinalities", type=_cardinalities,
                       help="comma-separated cardinality per sparse column (one value: 26 columns of that size)")
    cards.add_argument("--max-cardinality", type=_positive_int,
                       help="26 columns spread geometrically from 10 to this (default 100000)")
    sc.add_argument("--row-group-size", type=_positive_int, default=65536, help="Parquet row group size (default 65536)")
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--valid-fraction", type=float, default=0.1)
    sc.add_argument("--test-fraction", type=float, default=0.1)
    sc.add_argument("--embedding-dim", type=_positive_int, default=16, help="embedding dim in schema.json (default 16)")
    sc.set_defaults(handler=_run_synthetic_criteo)
    from bigrec.data.synthetic_fields import add_cli as add_fields_cli
    from bigrec.data.synthetic_sequences import add_cli as add_sequences_cli

    add_sequences_cli(commands, _positive_int)
    from bigrec.data.synthetic_interests import add_cli as add_interests_cli

    add_interests_cli(commands, _positive_int)
    add_fields_cli(commands, _positive_int)
    from bigrec.data.synthetic_order import add_cli as add_order_cli

    add_order_cli(commands, _positive_int)
    _register_behavior_and_multitask(commands)
    from bigrec.data.converters.cli import register as register_converters

    register_converters(commands, _positive_int)


def _run_movielens(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bigrec.data.converters.movielens_large import detect
    from bigrec.data.movielens import prepare_movielens

    if Path(args.source).is_dir() and detect(Path(args.source)):
        from bigrec.data.converters.cli import run_movielens_large

        return run_movielens_large(args)
    if args.sequence_stride is not None and args.sequence_stride > args.history_len:
        raise _config_error("movielens", ValueError(f"--sequence-stride {args.sequence_stride} must be <= "
                                                    f"--history-len {args.history_len}"))
    started = time.perf_counter()
    schemas = prepare_movielens(args.source, args.output, history_len=args.history_len, seed=args.seed,
                                row_group_size=args.row_group_size, embedding_dim=args.embedding_dim,
                                sequence_stride=args.sequence_stride)
    elapsed = time.perf_counter() - started
    for name, schema in schemas.items():
        counts = {split: c["rows"] for split, c in schema.metadata["counts"].items()}
        print(f"{args.output}/{name}: {json.dumps(counts)}")
    print(f"prepared MovieLens ({schemas['ranking'].metadata['source_layout']} layout) in {elapsed:.2f}s")
    return 0


def _run_synthetic_criteo(args: argparse.Namespace) -> int:
    from bigrec.data.synthetic import NUM_SPARSE, generate_criteo_like

    cardinalities = args.cardinalities
    if cardinalities is not None and len(cardinalities) == 1:
        cardinalities = cardinalities * NUM_SPARSE
    try:
        started = time.perf_counter()
        schema = generate_criteo_like(
            args.output, args.rows, cardinalities=cardinalities, seed=args.seed,
            row_group_size=args.row_group_size, valid_fraction=args.valid_fraction,
            test_fraction=args.test_fraction, max_cardinality=args.max_cardinality,
            embedding_dim=args.embedding_dim)
    except ValueError as exc:
        from bigrec.errors import ConfigError

        raise ConfigError(f"synthetic-criteo: {exc}") from None
    elapsed = time.perf_counter() - started
    meta = schema.metadata
    print(f"{args.output}: {json.dumps(meta['rows'])}, positive rate {json.dumps(meta['positive_rate'])}, "
          f"Bayes AUC ~{meta['bayes_auc_estimate']}, {elapsed:.2f}s")
    return 0


def _register_behavior_and_multitask(commands) -> None:
    """``synthetic-behavior`` (DIN), ``synthetic-multitask``, ``synthetic-selection-bias`` (ESMM) and
    ``movielens-impressions`` (multi-task models)."""
    sb = behaviour_parser(commands, "synthetic-behavior", "synthetic behaviour sequences: label = candidate's "
                                                          "category occurs in the history (DIN)")
    sb.set_defaults(handler=_run_synthetic_behavior)

    sm = synthetic_parser(commands, "synthetic-multitask", "two binary tasks with a correlation knob (MMoE)")
    sm.add_argument("--correlation", type=float, default=0.0, help="cosine of the two task directions, in [-1, 1]")
    sm.set_defaults(handler=_run_synthetic_multitask)

    ss = synthetic_parser(commands, "synthetic-selection-bias", "impressions with planted sample-selection bias: "
                                                                "conversion observed only after a click (ESMM)")
    ss.add_argument("--num-users", type=_positive_int, default=3000)
    ss.add_argument("--num-items", type=_positive_int, default=3000)
    ss.add_argument("--correlation", type=float, default=0.8,
                    help="cosine of the click and conversion directions, in [-1, 1] (default 0.8)")
    ss.set_defaults(handler=_run_synthetic_selection_bias)

    mi = commands.add_parser("movielens-impressions", help="MovieLens-100k impressions with labels click and "
                                                           "conversion (rated items + sampled unrated ones)")
    mi.add_argument("--source", required=True, help="directory with the MovieLens-100k files (either layout)")
    mi.add_argument("--output", required=True, help="output directory")
    mi.add_argument("--negatives-per-rating", type=float, default=1.0, help="unrated samples per rating (default 1)")
    mi.add_argument("--seed", type=int, default=0)
    mi.add_argument("--embedding-dim", type=_positive_int, default=16, help="embedding dim in schema.json")
    mi.set_defaults(handler=_run_movielens_impressions)


def _config_error(command: str, exc: ValueError):
    from bigrec.errors import ConfigError

    return ConfigError(f"{command}: {exc}")


def _generate(command: str, generate, args: argparse.Namespace, **options):
    """``generate(output, rows, seed=..., embedding_dim=..., **options)``; a ValueError becomes a ConfigError."""
    try:
        return generate(args.output, args.rows, seed=args.seed, embedding_dim=args.embedding_dim, **options)
    except ValueError as exc:
        raise _config_error(command, exc) from None


def _run_synthetic_behavior(args: argparse.Namespace) -> int:
    from bigrec.data.synthetic_behavior import generate_behavior

    try:
        schema = generate_behavior(args.output, args.rows, num_items=args.num_items,
                                   num_categories=args.num_categories, max_len=args.max_len,
                                   strength=args.strength, seed=args.seed, embedding_dim=args.embedding_dim)
    except ValueError as exc:
        raise _config_error("synthetic-behavior", exc) from None
    print(f"{args.output}: {json.dumps(schema.metadata['rows'])}, Bayes AUC ~{schema.metadata['bayes_auc_estimate']}")
    return 0


def _run_synthetic_multitask(args: argparse.Namespace) -> int:
    from bigrec.data.synthetic_multitask import generate_multitask

    meta = _generate("synthetic-multitask", generate_multitask, args, correlation=args.correlation).metadata
    print(f"{args.output}: {json.dumps(meta['rows'])}, label correlation {meta['label_correlation_test']}, "
          f"Bayes AUC ~{json.dumps(meta['bayes_auc_estimate'])}")
    return 0


def _run_synthetic_selection_bias(args: argparse.Namespace) -> int:
    from bigrec.data.synthetic_selection_bias import generate_selection_bias

    meta = _generate("synthetic-selection-bias", generate_selection_bias, args, num_users=args.num_users,
                     num_items=args.num_items, correlation=args.correlation).metadata
    print(f"{args.output}: {json.dumps(meta['rows'])}, rates {json.dumps(meta['rates']['test'])}, "
          f"Bayes AUC ~{json.dumps(meta['bayes_auc_estimate'])}")
    return 0


def _run_movielens_impressions(args: argparse.Namespace) -> int:
    from bigrec.data.movielens_impressions import prepare_impressions

    try:
        schema = prepare_impressions(args.source, args.output, args.negatives_per_rating, seed=args.seed,
                                     embedding_dim=args.embedding_dim)
    except ValueError as exc:
        raise _config_error("movielens-impressions", exc) from None
    print(f"{args.output}: {json.dumps(schema.metadata['counts'])}")
    return 0
