"""Value checks of the label columns a task reads as binary targets.

A task that trains on binary labels declares them with :func:`binary_labels`;
the Parquet stream then checks every row group it reads (training, validation,
evaluation and prediction alike), and ``data.validate`` scans a rank's rows
before training. A rating 1-5 in a ``click`` column is one error naming the
file, the column and how many values are wrong, instead of a silently useless
model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence

import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class LabelCount:
    """``count`` of ``rows`` values of ``column`` are out of range; ``example`` is one of them."""

    column: str
    count: int
    rows: int
    example: Optional[float] = None


@dataclass(frozen=True)
class BinaryLabels:
    """Label columns that must hold 0 or 1 (any value in [0, 1] with ``soft``)."""

    columns: tuple[str, ...]
    soft: bool = False

    @property
    def expected(self) -> str:
        return "in [0, 1]" if self.soft else "0 or 1"

    def counts(self, table: pa.Table) -> Iterator[LabelCount]:
        """Out-of-range values of each checked column of ``table`` (Arrow kernels, no per-row Python)."""
        for column in self.columns:
            values = table.column(column)
            if pa.types.is_boolean(values.type) or len(values) == 0:
                yield LabelCount(column, 0, len(values))
                continue
            if self.soft:
                bad = pc.or_(pc.less(values, 0), pc.greater(values, 1))
            else:
                bad = pc.invert(pc.is_in(values, value_set=pa.array([0, 1], type=values.type)))
            count = pc.sum(bad).as_py() or 0
            example = float(pc.filter(values, bad)[0].as_py()) if count else None
            yield LabelCount(column, count, len(values), example)

    def message(self, problem: LabelCount, where: str) -> str:
        """``<count> of <rows> values <where> are not 0 or 1 (e.g. 5.0); ...`` (the DataError names file and column)."""
        hint = "" if self.soft else "; set task.soft_labels=true if the labels are probabilities in [0, 1]"
        where = f" {where}" if where else ""
        return (f"{problem.count:,} of {problem.rows:,} label values{where} are not {self.expected} "
                f"(e.g. {problem.example:g}); a binary task's labels must be {self.expected}{hint}")


def binary_labels(columns: Sequence[str], soft: bool = False) -> BinaryLabels:
    """What a binary task calls to declare its label columns (see the module docstring)."""
    return BinaryLabels(tuple(columns), soft)


def add(totals: dict[str, LabelCount], counts: Iterable[LabelCount]) -> None:
    """Add the counts of one more table to ``totals`` (per column; the first example is kept)."""
    for c in counts:
        seen = totals.get(c.column)
        totals[c.column] = c if seen is None else LabelCount(
            c.column, seen.count + c.count, seen.rows + c.rows, seen.example if seen.example is not None else c.example)
