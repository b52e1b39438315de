"""EDSR and EDSR-baseline (Lim et al., "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPRW 2017), with the structure and state-dict keys of the official
EDSR-PyTorch code (``sub_mean``, ``head.0``, ``body.<i>.body.{0,2}``, ``body.<n>``, ``tail.0.<j>``,
``tail.1``, ``add_mean``).

Input and output are RGB in 0..``rgb_range`` (255); the DIV2K mean is subtracted inside the model
and added back at the end (``MeanShift``).

Parameter counts. The official ``MeanShift`` is a 1x1 ``nn.Conv2d`` whose weight and bias have
``requires_grad=False``; the published counts (EDSR-baseline 1,369,859 / 1,554,499 / 1,517,571 at
x2/x3/x4) leave those 2 x 12 values out. Here ``MeanShift`` keeps them as buffers named ``weight``
and ``bias``: ``sum(p.numel() for p in model.parameters())`` gives the published counts exactly,
and an official state dict (which holds ``sub_mean.weight`` etc.) still loads strictly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.registry import register_model

__all__ = ["DIV2K_RGB_MEAN", "EDSR", "MeanShift", "ResBlock", "Upsampler", "default_conv"]

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def default_conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    """A "same"-padded conv, as EDSR's ``common.default_conv``."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class MeanShift(nn.Module):
    """Per-channel ``y = x / std + sign * rgb_range * mean / std`` as a fixed 1x1 conv.

    ``weight`` (C, C, 1, 1) and ``bias`` (C,) are buffers (not parameters): they are saved in and
    loaded from state dicts under the official names but are not counted or trained.
    ``sign=-1`` subtracts the mean (input side), ``sign=+1`` adds it back (output side).
    """

    def __init__(
        self,
        rgb_range: float = 255.0,
        rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
        rgb_std: Sequence[float] = (1.0, 1.0, 1.0),
        sign: int = -1,
    ):
        super().__init__()
        std = torch.tensor(rgb_std, dtype=torch.float32)
        c = std.numel()
        self.register_buffer("weight", torch.eye(c).view(c, c, 1, 1) / std.view(c, 1, 1, 1))
        self.register_buffer("bias", sign * rgb_range * torch.tensor(rgb_mean, dtype=torch.float32) / std)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias)


class ResBlock(nn.Module):
    """conv -> ReLU -> conv, scaled by ``res_scale``, plus the input."""

    def __init__(self, n_feats: int, kernel_size: int = 3, res_scale: float = 1.0, bias: bool = True):
        super().__init__()
        self.body = nn.Sequential(
            default_conv(n_feats, n_feats, kernel_size, bias),
            nn.ReLU(inplace=True),
            default_conv(n_feats, n_feats, kernel_size, bias),
        )
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        res = self.body(x).mul(self.res_scale)
        res += x
        return res


class Upsampler(nn.Sequential):
    """EDSR's upsampler: (conv C->4C, PixelShuffle(2)) x log2(s) for s = 2^n, or conv C->9C,
    PixelShuffle(3) for s = 3. No activation."""

    def __init__(self, scale: int, n_feats: int, bias: bool = True):
        layers: list[nn.Module] = []
        if scale >= 1 and (scale & (scale - 1)) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [default_conv(n_feats, 4 * n_feats, 3, bias), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [default_conv(n_feats, 9 * n_feats, 3, bias), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"EDSR's upsampler supports scales 2^n and 3, not {scale}")
        super().__init__(*layers)


class EDSR(nn.Module):
    """EDSR: sub_mean -> head conv -> n_resblocks ResBlocks + conv (global skip) -> upsampler ->
    conv to ``n_colors`` -> add_mean."""

    def __init__(
        self,
        scale: int = 2,
        n_resblocks: int = 16,
        n_feats: int = 64,
        res_scale: float = 1.0,
        n_colors: int = 3,
        rgb_range: float = 255.0,
        rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
        kernel_size: int = 3,
    ):
        super().__init__()
        self.scale = scale
        self.sub_mean = MeanShift(rgb_range, rgb_mean, sign=-1)
        self.add_mean = MeanShift(rgb_range, rgb_mean, sign=1)
        self.head = nn.Sequential(default_conv(n_colors, n_feats, kernel_size))
        body: list[nn.Module] = [ResBlock(n_feats, kernel_size, res_scale) for _ in range(n_resblocks)]
        body.append(default_conv(n_feats, n_feats, kernel_size))
        self.body = nn.Sequential(*body)
        self.tail = nn.Sequential(Upsampler(scale, n_feats), default_conv(n_feats, n_colors, kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.sub_mean(x))
        res = self.body(x)
        res += x
        return self.add_mean(self.tail(res))


_PAPER = "Lim et al., Enhanced Deep Residual Networks for Single Image Super-Resolution, CVPRW 2017"
_COUNT_NOTE = (
    "MeanShift values are buffers, so they are not counted (the official code's frozen MeanShift "
    "parameters are left out of the published counts too)."
)


@register_model(
    "edsr-baseline",
    scales=(2, 3, 4),
    input_range=255.0,
    paper=_PAPER,
    published_params={2: 1_369_859, 3: 1_554_499, 4: 1_517_571},
    notes="16 resblocks, 64 feats, res_scale 1; DIV2K RGB mean shift inside; the teacher of MemSR. "
    "Params 1,369,859 / 1,554,499 / 1,517,571 at x2/x3/x4 (FMEN Table 3 prints 1370K / 1554K / 1518K). "
    + _COUNT_NOTE,
)
def edsr_baseline(scale: int = 2, **config) -> EDSR:
    return EDSR(scale=scale, **{"n_resblocks": 16, "n_feats": 64, "res_scale": 1.0, **config})


@register_model(
    "edsr",
    scales=(2, 3, 4),
    input_range=255.0,
    paper=_PAPER,
    published_params={4: 43_000_000},
    notes="32 resblocks, 256 feats, res_scale 0.1; params 40,729,603 / 43,680,003 / 43,089,923 at "
    "x2/x3/x4 (the paper prints one figure, 43M). " + _COUNT_NOTE,
)
def edsr(scale: int = 2, **config) -> EDSR:
    return EDSR(scale=scale, **{"n_resblocks": 32, "n_feats": 256, "res_scale": 0.1, **config})


@register_model(
    "edsr-mini",
    scales=(2, 3, 4),
    input_range=255.0,
    paper="Jiang, Nawala, Zhang, Bull: Compressing Deep Image Super-resolution Models, 2024 "
    "(code Pikapi22/SRModelCompression, EDSRmini)",
    published_params={2: 49_603},
    notes="8 resblocks, 16 feats, res_scale 2 (released options distill_EDSR_Minix2_KD.yml / test_EDSR_Minix2.yml, "
    "x2 only; x3/x4 use the EDSR tail, nothing published); params 49,603 / 61,203 / 58,883 at x2/x3/x4. "
    "The released code is BasicSR's EDSR (keys conv_first, body.<i>.conv1/conv2, conv_after_body, upsample.<j>, "
    "conv_last; RGB 0..1 with img_range 255 inside), the same function as this 0..255 module. " + _COUNT_NOTE,
)
def edsr_mini(scale: int = 2, **config) -> EDSR:
    return EDSR(scale=scale, **{"n_resblocks": 8, "n_feats": 16, "res_scale": 2.0, **config})
