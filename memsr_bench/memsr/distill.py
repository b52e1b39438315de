"""MemSR's initialisation-aware feature distillation.

``L = L1(SR, HR) + lambda(epoch) * mean_i MSE(bridge_i(student_i), teacher_i)`` over every plain layer
and the output, where ``bridge_i`` is the 1x1 conv that maps the student's feature back to the plain
teacher's (initialised from the SVD of stage 2 and trained with the student; identity for the last body
layer and the output) and ``lambda(epoch) = coe * alpha ** (epoch / epochs)`` with ``coe = 0.3`` and
``alpha = 1e-5`` (0.3 at the start, 3e-6 at the end).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BridgeDistillLoss", "kd_weight"]


def kd_weight(epoch: int, epochs: int, coe: float = 0.3, alpha: float = 1e-5) -> float:
    """``coe * alpha ** (epoch / epochs)``: the distillation weight of epoch ``epoch`` (0-based)."""
    if epochs < 1:
        raise ValueError(f"epochs must be positive, got {epochs}")
    return float(coe) * float(alpha) ** (epoch / epochs)


class BridgeDistillLoss(nn.Module):
    """``mean_i MSE(bridge_i(student_i), teacher_i)``; the bridges are this module's (trainable) children."""

    def __init__(self, bridges: nn.ModuleList):
        super().__init__()
        self.bridges = bridges

    def forward(self, student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor]) -> Tensor:
        if not (len(student_feats) == len(teacher_feats) == len(self.bridges)):
            raise ValueError(
                f"{len(student_feats)} student features, {len(teacher_feats)} teacher features and "
                f"{len(self.bridges)} bridges: they must match one to one"
            )
        losses = [
            F.mse_loss(bridge(s), t) for s, t, bridge in zip(student_feats, teacher_feats, self.bridges, strict=True)
        ]
        return torch.stack(losses).mean()
