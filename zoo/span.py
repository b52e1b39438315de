"""SPAN: Swift Parameter-free Attention Network (Wan et al., NTIRE 2024 ESR winner, team XiaomiMM), the
NTIRE 2026 Efficient SR baseline, in the re-parameterised form of the released ``span_ch28_slim.pth``.

Written from Amazingren/NTIRE2024_ESR ``models/team38_SPAN.py`` (class ``SPAN30``, ``Conv3XC`` with only
``eval_conv``): module names follow it, so the checkpoint loads strictly. The input is shifted by the
DIV2K mean and scaled by 255 inside; a 3x3 conv (28 features); six SPAB blocks, each three 3x3 convs with
SiLU between them and the parameter-free attention ``(c3 + x) * (sigmoid(c3) - 0.5)``; a 3x3 conv; a 1x1
conv over the concatenation of the first conv's output, the last conv's output, block 1's output and
block 6's first activation; 3x3 conv + PixelShuffle. RGB 0..1 in and out. 150,688 parameters at x4 (published
0.151 M). The training form (each 3x3 conv a 1x1-3x3-1x1 chain plus a 1x1 skip, merged by
``update_params``) is not included: no training-form weights were released.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.registry import Checkpoint, register_model

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class RepConv3(nn.Module):
    """A re-parameterised 3x3 conv (``eval_conv``), as ``Conv3XC`` runs at inference."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.eval_conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.eval_conv(x)


class SPAB(nn.Module):
    """Swift parameter-free attention block; returns the block output and its first conv's activated output
    (the official code applies an in-place SiLU to that tensor before returning it)."""

    def __init__(self, channels: int):
        super().__init__()
        self.c1_r = RepConv3(channels, channels)
        self.c2_r = RepConv3(channels, channels)
        self.c3_r = RepConv3(channels, channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out1 = F.silu(self.c1_r(x))
        out3 = self.c3_r(F.silu(self.c2_r(out1)))
        return (out3 + x) * (torch.sigmoid(out3) - 0.5), out1


class SPAN(nn.Module):
    def __init__(self, scale: int = 4, feature_channels: int = 28, in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        self.register_buffer("mean", torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1), persistent=False)
        self.conv_1 = RepConv3(in_channels, feature_channels)
        for i in range(1, 7):
            setattr(self, f"block_{i}", SPAB(feature_channels))
        self.conv_cat = nn.Conv2d(feature_channels * 4, feature_channels, 1)
        self.conv_2 = RepConv3(feature_channels, feature_channels)
        self.upsampler = nn.Sequential(
            nn.Conv2d(feature_channels, out_channels * scale**2, 3, padding=1), nn.PixelShuffle(scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = self.conv_1((x - self.mean.to(x.dtype)) * 255.0)
        out, _ = self.block_1(feature)
        out_b1 = out
        for i in range(2, 6):
            out, _ = getattr(self, f"block_{i}")(out)
        out_b6, out_b5_first = self.block_6(out)  # block 6's first activation (the official "out_b5_2")
        out = self.conv_cat(torch.cat([feature, self.conv_2(out_b6), out_b1, out_b5_first], dim=1))
        return self.upsampler(out)


@register_model(
    "span",
    scales=(4,),
    input_range=1.0,
    channels="rgb",
    paper="Wan, Cheng, Xu, Wang, Gu, Zhang: Swift Parameter-free Attention Network for Efficient Super-Resolution, "
    "CVPR 2024 Workshops (NTIRE 2024 ESR winner; NTIRE 2026 ESR baseline)",
    published_params={4: 151_000},
    checkpoints=(
        Checkpoint(
            filename="span_ch28_slim.pth",
            sha256="6c80f05048313289c6526e5fc9726688d7bb3dfdd6ae3c8b1e7dd09f601e5971",
            scales=(4,),
            source="Amazingren/NTIRE2024_ESR @6404fa4 : model_zoo/team38_span_ch28_slim.pth",
            notes="the same bytes are Amazingren/NTIRE2026_ESR @4592ce6 : model_zoo/team00_SPAN.pth",
        ),
    ),
    notes="re-parameterised SPAN, 28 features: 150,688 parameters; RGB 0..1 (DIV2K mean and x255 inside)",
)
def build_span(scale: int = 4, **config) -> SPAN:
    return SPAN(scale=scale, **config)
