"""bigrec: recommender models on sharded TorchRec embedding tables.

Importing bigrec checks that the pinned stack is installed and, when a package is
missing, names it and the command that installs it (the stack is not pulled in by
``pip install bigrec`` itself, so that pip never replaces a CUDA or CPU torch build).
"""

from __future__ import annotations

import importlib.util

__version__ = "0.1.0"

# import name -> (distribution pin, how to install it)
STACK = {
    "torch": ("torch==2.13.0", "pip install 'bigrec[cpu]' (or [cuda]), or bash tools/install.sh"),
    "fbgemm_gpu": ("fbgemm-gpu-cpu==1.8.0 / fbgemm-gpu==1.8.0", "pip install 'bigrec[cpu]' (or [cuda])"),
    "torchrec": ("torchrec==1.8.0", "pip install --no-deps torchrec==1.8.0 (CPU; its metadata asks for the CUDA "
                                    "fbgemm-gpu), or pip install 'bigrec[cuda]'"),
    "torchmetrics": ("torchmetrics==1.0.3", "pip install torchmetrics==1.0.3"),
    "tensordict": ("tensordict", "pip install tensordict"),
}


def missing_stack() -> list[str]:
    """One line per missing package of the pinned stack: the package, its pin, the install command."""
    return [f"{name} ({pin}) is not installed: {command}" for name, (pin, command) in STACK.items()
            if importlib.util.find_spec(name) is None]


_missing = missing_stack()
if _missing:
    raise ImportError("bigrec needs its pinned torch stack:\n  " + "\n  ".join(_missing))
