"""OBProxSG (orthant-based proximal stochastic gradient) for L1-regularised sparse "pruning" training.

Minimises ``f(x) + lambda_ · ||x||_1`` as in "Compressing Deep Image SR Models" (Jiang et al., 2024),
reproducing the algebra of ``Pikapi22/SRModelCompression`` at commit
``ab9919ea484ceb4b2d7c4874427ec92afb332b38``, class ``OBProxSG`` in ``BasicSR/basicsr/models/base_model.py``
(itself taken from tianyic/obproxsg); no code is copied.

Per parameter tensor ``x`` with gradient ``g`` of the smooth loss, learning rate ``lr``:

- Prox-SG step: ``z = x - lr·g``; ``x <- sign(z) · max(|z| - lr·lambda_, 0)`` (L1 soft threshold).
- Orthant step: ``zeta = sign(x)`` (0 where ``x == 0``); ``x_hat = x - lr·(g + lambda_·zeta)`` on the
  entries with ``zeta != 0`` and ``x_hat = 0`` where ``zeta == 0``; then project:
  ``x <- x_hat`` where ``x_hat·zeta > eps``, else ``0``. So a weight that is zero stays zero, a weight that
  crosses zero (or ends within ``eps`` of it on its own side) becomes exactly zero, and no sign ever flips.

Switching rule (global, not per parameter): the optimiser counts calls to ``step``; every
``epoch_size`` calls is one optimiser "epoch". The step uses prox-SG while
``epochs_done % (n_p + n_o) < n_p`` and orthant steps otherwise; with ``n_o = inf`` (the released default
and the only value the released configs use) that is ``n_p`` epochs of prox-SG followed by orthant steps
for good. ``n_p = 0`` starts with orthant steps.

There is no momentum and no weight decay in the released optimiser, and the L1 term applies to every
parameter handed to it (the released pruning runs pass all of the network's parameters, biases included).

Released settings (``options/train/*/prune_*.yml``): ``lr = 5e-3``, ``lambda_ = 1e-4``, ``eps = 1e-4``,
``Np = 60`` (EDSR) / ``25`` (SwinIR), ``epochSize = 2560`` / ``32592``. But ``basicsr/prune.py`` overwrites
both counters before building the optimiser: ``epochSize = iters_per_epoch · batch · world_size`` (a count
of *samples*, while the optimiser counts *steps*) and ``Np = int(total_epochs / 10)``. The prox-SG phase
therefore lasts about ``batch/10`` times the whole run, so with batch 16 the released runs never reach an
orthant step; :func:`released_prune_schedule` computes this.

Unlike the released class, the phase counters are saved by ``state_dict`` so a resumed run keeps its phase,
and ``step`` returns the closure's loss as torch optimisers do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["OBProxSG", "released_prune_schedule"]

_COUNTERS_KEY = "obproxsg_counters"


class OBProxSG(Optimizer):
    """Prox-SG for ``n_p`` optimiser epochs, then orthant steps (see the module docstring).

    Args:
        params: parameters or parameter groups; groups may override ``lr``, ``lambda_`` and ``eps``.
        lr: learning rate (a scheduler may change it per group).
        lambda_: L1 weight λ >= 0 (released: 1e-4).
        epoch_size: number of ``step`` calls per optimiser epoch (released ``epochSize``).
        n_p: optimiser epochs of prox-SG before orthant steps (released ``Np``).
        n_o: optimiser epochs of orthant steps before prox-SG resumes; ``math.inf`` (released ``No='inf'``)
            never goes back.
        eps: projection tolerance ε >= 0: after an orthant step a weight is kept only if it lies more than
            ε inside its orthant, otherwise it becomes 0 (released: 1e-4, default 0).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        lambda_: float,
        epoch_size: int = 1,
        n_p: float = 0,
        n_o: float = math.inf,
        eps: float = 0.0,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"invalid learning rate {lr!r}: must be >= 0")
        if not lambda_ >= 0.0:
            raise ValueError(f"invalid lambda_ {lambda_!r}: must be >= 0")
        if not eps >= 0.0:
            raise ValueError(f"invalid eps {eps!r}: must be >= 0")
        if not (isinstance(epoch_size, int) and epoch_size >= 1):
            raise ValueError(f"invalid epoch_size {epoch_size!r}: must be an integer >= 1")
        if not n_p >= 0 or not n_o >= 0 or n_p + n_o == 0:
            raise ValueError(f"invalid n_p={n_p!r}, n_o={n_o!r}: both must be >= 0 and not both 0")
        self.epoch_size = epoch_size
        self.n_p = n_p
        self.n_o = n_o
        self.epochs_done = 0
        self.steps_in_epoch = 0
        super().__init__(params, {"lr": lr, "lambda_": lambda_, "eps": eps})

    @property
    def in_prox_phase(self) -> bool:
        """Whether the next ``step`` is a prox-SG step (otherwise an orthant step)."""
        # float modulo: with n_o = inf, epochs % inf == epochs, exactly the released rule.
        return self.epochs_done % (self.n_p + self.n_o) < self.n_p

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        prox = self.in_prox_phase
        for group in self.param_groups:
            lr, lam, eps = group["lr"], group["lambda_"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("OBProxSG does not support sparse gradients")
                if prox:
                    p.copy_(_prox_l1(p, p.grad, lr, lam))
                else:
                    p.copy_(_orthant_step(p, p.grad, lr, lam, eps))
        # The phase is decided before counting, so the first call of every epoch already uses it.
        self.steps_in_epoch += 1
        if self.steps_in_epoch >= self.epoch_size:
            self.epochs_done += 1
            self.steps_in_epoch = 0
        return loss

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state[_COUNTERS_KEY] = {"epochs_done": self.epochs_done, "steps_in_epoch": self.steps_in_epoch}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        counters = state_dict.pop(_COUNTERS_KEY, None)
        super().load_state_dict(state_dict)
        if counters is not None:
            self.epochs_done = int(counters["epochs_done"])
            self.steps_in_epoch = int(counters["steps_in_epoch"])


def _prox_l1(x: torch.Tensor, grad: torch.Tensor, lr: float, lam: float) -> torch.Tensor:
    z = x - lr * grad
    # sign(z)·(|z| - t) is z - t for z > 0 and z + t for z < 0 bit for bit, as the released branches.
    return torch.sign(z) * torch.clamp(z.abs() - lr * lam, min=0.0)


def _orthant_step(x: torch.Tensor, grad: torch.Tensor, lr: float, lam: float, eps: float) -> torch.Tensor:
    zeta = torch.sign(x)
    on_face = zeta != 0
    # Zero weights get no gradient: they lie on the face's boundary and must stay there.
    direction = torch.where(on_face, grad + lam * zeta, torch.zeros_like(grad))
    trial = x - lr * direction
    return torch.where(trial * zeta > eps, trial, torch.zeros_like(trial))


def released_prune_schedule(
    num_train_images: int,
    batch_size: int,
    total_iter: int,
    world_size: int = 1,
    enlarge_ratio: int = 1,
) -> dict[str, int]:
    """The ``epochSize`` / ``Np`` that the released ``basicsr/prune.py`` hands to OBProxSG, and what follows.

    ``prune.py`` ignores the YAML values: ``iters_per_epoch = ceil(images · enlarge / (batch · world))``,
    ``epochSize = iters_per_epoch · batch · world`` and ``Np = int(ceil(total_iter / iters_per_epoch) / 10)``.
    The optimiser advances one unit per ``step`` call, so its prox-SG phase is ``Np · epochSize`` steps.
    Returns those numbers plus ``orthant_steps = max(0, total_iter - prox_steps)``.
    """
    for name, value in (
        ("num_train_images", num_train_images),
        ("batch_size", batch_size),
        ("total_iter", total_iter),
        ("world_size", world_size),
        ("enlarge_ratio", enlarge_ratio),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    iters_per_epoch = math.ceil(num_train_images * enlarge_ratio / (batch_size * world_size))
    epoch_size = iters_per_epoch * batch_size * world_size
    total_epochs = math.ceil(total_iter / iters_per_epoch)
    n_p = int(total_epochs / 10)
    prox_steps = n_p * epoch_size
    return {
        "iters_per_epoch": iters_per_epoch,
        "epoch_size": epoch_size,
        "n_p": n_p,
        "prox_steps": prox_steps,
        "orthant_steps": max(0, total_iter - prox_steps),
    }
