"""Converted data sets feed the normal ``bigrec train``, and every data set's config builds its model."""

from __future__ import annotations

import json
import subprocess

import pytest

from bigrec.cli import main
from bigrec.config import load_config
from bigrec.features import Schema
from tests import raw_fixtures as rf
from tests.conftest import ROOT, VENV_BIN

pytestmark = pytest.mark.e2e

SMALL = ["trainer.epochs=1", "trainer.progress_bar=false", "data.batch_size=128", "data.eval_batch_size=1024",
         "data.shuffle_buffer=2048", "model.hidden_units=[16]", "model.dropout_rates=0.0",
         "model.embedding_dim=8"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("converted")
    criteo = rf.write_lines(root / "raw" / "train.txt", ["\t".join(r) for r in rf.criteo_lines(3000, seed=5)])
    outputs = {"criteo": root / "criteo", "ml1m": root / "ml1m", "taobao": root / "taobao",
               "amazon": root / "amazon", "aliccp": root / "aliccp"}
    assert main(["data", "criteo", "--source", str(criteo), "--output", str(outputs["criteo"]), "--no-progress",
                 "vocab.default.min_count=2"]) == 0
    assert main(["data", "movielens", "--source", str(rf.write_ml1m_generated(root / "raw1m")), "--output",
                 str(outputs["ml1m"]), "--no-progress"]) == 0
    for name, writer, command in (("taobao", rf.write_taobao, "taobao"), ("amazon", rf.write_amazon, "amazon"),
                                  ("aliccp", rf.write_aliccp, "ali-ccp")):
        assert main(["data", command, "--source", str(writer(root / f"raw_{name}")), "--output", str(outputs[name]),
                     "--no-progress"] + (["vocab.default.min_count=1"] if name == "aliccp" else [])) == 0
    return outputs


@pytest.mark.parametrize("config, data", [
    ("ranking/deepfm_criteo.yaml", "criteo"), ("ranking/deepfm_ml1m.yaml", "ml1m/ranking"),
    ("recall/sasrec_ml1m.yaml", "ml1m/recall"), ("ranking/din_taobao.yaml", "taobao/ranking"),
    ("recall/sasrec_taobao.yaml", "taobao/recall"), ("ranking/din_amazon.yaml", "amazon/ranking"),
    ("multitask/mmoe_aliccp.yaml", "aliccp")])
def test_data_set_configs_build_their_model_on_the_converted_schema(converted, config, data):
    from bigrec.models import build_model

    name, _, part = data.partition("/")
    path = converted[name] / part if part else converted[name]
    cfg = load_config(ROOT / "configs" / config, [f"data.path={path}"])
    schema = Schema.load(path / cfg.data.schema)
    model = build_model(cfg.model.name, schema, cfg.model.params)
    assert sum(p.numel() for p in model.parameters()) > 0
    for split in ("train", "valid", "test"):
        assert list((path / getattr(cfg.data, split)).glob("*.parquet")), split


@pytest.mark.parametrize("config, data", [("ranking/deepfm_criteo.yaml", "criteo"),
                                          ("ranking/deepfm_ml1m.yaml", "ml1m/ranking")])
def test_deepfm_trains_on_converted_data_through_bigrec_train(converted, tmp_path, subprocess_env, config, data):
    name, _, part = data.partition("/")
    path = converted[name] / part if part else converted[name]
    done = subprocess.run([str(VENV_BIN / "bigrec"), "train", str(ROOT / "configs" / config), f"data.path={path}",
                           f"trainer.output_dir={tmp_path / 'run'}", *SMALL], cwd=ROOT, env=subprocess_env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["auc"] <= 1.0 and metrics["test"]["logloss"] > 0
    if name == "ml1m":
        assert metrics["test"]["auc"] > 0.65  # the generated ratings carry user and movie biases
