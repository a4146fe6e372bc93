"""Evaluation metrics over all ranks' predictions (torchmetrics, synced over the process group)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torchmetrics.classification import BinaryAUROC


class BinaryMetrics:
    """AUC and logloss per task, over every rank's predictions.

    ``update((loss, probabilities [B, T], labels [B, T]))``; ``compute()`` returns
    ``{"auc", "logloss"}`` for one task, and ``{"<label>/auc", "<label>/logloss"}``
    per task plus their means under ``auc``/``logloss`` for several.
    AUC is exact (torchmetrics gathers all predictions); logloss is summed
    locally and all-reduced.
    """

    def __init__(self, label_names: tuple[str, ...], device: torch.device) -> None:
        self.label_names = label_names
        self.device = device
        self.aucs = [BinaryAUROC().to(device) for _ in label_names]
        self.logloss_sum = torch.zeros(len(label_names), dtype=torch.float64, device=device)
        self.count = torch.zeros(1, dtype=torch.float64, device=device)

    def update(self, output: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        """``output = (loss, probabilities [B, T], labels [B, T])`` of a TrainingModule."""
        _, probabilities, labels = output
        eps = 1e-7
        p = probabilities.double().clamp(eps, 1 - eps)
        y = labels.double()
        self.logloss_sum += -(y * p.log() + (1 - y) * (1 - p).log()).sum(dim=0)
        self.count += labels.shape[0]
        for t, auc in enumerate(self.aucs):
            auc.update(probabilities[:, t], labels[:, t].long())

    def compute(self) -> dict[str, float]:
        totals = torch.cat([self.logloss_sum, self.count])
        if dist.is_initialized():
            dist.all_reduce(totals)
        loglosses = (totals[:-1] / totals[-1].clamp(min=1)).tolist()
        aucs = [float(auc.compute()) for auc in self.aucs]
        if len(self.label_names) == 1:
            return {"auc": aucs[0], "logloss": loglosses[0]}
        out: dict[str, float] = {}
        for name, auc, logloss in zip(self.label_names, aucs, loglosses):
            out[f"{name}/auc"] = auc
            out[f"{name}/logloss"] = logloss
        out["auc"] = sum(aucs) / len(aucs)
        out["logloss"] = sum(loglosses) / len(loglosses)
        return out
