"""How a label task combines its per-task losses ``[T]`` into one loss (``task.loss_weighting``).

============== ================================================================================
name           loss
============== ================================================================================
``fixed``      ``sum_t w_t L_t`` with ``w = task.loss_weights`` (default all 1)
``uncertainty`` Kendall et al. (CVPR 2018): learned log-variances ``s_t``;
               ``sum_t w_t (c_t exp(-s_t) L_t + s_t / 2)``, ``c_t = 1`` (binary) or ``1/2``
               (regression); the effective weight of task t is ``w_t c_t exp(-s_t)``
``gradnorm``   Chen et al. (ICML 2018): learned weights ``w_t`` (start: ``task.loss_weights``
               rescaled to sum to T, renormalised so before every training step), network loss
               ``sum_t w_t L_t``; the weights follow ``L_grad = sum_t |G_t - mean(G) r_t^alpha|``
               where ``G_t = w_t ||d L_t / d W||`` on the model's last shared layer ``W``
               (``RecModel.last_shared_layer()``) and ``r_t`` is task t's loss ratio ``L_t / L_t(0)``
               relative to the mean ratio
============== ================================================================================

Every strategy is an ``nn.Module`` inside the task's wrapper (:class:`~bigrec.tasks.labels.LabelModule`),
so DMP replicates its parameters and the dense optimizer trains them; ``forward(losses, shared)``
returns ``(loss [], weights [T])``, and the wrapper logs the weights as ``weight/<label>`` loss
terms each step.

GradNorm needs no second-order graph: ``w_t`` is a scalar, so ``G_t = w_t g_t`` with
``g_t = ||d L_t / d W||`` measured by ``torch.autograd.grad`` inside the forward (retaining the
graph for the real backward); the paper differentiates ``L_grad`` with respect to the weights only
(the target ``mean(G) r_t^alpha`` is a constant), and ``d L_grad / d w_t`` needs ``g_t`` as a
value only. The network's loss uses the weights detached, ``L_grad`` only the weights, so one
``backward()`` of their sum gives each its own gradient.

Config: ``task.loss_weighting: gradnorm`` or ``{name: gradnorm, alpha: 1.5}``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from bigrec.errors import ConfigError


class FixedWeighting(nn.Module):
    """``sum_t w_t L_t`` with constant weights ``[T]``."""

    needs_shared_layer = False

    def __init__(self, weights: Sequence[float], task_types: Sequence[str]) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor([float(w) for w in weights]), persistent=False)

    def forward(self, losses: torch.Tensor, shared: Sequence[torch.Tensor] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.weights.to(losses.dtype)
        return (losses * weights).sum(), weights


class UncertaintyWeighting(nn.Module):
    """Homoscedastic-uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018).

    ``log_vars`` ``[T]`` (``s_t = log sigma_t^2``, start 0) are trained with the model.
    Shapes: ``forward(losses [T]) -> (loss [], effective weights [T])``.
    """

    needs_shared_layer = False

    def __init__(self, weights: Sequence[float], task_types: Sequence[str]) -> None:
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(len(task_types)))
        self.register_buffer("priors", torch.tensor([float(w) for w in weights]), persistent=False)
        # 1/sigma^2 for a Bernoulli likelihood, 1/(2 sigma^2) for a Gaussian one
        self.register_buffer("scales", torch.tensor([1.0 if t == "binary" else 0.5 for t in task_types]),
                             persistent=False)

    def forward(self, losses: torch.Tensor, shared: Sequence[torch.Tensor] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        precision = self.scales * torch.exp(-self.log_vars)
        loss = (self.priors * (precision * losses + 0.5 * self.log_vars)).sum()
        return loss, (self.priors * precision).detach()


@torch.fx.wrap
def renormalise_(weights: torch.Tensor, initial: torch.Tensor, losses: torch.Tensor) -> None:
    """In place: GradNorm's weights ``[T]`` kept positive and summing to T; ``initial`` ``[T]``
    takes the losses of the first training step. Wrapped for torch.fx (data-dependent branch)."""
    with torch.no_grad():
        weights.clamp_(min=1e-4).mul_(weights.shape[0] / weights.sum())
        if not bool((initial > 0).all()):
            initial.copy_(losses.detach().clamp(min=1e-12))


@torch.fx.wrap
def gradnorm_loss(losses: torch.Tensor, weights: torch.Tensor, initial: torch.Tensor, shared: list,
                  alpha: float) -> torch.Tensor:
    """GradNorm's ``L_grad`` (differentiable in ``weights`` only); 0 when no gradient is being taken.

    ``losses`` ``[T]`` (attached to the graph), ``weights`` ``[T]``, ``initial`` ``[T]`` the
    losses of the first step, ``shared`` the parameters of the last shared layer. Wrapped for
    torch.fx so TorchRec's pipeline traces the task module without entering autograd here.
    """
    if not (torch.is_grad_enabled() and losses.requires_grad):
        return weights.sum() * 0.0
    norms = []
    for t in range(losses.shape[0]):
        grads = torch.autograd.grad(losses[t], shared, retain_graph=True, allow_unused=True)
        squares = [g.pow(2).sum() for g in grads if g is not None]
        norms.append(torch.stack(squares).sum().sqrt() if squares else losses.new_zeros(()))
    g = torch.stack(norms).detach()  # [T] ||dL_t/dW||
    ratios = losses.detach() / initial
    inverse_rate = ratios / ratios.mean()
    norms_weighted = weights * g  # G_t, differentiable in w_t
    target = (norms_weighted.mean() * inverse_rate.pow(alpha)).detach()
    return (norms_weighted - target).abs().sum()


class GradNorm(nn.Module):
    """GradNorm (Chen, Badrinarayanan, Lee and Rabinovich, ICML 2018); see the module docstring.

    Args:
        weights: initial weights ``[T]`` (rescaled to sum to T).
        task_types: one per task (unused: GradNorm treats every loss alike).
        alpha: the asymmetry (restoring force towards equal training rates); the paper uses 0.12 to 3,
            1.5 in most of its experiments.

    ``initial`` holds the per-task losses of the first training step (saved in checkpoints).
    Shapes: ``forward(losses [T], shared) -> (loss [], weights [T])``.
    """

    needs_shared_layer = True

    def __init__(self, weights: Sequence[float], task_types: Sequence[str], alpha: float = 1.5) -> None:
        super().__init__()
        start = torch.tensor([float(w) for w in weights])
        if (start <= 0).any():
            raise ConfigError(f"gradnorm: task.loss_weights are its initial weights and must be > 0, got {weights}")
        self.alpha = float(alpha)
        self.weights = nn.Parameter(start * len(start) / start.sum())
        self.register_buffer("initial", torch.zeros(len(start)))

    def forward(self, losses: torch.Tensor, shared: Sequence[torch.Tensor] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            renormalise_(self.weights, self.initial, losses)
        network_loss = (self.weights.detach().to(losses.dtype) * losses).sum()
        balance = gradnorm_loss(losses, self.weights, self.initial, list(shared), self.alpha)
        return network_loss + balance, self.weights.detach()


WEIGHTINGS = {"fixed": FixedWeighting, "uncertainty": UncertaintyWeighting, "gradnorm": GradNorm}


def parse_weighting(spec: Any) -> tuple[str, dict]:
    """``task.loss_weighting`` (a name or ``{name: ..., <options>}``) -> ``(name, options)``."""
    if spec is None:
        return "fixed", {}
    if isinstance(spec, str):
        name, options = spec, {}
    elif isinstance(spec, Mapping):
        options = dict(spec)
        name = str(options.pop("name", ""))
    else:
        raise ConfigError(f"task.loss_weighting must be a name or a mapping with 'name', got {spec!r}")
    if name not in WEIGHTINGS:
        raise ConfigError(f"task.loss_weighting '{name}' is unknown; known: {sorted(WEIGHTINGS)}")
    allowed = {"gradnorm": {"alpha"}}.get(name, set())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"task.loss_weighting '{name}' has no option(s) {unknown}; options: {sorted(allowed)}")
    return name, options


def make_weighting(spec: Any, weights: Sequence[float], task_types: Sequence[str],
                   shared_layer: Optional[nn.Module], model_name: str = "model") -> nn.Module:
    """The weighting module ``spec`` names (see :func:`parse_weighting`)."""
    name, options = parse_weighting(spec)
    cls = WEIGHTINGS[name]
    if cls.needs_shared_layer and (shared_layer is None or not list(shared_layer.parameters())):
        raise ConfigError(f"task.loss_weighting '{name}' measures gradients on the model's last shared layer, "
                          f"but {model_name} has none (RecModel.last_shared_layer() is None)")
    return cls(weights, task_types, **options)
