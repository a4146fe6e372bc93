"""Fixtures shared by the model proofs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest


@pytest.fixture(scope="session")
def planted_fields(tmp_path_factory) -> Callable[..., Path]:
    """``planted_fields(signal, rows=50000)``: a ``synthetic_fields`` data set (seed 0), made once per session."""
    from bigrec.data.synthetic_fields import generate_fields

    made: dict[tuple[str, int], Path] = {}

    def get(signal: str, rows: int = 50000) -> Path:
        if (signal, rows) not in made:
            out = tmp_path_factory.mktemp(f"fields_{signal}_{rows}")
            generate_fields(out, rows=rows, signal=signal, seed=0, row_group_size=4096)
            made[signal, rows] = out
        return made[signal, rows]

    return get
