"""The command-line tools end to end, as a user runs them."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, VENV_BIN

pytestmark = pytest.mark.e2e

CONFIG = """
data: {{path: {data}, batch_size: 256, eval_batch_size: 2048, shuffle_buffer: 4096, num_workers: 1}}
model: {{name: deepfm, hidden_units: [64, 32], dropout_rates: 0.0, embedding_dim: 8}}
trainer:
  epochs: {epochs}
  output_dir: {out}
  dense_optimizer: {{name: adam, lr: 0.002}}
  sparse_optimizer: {{name: exact_row_wise_adagrad, lr: 0.1}}
  early_stopping: {{metric: auc, mode: max, patience: 1}}
"""


def write_config(tmp_path, data, epochs=3):
    path = tmp_path / "deepfm.yaml"
    path.write_text(CONFIG.format(data=data, out=tmp_path / "run", epochs=epochs))
    return path


def test_bigrec_train_learns_the_planted_signal(criteo_small, tmp_path, subprocess_env):
    config = write_config(tmp_path, criteo_small)
    done = subprocess.run([str(VENV_BIN / "bigrec"), "train", str(config), "trainer.progress_bar=false"],
                          cwd=ROOT, env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sharding plan (1 rank(s), cpu)" in done.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["auc"] >= 0.70, metrics
    assert (tmp_path / "run" / "checkpoints" / "final" / "COMPLETE").exists()
    assert (tmp_path / "run" / "checkpoints" / "final" / "schema.json").exists()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_torchx_component_on_two_local_ranks(criteo_small, tmp_path, subprocess_env):
    config = write_config(tmp_path, criteo_small, epochs=1)
    done = subprocess.run(
        [str(VENV_BIN / "torchx"), "run", "-s", "local_cwd", "launch/components.py:train",
         "--config", str(config), "-j", "1x2", "trainer.progress_bar=false"],
        cwd=ROOT, env=subprocess_env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "SUCCEEDED" in output
    assert "sharding plan (2 rank(s), cpu)" in output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["auc"] > 0.6
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["world_size"] == 2
    ranks = {r for tables in plan["plan"].values() for entry in tables.values() for r in entry["ranks"]}
    assert ranks == {0, 1}


def test_component_builds_torchrun_with_restarts_and_threads():
    sys.path.insert(0, str(ROOT))
    from launch.components import train

    app = train("trainer.epochs=2", config="c.yaml", j="2x4", cpu=16, max_restarts=3)
    role = app.roles[0]
    command = role.args[1]
    assert "torchrun --max-restarts 3" in command
    assert "--nnodes 2" in command and "--nproc_per_node 4" in command
    assert "-m bigrec.cli train c.yaml trainer.epochs=2" in command
    assert role.env["OMP_NUM_THREADS"] == "4"
