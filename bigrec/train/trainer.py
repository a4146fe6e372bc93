"""``bigrec train``: the training recipe, readable top to bottom.

1. checks before any process group: config, schema, model parameters, data files
   (columns and types; with ``data.validate`` every value of this rank's rows);
2. process group (gloo on CPU, NCCL on CUDA), model on the meta device, fused
   sparse optimizer attached, sharding plan (planner or plan file) printed;
3. ``DistributedModelParallel`` + ``TrainPipelineSparseDist``;
4. resume (``trainer.resume``): the newest complete checkpoint or a given one,
   model + optimizers + LR schedule + RNG + data position + early stopping;
5. per epoch: train (a checkpoint every ``trainer.checkpoint_every_steps``),
   validate (the task's metrics over all ranks), early stopping, TensorBoard scalars,
   a DCP checkpoint at epoch end (and of the best model);
6. test metrics of the best model, written to ``metrics.json``.

SIGTERM/SIGINT stop training after the current step with a checkpoint at that
exact position (``bigrec.train.preemption``). Rank 0 locks ``trainer.output_dir``
for the life of the run (``bigrec.train.output_dir``).

Fault injection (tests of rank failure): with ``BIGREC_FAULT_AT_STEP=N`` in the
environment, rank ``BIGREC_FAULT_RANK`` (default 1) SIGKILLs itself after global
step N on the first torchrun attempt (``TORCHELASTIC_RESTART_COUNT`` 0) only;
``BIGREC_FAULT_SIGNAL=TERM`` (or ``INT``) sends that signal instead, to itself, or
with ``TERM:parent`` to its torchrun agent, which forwards it to every rank.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import torch
import torch.distributed as dist
from torch.utils.tensorboard import SummaryWriter
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist
from tqdm import tqdm

from bigrec.config import Config
from bigrec.data.sequences import check_train_layout
from bigrec.data.labels import binary_labels
from bigrec.data.stream import ParquetBatches, make_loader, open_split, validate_rank_data
from bigrec.errors import ConfigError, Preempted
from bigrec.features import Schema
from bigrec.models import build_model, build_streamed_model
from bigrec.tasks import build_task
from bigrec.train import sharding
from bigrec.train import checkpoint
from bigrec.train.checkpoint import load_model_state, save_checkpoint
from bigrec.train.distributed import DistEnv, init_process_group
from bigrec.train.optim import (LrSchedule, attach_sparse_optimizer, check_dense_optimizer, check_sparse_optimizer,
                                lr_factor, make_optimizer)
from bigrec.train.output_dir import claim_for_job
from bigrec.train.preemption import Preemption


PROGRESS_LINE_S = 10.0  # seconds between progress lines when stderr is not a terminal


@dataclass
class Prepared:
    """Everything checked and opened before the process group exists."""

    env: DistEnv
    schema: Schema
    task: object  # see bigrec.tasks
    splits: dict[str, ParquetBatches]


def prepare(config: Config) -> Prepared:
    """Validate config, schema, model and data; no collective is involved."""
    env = DistEnv.from_environ(config.sharding.compute_device)
    if not config.data.path and not os.path.exists(config.data.train):
        raise ConfigError("data.path is not set")
    schema = Schema.load(config.data.resolve("schema"))
    probe = build_streamed_model(config.model.name, schema, config.model.params, device=torch.device("meta"))
    schema = probe.schema  # without the histories the model never reads
    task = build_task(probe, schema, config.task, config.data)
    check_train_layout(schema, config.data.train, getattr(probe, "all_positions", False), config.model.name)
    check_sparse_optimizer(config.trainer.sparse_optimizer, env.compute_device)
    check_dense_optimizer(config.trainer.dense_optimizer)
    data = config.data
    binary = getattr(task, "binary_columns", None)  # label tasks name their 0/1 columns
    labels = binary_labels(binary, config.task.soft_labels) if binary else None
    splits = {}
    for split in ("train", "valid", "test"):
        spec = data.resolve(split)
        if spec is None:
            continue
        batch_size = data.batch_size if split == "train" else data.eval_batch_size
        splits[split] = open_split(spec, schema, batch_size, env.rank, env.world_size,
                                   shuffle_buffer=data.shuffle_buffer if split == "train" else 0,
                                   seed=config.trainer.seed, labels=labels,
                                   label_check=getattr(task, "check_labels", None))
    if data.validate:
        for dataset in splits.values():
            validate_rank_data(dataset)
    return Prepared(env, schema, task, splits)


@dataclass
class Progress:
    """Where the run stands: what a checkpoint needs besides tensors to continue exactly."""

    epoch: int = 0  # the epoch in progress (or the next one when batches_done is 0)
    batches_done: int = 0  # batches of ``epoch`` already trained, on every rank
    best_value: Optional[float] = None
    best_epoch: int = -1
    stopped: bool = False  # early stopping fired
    history: list = field(default_factory=list)


def restart_count() -> int:
    """Which torchrun attempt this is (0 = the first)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


class Trainer:
    """Builds the sharded model and runs epochs; see the module docstring.

    ``inference=True`` builds the same sharded model for ``bigrec eval/predict``:
    no TensorBoard writer, no plan file, no resume.
    """

    def __init__(self, config: Config, prepared: Prepared, *, inference: bool = False) -> None:
        self.config = config
        self.env = env = prepared.env
        self.schema = prepared.schema
        self.task = prepared.task
        self.splits = prepared.splits
        self.output_dir = Path(config.trainer.output_dir)
        self.inference = inference
        self.pg = init_process_group(env)
        self.run_lock = None if inference else claim_for_job(self.output_dir, config.trainer.reuse_output_dir,
                                                             env.is_main)
        self.preemption = Preemption()
        torch.manual_seed(config.trainer.seed)

        model = build_model(config.model.name, self.schema, config.model.params, device=torch.device("meta"))
        module = self.task.wrap(model)
        attach_sparse_optimizer(module, config.trainer.sparse_optimizer, env.compute_device)
        self.plan = self._plan(module)
        self.model = DistributedModelParallel(module, device=env.device, plan=self.plan,
                                              sharders=sharding.make_sharders(),
                                              data_parallel_wrapper=sharding.data_parallel_wrapper(env.world_size))
        self.optimizer = make_optimizer(self.model, config.trainer.dense_optimizer)
        steps = len(self.splits["train"]) * config.trainer.epochs
        self.schedule = LrSchedule(self.optimizer, lr_factor(config.trainer, steps))
        self.pipeline = self._make_pipeline()
        self.writer = SummaryWriter(str(self.output_dir / "tensorboard")) if env.is_main and not inference else None
        self.global_step = 0
        self.progress = Progress()
        self.checkpoint_root = self.output_dir / "checkpoints"
        self._trained = collections.deque()  # (row ids, checksum) of batches handed to the model (debug_log_steps)
        self.resumed_from = None if inference else self.resume()

    # --------------------------------------------------------------- set-up
    def _plan(self, module: torch.nn.Module):
        config, env = self.config, self.env
        if config.sharding.plan:
            plan = sharding.load_plan(config.sharding.plan, module, env.world_size, env.compute_device)
        else:
            plan = sharding.plan_sharding(module, env.world_size, env.compute_device, config.data.batch_size,
                                          config.sharding, env.local_world_size, self.pg)
        if env.is_main and not self.inference:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            sharding.save_plan(plan, self.output_dir / "plan.json", env.world_size)
            if config.sharding.print_plan:
                print(f"sharding plan ({env.world_size} rank(s), {env.compute_device}):\n"
                      f"{sharding.describe_plan(plan)}", flush=True)
        return plan

    def _make_pipeline(self):
        pipelined = self.config.trainer.pipeline
        if not (pipelined if pipelined is not None else self.env.device.type == "cuda"):
            return None
        return TrainPipelineSparseDist(self.model, self.optimizer, self.env.device, execute_all_batches=True)

    # ------------------------------------------------------------- stepping
    def _steps(self, loader, num_steps: int) -> Iterator:
        """Yield each step's output (see :mod:`bigrec.tasks.base`); trains when the model is in train mode."""
        iterator = itertools.islice(iter(loader), num_steps)
        if self.pipeline is not None:
            while True:
                try:
                    yield self.pipeline.progress(iterator)
                except StopIteration:
                    return
        on_cpu = self.env.device.type == "cpu"  # batches are read on the CPU: no copy
        for batch in iterator:
            if not on_cpu:
                batch = batch.to(self.env.device)
            if self.model.training:
                self.optimizer.zero_grad(set_to_none=True)
                loss, output = self.model(batch)
                loss.backward()
                self.optimizer.step()
            else:
                _, output = self.model(batch)
            yield output

    def epoch_steps(self) -> int:
        """Steps per training epoch (``trainer.max_steps_per_epoch`` caps it)."""
        num_steps = len(self.splits["train"])
        if self.config.trainer.max_steps_per_epoch:
            num_steps = min(num_steps, self.config.trainer.max_steps_per_epoch)
        return num_steps

    def train_epoch(self, epoch: int, start_batch: int = 0) -> float:
        """Train ``epoch`` from batch ``start_batch`` on (0 unless resuming mid-epoch)."""
        dataset = self.splits["train"]
        passes = self.task.epoch_passes(self.model, self.env.device, epoch) if start_batch == 0 else []
        for split, metrics in passes:  # a mid-epoch resume keeps what the checkpoint holds (e.g. mined negatives)
            self.splits[split].set_position(epoch, 0)
            self._print(f"epoch {epoch + 1}: {split} pass: {self.run_pass(split, metrics)}")
        dataset.set_position(epoch, start_batch)
        self.progress.epoch, self.progress.batches_done = epoch, start_batch
        num_steps = self.epoch_steps()
        every = self.config.trainer.checkpoint_every_steps
        self.model.train()
        show = self.env.is_main and self.config.trainer.progress_bar
        # a redrawn bar on a terminal; in a log file (TorchX, Slurm) one line per PROGRESS_LINE_S instead
        bar = tqdm(total=num_steps, initial=start_batch, desc=f"epoch {epoch + 1}",
                   disable=not (show and sys.stderr.isatty()))
        last_line = time.perf_counter()
        rows_per_step = dataset.total_rows / len(dataset)  # global rows per step
        started = window_start = time.perf_counter()
        window_steps = epoch_steps = 0
        loader = make_loader(dataset, self.config.data.num_workers)
        if self.config.trainer.debug_log_steps:
            loader = self._traced(loader, dataset)
        for output in self._steps(loader, num_steps - start_batch):
            loss, terms = output[0], output[1]
            self.schedule.step()
            self.global_step += 1
            window_steps += 1
            epoch_steps += 1
            self.progress.batches_done = start_batch + epoch_steps
            bar.update(1)
            if self.config.trainer.debug_log_steps:
                self._log_step(loss)
            if every and self.global_step % every == 0 and self.progress.batches_done < num_steps:
                self.save_step()  # the epoch-end checkpoint follows validation in fit()
            self._inject_fault()
            if self.preemption.poll():
                raise self._preempted(self.save_step())
            if self.global_step % self.config.trainer.log_every == 0:
                now = time.perf_counter()
                samples_per_s = window_steps * rows_per_step / max(now - window_start, 1e-9)
                self._log("train", {"loss": float(loss), "samples_per_s": samples_per_s,
                                    **{name: float(value) for name, value in terms.items()},
                                    **{f"lr_{k}": v for k, v in self.schedule.lrs().items()}})
                bar.set_postfix(loss=f"{float(loss):.4f}", samples_s=f"{samples_per_s:,.0f}")
                if show and bar.disable and now - last_line >= PROGRESS_LINE_S:
                    self._print(f"epoch {epoch + 1} step {self.progress.batches_done}/{num_steps}: "
                                f"loss {float(loss):.4f}, {samples_per_s:,.0f} samples/s")
                    last_line = now
                window_start, window_steps = now, 0
        bar.close()
        return epoch_steps * rows_per_step / max(time.perf_counter() - started, 1e-9)

    def evaluate(self, split: str) -> dict[str, float]:
        return self.run_pass(split, self.task.make_metrics(self.model, self.env.device, split))

    @torch.no_grad()
    def run_pass(self, split: str, metrics) -> dict[str, float]:
        """Feed every batch of ``split`` through the model in evaluation mode to ``metrics``; its ``compute()``."""
        dataset = self.splits[split]
        self.model.eval()
        loader = make_loader(dataset, self.config.data.num_workers)
        for output in self._steps(loader, len(dataset)):
            metrics.update(output)
        return metrics.compute()

    # ------------------------------------------------------------- the run
    def fit(self) -> dict:
        trainer = self.config.trainer
        stop = trainer.early_stopping
        if stop.mode not in ("max", "min"):
            raise ConfigError(f"trainer.early_stopping.mode must be max or min, got '{stop.mode}'")
        progress = self.progress
        best_value, best_epoch, history = progress.best_value, progress.best_epoch, progress.history
        for epoch in range(progress.epoch, trainer.epochs if not progress.stopped else 0):
            samples_per_s = self.train_epoch(epoch, progress.batches_done if epoch == progress.epoch else 0)
            progress.epoch, progress.batches_done = epoch + 1, 0
            record = {"epoch": epoch + 1, "train_samples_per_s": samples_per_s}
            if "valid" in self.splits:
                valid = self.evaluate("valid")
                self._log("valid", valid, step=epoch + 1)
                record["valid"] = valid
                if stop.metric not in valid:
                    raise ConfigError(f"trainer.early_stopping.metric '{stop.metric}' is not one of {sorted(valid)}")
                value = valid[stop.metric]
                improved = best_value is None or (value > best_value if stop.mode == "max" else value < best_value)
                self._print(f"epoch {epoch + 1}: " + ", ".join(f"valid {k} {v:.4f}" for k, v in valid.items())
                            + f", {samples_per_s:,.0f} samples/s" + ("  (best)" if improved else ""))
                if improved:
                    best_value, best_epoch = value, epoch
                    progress.best_value, progress.best_epoch = value, epoch
                    self.save("best", epoch)
                elif epoch - best_epoch >= stop.patience:
                    self._print(f"early stopping: valid {stop.metric} did not improve for {stop.patience} epoch(s)")
                    progress.stopped = True
            history.append(record)
            path = self.save_step()
            if self.preemption.agreed():
                raise self._preempted(path)
            if progress.stopped:
                break
        final = self.save("final", len(history) - 1)
        result = {"history": history, "checkpoint": str(final), "best_epoch": best_epoch + 1}
        if "test" in self.splits:
            if best_epoch >= 0 and best_epoch != len(history) - 1:
                load_model_state(self.output_dir / "checkpoints" / "best", self.model)
            result["test"] = self.evaluate("test")
            self._log("test", result["test"], step=len(history))
            self._print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in result["test"].items()))
        if self.env.is_main:
            (self.output_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
            self._print(f"TensorBoard logs: {self.output_dir / 'tensorboard'}\ncheckpoint: {final}\n"
                        f"metrics: {self.output_dir / 'metrics.json'}")
        self.close()
        return result

    def close(self) -> None:
        """Flush TensorBoard and release the output directory (also after an error or a preemption)."""
        if self.writer is not None:
            self.writer.close()
        if self.run_lock is not None:
            self.run_lock.release()

    def _preempted(self, path: Path) -> Preempted:
        progress = self.progress
        return Preempted(f"stopped by {self.preemption.describe()} at epoch {progress.epoch + 1}, batch "
                         f"{progress.batches_done}, global step {self.global_step}; checkpoint {path} (resume with "
                         f"trainer.resume=auto)", self.preemption.exit_status())

    def save(self, name: str, epoch: int) -> Path:
        return save_checkpoint(self.checkpoint_root / name, self.model, self.optimizer,
                               schema=self.schema, config=self.config, plan=sharding.plan_to_dict(self.plan),
                               extra={"epoch": epoch + 1, "global_step": self.global_step,
                                      "world_size": self.env.world_size})

    # ------------------------------------------------------- checkpoint/resume
    def _position(self) -> dict:
        """What fixes the order of training rows: resuming mid-epoch needs all of it unchanged."""
        data = self.config.data
        return {"world_size": self.env.world_size, "num_workers": data.num_workers, "batch_size": data.batch_size,
                "shuffle_buffer": data.shuffle_buffer, "seed": self.config.trainer.seed,
                "train_rows": self.splits["train"].total_rows}

    def save_step(self) -> Path:
        """A resumable checkpoint ``step-<global step>``; keeps the newest ``trainer.keep_last``."""
        rank_state = {"rng": checkpoint.rng_state(), "rank": self.env.rank,
                      "data": {"epoch": self.progress.epoch, "batches_done": self.progress.batches_done,
                               "workers": self.splits["train"].worker_schedule(self.config.data.num_workers)[0]}}
        meta = {"global_step": self.global_step, "schedule": self.schedule.state_dict(),
                "progress": asdict(self.progress), "position": self._position()}
        path = save_checkpoint(self.checkpoint_root / checkpoint.step_name(self.global_step), self.model,
                               self.optimizer, schema=self.schema, config=self.config,
                               plan=sharding.plan_to_dict(self.plan), extra=meta, rank_state=rank_state)
        if self.env.is_main:
            checkpoint.prune(self.checkpoint_root, self.config.trainer.keep_last)
        return path

    def resume(self) -> Optional[Path]:
        """Load the checkpoint ``trainer.resume`` names (``auto``: the newest complete one)."""
        resume = self.config.trainer.resume
        if resume == "none" and restart_count() > 0:
            resume = "auto"  # a restarted rank must continue, not start over
        if resume == "none":
            return None
        if resume == "auto":
            path = checkpoint.find_latest(self.checkpoint_root)
            if path is None:
                self._print(f"resume=auto: no checkpoint in {self.checkpoint_root} yet, starting from scratch")
                return None
        else:
            path = Path(resume)
            checkpoint.verify(path)
        checkpoint.check_compatible(path, self.schema, self.config)
        meta = checkpoint.read_meta(path)
        if "progress" not in meta:
            raise ConfigError(f"checkpoint {path} holds weights only (best/final); resume from a step-* checkpoint")
        progress = Progress(**meta["progress"])
        changed = {k: (v, self._position()[k]) for k, v in meta["position"].items() if v != self._position()[k]}
        if progress.batches_done and changed:
            raise ConfigError(f"checkpoint {path} was written mid-epoch (epoch {progress.epoch + 1}, batch "
                              f"{progress.batches_done}); resuming there needs the same data order, but "
                              + ", ".join(f"{k} was {a}, is {b}" for k, (a, b) in changed.items())
                              + "; resume from an epoch-end checkpoint instead")
        checkpoint.load_training_state(path, self.model, self.optimizer, verified=True)
        self.global_step = int(meta["global_step"])
        self.schedule.load_state_dict(meta["schedule"])
        self.progress = progress
        rank_state = checkpoint.read_rank_state(path, self.env.rank)
        if rank_state is not None and not changed:
            checkpoint.set_rng_state(rank_state["rng"])
        self._print(f"resumed from {path}: epoch {progress.epoch + 1}, batch {progress.batches_done}, "
                    f"global step {self.global_step}")
        if self.config.trainer.debug_log_steps:
            self._write_step_record({"resumed_from_step": self.global_step})
        return path

    # ---------------------------------------------------------- test hooks
    def _traced(self, loader, dataset: ParquetBatches) -> Iterator:
        """``loader``, noting each batch's row ids and checksum for :meth:`_log_step` (debug_log_steps)."""
        ids = dataset.row_ids(self.config.data.num_workers)
        for batch in loader:
            checksum = float(batch.dense.double().sum() + batch.labels.double().sum())
            self._trained.append((next(ids).tolist(), checksum))
            yield batch

    def _log_step(self, loss: torch.Tensor) -> None:
        rows, checksum = self._trained.popleft()  # the pipeline trains batches in the order it pulled them
        self._write_step_record({"epoch": self.progress.epoch, "batch": self.progress.batches_done - 1,
                                 "step": self.global_step, "loss": float(loss), "rows": rows, "checksum": checksum})

    def _write_step_record(self, record: dict) -> None:
        directory = self.output_dir / "steps"
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / f"rank-{self.env.rank:05d}.jsonl", "a") as out:
            out.write(json.dumps({"attempt": restart_count(), **record}) + "\n")

    def _inject_fault(self) -> None:
        at = os.environ.get("BIGREC_FAULT_AT_STEP")
        if (at and self.global_step == int(at) and restart_count() == 0
                and self.env.rank == int(os.environ.get("BIGREC_FAULT_RANK", "1"))):
            name, _, target = os.environ.get("BIGREC_FAULT_SIGNAL", "KILL").partition(":")
            os.kill(os.getppid() if target == "parent" else os.getpid(), getattr(signal, f"SIG{name}"))

    # -------------------------------------------------------------- output
    def _log(self, prefix: str, values: dict[str, float], step: Optional[int] = None) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            self.writer.add_scalar(f"{prefix}/{key}", value, self.global_step if step is None else step)

    def _print(self, message: str) -> None:
        if self.env.is_main:
            tqdm.write(message)


def train(config: Config) -> dict:
    """Run a whole training job in this process (one rank of it)."""
    prepared = prepare(config)
    trainer = Trainer(config, prepared)
    try:
        with trainer.preemption:
            return trainer.fit()
    finally:
        trainer.close()
        if dist.is_initialized():
            dist.barrier()
