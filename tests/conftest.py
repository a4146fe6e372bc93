"""Shared fixtures: small synthetic Criteo-like data made once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def criteo_small(tmp_path_factory) -> Path:
    """20k-row Criteo-like data with a planted signal and small tables."""
    from bigrec.data.synthetic import generate_criteo_like

    out = tmp_path_factory.mktemp("criteo_small")
    generate_criteo_like(out, rows=20000, max_cardinality=2000, seed=0, row_group_size=2048)
    return out


@pytest.fixture(scope="session")
def subprocess_env() -> dict:
    """Environment for CLI subprocesses: the venv's bin first on PATH (torchrun, torchx)."""
    env = dict(os.environ)
    # in-process trainers of earlier tests set these; a subprocess must pick its own free port
    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        env.pop(name, None)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env
