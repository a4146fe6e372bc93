"""Checkpoints: exact resume after a killed rank and after SIGTERM (TorchX), torn saves, resharding 2 -> 1/4,
determinism, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from bigrec.testing import run_ranks

ROOT = Path(__file__).resolve().parents[1]
FEATURES = [f"sparse_{i}" for i in range(8)] + ["dense_0", "dense_3"]


def run_config(data_dir: Path, out_dir: Path, trainer: dict | None = None, sharding: dict | None = None) -> dict:
    return {
        "data": {"path": str(data_dir), "batch_size": 512, "eval_batch_size": 1000, "shuffle_buffer": 4096},
        "model": {"name": "deepfm", "features": FEATURES, "embedding_dim": 8, "hidden_units": [32, 16],
                  "dropout_rates": [0.1, 0.1]},
        "trainer": {"epochs": 2, "seed": 0, "output_dir": str(out_dir), "progress_bar": False, "log_every": 1000,
                    "checkpoint_every_steps": 5, "keep_last": 3, "debug_log_steps": True, **(trainer or {})},
        "sharding": {"print_plan": False, **(sharding or {})},
    }


def build(raw: dict):
    from bigrec.config import config_from_dict

    return config_from_dict(raw)


def step_records(out_dir: Path) -> dict[int, list[dict]]:
    """``rank -> records`` of the surviving lineage: an attempt's steps up to where the next one resumed."""
    lineage = {}
    for path in sorted((out_dir / "steps").glob("rank-*.jsonl")):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        resumes = {r["attempt"]: r["resumed_from_step"] for r in records if "resumed_from_step" in r}
        kept = []
        for record in records:
            if "step" not in record:
                continue
            later = [step for attempt, step in resumes.items() if attempt > record["attempt"]]
            if not later or record["step"] <= min(later):
                kept.append(record)
        lineage[int(path.stem.split("-")[1])] = kept
    return lineage


# --------------------------------------------------------------------- data position
@pytest.mark.parametrize("workers, shuffle", [(0, 0), (2, 700)])
def test_position_continues_on_the_next_unread_batch(criteo_small, workers, shuffle):
    from bigrec.data.stream import make_loader, open_split
    from bigrec.features import Schema

    schema = Schema.load(criteo_small / "schema.json")
    dataset = open_split(str(criteo_small / "valid.parquet"), schema, 96, rank=1, world_size=2,
                         shuffle_buffer=shuffle, seed=4)
    dataset.set_epoch(3)
    full = [b.labels.numpy() for b in make_loader(dataset, workers)]
    ids = list(dataset.row_ids(workers))
    labels = pq.read_table(criteo_small / "valid.parquet", columns=["label"]).column(0).to_numpy()
    assert [len(i) for i in ids] == [len(b) for b in full]
    assert all(np.array_equal(labels[i], b[:, 0]) for i, b in zip(ids, full))  # row ids name the rows read
    for done in (1, 4, len(full) - 1):
        dataset.set_position(3, done)
        rest = [b.labels.numpy() for b in make_loader(dataset, workers)]
        assert len(rest) == len(full) - done
        assert all(np.array_equal(a, b) for a, b in zip(rest, full[done:]))


# ------------------------------------------------------------------ kill and preemption tests
def torchx_train(config: Path, env: dict, *options: str) -> subprocess.CompletedProcess:
    """``torchx run -s local_cwd`` of the train component on 2 ranks with ``options`` (e.g. --env ...)."""
    command = [str(Path(sys.executable).parent / "torchx"), "run", "-s", "local_cwd", "launch/components.py:train",
               "--config", str(config), "-j", "1x2", *options]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def reference_run(criteo_small, tmp_path_factory, subprocess_env) -> Path:
    """The uninterrupted 2-rank run (2 epochs of 16 steps) that the kill and preemption tests compare with."""
    out = tmp_path_factory.mktemp("reference") / "run"
    config = out.parent / "reference.yaml"
    config.write_text(yaml.safe_dump(run_config(criteo_small, out)))
    done = torchx_train(config, subprocess_env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def row_checksums(data_dir: Path) -> np.ndarray:
    train = pq.read_table(data_dir / "train.parquet")
    return sum(train.column(f"dense_{j}").to_numpy().astype(np.float64) for j in range(13)) \
        + train.column("label").to_numpy()


def assert_same_run(records: dict[int, list[dict]], reference: dict[int, list[dict]], data_dir: Path) -> None:
    """Each rank trained steps 1..32 once, in order, every row exactly once per epoch, with the reference's losses."""
    checksum = row_checksums(data_dir)
    seen = {epoch: np.zeros(len(checksum), dtype=np.int64) for epoch in (0, 1)}
    for rank, steps in records.items():
        assert [r["step"] for r in steps] == list(range(1, 33))  # each step trained once, in order
        for record in steps:
            np.add.at(seen[record["epoch"]], record["rows"], 1)
            assert record["checksum"] == pytest.approx(checksum[record["rows"]].sum(), rel=1e-6)
        np.testing.assert_allclose([r["loss"] for r in steps], [r["loss"] for r in reference[rank]], rtol=0, atol=1e-6)
    assert all((count == 1).all() for count in seen.values())  # every row exactly once per epoch


@pytest.mark.e2e
def test_rank_killed_under_torchx_resumes_and_reads_every_row_once(criteo_small, tmp_path, subprocess_env,
                                                                    reference_run):
    """Rank 1 SIGKILLs itself at step 23 (epoch 2); torchrun restarts both ranks from step 20.

    One restart is allowed, so the restarted ranks must rendezvous at the first try
    (each attempt's process group uses its own store prefix).
    """
    out = tmp_path / "killed"
    config = tmp_path / "killed.yaml"
    config.write_text(yaml.safe_dump(run_config(criteo_small, out)))
    done = torchx_train(config, subprocess_env, "--env", "BIGREC_FAULT_AT_STEP=23", "--max_restarts", "1")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    assert "exitcode: -9" in log and "resumed from" in log and "step-00000020" in log

    lineage = step_records(out)
    assert all({r["attempt"] for r in records} == {0, 1} for records in lineage.values())  # killed + one restart
    assert_same_run(lineage, step_records(reference_run), criteo_small)

    killed = json.loads((out / "metrics.json").read_text())
    uninterrupted = json.loads((reference_run / "metrics.json").read_text())
    for key in ("auc", "logloss"):  # stated tolerance: 1e-6 absolute
        assert killed["test"][key] == pytest.approx(uninterrupted["test"][key], abs=1e-6)
    assert killed["test"]["auc"] > 0.6


@pytest.mark.e2e
def test_sigterm_under_torchx_checkpoints_the_exact_position_and_resume_loses_no_row(
        criteo_small, tmp_path, subprocess_env, reference_run):
    """SIGTERM reaches torchrun at step 12 (as a scheduler sends it); it forwards it to both ranks.

    No periodic checkpoints: the only step checkpoint is the one written on the
    signal. Both ranks stop after the same step, the job exits non-zero, and a
    second job with ``resume=auto`` trains steps K+1..32: across the two jobs
    every step runs once and every row once per epoch, with the reference losses.
    """
    out = tmp_path / "preempted"
    config = tmp_path / "preempted.yaml"
    config.write_text(yaml.safe_dump(run_config(criteo_small, out, {"checkpoint_every_steps": 0})))
    done = torchx_train(config, subprocess_env, "--env", "BIGREC_FAULT_AT_STEP=12,BIGREC_FAULT_SIGNAL=TERM:parent")
    log = done.stdout + done.stderr
    assert done.returncode != 0, log[-6000:]
    assert "stopped by SIGTERM" in log or "stopped by a signal another rank received" in log, log[-6000:]
    first = step_records(out)
    stopped = {max(r["step"] for r in records) for records in first.values()}
    assert len(stopped) == 1  # both ranks stopped after the same step
    (step,) = stopped
    assert step >= 12
    saved = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    assert saved[-1] == f"step-{step:08d}", saved  # the checkpoint is at the exact position

    resumed = torchx_train(config, subprocess_env, "trainer.resume=auto")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-6000:]
    assert f"global step {step}" in resumed.stdout + resumed.stderr
    records = {rank: [r for r in rs if "step" in r] for rank, rs in all_records(out).items()}
    assert_same_run(records, step_records(reference_run), criteo_small)


def all_records(out_dir: Path) -> dict[int, list[dict]]:
    return {int(p.stem.split("-")[1]): [json.loads(line) for line in p.read_text().splitlines()]
            for p in sorted((out_dir / "steps").glob("rank-*.jsonl"))}


# -------------------------------------------------- resharding, determinism, bad input
def train_twice_and_predict(data_dir: str, out_dir: str) -> dict:
    """2 ranks, table-wise: the same run twice (determinism), then test-split scores."""
    from bigrec.train.predict import predict
    from bigrec.train.trainer import Trainer, prepare

    sharding = {"sharding_types": ["table_wise"]}
    losses = []
    for name in ("run1", "run2"):
        config = build(run_config(Path(data_dir), Path(out_dir) / name, {"epochs": 1}, sharding))
        Trainer(config, prepare(config)).fit()
        losses.append([r["loss"] for r in step_records(Path(out_dir) / name)[int(os.environ["RANK"])]])
    config = build(run_config(Path(data_dir), Path(out_dir) / "predict", {"epochs": 1}, sharding))
    table = predict(config, Path(out_dir) / "run1" / "checkpoints" / "final", "test")
    return {"losses": losses, "scores": None if table is None else table.to_pydict()}


def on_four_ranks(data_dir: str, out_dir: str) -> dict:
    """4 ranks: predict with a row-wise plan; resume training with tables moved/split differently."""
    from bigrec.train.predict import predict
    from bigrec.train.trainer import Trainer, prepare

    run1 = Path(out_dir) / "run1" / "checkpoints"
    config = build(run_config(Path(data_dir), Path(out_dir) / "p4", {"epochs": 1}, {"sharding_types": ["row_wise"]}))
    table = predict(config, run1 / "final", "test")
    epoch_end = sorted(run1.glob("step-*"))[-1]
    moved = {"sharding_types": ["table_wise"],
             "tables": {"sparse_0": {"sharding_types": ["data_parallel"]},
                        "sparse_1": {"sharding_types": ["column_wise"], "min_partition": 4}}}
    config = build(run_config(Path(data_dir), Path(out_dir) / "resume4", {"resume": str(epoch_end)}, moved))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(config, prepare(config))
    result = trainer.fit()
    return {"scores": None if table is None else table.to_pydict(), "test": result.get("test"),
            "warnings": [str(w.message) for w in caught if "re-initialised" in str(w.message)],
            "resumed_epoch": result["history"][-1]["epoch"]}


@pytest.mark.dist
def test_reshard_determinism_torn_checkpoint_and_bad_input(criteo_small, tmp_path):
    from bigrec.errors import ConfigError
    from bigrec.train import checkpoint, manifest
    from bigrec.train.distributed import destroy_process_group
    from bigrec.train.predict import load_for_inference, predict
    from bigrec.train.trainer import Trainer, prepare

    two = run_ranks(train_twice_and_predict, 2, str(criteo_small), str(tmp_path))
    for rank in two:  # determinism: same seed, world size and data -> the same loss curve, bit for bit
        assert len(rank["losses"][0]) == 16 and rank["losses"][0] == rank["losses"][1]
    scores2 = np.asarray(two[0]["scores"]["score"])
    assert np.array_equal(two[0]["scores"]["row"], np.arange(2000))

    four = run_ranks(on_four_ranks, 4, str(criteo_small), str(tmp_path))
    np.testing.assert_allclose(four[0]["scores"]["score"], scores2, rtol=0, atol=1e-6)  # 2 -> 4 ranks
    assert all(r["resumed_epoch"] == 2 for r in four) and four[0]["test"]["auc"] > 0.6
    assert any("['sparse_0', 'sparse_1']" in w for w in four[0]["warnings"]), four[0]["warnings"]

    run1 = tmp_path / "run1" / "checkpoints"
    try:
        # 2 -> 1 rank with another plan
        config = build(run_config(criteo_small, tmp_path / "p1", {"epochs": 1}, {"sharding_types": ["row_wise"]}))
        table = predict(config, run1 / "final", "test")
        np.testing.assert_allclose(table.column("score").to_numpy(), scores2, rtol=0, atol=1e-6)

        # torn checkpoints are skipped with a warning; the previous complete one is used
        steps = sorted(run1.glob("step-*"))
        assert [p.name for p in steps] == ["step-00000010", "step-00000015", "step-00000016"]
        torn = tmp_path / "torn" / "checkpoints"
        torn.mkdir(parents=True)
        shutil.copytree(steps[0], torn / steps[0].name)
        shutil.copytree(steps[1], torn / steps[1].name)
        (torn / steps[1].name / checkpoint.COMPLETE_MARKER).unlink()
        shutil.copytree(steps[2], torn / (steps[2].name + ".tmp"))
        with pytest.warns(checkpoint.CheckpointWarning, match="incomplete"):
            assert checkpoint.find_latest(torn) == torn / "step-00000010"

        # bad input: clear errors naming what differs
        with pytest.raises(ConfigError, match=r"world_size was 2, is 1"):
            config = build(run_config(criteo_small, tmp_path / "r1", {"resume": str(steps[0])}))
            Trainer(config, prepare(config))
        other = run_config(criteo_small, tmp_path / "x", {"epochs": 1})
        other["model"]["hidden_units"] = [16, 8]
        with pytest.raises(ConfigError, match=r"model.hidden_units is \[32, 16\] there, \[16, 8\] here"):
            load_for_inference(build(other), run1 / "final")
        changed = tmp_path / "changed_schema"
        shutil.copytree(run1 / "final", changed)
        schema = json.loads((changed / "schema.json").read_text())
        schema["features"][20]["vocab_size"] += 1
        name = schema["features"][20]["name"]
        (changed / "schema.json").write_text(json.dumps(schema))
        # a checkpoint of another schema, intact: its manifest matches
        manifest.write(changed, {**manifest.read(changed), "schema.json": manifest.digest(changed / "schema.json")})
        with pytest.raises(ConfigError, match=f"schema: feature.{name}.vocab_size"):
            load_for_inference(config, changed)
        missing = tmp_path / "missing_shard"
        shutil.copytree(run1 / "final", missing)
        (missing / "__1_0.distcp").unlink()
        with pytest.raises(ConfigError, match=r"integrity check: __1_0.distcp is missing"):
            load_for_inference(config, missing)
        wider = run_config(criteo_small, tmp_path / "w", {"epochs": 1})
        wider["model"]["embedding_dim"] = 12
        trainer = Trainer(build(wider), prepare(build(wider)), inference=True)
        with pytest.raises(ConfigError, match=r"does not fit this model/plan: .*sparse_0.weight is \[\d+, 8\] there, "
                                              r"\[\d+, 12\] here"):
            checkpoint.load_model_state(run1 / "final", trainer.model)
    finally:
        destroy_process_group()
