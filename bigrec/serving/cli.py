"""``bigrec export`` and ``bigrec retrieve``: embeddings of a recall checkpoint and top-K from them."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="write user and item embeddings of a recall checkpoint to Parquet")
    export.add_argument("checkpoint", help="checkpoint directory, e.g. runs/sasrec_ml100k/checkpoints/best")
    export.add_argument("--output", required=True, help="output directory (items.parquet, users.parquet)")
    export.add_argument("--split", default="test", help="split of the run's data whose rows become users (test)")
    export.add_argument("--data", help="Parquet file/dir/glob to export users from instead of --split")
    export.add_argument("--batch-size", type=int, default=4096)
    export.set_defaults(handler=_export)

    retrieve = subparsers.add_parser("retrieve", help="top-K items for given users from exported embeddings")
    retrieve.add_argument("export_dir", help="directory written by `bigrec export`")
    retrieve.add_argument("--users", required=True, help="comma-separated user ids")
    retrieve.add_argument("-k", "--k", type=int, default=10, help="items per user (default 10)")
    retrieve.add_argument("--keep-seen", action="store_true", help="do not exclude the users' seen items")
    retrieve.add_argument("--backend", default="auto", choices=["auto", "torch", "faiss"],
                          help="auto: FAISS when installed, else brute-force torch top-K")
    retrieve.set_defaults(handler=_retrieve)


def _export(args: argparse.Namespace) -> int:
    from bigrec.serving.export import export_embeddings

    meta = export_embeddings(args.checkpoint, args.output, args.split, args.data, args.batch_size)
    print(f"{args.output}: {meta['num_items']} items, {meta['num_users']} users, dim {meta['dim']}")
    return 0


def _retrieve(args: argparse.Namespace) -> int:
    from bigrec.errors import ConfigError
    from bigrec.serving.export import retrieve

    try:
        users = [int(u) for u in args.users.split(",") if u.strip()]
    except ValueError:
        raise ConfigError(f"--users must be comma-separated integer ids, got '{args.users}'") from None
    if args.k < 1:
        raise ConfigError(f"-k must be >= 1, got {args.k}")
    for user, ranked in retrieve(args.export_dir, users, args.k, not args.keep_seen, args.backend).items():
        print(json.dumps({"user_id": user, "items": [i for i, _ in ranked],
                          "scores": [round(s, 5) for _, s in ranked]}))
    return 0
