"""``bigrec plan CONFIG [key.path=value ...] (--topology FILE | --world-size N) [--output plan.json]``.

Prints where every table goes and what each rank needs; ``--output`` writes the
plan file that ``bigrec train CONFIG sharding.plan=plan.json`` runs, with the
JSON report (``plan.report.json``) and the chart (``plan.png``) next to it; the
three are always three files, whatever the suffix of ``--output``
(``--output x.png`` puts the chart in ``x.chart.png``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from bigrec.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plan", help="plan the sharding of a model for a cluster (no GPU needed)",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("config", help="YAML run config, e.g. configs/ranking/dcnv2_criteo1tb.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.embedding_dim=64")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--topology", help="topology file, e.g. configs/topology/16x8_h100.yaml")
    where.add_argument("--world-size", type=int, help="plan for N ranks on one host (with --device)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="with --world-size (default cpu)")
    parser.add_argument("--hbm-gb", type=float, help="HBM per device in GiB (overrides the topology)")
    parser.add_argument("--ddr-gb", type=float, help="host memory per rank in GiB (overrides the topology)")
    parser.add_argument("--batch-size", type=int, help="batch per rank (default: the topology's, else data.batch_size)")
    parser.add_argument("--optimizer", help="sparse optimizer to plan for (default trainer.sparse_optimizer.name), "
                                            "e.g. adam, exact_row_wise_adagrad, exact_sgd")
    parser.add_argument("--uvm-caching", type=float, metavar="RATIO",
                        help="allow tables in host memory with RATIO of their rows cached in HBM (CUDA)")
    parser.add_argument("--output", help="write the plan file here (and REPORT.json / chart .png next to it)")
    parser.add_argument("--json", help="write the JSON report here")
    parser.add_argument("--chart", help="write the PNG chart here")
    parser.add_argument("--full-search", action="store_true",
                        help="offer every sharding type to every table even for models of > 100 tables (slow on many "
                             "ranks; default there: row splits only for tables with >= 1024 rows per rank, "
                             "replication only for tables <= 10k rows)")
    parser.add_argument("--search-seconds", type=int, default=30,
                        help="time limit of TorchRec's proposal search; the best plan found by then wins (default 30)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary lines, not every table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bigrec.config import load_config
    from bigrec.plan.planner import build_planning_module, dry_run
    from bigrec.plan.report import build_report, format_report, write_chart, write_json
    from bigrec.plan.topology import TopologySpec, cpu_topology, load_topology
    from bigrec.train.sharding import save_plan

    config = load_config(args.config, args.overrides)
    check_distinct(args.output, args.json, args.chart)
    if args.topology:
        spec = load_topology(args.topology)
    else:
        spec = cpu_topology(args.world_size, config.data.batch_size)
        if args.device == "cuda":
            spec = TopologySpec(name=f"{args.world_size}xcuda", devices_per_host=args.world_size, device="cuda",
                                device_kind="GPU", hbm_gb=80.0, ddr_gb=128.0,
                                batch_size_per_rank=config.data.batch_size)
    changes = {key: value for key, value in (("hbm_gb", args.hbm_gb), ("ddr_gb", args.ddr_gb),
                                             ("batch_size_per_rank", args.batch_size),
                                             ("uvm_caching", args.uvm_caching)) if value is not None}
    if changes:
        spec = spec.replace(**changes)
    module = build_planning_module(config, spec.device, args.optimizer)
    result = dry_run(module, config, spec, args.optimizer or "", args.full_search, args.search_seconds)
    report = build_report(result)
    text = format_report(report)
    print("\n".join(text.splitlines()[-3:]) if args.quiet else text, flush=True)
    json_path, chart_path = args.json, args.chart
    if args.output:
        output = Path(args.output)
        save_plan(result.plan, output, spec.world_size,
                  extra={"compute_device": spec.device, "topology": spec.to_dict(),
                         "sparse_optimizer": result.optimizer, "config": config.source})
        report_file, chart_file = side_files(output)
        json_path, chart_path = json_path or str(report_file), chart_path or str(chart_file)
        print(f"plan: {output}  (train with: bigrec train {config.source} sharding.plan={output})")
    if json_path:
        write_json(report, json_path)
        print(f"report: {json_path}")
    if chart_path:
        write_chart(report, chart_path)
        print(f"chart: {chart_path}")
    return 0


def side_files(output: Path) -> tuple[Path, Path]:
    """The report and chart written next to plan file ``output``; neither is ``output`` itself."""
    report, chart = output.with_suffix(".report.json"), output.with_suffix(".png")
    if chart == output:
        chart = output.with_name(output.stem + ".chart.png")
    return report, chart


def check_distinct(output: Optional[str], report: Optional[str], chart: Optional[str]) -> None:
    """``--output``, ``--json`` and ``--chart`` must name three different files (ConfigError)."""
    named = [(flag, Path(value).resolve()) for flag, value in (("--output", output), ("--json", report),
                                                               ("--chart", chart)) if value]
    for i, (flag, path) in enumerate(named):
        for other, other_path in named[i + 1:]:
            if path == other_path:
                raise ConfigError(f"{flag} and {other} name the same file {path}; the plan, the report and the chart "
                                  f"are three files")
