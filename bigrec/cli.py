"""``bigrec`` command line: ``bigrec train|data|plan|eval|predict|export|retrieve|configs``.

Each sub-command lives in its own module exposing ``register(subparsers)``; the
module's handler receives the parsed ``argparse.Namespace``. A :class:`BigrecError`
anywhere ends the command with one ``error: ...`` line and exit status 2; a run
stopped by SIGTERM/SIGINT (:class:`Preempted`) exits with 128 + the signal.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bigrec.errors import BigrecError, Preempted
from bigrec.logs import quiet_third_party

# Modules that register sub-commands; each has ``register(subparsers)``.
COMMAND_MODULES = (
    "bigrec.train.cli",
    "bigrec.data.cli",
    "bigrec.serving.cli",
    "bigrec.train.eval_cli",
    "bigrec.plan.cli",
    "bigrec.configs_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bigrec", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    quiet_third_party()
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except Preempted as exc:
        print(f"preempted: {exc}", file=sys.stderr, flush=True)
        return exc.exit_status
    except BigrecError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
