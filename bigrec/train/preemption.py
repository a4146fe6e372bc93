"""SIGTERM / SIGINT during training: finish the step, checkpoint, exit as preempted.

Slurm and Kubernetes send SIGTERM some time before they kill a job; torchrun
forwards it to every rank. :class:`Preemption` turns the signal into a flag that
the training loop polls once per step. The ranks must stop after the *same*
step (a checkpoint is collective), but the signal reaches them at different
moments, so the flags are combined with an all-reduce (max) on a small gloo
group, launched every ``every`` steps (8: a collective per step costs a CPU rank a
gloo round trip it does not need). The all-reduce launched after step ``k`` is
read after step ``k + every``: it never waits on the network, and every rank
learns the verdict at the same step. The loop then writes a step checkpoint at
that exact position and raises :class:`~bigrec.errors.Preempted`, which the CLI
turns into exit status ``128 + signal`` (143 for SIGTERM, 130 for SIGINT), the
status a job killed by that signal has.

A second signal while stopping restores the default handler and re-sends it:
the process dies at once.
"""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Optional

import torch
import torch.distributed as dist
from tqdm import tqdm

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preemption:
    """The stop request of a training job (see the module docstring).

    ``with preemption: ...`` installs the handlers (main thread only)
    and restores the previous ones on exit; :meth:`poll` (every step) and
    :meth:`agreed` (at an epoch end) are collective when a process group exists.
    """

    def __init__(self, every: int = 8) -> None:
        self.signum: Optional[int] = None  # the first signal received by this process
        self.every = every  # steps between the all-reduces of a multi-rank job
        self._polls = 0
        self.group = None
        if dist.is_initialized() and dist.get_world_size() > 1:
            self.group = dist.new_group(backend="gloo")  # CPU flags: no device sync, even under NCCL
        self._flag = torch.zeros(1, dtype=torch.int32)
        self._work = None
        self._previous: dict[int, object] = {}

    # ------------------------------------------------------------ handlers
    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.signum is not None:  # second signal: stop now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        tqdm.write(f"received {signal.Signals(signum).name}: stopping after the current step with a checkpoint "
                   f"(send it again to stop at once)")

    def __enter__(self) -> "Preemption":
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    # ------------------------------------------------------------- polling
    @property
    def requested(self) -> bool:
        """This process received a stop signal."""
        return self.signum is not None

    def _verdict(self) -> Optional[bool]:
        """The result of the all-reduce in flight (None if none is)."""
        if self._work is None:
            return None
        self._work.wait()
        self._work = None
        return bool(self._flag.item())

    def poll(self) -> bool:
        """After every step, on every rank: True on all ranks at the same step once any rank was signalled
        (on one rank at once; with several, at most ``2 * every`` steps later)."""
        self._polls += 1
        if self.group is not None and self._polls % self.every:
            return False
        return self._combine(wait=False)

    def agreed(self) -> bool:
        """Like :meth:`poll` but answered now (a blocking all-reduce): for epoch ends."""
        return self._combine(wait=True)

    def _combine(self, wait: bool) -> bool:
        """Read the all-reduce in flight, launch the next one (and with ``wait`` read it too)."""
        if self.group is None:
            return self.requested
        if self._verdict():
            return True
        self._flag.fill_(int(self.requested))
        self._work = dist.all_reduce(self._flag, op=dist.ReduceOp.MAX, group=self.group, async_op=True)
        return bool(self._verdict()) if wait else False

    def close(self) -> None:
        """Complete the all-reduce in flight (every rank launched it)."""
        self._verdict()

    def describe(self) -> str:
        """What stopped the run, for the message."""
        return signal.Signals(self.signum).name if self.signum else "a signal another rank received"

    def exit_status(self) -> int:
        """``128 + signal``: what a scheduler sees for a job stopped by that signal."""
        return 128 + int(self.signum or signal.SIGTERM)
