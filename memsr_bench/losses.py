"""Laplacian-pyramid distillation losses of "Compressing Deep Image SR Models" (Jiang et al., 2024).

Written from the released algebra of ``Pikapi22/SRModelCompression`` at commit
``ab9919ea484ceb4b2d7c4874427ec92afb332b38``, file ``BasicSR/basicsr/losses/basic_loss.py``
(``GaussianConv``, ``LaplacianPyramid``, ``LaplacianLoss``, ``MultiLapLoss``); no code is copied.

Convention (identical numbers to the released code wherever the released code runs):

- ``G`` is the 5x5 binomial kernel ``outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256`` applied to every
  channel separately, after reflect padding by 2 on every side (output size = input size).
- Pyramid with 5 levels. With ``cur = x``, four times: ``red = avgpool2x2(G * cur)``,
  ``level = cur - 4·G * up(red)`` where ``up`` puts ``red[i, j]`` at ``(2i, 2j)`` and zeros elsewhere (the
  odd rows and columns are the inserted zeros), then ``cur = red``. The fifth level is the final ``cur``
  (H/16 x W/16).
- ``LapLoss(x, y) = sum_{i=0..4} 2**i · mean|L_i(x) - L_i(y)|``: level 0 is the full-resolution band and
  has weight 1, the coarse residual (level 4) has weight 16.
- ``MultiLap(p, t) = LapLoss(p, t) + LapLoss(p - G * p, t - G * t)``, times ``loss_weight``.

Sizes: every level must halve exactly and the reflect padding needs at least 3 pixels on the
H/8 level that is still blurred, so H and W must be multiples of 16 and at least 32. The released code
fails on other sizes with a shape or padding RuntimeError from deep inside torch; here they are a
ValueError that names the size and the rule.

Channels: the released kernel is repeated for exactly 3 channels with ``groups=C``, so it runs only for
C = 3 and, by broadcasting a triplicated copy, C = 1 (whose value equals the per-channel one); any other
C raises there. Here the kernel is depthwise for any C, which gives the released numbers for C in {1, 3}.

The released ``reduction`` and ``weight`` arguments are accepted there but ignored (always a mean per
level); they are not offered here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LapLoss",
    "MultiLapLoss",
    "PYRAMID_LEVELS",
    "RELEASED_LEVEL_WEIGHTS",
    "SIZE_MULTIPLE",
    "binomial_blur",
    "binomial_kernel",
    "laplacian_pyramid",
]

PYRAMID_LEVELS = 5
# Four 2x reductions must be exact, hence 2**4.
SIZE_MULTIPLE = 2 ** (PYRAMID_LEVELS - 1)
# The last blurred level is H/8 and reflect padding by 2 needs at least 3 pixels there: H >= 24, so 32.
MIN_SIZE = 2 * SIZE_MULTIPLE

_BINOMIAL_1D = (1.0, 4.0, 6.0, 4.0, 1.0)
RELEASED_LEVEL_WEIGHTS = tuple(2.0**i for i in range(PYRAMID_LEVELS))  # finest band 1 ... coarse residual 16


def _level_weights(weights: Sequence[float] | None) -> tuple[float, ...]:
    if weights is None:
        return RELEASED_LEVEL_WEIGHTS
    weights = tuple(float(w) for w in weights)
    if len(weights) != PYRAMID_LEVELS or not all(w >= 0 and w != float("inf") for w in weights):
        raise ValueError(f"level weights must be {PYRAMID_LEVELS} finite numbers >= 0, finest first, not {weights}")
    return weights


def binomial_kernel() -> torch.Tensor:
    """The 5x5 kernel ``G = outer(b, b) / 256`` with ``b = [1, 4, 6, 4, 1]`` (float32, CPU)."""
    taps = torch.tensor(_BINOMIAL_1D, dtype=torch.float64)
    # Entries k/256 are exact in every float format, so the cast equals the released float32 kernel bit for bit.
    return (torch.outer(taps, taps) / 256.0).to(torch.float32)


def binomial_blur(x: torch.Tensor, gain: float = 1.0, kernel: torch.Tensor | None = None) -> torch.Tensor:
    """``gain · G * x``: 5x5 binomial blur per channel with reflect padding (same size out).

    ``kernel`` is a 5x5 ``G`` already on the right device (the loss modules keep one as a buffer so that
    a GPU step does not copy it from the host every call); by default it is built here.
    """
    channels = x.shape[1]
    k = binomial_kernel() if kernel is None else kernel
    k = k.to(device=x.device, dtype=x.dtype)
    if gain != 1.0:
        k = k * gain
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k.expand(channels, 1, 5, 5), groups=channels)


def _zero_interleave(x: torch.Tensor) -> torch.Tensor:
    """Double H and W, keeping ``x`` on the even rows/columns and zeros on the odd ones."""
    n, c, h, w = x.shape
    zeros = torch.zeros_like(x)
    # Interleave along W, then along H; stacking on a new last axis and flattening places x first.
    wide = torch.stack((x, zeros), dim=-1).reshape(n, c, h, 2 * w)
    return torch.stack((wide, torch.zeros_like(wide)), dim=-2).reshape(n, c, 2 * h, 2 * w)


def _check_size(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} must be (N, C, H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE or h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(
            f"{name} is {h}x{w} (HxW): the {PYRAMID_LEVELS}-level Laplacian pyramid needs H and W to be "
            f"multiples of {SIZE_MULTIPLE} and at least {MIN_SIZE} (crop or pad the patches)"
        )


def laplacian_pyramid(x: torch.Tensor, kernel: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The 5 levels, finest band first and the low-pass residual last, as in the released code."""
    _check_size(x, "input")
    bands = []
    current = x
    for _ in range(PYRAMID_LEVELS - 1):
        reduced = F.avg_pool2d(binomial_blur(current, kernel=kernel), 2)
        bands.append(current - binomial_blur(_zero_interleave(reduced), gain=4.0, kernel=kernel))
        current = reduced
    bands.append(current)
    return bands


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    _check_size(pred, "pred")


class LapLoss(nn.Module):
    """``loss_weight · sum_i w_i · mean|L_i(pred) - L_i(target)|`` over the 5-level pyramid.

    Released name: ``LaplacianLoss`` (``basicsr/losses/basic_loss.py`` at ``ab9919e``), whose level weights
    are ``w_i = 2**i`` (the default); ``level_weights`` (finest band first) exists for ablations. Inputs are
    (N, C, H, W) with H and W multiples of 16, at least 32; see the module docstring.
    """

    def __init__(self, loss_weight: float = 1.0, level_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self.level_weights = _level_weights(level_weights)
        self.register_buffer("kernel", binomial_kernel(), persistent=False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(pred, target)
        total = pred.new_zeros(())
        levels = zip(laplacian_pyramid(pred, self.kernel), laplacian_pyramid(target, self.kernel), strict=True)
        for weight, (a, b) in zip(self.level_weights, levels, strict=True):
            total = total + weight * (a - b).abs().mean()
        return self.loss_weight * total


class MultiLapLoss(nn.Module):
    """``loss_weight · (LapLoss(p, t) + LapLoss(p - G*p, t - G*t))``: the paper's distillation loss.

    The second term compares the high-pass residues of the binomial blur, so fine detail is counted
    at every pyramid level a second time. Released name: ``MultiLapLoss`` (``basicsr/losses/basic_loss.py``
    at ``ab9919e``; used as ``dis_opt`` with ``loss_weight: 1`` next to ``0.1·L1`` to the HR image in
    both ``distill_*`` configs). Inputs are (N, C, H, W) with H and W multiples of 16, at least 32.
    ``level_weights`` as in :class:`LapLoss` (both terms; default: the released ``2**i``).
    """

    def __init__(self, loss_weight: float = 1.0, level_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self.lap = LapLoss(level_weights=level_weights)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(pred, target)
        k = self.lap.kernel
        high = self.lap(pred - binomial_blur(pred, kernel=k), target - binomial_blur(target, kernel=k))
        return self.loss_weight * (self.lap(pred, target) + high)
