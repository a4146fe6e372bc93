"""The import graph: layering rules of docs/architecture.md, and no cycles.

Every ``import bigrec...`` statement counts, also the ones inside functions (a lazy import
is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bigrec"

# (importer prefix, forbidden prefixes)
RULES = [
    ("bigrec.models", ("bigrec.tasks", "bigrec.train", "bigrec.serving", "bigrec.plan", "bigrec.data",
                       "bigrec.testing", "bigrec.cli")),
    ("bigrec.tasks", ("bigrec.train", "bigrec.serving", "bigrec.plan", "bigrec.testing", "bigrec.cli")),
    ("bigrec.data", ("bigrec.models", "bigrec.tasks", "bigrec.train", "bigrec.serving", "bigrec.plan")),
    ("bigrec.serving", ("bigrec.train.trainer", "bigrec.train.optim", "bigrec.train.sharding")),
    ("bigrec.features", ("bigrec.models", "bigrec.tasks", "bigrec.train", "bigrec.data", "bigrec.config")),
    ("bigrec.batch", ("bigrec.models", "bigrec.tasks", "bigrec.train", "bigrec.data", "bigrec.config")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """``module -> the bigrec modules it imports`` (a package import counts as its ``__init__``)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                               for a in node.names)
        graph[name] = {t for t in targets if t.startswith("bigrec") and t in modules and t != name}
    return graph


def test_layering_rules_hold():
    broken = [f"{module} imports {target}" for module, targets in imports().items() for target in targets
              for prefix, forbidden in RULES
              if (module == prefix or module.startswith(prefix + ".")) and target.startswith(forbidden)
              and not target.startswith(prefix)]
    assert not broken, "\n".join(sorted(broken))


def test_no_import_cycles():
    graph = imports()
    # a package's __init__ importing its own submodules is how packages export; not a cycle of layers
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
