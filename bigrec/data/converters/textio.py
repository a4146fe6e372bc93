"""Streaming raw text input: newline-aligned blocks, CSV / JSON-lines parsing with line numbers.

Files are read in blocks of ``block_bytes`` (gzip / bz2 by extension), cut at the
last newline, so memory holds a few blocks whatever the file size. Each block is
parsed by PyArrow (single-threaded, so bad rows come with their line numbers;
:func:`ordered_map` parses several blocks at once on threads). Lines with the
wrong number of fields, empty lines, and values a typed column cannot hold are
handed to :class:`~bigrec.data.converters.badinput.BadInput` with their physical
line numbers and dropped; the returned ``lines`` array gives the line number of
every row kept.
"""

from __future__ import annotations

import io
import json
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from bigrec.data.converters.badinput import BadInput
from bigrec.errors import DataError

_COMPRESSION = {".gz": "gzip", ".bz2": "bz2"}
_NUMBER = {"int": r"^\s*[-+]?[0-9]+\s*$", "float": r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"}
T = TypeVar("T")
R = TypeVar("R")


# ------------------------------------------------------------------ finding files
def require_file(directory: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``names`` that exists in ``directory``; else one DataError saying what was expected."""
    for name in names:
        if (directory / name).is_file():
            return directory / name
    expected = " or ".join(names)
    raise DataError(str(directory), f"{what} not found: expected {expected}")


def require_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), "source not found")
    return path


# ------------------------------------------------------------------ progress
class Progress:
    """A tqdm bar over input bytes (or rows, ``unit="rows"``) with the rows/s of the rows produced so far."""

    def __init__(self, total: int, description: str, enabled: bool = True, unit: str = "B") -> None:
        from tqdm import tqdm

        self.rows = 0
        self._bar = tqdm(total=total, unit=unit, unit_scale=True, desc=description, disable=not enabled,
                         dynamic_ncols=True, mininterval=0.5)

    def update(self, nbytes: int, rows: int) -> None:
        self.rows += rows
        self._bar.update(nbytes)
        elapsed = self._bar.format_dict.get("elapsed") or 0.0
        if elapsed > 0:
            self._bar.set_postfix_str(f"{self.rows:,} rows, {self.rows / elapsed:,.0f} rows/s", refresh=False)

    def close(self) -> None:
        self._bar.close()


# ------------------------------------------------------------------ blocks
@dataclass
class Block:
    """Whole lines of one file: ``first_line`` is the 1-based line number of the first."""

    path: str
    first_line: int
    data: bytes | memoryview  # a view of the memory-mapped file, or of the buffer read (compressed input)
    raw_bytes: int  # bytes of the (possibly compressed) file consumed for this block
    lines: int = -1  # counted from data unless given

    def __post_init__(self) -> None:
        if self.lines < 0:
            self.lines = self.text.count(b"\n")

    @property
    def text(self) -> bytes:
        """The block as ``bytes`` (a copy when it is a view)."""
        return self.data if isinstance(self.data, bytes) else bytes(self.data)

    def empty_lines(self) -> np.ndarray:
        """1-based numbers (within the block) of its empty lines."""
        return _empty_lines(self.data)


def open_text(path: Path) -> tuple[pa.NativeFile, pa.NativeFile]:
    """``(raw file, decompressed stream)`` of ``path``."""
    raw = pa.OSFile(str(path), "rb")
    codec = _COMPRESSION.get(path.suffix)
    return raw, (pa.CompressedInputStream(raw, codec) if codec else raw)


def read_header(path: Path) -> str:
    """The first line of ``path`` (decompressed), without its line ending."""
    raw, stream = open_text(path)
    try:
        head = b""
        while b"\n" not in head:
            chunk = stream.read(65536)
            if not chunk:
                break
            head += chunk
    finally:
        raw.close()
    return head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", errors="replace")


def text_blocks(path: Path, block_bytes: int, skip_lines: int = 0) -> Iterator[Block]:
    """Newline-aligned blocks of ``path``; the first ``skip_lines`` lines (a header) are left out.

    Blocks end at the last line end before each multiple of ``block_bytes`` (or further on, for a line longer
    than a block). An uncompressed file is memory-mapped a block at a time: a block is a view of the file's
    pages, neither copied out of the page cache nor written into fresh memory, and unmapped once nothing
    holds it."""
    if path.suffix in _COMPRESSION:
        yield from _stream_blocks(path, block_bytes, skip_lines)
    else:
        yield from _mapped_blocks(path, block_bytes, skip_lines)


def _count_lines(data) -> int:
    """Newlines in ``data``, counted in slices (no temporary the size of the block)."""
    codes = np.frombuffer(data, dtype=np.uint8)
    step = 1 << 18
    return sum(int(np.count_nonzero(codes[i:i + step] == 10)) for i in range(0, len(codes), step))


def _skipped(data, skip_lines: int, line: int) -> tuple[bytes, int, int]:
    """``(data without its first skip_lines lines, lines still to skip, next line number)``."""
    data = bytes(data)
    while skip_lines and data:
        _, _, data = data.partition(b"\n")
        skip_lines -= 1
        line += 1
    return data, skip_lines, line


def _mapped_blocks(path: Path, block_bytes: int, skip_lines: int) -> Iterator[Block]:
    import mmap

    size = path.stat().st_size
    line, pos = 1, 0
    with open(path, "rb") as handle:
        while pos < size:
            start = pos - pos % mmap.ALLOCATIONGRANULARITY
            end = min(size, pos + block_bytes + (-pos % block_bytes))
            while True:
                view = mmap.mmap(handle.fileno(), end - start, access=mmap.ACCESS_READ, offset=start)
                cut = view.rfind(b"\n", pos - start)
                if cut >= 0 or end == size:
                    break
                view.close()
                end = min(size, end + block_bytes)
            if cut < 0:  # the last line, without a line end
                data, lines, consumed = bytes(view[pos - start:]) + b"\n", 1, size - pos
            else:
                data, lines, consumed = memoryview(view)[pos - start:cut + 1], -1, start + cut + 1 - pos
            pos += consumed
            if skip_lines:
                data, skip_lines, line = _skipped(data, skip_lines, line)
            block = Block(str(path), line, data, consumed, lines if lines > 0 and data else _count_lines(data))
            line += block.lines
            if block.lines:
                yield block


def _stream_blocks(path: Path, block_bytes: int, skip_lines: int) -> Iterator[Block]:
    raw, stream = open_text(path)
    try:
        rest = b""
        line = 1
        consumed = 0
        while True:
            chunk = stream.read(block_bytes)
            if not chunk:
                break
            cut = chunk.rfind(b"\n")
            if cut < 0:
                rest += chunk
                continue
            data = b"".join((rest, memoryview(chunk)[:cut + 1])) if rest else memoryview(chunk)[:cut + 1]
            rest = chunk[cut + 1:]
            if skip_lines:
                data, skip_lines, line = _skipped(data, skip_lines, line)
            position = raw.tell()
            block = Block(str(path), line, data, position - consumed, _count_lines(data))
            consumed = position
            line += block.lines
            if block.lines:
                yield block
        if rest and not skip_lines:
            yield Block(str(path), line, rest + b"\n", raw.tell() - consumed)
    finally:
        raw.close()


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int = 2) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, in order, at most ``2 * workers`` items in flight."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class InOrder:
    """Runs calls one at a time, in order, on a thread of its own (a writer behind the caller), with at most
    ``depth`` waiting, so memory stays bounded; an error is raised by a later :meth:`submit` or by
    :meth:`close`."""

    def __init__(self, depth: int = 2) -> None:
        self._pool = ThreadPoolExecutor(1)
        self._pending: deque = deque()
        self.depth = depth

    def submit(self, fn: Callable, *args) -> None:
        self._pending.append(self._pool.submit(fn, *args))
        while len(self._pending) > self.depth:
            self._pending.popleft().result()

    def close(self) -> None:
        """Wait for every call (raising the first error)."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _empty_lines(data: bytes) -> np.ndarray:
    """1-based numbers of the empty lines of ``data`` (which ends with a newline)."""
    codes = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(codes == 10)
    starts = np.concatenate(([0], ends[:-1] + 1))
    length = ends - starts
    length -= (length > 0) & (codes[np.maximum(ends - 1, 0)] == 13)
    return np.flatnonzero(length == 0) + 1


def _may_have_empty_lines(table: pa.Table) -> bool:
    """False when no row can come from an empty line (which Arrow reads as a row whose first value is
    null, or empty bytes): saves scanning the block's lines."""
    if not table.num_columns:
        return True
    first = table.column(0)
    if first.null_count:
        return True
    if pa.types.is_integer(first.type) or pa.types.is_floating(first.type):
        return False
    if pa.types.is_binary(first.type) or pa.types.is_string(first.type):
        return bool(pc.any(pc.equal(pc.binary_length(first), 0)).as_py())
    return True


def _remove_lines(lines: np.ndarray, removed: np.ndarray) -> np.ndarray:
    return lines[~np.isin(lines, removed)] if removed.size else lines


# ------------------------------------------------------------------ CSV
@dataclass(frozen=True)
class CsvFormat:
    """A delimited file: ``names`` in file order; ``types`` maps the columns parsed as ``int``/``float``
    (others stay ``binary``: categorical values are keyed from their bytes); the ``dictionary`` columns are
    read dictionary-encoded (each distinct value of a block keyed once)."""

    names: tuple[str, ...]
    types: dict = field(default_factory=dict)
    delimiter: str = ","
    quote_char: str | bool = False
    dictionary: tuple[str, ...] = ()

    def arrow_types(self, typed: bool = True) -> dict[str, pa.DataType]:
        kinds = {"int": pa.int64(), "float": pa.float64()}
        untyped = {n: pa.dictionary(pa.int32(), pa.binary()) if n in self.dictionary else pa.binary()
                   for n in self.names}
        return {n: kinds[self.types[n]] if typed and n in self.types else untyped[n] for n in self.names}


def _read_csv(data: bytes, fmt: CsvFormat, typed: bool, handle_invalid: bool = True) -> tuple[pa.Table, list[int]]:
    """Arrow's CSV reader over one block. ``handle_invalid``: rows with the wrong number of fields are skipped
    and listed (a Python callback, which slows Arrow's parser by a third even when never called); without it
    such a row raises ``ArrowInvalid``."""
    invalid: list[int] = []

    def on_invalid(row) -> str:
        invalid.append(row.number)
        return "skip"

    table = pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(column_names=list(fmt.names), use_threads=False, block_size=1 << 24),
        parse_options=pacsv.ParseOptions(delimiter=fmt.delimiter, quote_char=fmt.quote_char,
                                         invalid_row_handler=on_invalid if handle_invalid else None,
                                         ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(column_types=fmt.arrow_types(typed), strings_can_be_null=False,
                                             quoted_strings_can_be_null=False))
    return table, invalid


def parse_csv(block: Block, fmt: CsvFormat, bad: BadInput) -> tuple[pa.Table, np.ndarray]:
    """``(rows, line numbers)`` of the good lines of ``block``.

    A clean block is parsed once, typed, without a bad-row callback. Otherwise it is
    read again with the callback (lines with the wrong number of fields), and if a
    typed value does not parse, once more as bytes: the offending lines are found,
    reported and dropped.
    """
    retyped = False
    try:  # the fast path: a clean block
        table, invalid = _read_csv(block.data, fmt, typed=True, handle_invalid=False)
    except pa.ArrowInvalid:
        try:
            table, invalid = _read_csv(block.data, fmt, typed=True)
        except pa.ArrowInvalid:
            table, invalid = _read_csv(block.data, fmt, typed=False)
            retyped = True
    lines = np.arange(1, block.lines + 1, dtype=np.int64)
    if invalid:
        bad_lines = np.asarray(invalid, dtype=np.int64)
        bad.report(block.path, block.first_line - 1 + bad_lines, f"wrong number of fields (expected {len(fmt.names)})")
        lines = _remove_lines(lines, bad_lines)
    empty = _empty_lines(block.data) if _may_have_empty_lines(table) else np.zeros(0, dtype=np.int64)
    if empty.size:
        bad.report(block.path, block.first_line - 1 + empty, "empty line")
        keep = ~np.isin(lines, empty)
        table, lines = table.filter(pa.array(keep)), lines[keep]
    if retyped:
        table, lines = _convert_checked(table, lines, block, fmt, bad)
    return table, block.first_line - 1 + lines


def _convert_checked(table: pa.Table, lines: np.ndarray, block: Block, fmt: CsvFormat,
                     bad: BadInput) -> tuple[pa.Table, np.ndarray]:
    """Cast the typed columns of an all-bytes table, dropping (and reporting) lines that do not parse."""
    keep = np.ones(table.num_rows, dtype=bool)
    for name, kind in fmt.types.items():
        text = table.column(name).cast(pa.string(), safe=False)
        ok = pc.or_(pc.equal(pc.utf8_length(text), 0), pc.match_substring_regex(text, _NUMBER[kind]))
        ok = pc.fill_null(ok, True).to_numpy(zero_copy_only=False)
        wrong = keep & ~ok
        bad.report(block.path, block.first_line - 1 + lines[wrong], f"not a{'n integer' if kind == 'int' else ' number'}",
                   column=name)
        keep &= ok
    table, lines = table.filter(pa.array(keep)), lines[keep]
    types = fmt.arrow_types()
    columns = []
    for name in fmt.names:
        column = table.column(name)
        if name in fmt.types:
            text = pc.utf8_trim_whitespace(column.cast(pa.string(), safe=False))
            column = pc.if_else(pc.equal(pc.utf8_length(text), 0), pa.scalar(None, types[name]),
                                pc.cast(pc.if_else(pc.equal(pc.utf8_length(text), 0), "0", text), types[name]))
        columns.append(column)
    return pa.table(columns, names=list(fmt.names)), lines


def utf8_ok(array, lines: np.ndarray, path: str, column: str, bad: BadInput,
            keep: np.ndarray | None = None) -> np.ndarray:
    """Bool [N]: the value is valid UTF-8; the others (among ``keep``) are reported as bad encodings.

    Arrow validates the whole column at once; only a column that fails is checked value by value."""
    if isinstance(array, pa.ChunkedArray) and pa.types.is_dictionary(array.type):
        array = pa.chunked_array([chunk.dictionary_decode() for chunk in array.chunks], array.type.value_type)
    elif pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    try:
        array.cast(pa.string())
        return np.ones(len(array), dtype=bool)
    except pa.ArrowInvalid:
        pass
    ok = np.ones(len(array), dtype=bool)
    for i, value in enumerate(array.to_pylist()):
        if value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                ok[i] = False
    bad.report(path, lines[~ok & (True if keep is None else keep)], "bad encoding (not UTF-8)", column=column)
    return ok


# ------------------------------------------------------------------ JSON lines
def parse_json_lines(block: Block, schema: pa.Schema, bad: BadInput) -> tuple[pa.Table, np.ndarray]:
    """``(rows with the columns of schema, line numbers)`` of the JSON objects in ``block``.

    Arrow parses the block at once; if it fails, the lines are parsed one by one and
    the broken ones (bad JSON, bad encoding, a value of the wrong type) reported.
    Blank lines are skipped silently.
    """
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    lines = np.arange(1, block.lines + 1, dtype=np.int64)
    lines = _remove_lines(lines, _empty_lines(block.data))
    try:
        table = pajson.read_json(io.BytesIO(block.data), read_options=pajson.ReadOptions(use_threads=False),
                                 parse_options=options)
        if table.num_rows == len(lines):
            return table.select(schema.names), block.first_line - 1 + lines
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    rows, kept = [], []
    for number, text in enumerate(block.text.split(b"\n")[:block.lines], start=1):
        if not text.strip():
            continue
        problem = None
        try:
            obj = json.loads(text.decode("utf-8"))
            if not isinstance(obj, dict):
                problem = "not a JSON object"
            else:
                row = {name: obj.get(name) for name in schema.names}
                pa.Table.from_pylist([row], schema=schema)
        except UnicodeDecodeError:
            problem = "bad encoding (not UTF-8)"
        except json.JSONDecodeError as exc:
            problem = f"not valid JSON ({exc.msg})"
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            problem = "a field has the wrong type"
        if problem:
            bad.report(block.path, [block.first_line - 1 + number], problem)
        else:
            rows.append(row)
            kept.append(number)
    return pa.Table.from_pylist(rows, schema=schema), block.first_line - 1 + np.asarray(kept, dtype=np.int64)


def staged_blocks(files: Sequence[Path], block_bytes: int, workers: int, stage: Callable[[Block, int], T],
                  bad: BadInput, description: str, progress: bool = True,
                  skip_lines: int = 0) -> Iterator[tuple[int, T]]:
    """``(file index, stage(block, file index))`` for every block of every file, in order, staged on
    ``workers`` threads, with a progress bar over the input bytes. Empty files are reported to ``bad``."""
    total = sum(Path(p).stat().st_size for p in files)
    bar = Progress(total, description, progress)
    try:
        for index, path in enumerate(files):
            if Path(path).stat().st_size == 0:
                bad.empty_file(str(path))
                continue
            blocks = text_blocks(Path(path), block_bytes, skip_lines)
            for block_bytes_read, staged in ordered_map(lambda b, i=index: (b.raw_bytes, stage(b, i)), blocks, workers):
                rows = staged.num_rows if hasattr(staged, "num_rows") else 0
                bar.update(block_bytes_read, rows)
                yield index, staged
    finally:
        bar.close()
