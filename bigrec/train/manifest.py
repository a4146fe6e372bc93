"""A checkpoint's integrity manifest, and deleting only what bigrec wrote.

``MANIFEST.json`` lists every file of a checkpoint with its size and SHA-256.
It is written after all shards are on disk and before the ``COMPLETE`` marker;
:func:`check` recomputes the digests (each rank a share of the files when a
process group exists) before any byte of the checkpoint is interpreted, so a
flipped, truncated or missing file is found before DCP reads it.

The manifest is also the record of what bigrec wrote: :func:`remove_owned`
deletes a checkpoint directory's listed files and nothing else. A staging
directory (``<name>.tmp``, no manifest yet) is recognised by the marker bigrec
writes into it first, and only files named like bigrec's own are deleted there.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Optional

import torch.distributed as dist

from bigrec.errors import ConfigError

MANIFEST = "MANIFEST.json"
STAGING_MARKER = ".bigrec-staging"
FORMAT = 1
# Files bigrec (or DCP on its behalf) writes into a checkpoint directory.
_OWN_NAME = re.compile(r"^(\.metadata(\.tmp)?|__\d+_\d+\.distcp|ranks/rank-\d+\.pt|meta\.json|schema\.json|"
                       r"config\.yaml|plan\.json|COMPLETE|" + re.escape(MANIFEST) + "|" + re.escape(STAGING_MARKER)
                       + ")$")


class IntegrityError(ConfigError):
    """A checkpoint file is missing, truncated or changed since it was written."""


def digest(path: Path) -> dict:
    """``{"bytes": size, "sha256": hex digest}`` of one file."""
    with open(path, "rb") as stream:
        sha = hashlib.file_digest(stream, "sha256").hexdigest()
    return {"bytes": path.stat().st_size, "sha256": sha}


def digests(root: Path, names: list[str]) -> dict[str, dict]:
    return {name: digest(root / name) for name in names}


def write(root: Path, entries: dict[str, dict]) -> None:
    """Write ``MANIFEST.json`` listing ``entries`` (relative path -> digest)."""
    payload = {"format": FORMAT, "files": dict(sorted(entries.items()))}
    (root / MANIFEST).write_text(json.dumps(payload, indent=1) + "\n")


def read(root: Path) -> dict[str, dict]:
    """The manifest's ``{relative path: {"bytes", "sha256"}}``; IntegrityError if absent or malformed."""
    path = root / MANIFEST
    if not path.is_file():
        raise IntegrityError(f"checkpoint {root} has no integrity manifest {MANIFEST} (written by an older "
                             f"bigrec, or not by bigrec); it cannot be checked")
    try:
        payload = json.loads(path.read_text())
        files = payload["files"]
        ok = payload.get("format") == FORMAT and isinstance(files, dict) and all(
            isinstance(name, str) and _safe_relative(name) and isinstance(entry, dict)
            and isinstance(entry.get("bytes"), int) and isinstance(entry.get("sha256"), str)
            for name, entry in files.items())
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise IntegrityError(f"checkpoint {root}: {MANIFEST} is not a bigrec integrity manifest (damaged?)")
    return files


def _safe_relative(name: str) -> bool:
    """A path inside the checkpoint directory (no ``..``, not absolute)."""
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts


def _problem(root: Path, name: str, entry: dict, hashes: bool) -> Optional[str]:
    path = root / name
    if not path.is_file():
        return f"{name} is missing"
    size = path.stat().st_size
    if size != entry["bytes"]:
        return f"{name} has {size} bytes, {entry['bytes']} when written (truncated or replaced)"
    if hashes and digest(path)["sha256"] != entry["sha256"]:
        return f"{name} does not match its SHA-256 (the file was changed or corrupted after it was written)"
    return None


def check(root: Path, hashes: bool = True) -> dict[str, dict]:
    """Check every listed file's size (and with ``hashes`` its SHA-256); IntegrityError naming the bad ones.

    With a process group of several ranks every rank must call it: each hashes a
    share of the files and all ranks reach the same verdict.
    """
    files = read(root)
    names = sorted(files)
    share = names
    group = dist.is_initialized() and dist.get_world_size() > 1
    if group and hashes:
        share = names[dist.get_rank()::dist.get_world_size()]
    problems = [p for name in share if (p := _problem(root, name, files[name], hashes))]
    if group and hashes:
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, problems)
        problems = sorted(p for part in gathered for p in part)
    if problems:
        shown = "; ".join(problems[:4]) + (f"; ... ({len(problems) - 4} more)" if len(problems) > 4 else "")
        raise IntegrityError(f"checkpoint {root} fails its integrity check: {shown}")
    return files


# --------------------------------------------------------------------- deleting
def foreign_files(root: Path) -> list[str]:
    """Files under checkpoint directory ``root`` that bigrec did not write (sorted relative paths)."""
    if not root.is_dir():
        return []
    present = sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())
    if (root / MANIFEST).is_file():
        try:
            listed = set(read(root)) | {MANIFEST, "COMPLETE", STAGING_MARKER}
        except IntegrityError:
            return present
        return [name for name in present if name not in listed]
    if (root / STAGING_MARKER).is_file():
        return [name for name in present if not _OWN_NAME.match(name)]
    return present


def remove_owned(root: Path) -> list[str]:
    """Delete the files bigrec wrote under ``root``, and ``root`` if nothing else is left.

    Returns the files left in place because bigrec did not write them.
    """
    if not root.is_dir():
        return []
    foreign = set(foreign_files(root))
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        name = str(path.relative_to(root))
        if path.is_dir():
            if not any(path.iterdir()):
                path.rmdir()
        elif name not in foreign and name != STAGING_MARKER:
            path.unlink()
    if (root / STAGING_MARKER).exists():
        (root / STAGING_MARKER).unlink()
    if not any(root.iterdir()):
        root.rmdir()
    return sorted(foreign)
