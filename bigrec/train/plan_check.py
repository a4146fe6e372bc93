"""A plan file checked field by field against the model before ``DistributedModelParallel`` sees it.

A plan file (``bigrec plan --output``) is JSON a person may edit::

    {"world_size": 2, "plan": {"<module path>": {"<table>": {
        "sharding_type": "row_wise", "compute_kernel": "fused", "ranks": [0, 1],
        "shards": [{"offsets": [0, 0], "sizes": [5, 8], "placement": "rank:0/cpu"}, ...]}}}}

:func:`check_plan_file` raises one ConfigError naming the file, the table and the
field for anything TorchRec would otherwise fail on deep inside sharding: a
wrong type, a missing or unknown field, a sharding type or kernel the table's
sharder does not offer on this device, ranks outside the job, shards that do
not tile the table exactly, or ranks that disagree with the shard placements.
"""

from __future__ import annotations

import re
from typing import Any

from bigrec.errors import ConfigError

ENTRY_FIELDS = ("sharding_type", "compute_kernel", "ranks", "shards")
SHARD_FIELDS = ("offsets", "sizes", "placement")
_PLACEMENT = re.compile(r"^rank:(\d+)(/[a-z]+(:\d+)?)?$")


def _int_pair(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value))


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), type(value).__name__)


class _Checker:
    def __init__(self, path: str, world_size: int, device_type: str, sharders: dict) -> None:
        self.path, self.world_size, self.device_type, self.sharders = path, world_size, device_type, sharders

    def fail(self, where: str, problem: str) -> None:
        raise ConfigError(f"{self.path}: {where}: {problem}")

    def mapping(self, value: Any, where: str, what: str) -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"expected {what} (an object), got {_type_name(value)}")
        return value

    def entry(self, table: str, entry: Any, rows: int, dim: int, is_sequence: bool) -> None:
        where = f"table '{table}'"
        self.mapping(entry, where, "the table's sharding")
        missing = [f for f in ENTRY_FIELDS if f not in entry]
        unknown = sorted(set(entry) - set(ENTRY_FIELDS))
        if missing or unknown:
            self.fail(where, f"missing field(s) {missing}" if missing else f"unknown field(s) {unknown}; "
                      f"a table's fields are {list(ENTRY_FIELDS)}")
        sharder = self.sharders[is_sequence]
        types = sharder.sharding_types(self.device_type)
        kind = entry["sharding_type"]
        if kind not in types:
            self.fail(where, f"sharding_type {kind!r} is not one of {types} (offered for this "
                             f"{'sequence' if is_sequence else 'pooled'} table on {self.device_type})")
        kernels = sharder.compute_kernels(kind, self.device_type)
        if entry["compute_kernel"] not in kernels:
            self.fail(where, f"compute_kernel {entry['compute_kernel']!r} is not available for {kind} on "
                             f"{self.device_type}; use one of {kernels}"
                             + (" (plan for --device cpu)" if self.device_type == "cpu" else ""))
        ranks = entry["ranks"]
        if not isinstance(ranks, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in ranks):
            self.fail(where, f"ranks must be a list of integers, got {ranks!r}")
        if not ranks or any(not 0 <= r < self.world_size for r in ranks):
            self.fail(where, f"ranks {ranks} must name ranks 0..{self.world_size - 1} of this job")
        self.shards(where, kind, entry["shards"], ranks, rows, dim)

    def shards(self, where: str, kind: str, shards: Any, ranks: list[int], rows: int, dim: int) -> None:
        if not isinstance(shards, list):
            self.fail(where, f"shards must be a list, got {_type_name(shards)}")
        if kind == "data_parallel":
            if shards:
                self.fail(where, "a data_parallel table is replicated: shards must be []")
            return
        placed = []
        for index, shard in enumerate(shards):
            at = f"{where}, shard {index}"
            self.mapping(shard, at, "a shard")
            missing = [f for f in SHARD_FIELDS if f not in shard]
            if missing:
                self.fail(at, f"missing field(s) {missing}")
            if not _int_pair(shard["offsets"]) or not _int_pair(shard["sizes"]) or 0 in shard["sizes"]:
                self.fail(at, f"offsets and sizes must be [row, column] pairs of non-negative integers (sizes "
                              f"positive), got {shard['offsets']!r} and {shard['sizes']!r}")
            (r0, c0), (nr, nc) = shard["offsets"], shard["sizes"]
            if r0 + nr > rows or c0 + nc > dim:
                self.fail(at, f"rows {r0}..{r0 + nr} x columns {c0}..{c0 + nc} lie outside the {rows} x {dim} table; "
                              f"the model or schema changed since planning")
            match = _PLACEMENT.match(shard["placement"]) if isinstance(shard["placement"], str) else None
            if match is None:
                self.fail(at, f"placement must look like 'rank:N/cpu' or 'rank:N/cuda:N', got {shard['placement']!r}")
            placed.append(int(match.group(1)))
        if not shards:
            self.fail(where, f"a {kind} table needs at least one shard")
        if placed != ranks:
            self.fail(where, f"ranks {ranks} do not match the shard placements {placed}")
        covered = sum(s["sizes"][0] * s["sizes"][1] for s in shards)
        if covered != rows * dim or _overlap(shards):
            self.fail(where, f"shards cover {covered} values{' with overlaps' if _overlap(shards) else ''} but the "
                             f"table is {rows} x {dim}; the model or schema changed since planning")


def _overlap(shards: list[dict]) -> bool:
    boxes = [(s["offsets"][0], s["offsets"][1], s["offsets"][0] + s["sizes"][0], s["offsets"][1] + s["sizes"][1])
             for s in shards]
    return any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
               for i, a in enumerate(boxes) for b in boxes[i + 1:])


def check_plan_file(payload: Any, path: str, tables: dict[str, tuple[str, int, int, bool]], sharders: dict,
                    world_size: int, device_type: str) -> None:
    """Raise a ConfigError naming the table and field if ``payload`` cannot shard the model on this job.

    ``tables``: ``table -> (module path, rows, dim, is_sequence)`` of the model
    (``sharding.embedding_tables``); ``sharders``: ``is_sequence -> sharder`` whose
    ``sharding_types`` / ``compute_kernels`` say what each table may use.
    """
    checker = _Checker(str(path), world_size, device_type, sharders)
    checker.mapping(payload, "the file", "a plan with 'world_size' and 'plan'")
    planned_world = payload.get("world_size")
    if planned_world != world_size:
        raise ConfigError(f"{path}: plan was made for {planned_world} rank(s) but this job has {world_size}; "
                          f"re-run `bigrec plan` with --world-size {world_size}")
    modules = checker.mapping(payload.get("plan"), "'plan'", "module path -> tables")
    planned = {}
    for module_path, entries in modules.items():
        for table, entry in checker.mapping(entries, f"module '{module_path}'", "table -> sharding").items():
            planned[table] = (module_path, entry)
    if set(planned) != set(tables):
        raise ConfigError(f"{path}: plan covers tables {sorted(planned)} but the model has {sorted(tables)}")
    for table, (module_path, entry) in planned.items():
        expected_path, rows, dim, is_sequence = tables[table]
        if module_path != expected_path:
            checker.fail(f"table '{table}'", f"planned under '{module_path}' but it lives at '{expected_path}'")
        checker.entry(table, entry, rows, dim, is_sequence)
