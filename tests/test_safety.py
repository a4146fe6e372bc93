"""Hostile input and cluster life: crafted and corrupted checkpoints, SIGTERM, one run per output
directory, and the plan command's output files (issue cases 1, 3, 4, 7 and 8)."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from bigrec.cli import main
from tests.conftest import VENV_BIN

FEATURES = [f"sparse_{i}" for i in range(8)] + ["dense_0", "dense_3"]


def write_config(path: Path, data_dir: Path, out_dir: Path, **trainer) -> Path:
    raw = {"data": {"path": str(data_dir), "batch_size": 2048, "eval_batch_size": 2000},
           "model": {"name": "deepfm", "features": FEATURES, "embedding_dim": 4, "hidden_units": [8]},
           "trainer": {"epochs": 1, "output_dir": str(out_dir), "progress_bar": False, "checkpoint_every_steps": 3,
                       "keep_last": 3, **trainer},
           "sharding": {"print_plan": False}}
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def trained(criteo_small, tmp_path_factory) -> tuple[Path, Path]:
    """``(config, output dir)`` of a 1-rank run of 8 steps: step-3, step-6, step-8, best and final."""
    root = tmp_path_factory.mktemp("safety")
    config = write_config(root / "run.yaml", criteo_small, root / "run")
    assert main(["train", str(config)]) == 0
    return config, root / "run"


def copy_checkpoint(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def rewrite_manifest(directory: Path) -> None:
    """What an attacker does after editing a checkpoint: recompute every digest."""
    from bigrec.train import manifest

    names = [str(p.relative_to(directory)) for p in directory.rglob("*")
             if p.is_file() and p.name not in (manifest.MANIFEST, "COMPLETE")]
    manifest.write(directory, manifest.digests(directory, names))


class Payload:
    """Pickled, it runs ``exec`` on load and creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


# -------------------------------------------------- 1. no code runs from a checkpoint
def test_crafted_rank_file_does_not_run_code_on_resume(trained, tmp_path, capsys):
    config, run = trained
    crafted = copy_checkpoint(run / "checkpoints" / "step-00000006", tmp_path / "crafted")
    marker = tmp_path / "pwned"
    torch.save({"rng": Payload(marker)}, crafted / "ranks" / "rank-00000.pt")
    rewrite_manifest(crafted)
    code = main(["train", str(config), f"trainer.resume={crafted}", f"trainer.output_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert not marker.exists()
    assert code == 2 and "rank-00000.pt is refused" in err and "tensors and plain values only" in err, err


def test_crafted_dcp_index_does_not_run_code_on_eval(trained, tmp_path, capsys):
    config, run = trained
    crafted = copy_checkpoint(run / "checkpoints" / "best", tmp_path / "crafted")
    marker = tmp_path / "pwned"
    (crafted / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    rewrite_manifest(crafted)
    code = main(["eval", str(config), "--checkpoint", str(crafted)])
    err = capsys.readouterr().err
    assert not marker.exists()
    assert code == 2 and ".metadata" in err and "refused" in err and "builtins.exec" in err, err


def test_non_tensor_values_in_dcp_shards_are_read_without_code(tmp_path):
    from bigrec.train.safe_load import SafeLoadPlanner

    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError):
        SafeLoadPlanner().load_bytes(None, buffer)
    assert not marker.exists()


# -------------------------------------------------- 7. integrity: corruption of the right length, truncation
def test_flipped_bytes_in_a_shard_are_an_error(trained, tmp_path, capsys):
    config, run = trained
    damaged = copy_checkpoint(run / "checkpoints" / "best", tmp_path / "damaged")
    shard = damaged / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 1000] = bytes(b ^ 0xFF for b in data[middle:middle + 1000])
    shard.write_bytes(bytes(data))  # same length
    code = main(["eval", str(config), "--checkpoint", str(damaged)])
    err = capsys.readouterr().err
    assert code == 2 and "__0_0.distcp does not match its SHA-256" in err, err


def test_truncated_files_fall_back_under_auto_and_are_named_when_explicit(trained, tmp_path, capsys):
    from bigrec.train import checkpoint

    config, run = trained
    root = tmp_path / "checkpoints"
    for name in ("step-00000003", "step-00000006", "step-00000008"):
        copy_checkpoint(run / "checkpoints" / name, root / name)
    shard = root / "step-00000008" / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[:-100])
    rank_file = root / "step-00000006" / "ranks" / "rank-00000.pt"
    rank_file.write_bytes(rank_file.read_bytes()[:50])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert checkpoint.find_latest(root) == root / "step-00000003"  # the newest intact one
    skipped = " ".join(str(w.message) for w in caught)
    assert "step-00000008" in skipped and "__0_0.distcp has" in skipped and "truncated" in skipped, skipped
    assert "step-00000006" in skipped and "ranks/rank-00000.pt has 50 bytes" in skipped, skipped
    code = main(["train", str(config), f"trainer.resume={root / 'step-00000006'}",
                 f"trainer.output_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "ranks/rank-00000.pt has 50 bytes" in err, err


# -------------------------------------------------- 4. one run per output directory; delete only our own files
def test_a_second_run_on_the_same_output_dir_is_refused_and_sigterm_checkpoints(criteo_small, tmp_path, capsys,
                                                                               subprocess_env):
    """Run A (a process of its own) trains for long; run B on A's directory fails naming A; SIGTERM stops A
    after its current step with a checkpoint at that step (exit 143), and a resume continues from it."""
    out = tmp_path / "run"
    config = write_config(tmp_path / "run.yaml", criteo_small, out, epochs=1000, checkpoint_every_steps=0,
                          debug_log_steps=True)
    env = {k: v for k, v in subprocess_env.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}  # a port of its own
    first = subprocess.Popen([str(VENV_BIN / "bigrec"), "train", str(config)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (out / "steps" / "rank-00000.jsonl").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.2)
        code = main(["train", str(config)])
        err = capsys.readouterr().err
        assert code == 2 and "is in use by another bigrec run" in err, err
        assert f"pid {first.pid} on host {socket.gethostname()}" in err, err
        assert first.poll() is None  # the first run goes on
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "preempted: stopped by SIGTERM" in stderr, stderr[-3000:]
    steps = [json.loads(line) for line in (out / "steps" / "rank-00000.jsonl").read_text().splitlines()]
    last = steps[-1]["step"]
    saved = out / "checkpoints" / f"step-{last:08d}"
    assert (saved / "COMPLETE").exists()  # the checkpoint is at the last trained step
    progress = json.loads((saved / "meta.json").read_text())["progress"]
    assert main(["train", str(config), "trainer.resume=auto", f"trainer.epochs={progress['epoch'] + 1}"]) == 0
    records = [json.loads(line) for line in (out / "steps" / "rank-00000.jsonl").read_text().splitlines()]
    trained_steps = [r["step"] for r in records if "step" in r]
    assert trained_steps == list(range(1, len(trained_steps) + 1))  # no step lost or repeated
    assert {"attempt": 0, "resumed_from_step": last} in records


def test_directory_not_made_by_bigrec_is_refused_unless_reused(criteo_small, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    config = write_config(tmp_path / "run.yaml", criteo_small, out, max_steps_per_epoch=2)
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert "not empty and was not made by bigrec" in err and "notes.txt" in err and "reuse_output_dir" in err, err
    assert main(["train", str(config), "trainer.reuse_output_dir=true"]) == 0
    assert (out / "notes.txt").read_text() == "my notes" and (out / "checkpoints" / "final" / "COMPLETE").exists()


def test_only_files_bigrec_wrote_are_deleted(trained, tmp_path, capsys):
    from bigrec.train import checkpoint

    config, run = trained
    out = tmp_path / "run"
    shutil.copytree(run, out)
    root = out / "checkpoints"
    (root / "step-00000007").mkdir()
    (root / "step-00000007" / "weights.bin").write_text("not bigrec's")
    (root / "best" / "extra.txt").write_text("not bigrec's")
    code = main(["train", str(config), f"trainer.output_dir={out}"])
    err = capsys.readouterr().err
    assert code == 2 and "checkpoints/best holds file(s) bigrec did not write (['extra.txt'])" in err, err
    with pytest.warns(checkpoint.CheckpointWarning, match=r"kept .*step-00000007.*weights.bin"):
        checkpoint.prune(root, keep_last=1)
    assert (root / "step-00000007" / "weights.bin").exists()
    assert sorted(p.name for p in root.iterdir()) == ["best", "final", "step-00000007", "step-00000008"]
    (root / "best" / "extra.txt").unlink()
    assert main(["train", str(config), f"trainer.output_dir={out}"]) == 0  # replaces best/ and final/
    assert (root / "step-00000007" / "weights.bin").exists()


# -------------------------------------------------- 8. bigrec plan --output keeps plan and chart apart
def test_plan_output_with_a_png_suffix_keeps_the_plan(trained, tmp_path, capsys):
    config, _ = trained
    output = tmp_path / "x.png"
    assert main(["plan", str(config), "--world-size", "2", "--output", str(output), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(output.read_text())["world_size"] == 2  # still the plan file
    assert (tmp_path / "x.chart.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "x.report.json").read_text())["summary"]["world_size"] == 2
    assert f"sharding.plan={output}" in printed and f"chart: {tmp_path / 'x.chart.png'}" in printed
    assert main(["plan", str(config), "--world-size", "2", "--output", str(output), "--chart", str(output)]) == 2
    assert "--output and --chart name the same file" in capsys.readouterr().err


def test_second_signal_stops_at_once(tmp_path):
    """The handler's escape hatch: a second SIGTERM restores the default action (checked in a child)."""
    script = ("import os, signal, time\n"
              "from bigrec.train.preemption import Preemption\n"
              "with Preemption() as p:\n"
              "    os.kill(os.getpid(), signal.SIGTERM)\n"
              "    assert p.poll() and p.exit_status() == 143\n"
              "    os.kill(os.getpid(), signal.SIGTERM)\n"
              "    time.sleep(5)\n"
              "print('survived')\n")
    done = subprocess.run([str(VENV_BIN / "python"), "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == -signal.SIGTERM and "survived" not in done.stdout, done.stderr
