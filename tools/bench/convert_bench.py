"""Criteo converter at scale: throughput and peak memory against input size, and against pyarrow.csv.

    python tools/bench/convert_bench.py [--lines 1000000 10000000] [--memory-mb 1024] [--repeats 3] [--workdir DIR]

Generates Kaggle-layout ``train.txt`` files (label, 13 integers with missing and
negative values, 26 hex columns with Zipf-distributed values from vocabularies
of 10 to 1,000,000 values), then for each size runs, each in a fresh process:

* ``pyarrow.csv.open_csv`` streaming the same file alone (14 int64 and 26 binary
  columns, 16 MiB blocks, ``use_threads=True``), the baseline;
* ``bigrec data criteo`` (parse, count, encode, write; ``--memory-mb`` cap,
  ``--workers`` threads, its default 2).

and prints rows/s (wall clock), CPU seconds per million rows (user + system: the
figure that survives a shared machine), the ratios to the baseline, the peak RSS
of each process and the 1-minute load average when the runs started. The two
alternate ``--repeats`` times and the best of each is kept; each run's figures are
saved under ``WORKDIR/results`` and not run again. Like with like: both may use
two threads (the baseline Arrow's pool, ``use_threads=True``; the converter
``--workers 2``).
Flat converter RSS as the input grows is the point: memory follows the cap, not
the data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 500_000

BASELINE = """
import resource, sys, time
import pyarrow as pa, pyarrow.csv as pacsv
names = ["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]
types = {n: (pa.int64() if i < 14 else pa.binary()) for i, n in enumerate(names)}
started = time.perf_counter()
reader = pacsv.open_csv(sys.argv[1], read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 24),
                        parse_options=pacsv.ParseOptions(delimiter="\\t", quote_char=False),
                        convert_options=pacsv.ConvertOptions(column_types=types))
rows = sum(batch.num_rows for batch in reader)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(rows, time.perf_counter() - started, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime)
"""

CONVERTER = """
import argparse, resource, sys, time
from bigrec.data.cli import _positive_int
from bigrec.data.converters import cli
parser = argparse.ArgumentParser()
cli.register(parser.add_subparsers(dest="command"), _positive_int)
args = parser.parse_args(sys.argv[1:])
started = time.perf_counter()
args.handler(args)
usage = resource.getrusage(resource.RUSAGE_SELF)
print("BENCH", time.perf_counter() - started, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime)
"""


def generate(path: Path, lines: int, seed: int = 0) -> None:
    """Write ``lines`` Kaggle-layout lines in chunks (vectorised through Arrow)."""
    rng = np.random.default_rng(seed)
    cardinalities = np.geomspace(10, 1_000_000, 26).astype(int)
    vocabularies = [pa.array([format(int(v), "08x") for v in rng.choice(2**32, size=c, replace=False)])
                    for c in cardinalities]
    options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    with pa.OSFile(str(path), "wb") as sink:
        for start in range(0, lines, CHUNK):
            n = min(CHUNK, lines - start)
            columns = {"label": pc.cast(pa.array((rng.random(n) < 0.25).astype(np.int64)), pa.string())}
            for i in range(13):
                values = np.floor(rng.lognormal(1.5, 1.5, n)).astype(np.int64) - (i == 1) * 2
                text = pc.cast(pa.array(values), pa.string())
                columns[f"I{i + 1}"] = pc.if_else(pa.array(rng.random(n) < 0.2), "", text)
            for j, vocab in enumerate(vocabularies):
                ranks = np.minimum(rng.zipf(1.2, n) - 1, len(vocab) - 1)
                text = vocab.take(pa.array(ranks))
                columns[f"C{j + 1}"] = pc.if_else(pa.array(rng.random(n) < 0.05), "", text)
            pacsv.write_csv(pa.table(columns), sink, write_options=options)


def run(code: str, args: list[str]) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return done.stdout


def measure(what: str, raw: Path, root: Path, memory_mb: int, workers: int) -> dict:
    """One fresh-process run of the baseline or the converter: rows, wall seconds, CPU seconds, peak RSS."""
    load = os.getloadavg()[0]
    if what == "pyarrow.csv":
        rows, seconds, rss, cpu = run(BASELINE, [str(raw)]).split()
        return {"rows": int(rows), "seconds": float(seconds), "rss": int(rss), "cpu": float(cpu), "load": load}
    out = root / f"out_{raw.stem}"
    shutil.rmtree(out, ignore_errors=True)
    last = run(CONVERTER, ["criteo", "--source", str(raw), "--output", str(out), "--no-progress",
                           "--memory-mb", str(memory_mb), "--workers", str(workers)]).strip().splitlines()[-1].split()
    rows = sum(e["rows"] for e in json.loads((out / "stats.json").read_text())["splits"].values())
    shutil.rmtree(out, ignore_errors=True)
    return {"rows": rows, "seconds": float(last[1]), "rss": int(last[2]), "cpu": float(last[3]), "load": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2, help="converter threads (the baseline reader uses "
                                                               "Arrow's thread pool, use_threads=True)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each; the best is kept")
    parser.add_argument("--workdir", help="where the generated files and per-run results go (default: a "
                                          "temporary directory); runs already recorded there are skipped")
    args = parser.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="convert_bench"))
    root.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for lines in args.lines:
            raw = root / f"train_{lines}.txt"
            if not raw.exists():
                started = time.perf_counter()
                generate(raw, lines)
                print(f"generated {lines:,} lines ({raw.stat().st_size / 2**20:,.0f} MiB) in "
                      f"{time.perf_counter() - started:.0f}s", flush=True)
            runs: dict[str, list[dict]] = {"pyarrow.csv": [], "bigrec": []}
            for repeat in range(args.repeats):
                for what in runs:
                    record = root / "results" / f"{lines}-{what}-w{args.workers}-m{args.memory_mb}-{repeat}.json"
                    if not record.exists():
                        record.parent.mkdir(parents=True, exist_ok=True)
                        record.write_text(json.dumps(measure(what, raw, root, args.memory_mb, args.workers)))
                    runs[what].append(json.loads(record.read_text()))
                    print(lines, what, runs[what][-1], flush=True)
            base, conv = runs["pyarrow.csv"], runs["bigrec"]
            assert all(r["rows"] == base[0]["rows"] for r in base + conv), "row counts differ"
            results.append((lines, raw.stat().st_size, base, conv))
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nmemory cap {args.memory_mb} MiB, converter --workers {args.workers}, best of {args.repeats} "
          "alternating runs each\n")
    print("| lines | input MiB | pyarrow.csv rows/s | bigrec rows/s | ratio | pyarrow.csv CPU s / 1M rows "
          "| bigrec CPU s / 1M rows | CPU ratio | pyarrow.csv peak RSS MiB | bigrec peak RSS MiB | load average |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for lines, size, base, conv in results:
        rows = base[0]["rows"]
        base_rate = rows / min(r["seconds"] for r in base)
        rate = rows / min(r["seconds"] for r in conv)
        base_cpu = min(r["cpu"] for r in base) / rows * 1e6
        cpu = min(r["cpu"] for r in conv) / rows * 1e6
        loads = [r["load"] for r in base + conv]
        print(f"| {lines:,} | {size / 2**20:,.0f} | {base_rate:,.0f} | {rate:,.0f} | {rate / base_rate:.2f} | "
              f"{base_cpu:.2f} | {cpu:.2f} | {base_cpu / cpu:.2f} | {max(r['rss'] for r in base) / 2**20:,.0f} | "
              f"{max(r['rss'] for r in conv) / 2**20:,.0f} | {min(loads):.1f}-{max(loads):.1f} |")


if __name__ == "__main__":
    main()
