"""``bigrec train CONFIG [key.path=value ...]``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model (one rank; launch with torchrun/TorchX for more)")
    parser.add_argument("config", help="YAML run config, e.g. configs/ranking/deepfm_ml100k.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.epochs=3")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bigrec.config import load_config
    from bigrec.train.distributed import destroy_process_group
    from bigrec.train.trainer import train

    config = load_config(args.config, args.overrides)
    try:
        train(config)
    finally:
        destroy_process_group()
    return 0
