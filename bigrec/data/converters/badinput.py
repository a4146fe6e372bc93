"""Bad input lines: counted, the first few reported with their line numbers, skipped or fatal.

A converter hands every problem it finds to one :class:`BadInput`. By default the
lines are skipped and counted (the summary names the first few as
``file:line: problem``); with ``strict`` the first one ends the run with a
:class:`~bigrec.errors.DataError` naming the file, line and column.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from bigrec.errors import DataError

EXAMPLES_KEPT = 5


@dataclass
class BadInput:
    strict: bool = False
    count: int = 0
    by_problem: Counter = field(default_factory=Counter)
    empty_files: list[str] = field(default_factory=list)
    _first: list = field(default_factory=list)  # (file rank, line, text), the lowest EXAMPLES_KEPT
    _files: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def examples(self) -> list[str]:
        return [text for _, _, text in self._first]

    def report(self, path: str, lines: Sequence[int] | np.ndarray, problem: str, column: str | None = None) -> None:
        """Record bad ``lines`` (1-based line numbers of ``path``) sharing one ``problem``."""
        lines = np.asarray(lines, dtype=np.int64)
        if not lines.size:
            return
        if self.strict:
            raise DataError(path, f"line {int(lines[0])}: {problem} (--strict)", column=column)
        where = f" (column '{column}')" if column else ""
        with self._lock:  # blocks are parsed on several threads
            self.count += int(lines.size)
            self.by_problem[f"{problem}{where}"] += int(lines.size)
            rank = self._files.setdefault(path, len(self._files))
            self._first += [(rank, line, f"{path}:{line}: {problem}{where}") for line in lines[:EXAMPLES_KEPT].tolist()]
            self._first = sorted(self._first)[:EXAMPLES_KEPT]

    def empty_file(self, path: str) -> None:
        """An input file without a single line: skipped (counted), or fatal with ``strict``."""
        if self.strict:
            raise DataError(path, "file is empty (--strict)")
        self.empty_files.append(path)

    def to_dict(self) -> dict:
        return {"bad_lines": self.count, "by_problem": dict(self.by_problem),
                "first_bad_lines": list(self.examples), "empty_files": list(self.empty_files)}

    def summary_lines(self) -> list[str]:
        """Human-readable lines for the end-of-run summary (empty when the input was clean)."""
        out = []
        if self.count:
            out.append(f"skipped {self.count:,} bad line(s): "
                       + ", ".join(f"{problem}: {n:,}" for problem, n in self.by_problem.most_common()))
            out += [f"  {example}" for example in self.examples]
        if self.empty_files:
            out.append(f"skipped {len(self.empty_files)} empty file(s): {', '.join(self.empty_files)}")
        return out
