"""``bigrec configs``: list the bundled run configs, or copy them into a directory to edit.

Configs live in the source tree's ``configs/`` and, for an installed package, in
``<prefix>/share/bigrec/configs`` (setup.cfg's data files).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Optional

from bigrec.errors import ConfigError


def configs_root() -> Path:
    """The directory holding ``ranking/``, ``multitask/``, ``recall/``, ``topology/`` configs."""
    for candidate in (Path(__file__).resolve().parents[1] / "configs", Path(sys.prefix) / "share" / "bigrec" / "configs"):
        if (candidate / "ranking").is_dir():
            return candidate
    raise ConfigError("no bundled configs found (neither a source checkout's configs/ nor "
                      f"{Path(sys.prefix) / 'share' / 'bigrec' / 'configs'})")


def list_configs(root: Optional[Path] = None) -> list[str]:
    root = root or configs_root()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in (".yaml", ".json"))


def register(subparsers) -> None:
    parser = subparsers.add_parser("configs", help="list the bundled run configs, or copy them to edit")
    parser.add_argument("--copy", metavar="DIR", help="copy every bundled config into DIR (kept if present)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    root = configs_root()
    if args.copy:
        target = Path(args.copy)
        for name in list_configs(root):
            destination = target / name
            if not destination.exists():
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(root / name, destination)
        print(f"configs copied to {target}")
        return 0
    print(f"# {root}")
    print("\n".join(list_configs(root)))
    return 0
