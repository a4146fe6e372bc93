"""Run configuration: one YAML file per run, every key overridable from the CLI.

``bigrec train configs/ranking/deepfm_ml100k.yaml trainer.epochs=3 model.hidden_units=[256,128]``
loads the YAML, applies each dotted override (values parsed as YAML), and turns the
result into typed sections. Unknown keys are errors that list the valid ones; every
value is checked against its field's type and range (``bigrec.config_check``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from bigrec.config_check import check_value
from bigrec.errors import ConfigError


@dataclass
class DataConfig:
    """Where the Parquet data lives and how it is streamed."""

    path: str = ""  # directory with the split files and schema.json
    train: str = "train.parquet"  # file, directory or glob, relative to ``path``
    valid: Optional[str] = "valid.parquet"
    test: Optional[str] = "test.parquet"
    schema: str = "schema.json"
    batch_size: int = 512  # rows per rank per step (upper bound; batches are balanced)
    eval_batch_size: int = 4096
    num_workers: int = 0
    shuffle_buffer: int = 0  # rows; 0 = read in file order
    validate: bool = True  # scan this rank's rows for bad values before training

    def resolve(self, name: str) -> Optional[str]:
        value = getattr(self, name)
        if value is None:
            return None
        return str(Path(self.path) / value) if self.path else value


@dataclass
class ModelConfig:
    """``name`` picks a registered model; every other key goes to its constructor."""

    name: str = ""
    params: dict = field(default_factory=dict)


@dataclass
class TaskConfig:
    """Which label columns the model's task reads and how the per-task losses are weighted.

    Defaults: the first label for ranking, every label for multi-task. Task kinds
    with options of their own (e.g. retrieval) read them from ``options``.
    """

    labels: Optional[list[str]] = None
    loss_weights: Optional[list[float]] = None
    loss_weighting: Any = "fixed"  # fixed | uncertainty | gradnorm, or {name: gradnorm, alpha: 1.5}
    aux_loss_weights: dict = field(default_factory=dict)
    soft_labels: bool = False  # binary labels may be any value in [0, 1] (else exactly 0 or 1)
    options: dict = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    eps: float = 1e-8


@dataclass
class EarlyStoppingConfig:
    metric: str = "auc"  # a validation metric name, e.g. auc, logloss, click/auc
    mode: str = "max"
    patience: int = 2


@dataclass
class TrainerConfig:
    epochs: int = 1
    seed: int = 0
    output_dir: str = "runs/default"
    dense_optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    sparse_optimizer: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig(name="exact_row_wise_adagrad", lr=0.05))
    lr_schedule: str = "constant"  # constant | linear_decay | cosine
    warmup_steps: int = 0
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    max_steps_per_epoch: Optional[int] = None
    log_every: int = 20
    progress_bar: bool = True
    # TrainPipelineSparseDist (true) or a plain loop (false); null: the pipeline on CUDA, where it overlaps the
    # copy and input distribution of the next batch with this one, the plain loop on CPU, where nothing runs
    # beside the step and the pipeline only adds bookkeeping (docs/benchmarks.md)
    pipeline: Optional[bool] = None
    checkpoint_every_steps: int = 0  # also checkpoint every N steps (0: only at epoch end); see docs/checkpoints.md
    keep_last: int = 2  # periodic checkpoints kept (best/ and final/ are kept apart)
    resume: str = "none"  # none | auto (newest complete checkpoint in output_dir) | a checkpoint directory;
    # after a torchrun restart (TORCHELASTIC_RESTART_COUNT > 0) none acts as auto
    debug_log_steps: bool = False  # write every step's loss and row ids to output_dir/steps/ (tests)
    reuse_output_dir: bool = False  # allow an output_dir that is not empty and was not made by bigrec


@dataclass
class ShardingConfig:
    plan: Optional[str] = None  # a plan file written by ``bigrec plan``
    compute_device: str = "auto"  # auto | cpu | cuda
    sharding_types: Optional[list[str]] = None  # restrict every table, e.g. [row_wise]
    tables: dict = field(default_factory=dict)  # per-table constraints: {name: {sharding_types: [...]}}
    print_plan: bool = True


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    source: str = ""  # the YAML file it came from

    def to_dict(self) -> dict:
        raw = dataclasses.asdict(self)
        raw.pop("source")
        raw["model"] = {"name": self.model.name, **self.model.params}
        return raw


def _build(cls: type, raw: Any, where: str):
    """Recursively build dataclass ``cls`` from ``raw``; unknown keys raise ConfigError."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"'{where}' must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"unknown key '{where}.{key}'; valid keys: {sorted(fields)}")
        field_type = fields[key].type
        nested = _NESTED.get(field_type)
        kwargs[key] = _build(nested, value, f"{where}.{key}") if nested else check_value(cls, key, value,
                                                                                         f"{where}.{key}")
    return cls(**kwargs)


_NESTED = {
    "OptimizerConfig": OptimizerConfig,
    "EarlyStoppingConfig": EarlyStoppingConfig,
}


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key.path=value")
        dotted, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override '{item}': value is not valid YAML ({exc})") from None
        node = raw
        keys = dotted.split(".")
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{key}' is not a section")
            node = child
        node[keys[-1]] = value
    return raw


def config_from_dict(raw: dict, source: str = "") -> Config:
    raw = dict(raw)
    unknown = set(raw) - {"data", "model", "task", "trainer", "sharding"}
    if unknown:
        raise ConfigError(f"unknown section(s) {sorted(unknown)}; valid: data, model, task, trainer, sharding")
    model_raw = dict(raw.get("model") or {})
    name = model_raw.pop("name", "")
    if not name:
        raise ConfigError("model.name is missing")
    if not isinstance(name, str):
        raise ConfigError(f"model.name is {name!r}, expected a string")
    return Config(
        data=_build(DataConfig, raw.get("data"), "data"),
        model=ModelConfig(name=name, params=model_raw),
        task=_build(TaskConfig, raw.get("task"), "task"),
        trainer=_build(TrainerConfig, raw.get("trainer"), "trainer"),
        sharding=_build(ShardingConfig, raw.get("sharding"), "sharding"),
        source=source,
    )


def read_yaml(path: str | Path, what: str = "config") -> dict:
    """A YAML file's contents (``{}`` when empty); a ConfigError names the file otherwise."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a {what} file is a mapping of keys, got {type(raw).__name__}")
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML run config and apply dotted command-line overrides."""
    raw = read_yaml(path)
    try:
        return config_from_dict(apply_overrides(raw, list(overrides or [])), source=str(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
