"""Where a bigrec training step goes: torch.profiler self CPU time, grouped into categories.

Every profiled event's *self* time (its time minus its children's) goes to the first
category whose pattern its name contains; ``record_function`` ranges (the pipeline's
``## forward ##`` etc., and the ``bigrec.*`` ranges put around data and the
per-step trainer work here) count their own Python time. What no event covers is
Python between events ("untraced").
"""

from __future__ import annotations

import time
from typing import Iterator

import torch
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

# (category, name fragments); the first match wins, so specific patterns come first
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("data (Arrow -> Batch)", ("bigrec.data", "DataLoader")),
    ("metrics, LR schedule, logging", ("bigrec.per_step",)),
    ("fused optimizer + embedding backward", ("backward_codegen", "embedding_backward", "rowwise_adagrad",
                                              "split_embedding_backward", "Optimizer.step#RowWise",
                                              "EmbeddingFusedOptimizer")),
    ("dense optimizer", ("Optimizer.step", "Optimizer.zero_grad", "_foreach", "adam", "## optimizer")),
    ("DDP (gradient all-reduce)", ("allreduce", "all_reduce", "DistributedDataParallel", "Reducer")),
    ("input distribution (all-to-all)", ("all_to_all", "alltoall", "c10d::", "gloo", "sparse_data_dist",
                                         "input_dist", "_split", "record_param_comms")),
    ("embedding lookup", ("[lookup]", "embedding_codegen_forward", "split_embedding", "fbgemm::", "embedding_bag",
                          "EmbeddingBag")),
    ("KJT handling", ("jagged", "permute", "KeyedJaggedTensor", "KJT", "segment", "asynchronous_complete_cumsum",
                      "lengths", "offsets")),
    ("dense forward/backward", ("aten::", "Backward", "autograd::", "## forward", "## backward")),
    ("pipeline bookkeeping", ("##",)),
]


def category(name: str) -> str:
    lowered = name.lower()
    for label, fragments in CATEGORIES:
        if any(fragment.lower() in lowered for fragment in fragments):
            return label
    return "other"


def traced_batches(batches: Iterator) -> Iterator:
    """``batches`` with each ``next`` inside a ``bigrec.data`` range."""
    while True:
        with record_function("bigrec.data"):
            batch = next(batches, None)
        if batch is None:
            return
        yield batch


def profile_trainer(trainer, steps: int, warmup: int, top: int = 15) -> str:
    """Train ``warmup`` then ``steps`` steps under the profiler; a markdown table of ms per step."""
    from bigrec.data.stream import make_loader

    trainer.model.train()
    batches = traced_batches(iter(make_loader(trainer.splits["train"])))

    def run(n: int) -> None:
        for output in trainer._steps(batches, n):
            with record_function("bigrec.per_step"):
                trainer.schedule.step()
                trainer.preemption.poll()

    run(warmup)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        run(steps)
        wall = time.perf_counter() - started
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        label = category(event.key)
        totals[label] = totals.get(label, 0.0) + event.self_cpu_time_total / 1e3
    totals["untraced Python"] = max(0.0, wall * 1e3 - sum(totals.values()))
    lines = ["| part of a step | ms per step | share |", "|---|---:|---:|"]
    for label, ms in sorted(totals.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {label} | {ms / steps:.2f} | {ms / (wall * 1e3):.0%} |")
    lines.append(f"| **step (wall, under the profiler)** | **{wall * 1e3 / steps:.2f}** | |")
    top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
    lines.append("\nTop events by self CPU time (ms per step):\n")
    lines += [f"- `{e.key}`: {e.self_cpu_time_total / 1e3 / steps:.3f} ({category(e.key)})" for e in top]
    return "\n".join(lines)

