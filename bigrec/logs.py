"""Quiet third-party chatter so users see bigrec's own output (plan, progress, metrics)."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_third_party() -> None:
    """Silence TorchRec/torch warnings that do not concern bigrec users.

    Set ``BIGREC_VERBOSE=1`` to see them again.
    """
    if os.environ.get("BIGREC_VERBOSE"):
        return
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torchrec\..*")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\..*")
    warnings.filterwarnings("ignore", message=r".*is_fx_tracing.*")
    warnings.filterwarnings("ignore", message=r".*deprecating ShardedTensor.*")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.distributed\.checkpoint.*")
    warnings.filterwarnings("ignore", message=r".*an autograd kernel was not registered.*")
    import torch  # noqa: F401  (torch sets its loggers' levels on import: set ours after it)

    logging.getLogger().setLevel(logging.ERROR)  # TorchRec logs shard-spec notes on the root logger
    for name in ("torchrec", "torch.distributed", "torch.fx", "torch._dynamo"):
        logging.getLogger(name).setLevel(logging.ERROR)
