"""``bigrec eval CONFIG --checkpoint DIR`` and ``bigrec predict CONFIG --checkpoint DIR --output FILE``.

Both run on one rank or under torchrun/TorchX on many; the checkpoint may have
been written by another world size or plan (it is resharded on load).
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser("eval", help="metrics of a checkpoint on the valid/test splits")
    _common(evaluate)
    evaluate.add_argument("--split", nargs="+", default=["valid", "test"], help="splits to evaluate")
    evaluate.add_argument("--output", help="also write the metrics to this JSON file")
    evaluate.set_defaults(handler=run_eval)

    predict = subparsers.add_parser("predict", help="score a split with a checkpoint, write Parquet")
    _common(predict)
    predict.add_argument("--split", default="test", help="split to score (train, valid or test)")
    predict.add_argument("--output", required=True, help="Parquet file: row, score(s), labels")
    predict.set_defaults(handler=run_predict)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML run config the checkpoint was trained with")
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory, e.g. runs/x/checkpoints/best")
    parser.add_argument("overrides", nargs="*", help="dotted overrides right after CONFIG, e.g. data.eval_batch_size=8192")


def _load(args: argparse.Namespace):
    from bigrec.config import load_config

    return load_config(args.config, args.overrides)


def run_eval(args: argparse.Namespace) -> int:
    config = _load(args)
    from bigrec.train.distributed import destroy_process_group
    from bigrec.train.predict import evaluate_checkpoint

    try:
        metrics = evaluate_checkpoint(config, args.checkpoint, args.split)
        import torch.distributed as dist

        if not dist.is_initialized() or dist.get_rank() == 0:
            text = json.dumps(metrics, indent=2)
            print(text, flush=True)
            if args.output:
                with open(args.output, "w") as out:
                    out.write(text + "\n")
    finally:
        destroy_process_group()
    return 0


def run_predict(args: argparse.Namespace) -> int:
    config = _load(args)
    from bigrec.train.distributed import destroy_process_group
    from bigrec.train.predict import predict

    try:
        table = predict(config, args.checkpoint, args.split, args.output)
        if table is not None:
            print(f"wrote {table.num_rows} scores to {args.output}", flush=True)
    finally:
        destroy_process_group()
    return 0
