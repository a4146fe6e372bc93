"""Metrics of label tasks over all ranks' predictions (torchmetrics, synced over the process group)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist
from torchmetrics.classification import BinaryAUROC


class LabelMetrics:
    """Per task: AUC and logloss (``binary``), MSE and MAE (``regression``), over every rank.

    ``update(step)`` with ``step[2]`` predictions ``[B, T]`` and ``step[3]`` labels
    ``[B, T]`` (a :class:`~bigrec.tasks.labels.LabelStep`). ``compute()`` returns
    ``{"auc", "logloss"}`` (or ``{"mse", "mae"}``) for one task, and
    ``"<label>/<metric>"`` per task plus the mean of each metric over the tasks that
    have it for several. AUC is exact (torchmetrics gathers all predictions); the
    other metrics are summed locally and all-reduced.
    """

    def __init__(self, label_names: Sequence[str], task_types: Sequence[str], device: torch.device) -> None:
        self.label_names = tuple(label_names)
        self.task_types = tuple(task_types)
        self.device = device
        self.aucs = {t: BinaryAUROC().to(device) for t, kind in enumerate(self.task_types) if kind == "binary"}
        # per task: [logloss or squared error, absolute error] sums
        self.sums = torch.zeros(len(self.label_names), 2, dtype=torch.float64, device=device)
        self.count = torch.zeros(1, dtype=torch.float64, device=device)

    def update(self, step) -> None:
        predictions, labels = step[2], step[3]
        p, y = predictions.double(), labels.double()
        eps = 1e-7
        clamped = p.clamp(eps, 1 - eps)
        logloss = -(y * clamped.log() + (1 - y) * (1 - clamped).log())
        binary = torch.tensor([k == "binary" for k in self.task_types], device=p.device)
        first = torch.where(binary[None, :], logloss, (p - y) ** 2).sum(dim=0)
        self.sums += torch.stack([first, (p - y).abs().sum(dim=0)], dim=1)
        self.count += labels.shape[0]
        for t, auc in self.aucs.items():
            auc.update(predictions[:, t], labels[:, t].long())

    def compute(self) -> dict[str, float]:
        totals = torch.cat([self.sums.flatten(), self.count])
        if dist.is_initialized():
            dist.all_reduce(totals)
        means = (totals[:-1] / totals[-1].clamp(min=1)).reshape(-1, 2).tolist()
        per_task: list[dict[str, float]] = []
        for t, kind in enumerate(self.task_types):
            if kind == "binary":
                per_task.append({"auc": float(self.aucs[t].compute()), "logloss": means[t][0]})
            else:
                per_task.append({"mse": means[t][0], "mae": means[t][1]})
        if len(self.label_names) == 1:
            return per_task[0]
        out: dict[str, float] = {}
        for name, values in zip(self.label_names, per_task):
            out.update({f"{name}/{k}": v for k, v in values.items()})
        for metric in ("auc", "logloss", "mse", "mae"):
            values = [m[metric] for m in per_task if metric in m]
            if values:
                out[metric] = sum(values) / len(values)
        return out
