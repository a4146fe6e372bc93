"""Per-feature preprocessing options of a converter: vocabularies and dense transforms.

A converter has built-in defaults; a YAML file (``--config``) and dotted
command-line overrides change them, as for run configs::

    vocab:
      default: {min_count: 10}                 # every vocabulary not named below
      features:
        sparse_20: {hash_buckets: 1000000}     # hash this one to a fixed size
    dense:
      default: {transform: log1p, fill: 0.0, clip_min: 0.0}
      features:
        dense_3: {transform: log1p_standardize}

    bigrec data criteo --source raw --output out vocab.default.min_count=4 vocab.features.sparse_2.hash_buckets=100000

Dense transforms, in this order: missing -> ``fill``; ``x = max(x, clip_min)``
when set; ``log1p`` (``log(1 + max(x, 0))``, Criteo's convention); ``standardize``
with the training rows' mean and standard deviation (of the value after the
previous steps). ``transform`` is one of :data:`TRANSFORMS`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pyarrow as pa

from bigrec.config import apply_overrides, read_yaml
from bigrec.data.converters.vocab import VocabSpec
from bigrec.errors import ConfigError

TRANSFORMS = ("none", "log1p", "standardize", "log1p_standardize")


@dataclass(frozen=True)
class DenseSpec:
    transform: str = "none"
    fill: float = 0.0
    clip_min: float | None = None

    @classmethod
    def from_dict(cls, raw: dict, where: str) -> "DenseSpec":
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping like {{transform: log1p, fill: 0.0}}")
        unknown = set(raw) - {"transform", "fill", "clip_min"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid: clip_min, fill, transform")
        spec = cls(transform=str(raw.get("transform", "none")), fill=float(raw.get("fill", 0.0)),
                   clip_min=None if raw.get("clip_min") is None else float(raw["clip_min"]))
        if spec.transform not in TRANSFORMS:
            raise ConfigError(f"{where}: transform '{spec.transform}' is not one of {TRANSFORMS}")
        return spec

    def prepare(self, values: np.ndarray) -> np.ndarray:
        """Fill, clip and log: everything but standardisation. ``values`` float64, NaN = missing."""
        out = np.where(np.isnan(values), self.fill, values)
        if self.clip_min is not None:
            out = np.maximum(out, self.clip_min)
        if self.transform.startswith("log1p"):
            out = np.log1p(np.maximum(out, 0.0))
        return out

    def prepare_ints(self, column: pa.Array | pa.ChunkedArray, dtype: type = np.float64) -> np.ndarray:
        """:meth:`prepare` of an integer column (null = missing) as ``dtype [N]``: the same values, bit for bit,
        read from a table of the prepared values of ``TABLE_RANGE`` (Criteo's counts nearly all fall in it: a
        take instead of a log per value); values outside it are prepared one by one."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        low, high = TABLE_RANGE
        table = _prepared_table(self, np.dtype(dtype).str)
        column = column.cast(pa.int64()) if column.type != pa.int64() else column
        # the values buffer as it is: what a null slot holds does not matter, it is overwritten below
        ints = np.frombuffer(column.buffers()[1], dtype=np.int64, count=len(column), offset=column.offset * 8)
        index = ints - low  # int64 (a value near 2**63 wraps, and is outside like any other)
        outside = index.view(np.uint64) >= np.uint64(high - low)
        values = np.take(table, index, mode="clip")
        if outside.any():
            values[outside] = self.prepare(ints[outside].astype(np.float64))
        if column.null_count:
            values[~column.is_valid().to_numpy(zero_copy_only=False)] = self.prepare(np.array([np.nan]))[0]
        return values

    @property
    def standardized(self) -> bool:
        return self.transform.endswith("standardize")


TABLE_RANGE = (-1024, 1 << 16)  # integers whose prepared value is looked up (512 KiB of float64)


@lru_cache(maxsize=64)
def _prepared_table(spec: DenseSpec, dtype: str) -> np.ndarray:
    return spec.prepare(np.arange(*TABLE_RANGE, dtype=np.float64)).astype(dtype)


@dataclass
class RunningMoments:
    """Streaming count / mean / variance (Chan's parallel update), for standardisation."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, values: np.ndarray) -> None:
        if values.size:
            mean = float(values.mean())
            self.merge(RunningMoments(int(values.size), mean, float(((values - mean) ** 2).sum())))

    def merge(self, other: "RunningMoments") -> None:
        """Add the values ``other`` has seen."""
        if not other.count:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.mean += delta * other.count / total
        self.count = total

    def remove(self, other: "RunningMoments") -> None:
        """Take back the values ``other`` has seen (a part of those added): the inverse of :meth:`merge`."""
        if not other.count:
            return
        rest = self.count - other.count
        if rest <= 0:
            self.count, self.mean, self.m2 = 0, 0.0, 0.0
            return
        mean = (self.count * self.mean - other.count * other.mean) / rest
        delta = other.mean - mean
        self.m2 = max(self.m2 - other.m2 - delta * delta * rest * other.count / self.count, 0.0)
        self.mean, self.count = mean, rest

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.count)) if self.count else 0.0


@dataclass
class PrepOptions:
    vocab_default: VocabSpec = field(default_factory=VocabSpec)
    vocab_features: dict = field(default_factory=dict)
    dense_default: DenseSpec = field(default_factory=DenseSpec)
    dense_features: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)

    def vocab(self, name: str) -> VocabSpec:
        return self.vocab_features.get(name, self.vocab_default)

    def dense(self, name: str) -> DenseSpec:
        return self.dense_features.get(name, self.dense_default)


def load_options(defaults: dict, config_path: str | None, overrides: list[str], vocab_names: list[str],
                 dense_names: list[str]) -> PrepOptions:
    """Defaults, then the YAML file, then the dotted overrides; unknown names are errors listing the valid ones."""
    raw = copy.deepcopy(defaults)
    if config_path:
        _merge(raw, read_yaml(config_path, "preprocessing config"))
    raw = apply_overrides(raw, list(overrides))
    unknown = set(raw) - {"vocab", "dense"}
    if unknown:
        raise ConfigError(f"unknown section(s) {sorted(unknown)} in the preprocessing options; valid: dense, vocab")
    options = PrepOptions(raw=raw)
    for section, names, spec_cls in (("vocab", vocab_names, VocabSpec), ("dense", dense_names, DenseSpec)):
        body = raw.get(section) or {}
        extra = set(body) - {"default", "features"}
        if extra:
            raise ConfigError(f"unknown key(s) {sorted(extra)} under '{section}'; valid: default, features")
        default = spec_cls.from_dict(body.get("default") or {}, f"{section}.default")
        features = {}
        for name, spec in (body.get("features") or {}).items():
            if name not in names:
                raise ConfigError(f"{section}.features.{name}: not a {section} of this data set; "
                                  f"known: {sorted(names) or 'none'}")
            features[name] = spec_cls.from_dict(spec or {}, f"{section}.features.{name}")
        setattr(options, f"{section}_default", default)
        setattr(options, f"{section}_features", features)
    return options


def _merge(base: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def options_for(defaults: dict, settings, vocab_names: list[str], dense_names: list[str]) -> PrepOptions:
    """:func:`load_options` from a converter's ``Settings`` (its ``--config`` file and overrides)."""
    return load_options(defaults, settings.config, settings.overrides, vocab_names, dense_names)
