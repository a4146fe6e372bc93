"""``bigrec plan``: topology files, the dry run, its report, plan files in training, and DCN-V2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from bigrec.cli import main as bigrec_main
from bigrec.config import config_from_dict
from bigrec.errors import ConfigError
from bigrec.features import Schema
from tests.conftest import ROOT

TOPOLOGIES = ROOT / "configs" / "topology"
CRITEO_1TB = ROOT / "configs" / "ranking" / "dcnv2_criteo1tb.yaml"


def small_config(schema_path: Path, **sharding) -> dict:
    return {"data": {"schema": str(schema_path), "batch_size": 256},
            "model": {"name": "dcnv2", "embedding_dim": 16, "hidden_units": [32]},
            "sharding": sharding}


@pytest.fixture(scope="module")
def small_schema(tmp_path_factory) -> Path:
    from bigrec.data.synthetic import build_schema

    path = tmp_path_factory.mktemp("plan") / "schema.json"
    build_schema([200_000, 50_000, 3_000, 40], embedding_dim=16).save(path)
    return path


def plan_small(schema_path: Path, spec, optimizer: str = "", **sharding):
    from bigrec.plan.planner import build_planning_module, dry_run
    from bigrec.plan.report import build_report

    config = config_from_dict(small_config(schema_path, **sharding))
    module = build_planning_module(config, spec.device, optimizer)
    return build_report(dry_run(module, config, spec, optimizer))


# ---------------------------------------------------------------- topology files
def test_topology_presets_load_and_bad_keys_are_named(tmp_path):
    from bigrec.plan.topology import load_topology

    specs = {p.stem: load_topology(p) for p in TOPOLOGIES.glob("*.yaml")}
    assert {"1x8_h100", "16x8_h100", "1x8_h200", "16x8_h200", "2x_cpu"} <= set(specs)
    assert specs["16x8_h100"].world_size == 128 and specs["16x8_h100"].hbm_gb == 80
    assert specs["1x8_h200"].hbm_gb == 141 and specs["2x_cpu"].device == "cpu"
    topology = specs["16x8_h100"].to_torchrec()
    assert topology.world_size == 128 and topology.local_world_size == 8
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts: 2\nhbm: 80\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key\(s\) \['hbm'\]"):
        load_topology(bad)


def test_committed_schemas_equal_their_generators():
    from bigrec.plan.schemas import SCHEMAS

    for name, make in SCHEMAS.items():
        assert Schema.load(ROOT / "configs" / "schemas" / name) == make(), name
    criteo = Schema.load(ROOT / "configs" / "schemas" / "criteo1tb_mlperf.json")
    assert len(criteo.tables) == 26 and max(t.num_embeddings for t in criteo.tables.values()) == 40_000_000
    assert {t.embedding_dim for t in criteo.tables.values()} == {128}


# ---------------------------------------------------------------- the dry run
def test_optimizer_state_changes_the_memory_estimate(small_schema):
    from bigrec.plan.topology import load_topology

    spec = load_topology(TOPOLOGIES / "1x8_h100.yaml")
    hbm = {name: sum(t["hbm_gb"] for t in plan_small(small_schema, spec, name)["tables"])
           for name in ("exact_sgd", "exact_row_wise_adagrad", "adam")}
    assert hbm["exact_sgd"] < hbm["exact_row_wise_adagrad"] < hbm["adam"]
    weights_gb = (200_000 + 50_000 + 3_000 + 40) * 16 * 4 / 1024**3
    assert hbm["adam"] - hbm["exact_sgd"] == pytest.approx(2 * weights_gb, rel=0.05)  # two Adam moments


def test_table_constraints_from_the_config(small_schema):
    from bigrec.plan.topology import load_topology

    spec = load_topology(TOPOLOGIES / "1x8_h100.yaml")
    report = plan_small(small_schema, spec, tables={
        "sparse_0": {"compute_kernels": ["fused_uvm_caching"], "cache_load_factor": 0.1},
        "sparse_1": {"sharding_types": ["column_wise"], "min_partition": 8},
        "sparse_2": {"sharding_types": ["table_wise"], "pooling_factor": 4}})
    tables = {t["table"]: t for t in report["tables"]}
    assert tables["sparse_0"]["compute_kernel"] == "fused_uvm_caching"
    assert tables["sparse_0"]["cache_load_factor"] == 0.1 and tables["sparse_0"]["ddr_gb"] > 0
    assert tables["sparse_1"]["sharding_type"] == "column_wise"
    assert all(cols == 8 for _, cols in tables["sparse_1"]["shards"]) and len(tables["sparse_1"]["ranks"]) == 2
    assert tables["sparse_2"]["sharding_type"] == "table_wise"
    with pytest.raises(ConfigError, match="sparse_9"):
        plan_small(small_schema, spec, tables={"sparse_9": {"sharding_types": ["row_wise"]}})


def test_dlrm_dcnv2_on_1x8_h100_report_json_and_chart(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert bigrec_main(["plan", str(CRITEO_1TB), "--topology", str(TOPOLOGIES / "1x8_h100.yaml"),
                        "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sparse_20" in printed and "imbalance (max / mean)" in printed
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["summary"]["world_size"] == 8 and len(report["tables"]) == 26
    assert all(0 < r["hbm_used_gb"] < 80 for r in report["ranks"])
    # 26 tables of dim 128: ~97 GiB of weights, plus row-wise Adagrad state and replicas
    assert 95 < sum(r["hbm_used_gb"] for r in report["ranks"]) < 110
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert json.loads(out.read_text())["world_size"] == 8


def test_no_plan_says_which_table_and_what_would_fit():
    from bigrec.config import load_config
    from bigrec.plan.planner import PlanDoesNotFit, build_planning_module, dry_run
    from bigrec.plan.topology import load_topology

    spec = load_topology(TOPOLOGIES / "1x8_h100.yaml").replace(hbm_gb=16)
    config = load_config(CRITEO_1TB, ["sharding.tables.sparse_0.sharding_types=[table_wise]"])
    module = build_planning_module(config, "cuda")
    with pytest.raises(PlanDoesNotFit) as caught:
        dry_run(module, config, spec, search_seconds=5)
    message = str(caught.value)
    assert "table 'sparse_0' (40,000,000 x 128)" in message and "more than the" in message
    assert "embedding_dim" in message and "row_wise" in message and "--uvm-caching" in message

    config = load_config(CRITEO_1TB)
    with pytest.raises(PlanDoesNotFit, match=r"(?s)short by .*more ranks: at least \d+"):
        dry_run(module, config, spec.replace(hbm_gb=12), search_seconds=5)


# ---------------------------------------------------------------- plan files
def test_plan_for_another_world_size_is_a_clear_error(tmp_path, small_schema):
    from bigrec.plan.planner import build_planning_module, dry_run
    from bigrec.plan.topology import cpu_topology
    from bigrec.train.sharding import load_plan, save_plan

    config = config_from_dict(small_config(small_schema))
    module = build_planning_module(config, "cpu")
    run = dry_run(module, config, cpu_topology(2))
    path = tmp_path / "plan.json"
    save_plan(run.plan, path, 2)
    assert load_plan(path, module, 2, "cpu").plan.keys() == run.plan.plan.keys()
    with pytest.raises(ConfigError, match=r"plan was made for 2 rank\(s\) but this job has 4"):
        load_plan(path, module, 4, "cpu")
    other = config_from_dict({**small_config(small_schema), "model": {"name": "dcnv2", "embedding_dim": 8}})
    with pytest.raises(ConfigError, match="the model or schema changed"):
        load_plan(path, build_planning_module(other, "cpu"), 2, "cpu")


def _first_table(payload: dict) -> dict:
    return next(iter(next(iter(payload["plan"].values())).values()))


def _sharded_table(payload: dict) -> dict:
    return next(entry for tables in payload["plan"].values() for entry in tables.values() if entry["shards"])


# Hand-edited plan files: one line naming the table and the field, not a TorchRec traceback.
@pytest.mark.parametrize("spoil, message", [
    (lambda p: _sharded_table(p).update(sharding_type="diagonal"), r"table '\w+': sharding_type 'diagonal' is not one"),
    (lambda p: _sharded_table(p)["shards"][0].pop("placement"), r"table '\w+', shard 0: missing field\(s\) \['placement'\]"),
    (lambda p: next(iter(p["plan"].values())).update({k: [1, 2] for k in list(next(iter(p["plan"].values())))[:1]}),
     r"table '\w+': expected the table's sharding \(an object\), got a list"),
    (lambda p: p.update(plan=[]), r"'plan': expected module path -> tables \(an object\), got a list"),
    (lambda p: _sharded_table(p).update(compute_kernel="fused_uvm_caching"),
     r"compute_kernel 'fused_uvm_caching' is not available for \w+ on cpu"),
    (lambda p: _sharded_table(p).update(ranks="0"), r"ranks must be a list of integers, got '0'"),
    (lambda p: _sharded_table(p)["shards"][0].update(sizes=[1, 1]), r"shards cover \d+ values but the table is"),
    (lambda p: _sharded_table(p)["shards"][0].update(offsets="0,0"), r"offsets and sizes must be \[row, column\]"),
    (lambda p: _sharded_table(p)["shards"][0].update(placement="gpu0"), r"placement must look like 'rank:N/cpu'"),
    (lambda p: _first_table(p).pop("shards"), r"missing field\(s\) \['shards'\]"),
    (lambda p: _first_table(p).update(shard=[]), r"unknown field\(s\) \['shard'\]"),
])
def test_hand_edited_plan_files_name_the_table_and_field(tmp_path, small_schema, spoil, message):
    from bigrec.plan.planner import build_planning_module, dry_run
    from bigrec.plan.topology import cpu_topology
    from bigrec.train.sharding import load_plan, save_plan

    config = config_from_dict(small_config(small_schema))
    module = build_planning_module(config, "cpu")
    path = tmp_path / "plan.json"
    save_plan(dry_run(module, config, cpu_topology(2)).plan, path, 2)
    payload = json.loads(path.read_text())
    spoil(payload)
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match=f"plan.json: .*{message}") as caught:
        load_plan(path, module, 2, "cpu")
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- DCN-V2
@pytest.mark.parametrize("options", [
    {"cross_parameterization": "vector"},
    {"cross_parameterization": "matrix"},
    {"cross_parameterization": "matrix", "low_rank": 8},
    {"cross_parameterization": "matrix", "low_rank": 8, "num_experts": 3},
])
def test_dcnv2_cross_layers_change_the_output(criteo_small, options):
    from bigrec.data.stream import open_split
    from bigrec.models import build_model

    schema = Schema.load(criteo_small / "schema.json")
    batch = next(iter(open_split(str(criteo_small / "valid.parquet"), schema, 64, 0, 1)))
    torch.manual_seed(0)
    model = build_model("dcnv2", schema, {"embedding_dim": 8, "hidden_units": [16], "cross_num": 2, **options})
    with torch.no_grad():
        logits = model(batch).logits
        for param in model.cross.parameters():
            param.zero_()  # x_{l+1} = x0 * (0 + 0) + x_l: every cross layer is the identity
        without_cross = model(batch).logits
    assert logits.shape == (batch.labels.shape[0],)
    assert not torch.allclose(logits, without_cross, atol=1e-4)


def test_dcnv2_rejects_inconsistent_cross_options(criteo_small):
    from bigrec.models import build_model

    schema = Schema.load(criteo_small / "schema.json")
    with pytest.raises(ConfigError, match="cross_parameterization"):
        build_model("dcnv2", schema, {"cross_parameterization": "diagonal"})
    with pytest.raises(ConfigError, match="low_rank"):
        build_model("dcnv2", schema, {"cross_parameterization": "vector", "low_rank": 4})


# ---------------------------------------------------------------- 2 gloo ranks
def _observed_sharding(model: torch.nn.Module) -> dict:
    """``table -> sorted [(offsets, sizes, rank)]`` of the weights DMP really built; [] = replicated."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    observed = {}
    for key, value in model.state_dict().items():
        if ".weight" not in key or not any(k in key for k in ("embedding_bags.", "embeddings.sparse", "embeddings.")):
            continue
        parts = key.split(".")
        if len(parts) < 3 or parts[-3] not in ("embedding_bags", "embeddings"):
            continue
        table = parts[-2]
        if isinstance(value, ShardedTensor):
            observed[table] = sorted((list(m.shard_offsets), list(m.shard_sizes), m.placement.rank())
                                     for m in value.metadata().shards_metadata)
        else:
            observed[table] = []
    return observed


def _train_with_plan(config_dict: dict) -> dict:
    from bigrec.train.trainer import Trainer, prepare

    config = config_from_dict(config_dict)
    trainer = Trainer(config, prepare(config))
    result = trainer.fit()
    return {"observed": _observed_sharding(trainer.model), "test": result["test"]}


@pytest.mark.dist
def test_two_rank_training_runs_the_printed_plan_and_learns(criteo_small, tmp_path, capsys):
    from bigrec.testing import run_ranks

    raw = {"data": {"path": str(criteo_small), "batch_size": 256, "eval_batch_size": 2048, "shuffle_buffer": 4096},
           "model": {"name": "dcnv2", "embedding_dim": 8, "cross_num": 2, "cross_parameterization": "matrix",
                     "low_rank": 16, "hidden_units": [64, 32]},
           "trainer": {"epochs": 2, "output_dir": str(tmp_path / "run"), "progress_bar": False,
                       "dense_optimizer": {"name": "adam", "lr": 0.002},
                       "sparse_optimizer": {"name": "exact_row_wise_adagrad", "lr": 0.1}},
           "sharding": {"tables": {"sparse_25": {"sharding_types": ["row_wise"]},
                                   "sparse_24": {"sharding_types": ["column_wise"], "min_partition": 4},
                                   "sparse_0": {"sharding_types": ["data_parallel"]}}}}
    config_path = tmp_path / "dcnv2.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    plan_path = tmp_path / "plan.json"
    assert bigrec_main(["plan", str(config_path), "--world-size", "2", "--device", "cpu",
                        "--output", str(plan_path)]) == 0
    printed = capsys.readouterr().out
    planned = {table: entry for entries in json.loads(plan_path.read_text())["plan"].values()
               for table, entry in entries.items()}
    assert planned["sparse_25"]["sharding_type"] == "row_wise" and "sparse_25" in printed

    raw["sharding"]["plan"] = str(plan_path)
    results = run_ranks(_train_with_plan, 2, raw)
    expected = {table: sorted((s["offsets"], s["sizes"], int(s["placement"].split("/")[0].split(":")[1]))
                              for s in entry["shards"]) for table, entry in planned.items()}
    for rank_result in results:
        assert rank_result["observed"] == expected
    assert results[0]["test"]["auc"] >= 0.70, results[0]["test"]


# ---------------------------------------------------------------- CPU default plans
def test_cpu_plans_keep_tiny_tables_whole_and_config_still_wins(small_schema):
    from bigrec.plan.planner import build_planning_module
    from bigrec.train.sharding import cpu_sharding_types, plan_sharding

    assert cpu_sharding_types(40, world_size=2) == ["table_wise"]
    assert cpu_sharding_types(5_000_000, world_size=1) == ["table_wise"]
    assert "row_wise" not in cpu_sharding_types(50_000, world_size=64)

    def planned(**sharding) -> dict[str, str]:
        config = config_from_dict(small_config(small_schema, **sharding))
        module = build_planning_module(config, "cpu")
        plan = plan_sharding(module, 2, "cpu", 256, config.sharding)
        return {table: entry.sharding_type for tables in plan.plan.values() for table, entry in tables.items()}

    default = planned()
    assert default["sparse_2"] == default["sparse_3"] == "table_wise"  # 3,000 and 40 rows: never split
    explicit = planned(sharding_types=["data_parallel"], tables={"sparse_0": {"sharding_types": ["row_wise"]}})
    assert explicit["sparse_3"] == "data_parallel" and explicit["sparse_0"] == "row_wise"
