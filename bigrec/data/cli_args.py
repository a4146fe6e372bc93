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

