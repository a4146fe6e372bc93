"""One run per output directory, and only bigrec's own directories reused.

Rank 0 of a training job claims ``trainer.output_dir`` before anything is written
there:

* ``.bigrec-lock`` is locked (``flock``) for the life of the run and names its
  host, process and start time; a second run gets one error naming them. The
  operating system drops the lock when the process dies, so a crashed or
  preempted run never leaves the directory locked.
* ``.bigrec-output`` marks a directory bigrec made. A non-empty directory
  without it is refused unless ``trainer.reuse_output_dir`` is set.
* ``checkpoints/best`` and ``checkpoints/final`` are replaced by every run; if
  they hold files bigrec did not write (not in their manifest), the run is
  refused before it starts rather than failing at its first save.

The verdict is broadcast, so every rank of the job stops with the same message.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO, Optional

from bigrec.errors import ConfigError
from bigrec.train import manifest
from bigrec.train.distributed import raise_for_all

LOCK = ".bigrec-lock"
MARKER = ".bigrec-output"
REPLACED = ("checkpoints/best", "checkpoints/final")
_HELD: dict[Path, "RunLock"] = {}  # locks this process holds (a process may re-claim its own directory)


class RunLock:
    """The lock on an output directory, held until :meth:`release` or the process ends."""

    def __init__(self, directory: Path, handle: IO[bytes]) -> None:
        self.directory = directory
        self.handle = handle

    def release(self) -> None:
        if _HELD.get(self.directory) is self:
            del _HELD[self.directory]
            self.handle.truncate(0)
            self.handle.close()  # closing drops the flock


def _holder(handle: IO[bytes]) -> str:
    """Who holds the lock, from the lock file's contents."""
    handle.seek(0)
    try:
        info = json.loads(handle.read().decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        info = {}
    if not info:
        return "a run that has not written its details yet"
    return (f"pid {info.get('pid')} on host {info.get('host')}, started {info.get('started')}: "
            f"{info.get('command')}")


def _lock(directory: Path) -> RunLock:
    held = _HELD.get(directory)
    if held is not None:
        return held
    handle = open(directory / LOCK, "a+b")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(handle)
        handle.close()
        raise ConfigError(f"output directory {directory} is in use by another bigrec run ({holder}); wait for it "
                          f"to finish, stop it, or set another trainer.output_dir") from None
    handle.truncate(0)
    handle.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                             "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                             "command": " ".join(sys.argv)[:300]}).encode())
    handle.flush()
    _HELD[directory] = lock = RunLock(directory, handle)
    return lock


def _check_contents(directory: Path, reuse: bool) -> Optional[str]:
    if not (directory / MARKER).exists():
        others = sorted(p.name for p in directory.iterdir() if p.name != LOCK)
        if others and not reuse:
            return (f"output directory {directory} is not empty and was not made by bigrec (it holds "
                    f"{others[:5]}{' ...' if len(others) > 5 else ''}); set trainer.reuse_output_dir=true to use "
                    f"it anyway (bigrec deletes only files it wrote) or choose another trainer.output_dir")
    for name in REPLACED:
        foreign = manifest.foreign_files(directory / name)
        if foreign:
            return (f"{directory / name} holds file(s) bigrec did not write ({foreign[:5]}) and every run "
                    f"replaces it; move them away")
    return None


def claim(directory: str | Path, reuse: bool = False) -> RunLock:
    """Lock ``directory`` for this run and check bigrec may write there (ConfigError otherwise)."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    lock = _lock(directory)
    problem = _check_contents(directory, reuse)
    if problem:
        lock.release()
        raise ConfigError(problem)
    (directory / MARKER).write_text(json.dumps({"made_by": "bigrec"}) + "\n")
    return lock


def claim_for_job(directory: str | Path, reuse: bool, is_main: bool) -> Optional[RunLock]:
    """Rank 0 claims ``directory``; every rank raises the same ConfigError if that fails (collective)."""
    lock, problem = None, None
    if is_main:
        try:
            lock = claim(directory, reuse)
        except ConfigError as exc:
            problem = str(exc)
    raise_for_all(problem)
    return lock
