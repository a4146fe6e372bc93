"""Packaging: the wheel declares bigrec's run-time needs, ships the configs, and a missing
piece of the pinned stack is named with its install command."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True)
    [path] = out.glob("bigrec-*.whl")
    return path


def test_wheel_declares_runtime_needs_extras_and_configs(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    plain = [r for r in requires if "extra ==" not in r]
    for package in ("pyarrow", "pyyaml", "tensorboard", "tqdm", "torchx==0.7.0"):
        assert any(r.replace(" ", "").lower().startswith(package) for r in plain), package
    assert not any(r.startswith(("torch", "fbgemm")) and not r.startswith("torchx") for r in plain)  # no stray torch
    extras = {r.split("extra ==")[1].strip().strip("'\"") for r in requires if "extra ==" in r}
    assert {"cpu", "cuda", "dev"} <= extras
    assert any("torch==2.13.0" in r and "cpu" in r for r in requires)
    assert any(n.endswith("share/bigrec/configs/ranking/deepfm_ml100k.yaml") for n in names)


def test_missing_stack_names_the_package_and_the_command(monkeypatch):
    import importlib.util

    import bigrec

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchrec" else real(name, *a))
    [line] = bigrec.missing_stack()
    assert "torchrec (torchrec==1.8.0)" in line and "pip install --no-deps torchrec==1.8.0" in line


def test_configs_command_lists_and_copies(tmp_path):
    from bigrec.cli import main

    assert main(["configs", "--copy", str(tmp_path)]) == 0
    assert (tmp_path / "ranking" / "deepfm_ml100k.yaml").is_file()
