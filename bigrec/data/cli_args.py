"""Argument helpers shared by the ``bigrec data`` sub-commands (kept apart from :mod:`bigrec.data.cli`,
which imports the generators that use them)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def synthetic_parser(commands, name: str, help: str, rows: int = 100_000):
    """A ``bigrec data NAME`` parser with the arguments every generator takes: ``--output``,
    ``--rows``, ``--seed`` and ``--embedding-dim`` (the rest are the generator's own)."""
    parser = commands.add_parser(name, help=help)
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--rows", type=positive_int, default=rows, help=f"total rows over all splits (default {rows})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embedding-dim", type=positive_int, default=16, help="embedding dim in schema.json")
    return parser


def behaviour_parser(commands, name: str, help: str):
    """:func:`synthetic_parser` plus the arguments of the behaviour-sequence generators (DIN, DIEN, BST):
    ``--num-items``, ``--num-categories``, ``--max-len`` and ``--strength``."""
    parser = synthetic_parser(commands, name, help)
    parser.add_argument("--num-items", type=positive_int, default=1000)
    parser.add_argument("--num-categories", type=positive_int, default=20)
    parser.add_argument("--max-len", type=positive_int, default=20, help="longest history in the schema (default 20)")
    parser.add_argument("--strength", type=float, default=1.5, help="planted logit is +-strength (default 1.5)")
    return parser
