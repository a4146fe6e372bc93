"""Planner figures for docs/benchmarks.md ("Planner").

``python tools/bench/plan_bench.py [--skip-rss]`` prints:

1. MLPerf DLRM-DCNv2 (Criteo 1TB) planned on 1x8 and 16x8 H100 80GB: per-rank HBM and imbalance;
2. the planner's HBM estimate for the same model with Adam, row-wise Adagrad and SGD;
3. the run time of the 500-table power-law model on 128 ranks (16x8), against the 26-table
   model on the same topology as baseline;
4. the planner's per-rank host-memory estimate for 2 CPU ranks vs the RSS growth measured in a
   real 2-rank training run of the same model (4 tables of 1M x 64).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def plan(config_path, topology, optimizer="", overrides=()):
    from bigrec.config import load_config
    from bigrec.plan.planner import build_planning_module, dry_run
    from bigrec.plan.report import build_report
    from bigrec.plan.topology import load_topology

    started = time.perf_counter()
    config = load_config(config_path, list(overrides))
    spec = load_topology(topology) if isinstance(topology, (str, Path)) else topology
    module = build_planning_module(config, spec.device, optimizer)
    report = build_report(dry_run(module, config, spec, optimizer))
    return report, time.perf_counter() - started


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_rank(raw: dict) -> dict:
    from bigrec.config import config_from_dict
    from bigrec.train.trainer import Trainer, prepare

    config = config_from_dict(raw)
    prepared = prepare(config)
    before = rss_mb()
    trainer = Trainer(config, prepared)
    built = rss_mb()
    trainer.train_epoch(0)
    return {"before_mb": before, "after_build_mb": built, "after_train_mb": rss_mb()}


def rss_check() -> None:
    from bigrec.data.synthetic import generate_criteo_like
    from bigrec.plan.topology import cpu_topology
    from bigrec.testing import run_ranks

    with tempfile.TemporaryDirectory() as tmp:
        cards = [1_000_000] * 4 + [100] * 22
        generate_criteo_like(tmp, rows=20000, cardinalities=cards, seed=0)
        raw = {"data": {"path": tmp, "batch_size": 512, "shuffle_buffer": 0},
               "model": {"name": "dcnv2", "embedding_dim": 64, "hidden_units": [64]},
               "trainer": {"output_dir": f"{tmp}/run", "progress_bar": False, "max_steps_per_epoch": 10},
               "sharding": {"print_plan": False}}
        config_path = Path(tmp) / "rss.yaml"
        import yaml

        config_path.write_text(yaml.safe_dump(raw))
        report, _ = plan(config_path, cpu_topology(2, 512))
        plan_path = Path(tmp) / "plan.json"
        from bigrec.cli import main

        main(["plan", str(config_path), "--world-size", "2", "--output", str(plan_path), "--quiet"])
        raw["sharding"]["plan"] = str(plan_path)
        results = run_ranks(_rss_rank, 2, raw)
    print("\n## planner host-memory estimate vs measured RSS (2 CPU ranks, 4 x 1M x 64 + 22 small tables)")
    for rank, result in enumerate(results):
        estimate = report["ranks"][rank]["ddr_used_gb"] * 1024
        tables = sum(t["ddr_gb"] for t in report["tables"] if rank in t["ranks"]) * 1024
        growth = result["after_train_mb"] - result["before_mb"]
        print(f"rank {rank}: planner estimate {estimate:,.0f} MiB (tables+optimizer {tables:,.0f} MiB), RSS growth "
              f"{growth:,.0f} MiB (after DMP build {result['after_build_mb'] - result['before_mb']:,.0f} MiB) "
              f"-> estimate / measured = {estimate / growth:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args()
    os.chdir(ROOT)
    from bigrec.logs import quiet_third_party

    quiet_third_party()
    dcn = ROOT / "configs/ranking/dcnv2_criteo1tb.yaml"
    topo = ROOT / "configs/topology"
    print("## DLRM-DCNv2 (Criteo 1TB, 26 tables x 128, exact_row_wise_adagrad)")
    for name in ("1x8_h100", "16x8_h100"):
        report, seconds = plan(dcn, topo / f"{name}.yaml")
        hbm = [r["hbm_used_gb"] for r in report["ranks"]]
        times = [r["total_ms"] for r in report["ranks"]]
        s = report["summary"]
        print(f"{name}: HBM per rank min {min(hbm):.2f} / mean {sum(hbm) / len(hbm):.2f} / max {max(hbm):.2f} GiB "
              f"of 80; est. time per rank min {min(times):.3f} / max {max(times):.3f} ms; imbalance max/mean "
              f"HBM {s['imbalance']['hbm']:.2f}, time {s['imbalance']['time']:.2f}; "
              f"sharding types {sorted({t['sharding_type'] for t in report['tables']})}; planned in {seconds:.1f} s")
    print("\n## optimizer state in the estimate (DLRM-DCNv2 on 1x8_h100, all ranks)")
    for optimizer in ("exact_sgd", "exact_row_wise_adagrad", "adam"):
        report, _ = plan(dcn, topo / "1x8_h100.yaml", optimizer)
        print(f"{optimizer}: tables {sum(t['hbm_gb'] for t in report['tables']):.1f} GiB HBM, "
              f"max rank {report['summary']['hbm_used_gb']['max']:.1f} GiB")
    print("\n## planner run time on 16x8_h100 (128 ranks), whole `plan` incl. model build")
    _, base = plan(dcn, topo / "16x8_h100.yaml")
    report, seconds = plan(ROOT / "configs/ranking/synthetic500_powerlaw.yaml", topo / "16x8_h100.yaml")
    print(f"26 tables: {base:.1f} s; 500 tables: {seconds:.1f} s (ratio {seconds / base:.1f}); "
          f"proposals {report['summary']['planner']['proposals']}, imbalance time "
          f"{report['summary']['imbalance']['time']:.2f}, HBM {report['summary']['imbalance']['hbm']:.2f}")
    if not args.skip_rss:
        rss_check()


if __name__ == "__main__":
    main()
